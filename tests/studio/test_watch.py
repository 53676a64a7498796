"""core.studio.watch: a slowly copied file is queued once, after it is complete; duplicates (another name, a touch,
a restart) are ignored; non-videos are logged once and skipped; watch.yaml is loaded strictly; the CLI."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.studio.queue import JobQueue
from core.studio.watch import (
    Outcome,
    Watcher,
    WatchFolder,
    WatchSettings,
    load_watch_settings,
    save_watch_settings,
    seen_files,
    watch_path,
)
from core.video.synthetic import ClipSpec, make_clip
from scripts import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("watch") / "src.mp4", ClipSpec(width=160, height=96, frames=12))


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    return inbox, out


def _wait_for(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _settle(w: Watcher) -> list[Outcome]:
    """Two passes of a settle_s=0 watcher: the first notes the files, the second handles them."""
    return w.scan() + w.scan()


# ------------------------------------------------------------------------------------------------ smoke


def test_smoke_slow_copy_is_queued_once_after_it_is_complete(clip: Path, folders: tuple[Path, Path]) -> None:
    inbox, out = folders
    data = clip.read_bytes()
    outcomes: list[Outcome] = []
    queue = JobQueue()
    cfg = WatchFolder(folder=str(inbox), style="cartoon", out=str(out), sets=("n_colors=6",), settle_s=1.0)
    target = inbox / "holiday clip.mp4"
    with Watcher(cfg, poll_s=0.05, on_outcome=outcomes.append):
        pieces = [data[i:i + len(data) // 4 + 1] for i in range(0, len(data), len(data) // 4 + 1)]
        assert len(pieces) == 4
        for piece in pieces:  # written in pieces with pauses shorter than settle_s, like a slow copy
            with open(target, "ab") as fh:
                fh.write(piece)
            time.sleep(0.3)
            assert queue.list() == [] and outcomes == [], "queued before the copy was complete"
        complete = datetime.now(UTC)
        _wait_for(lambda: outcomes)
        time.sleep(1.5)  # longer than settle_s: nothing more may come
    assert [o.action for o in outcomes] == ["queued"]
    jobs = queue.list()
    assert len(jobs) == 1 and jobs[0].id == outcomes[0].job_id
    job = jobs[0]
    assert datetime.fromisoformat(job.created) >= complete
    sha = hashlib.sha256(data).hexdigest()
    assert job.spec["input"] == str(target) and (job.spec["style"], job.spec["sets"]) == ("cartoon", {"n_colors": "6"})
    assert job.spec["output"] == str(out / f"holiday_clip_cartoon_{sha[:8]}.mp4")
    [seen] = seen_files()
    assert (seen.sha256, seen.job_id, seen.error, seen.size) == (sha, job.id, "", len(data))


# ------------------------------------------------------------------------------------------------ duplicates


def test_duplicate_content_touch_and_restart_are_ignored(clip: Path, folders: tuple[Path, Path]) -> None:
    inbox, out = folders
    cfg = WatchFolder(folder=str(inbox), out=str(out), settle_s=0.0)
    w = Watcher(cfg, observer=False)
    shutil.copy(clip, inbox / "a.mp4")
    assert [o.action for o in _settle(w)] == ["queued"]
    shutil.copy(clip, inbox / "b.mov")  # the same content under another name
    assert [(Path(o.path).name, o.action) for o in _settle(w)] == [("b.mov", "duplicate")]
    later = time.time() + 5
    os.utime(inbox / "a.mp4", (later, later))  # the same file touched again
    assert [(Path(o.path).name, o.action) for o in _settle(w)] == [("a.mp4", "duplicate")]
    assert _settle(w) == []  # handled files are not even hashed again until they change
    restarted = Watcher(cfg, observer=False)  # a new process: the database remembers
    assert {o.action for o in _settle(restarted)} == {"duplicate"}
    assert len(JobQueue().list()) == 1 and len(seen_files()) == 1


def test_same_content_in_another_watch_folder_is_queued(clip: Path, tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        shutil.copy(clip, tmp_path / name / "c.mp4")
        w = Watcher(WatchFolder(folder=str(tmp_path / name), out=str(tmp_path / f"out-{name}"), settle_s=0.0),
                    observer=False)
        assert [o.action for o in _settle(w)] == ["queued"]
    outputs = sorted(Path(j.spec["output"]).parent.name for j in JobQueue().list())
    assert outputs == ["out-one", "out-two"]


def test_output_name_never_collides(clip: Path, folders: tuple[Path, Path]) -> None:
    inbox, out = folders
    sha = hashlib.sha256(clip.read_bytes()).hexdigest()
    out.mkdir()
    (out / f"x_none_{sha[:8]}.mp4").write_bytes(b"an older render")
    shutil.copy(clip, inbox / "x.mp4")
    [o] = _settle(Watcher(WatchFolder(folder=str(inbox), out=str(out), settle_s=0.0), observer=False))
    assert JobQueue().get(o.job_id).spec["output"] == str(out / f"x_none_{sha[:8]}-2.mp4")


# ------------------------------------------------------------------------------------------------ skipping


def test_hidden_and_partial_names_are_ignored(clip: Path, folders: tuple[Path, Path]) -> None:
    inbox, out = folders
    for name in (".hidden.mp4", "copying.mp4.part", "download.tmp", "x.mp4.crdownload"):
        shutil.copy(clip, inbox / name)
    (inbox / "sub.mp4").mkdir()  # a folder with a video's name
    w = Watcher(WatchFolder(folder=str(inbox), out=str(out), settle_s=0.0), observer=False)
    assert _settle(w) == [] and JobQueue().list() == [] and seen_files() == []


def test_not_a_video_is_logged_once_and_skipped(folders: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    inbox, out = folders
    (inbox / "notes.txt").write_text("not a video")
    (inbox / "fake.mp4").write_bytes(b"\x00garbage, not an mp4" * 50)
    w = Watcher(WatchFolder(folder=str(inbox), out=str(out), settle_s=0.0), observer=False)
    with caplog.at_level(logging.INFO, logger="core.studio.watch"):
        outcomes = _settle(w) + _settle(w)
    assert [(Path(o.path).name, o.action) for o in outcomes] == [("fake.mp4", "skipped")]
    assert "fake.mp4" in outcomes[0].reason
    assert sum("notes.txt" in r.getMessage() for r in caplog.records) == 1
    assert sum("fake.mp4" in r.getMessage() for r in caplog.records) == 1
    [seen] = seen_files()
    assert seen.job_id is None and "fake.mp4" in seen.error
    assert JobQueue().list() == []


# ------------------------------------------------------------------------------------------------ settings


def test_settings_round_trip(tmp_path: Path) -> None:
    assert load_watch_settings() == WatchSettings()  # nothing saved: disabled, no folders
    s = WatchSettings(enabled=True, folders=(WatchFolder(folder=str(tmp_path), style="pencil", sets=("a=1",),
                                                         settle_s=2.5),))
    assert save_watch_settings(s) == watch_path()
    assert load_watch_settings() == s


@pytest.mark.parametrize(("text", "needle"), [
    ("enabled: true\nfolderz: []\n", "unknown key 'folderz'"),
    ("folders:\n  - folder: /x\n    settle: 3\n", "unknown key 'settle'"),
    ("folders:\n  - folder: /x\n    settle_s: -1\n", "settle_s"),
    ("folders:\n  - folder: /x\n    sets: [novalue]\n", "sets"),
    ("folders:\n  - folder: /x\n    out: /x\n", "is the watched folder itself"),
    ("enabled: maybe\n", "enabled"),
])
def test_exception_bad_watch_yaml(text: str, needle: str) -> None:
    watch_path().parent.mkdir(parents=True, exist_ok=True)
    watch_path().write_text(text)
    with pytest.raises(ConfigError, match=r"watch\.yaml") as err:
        load_watch_settings()
    assert needle in str(err.value)


def test_exception_bad_watcher(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is the watched folder itself"):
        Watcher(WatchFolder(folder=str(tmp_path), out=str(tmp_path)))
    with pytest.raises(ConfigError, match="not a folder"):
        Watcher(WatchFolder(folder=str(tmp_path / "missing"), out=str(tmp_path)))


def test_cli_refuses_bad_watch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["watch", str(tmp_path), "--out", str(tmp_path)]) == cli.EXIT_USER
    assert "watched folder itself" in capsys.readouterr().err
    assert cli.main(["watch"]) == cli.EXIT_USER  # no DIR and nothing in watch.yaml
    assert "watch.yaml" in capsys.readouterr().err


def test_cli_watch_stops_cleanly_on_sigterm(folders: tuple[Path, Path], studio_home: Path) -> None:
    """A service manager stops with SIGTERM: the watcher must stop as on Ctrl-C (exit 0), not die with 143."""
    inbox, out = folders
    log_file = studio_home / "logs" / "studio.log"
    proc = subprocess.Popen([sys.executable, "-m", "scripts.cli", "watch", str(inbox), "--out", str(out)],
                            cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Watcher.start logs "watching DIR: ..." once its observer and loop run: then it is really watching
        _wait_for(lambda: proc.poll() is not None
                  or (log_file.is_file() and f"watching {inbox}" in log_file.read_text()), timeout=60)
        assert proc.poll() is None, f"the watcher exited early: {proc.communicate()}"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "watch: stopped" in err
    assert log_file.read_text().count("watch: stopped") == 1
