"""Faults end clean (issue 16): a full disk, a damaged studio database, a garbled settings file.

Disk full is real here: a small tmpfs mounted for the test (root only; skipped with the reason elsewhere),
filled by the render itself or by a file written until ENOSPC. Each fault must end as one line naming the
file or disk, no traceback, no partial files left, no job left "running", and the queue still readable.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core import db, disk
from core.errors import DatabaseCorruptError, DiskFullError, RenderError
from core.studio import repair, storage
from core.studio.queue import JobQueue
from core.video.synthetic import ClipSpec, make_clip
from scripts import cli

#: a noisy clip at crf 0: its one chunk (~450 KiB) cannot fit the small disks below
BIG = ["--style", "pencil", "--set", "encoder.crf=0"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("faults") / "in.mp4",
                     ClipSpec(frames=48, width=320, height=240, audio=True, seed=3))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``small_disk(kib)``: a fresh tmpfs of that size, unmounted after the test."""
    mounted: list[Path] = []

    def make(kib: int) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)], capture_output=True,
                           text=True, check=False)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill ({r.stderr.strip() or 'mount failed'}; needs root)")
        mounted.append(where)
        return where

    yield make
    for where in reversed(mounted):
        if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def _fill(folder: Path) -> None:
    """Write zeros into ``folder`` until the disk is full."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(bytes(4096))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    assert disk.free_bytes(folder) < 4096


def _one_line(err: str) -> str:
    err = err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".partial" in p.name or p.name.endswith(".tmp"))


# ------------------------------------------------------------------------------------------------ detection


def test_smoke_disk_full_is_recognised() -> None:
    import av

    with pytest.raises(av.error.OSError) as info:
        av.error.err_check(-errno.ENOSPC, "out.mp4")
    assert disk.is_disk_full(info.value)  # PyAV's error carries errno 28
    assert disk.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert disk.is_disk_full(sqlite3.OperationalError("database or disk is full"))
    try:  # a worker's OSError wrapped by the chunk loop
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/x/chunk.mp4")
        except OSError as exc:
            raise RenderError("chunk 3 failed") from exc
    except RenderError as wrapped:
        assert disk.is_disk_full(wrapped)
        err = disk.disk_full_error(wrapped, "/elsewhere", 3 << 20)
    assert isinstance(err, DiskFullError) and isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert str(err).startswith("/: disk full (the disk mounted at / has ") and "needs about 3.0 MiB" in str(err)
    assert not disk.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not disk.is_disk_full(RenderError("boom"))


# ------------------------------------------------------------------------------------------------ disk full


def test_output_disk_full_is_one_line(clip: Path, small_disk: Callable[[int], Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The output's disk fills while the output is written: exit 2, one line naming the mount point and the
    space needed, and nothing of ours left there."""
    disk = small_disk(128)
    assert cli.main(["render", str(clip), "-o", str(disk / "out.mp4"), *BIG, "-q"]) == cli.EXIT_USER
    err = _one_line(capsys.readouterr().err)
    assert err.startswith(f"error: {disk}: disk full (the disk mounted at {disk} has ") and "needs about" in err
    assert list(disk.iterdir()) == []


def test_studio_folder_disk_full_fails_the_job(clip: Path, small_disk: Callable[[int], Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """$VP_HOME (database, work folder) on a disk the job's chunks fill: the job ends failed with the disk named
    (never left running), no partial chunk keeps the disk full, and the queue still lists."""
    home = small_disk(300)
    monkeypatch.setenv("VP_HOME", str(home))
    assert cli.main(["queue", "add", "render", str(clip), "-o", str(tmp_path / "out.mp4"), *BIG]) == 0
    assert cli.main(["worker", "--once", "--poll", "0.05"]) == 0
    capsys.readouterr()
    job = JobQueue().get(1)
    assert job.state == "failed" and job.attempts == 1, job
    assert "disk full (the disk mounted at " in job.error and str(home) in job.error
    assert _leftovers(home) == [] and not (tmp_path / "out.mp4").exists()
    assert cli.main(["queue", "list"]) == 0
    assert "failed" in capsys.readouterr().out


def test_queue_reads_a_full_disk(clip: Path, small_disk: Callable[[int], Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``queue list`` on a disk with no byte free (SQLite cannot even make its -shm index there) works; a change
    is one line naming the disk, exit 2."""
    disk = small_disk(256)
    path = disk / "studio.db"
    queue = JobQueue(path)
    ids = [queue.add("render", {"input": str(clip), "output": str(tmp_path / f"o{i}.mp4")}) for i in range(3)]
    _fill(disk)
    assert [j.id for j in JobQueue(path).list()] == ids
    assert JobQueue(path).counts()["queued"] == 3
    assert cli.main(["queue", "--db", str(path), "list"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    with pytest.raises(DiskFullError, match=f"disk full \\(the disk mounted at {disk} has "):
        queue.pause(ids[0])
    assert cli.main(["queue", "--db", str(path), "pause", str(ids[0])]) == cli.EXIT_USER
    assert f"{path}: disk full (the disk mounted at {disk} has 0 B free" in _one_line(capsys.readouterr().err)
    (disk / "filler").unlink()
    assert queue.pause(ids[0]).state == "paused"  # room again: writes work again


# ------------------------------------------------------------------------------------------------ damaged db


def _damage(path: Path, offset: int, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes((i * 37 + 11) % 256 for i in range(size)))


def _queue_of(path: Path, clip: Path, tmp_path: Path, n: int) -> None:
    queue = JobQueue(path)
    for i in range(n):
        queue.add("render", {"input": str(clip), "output": str(tmp_path / f"o{i}.mp4")})


def test_damaged_database_is_one_line(clip: Path, studio_home: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = studio_home / "studio.db"
    _queue_of(path, clip, tmp_path, 3)
    _damage(path, 0, 100)  # the header: "file is not a database"
    for argv in (["queue", "list"], ["worker", "--once"], ["queue", "add", "render", str(clip), "-o", "x.mp4"]):
        assert cli.main(argv) == cli.EXIT_FAILED
        err = _one_line(capsys.readouterr().err.splitlines()[-1])
        assert err.startswith(f"error: {path}: the studio database is damaged (") and "queue repair" in err
    with pytest.raises(DatabaseCorruptError, match=r"studio\.db: the studio database is damaged"):
        JobQueue(path)


def test_repair_keeps_what_can_be_read(clip: Path, studio_home: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged page in the middle: ``queue repair`` moves the file aside and the new database keeps the rows
    of the pages still readable, with this studio's schema; a second repair finds it healthy."""
    path = studio_home / "studio.db"
    _queue_of(path, clip, tmp_path, 40)
    pages = path.stat().st_size // 4096
    _damage(path, 4096 * (pages - 3) + 100, 3000)
    assert repair.damage(path) is not None
    assert cli.main(["queue", "repair"]) == 0
    line = _one_line(capsys.readouterr().out)
    (aside,) = studio_home.glob("studio.db.corrupt-*")  # an empty -wal beside it is not kept
    assert f"moved aside to {aside.name}" in line
    jobs = JobQueue(path).list()
    assert 10 <= len(jobs) < 40 and f"{len(jobs)} jobs" in line
    assert all(j.spec["output"].endswith(f"o{j.id - 1}.mp4") for j in jobs)  # rows intact, ids kept
    assert repair.damage(path) is None and db.versions(db.connect(path))["jobs"] == len(db.MIGRATIONS["jobs"])
    JobQueue(path).add("render", {"input": str(clip), "output": str(tmp_path / "new.mp4")})  # and it takes writes
    assert cli.main(["queue", "repair"]) == 0
    assert "healthy; nothing to repair" in capsys.readouterr().out


def test_repair_row_by_row_without_the_sqlite3_command(clip: Path, studio_home: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = studio_home / "studio.db"
    _queue_of(path, clip, tmp_path, 40)
    _damage(path, 4096 * (path.stat().st_size // 4096 - 3) + 100, 3000)
    monkeypatch.setattr(repair.shutil, "which", lambda name: None)
    report = repair.repair(path)
    assert report.method == "row by row" and report.rows["jobs"] >= 10 and report.moved_to is not None
    assert len(JobQueue(path).list()) == report.rows["jobs"]


def test_studio_repairs_on_start(studio_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scripts.studio import check_database

    studio_home.mkdir(parents=True)
    (studio_home / "studio.db").write_bytes(b"not a database at all" * 100)
    check_database()
    assert "damaged (file is not a database); moved aside" in _one_line(capsys.readouterr().err)
    assert JobQueue().list() == []
    check_database()  # healthy now: says nothing
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize("text", ["executor: [local\nmin_free_gb: {{{\n", "- just\n- a list\n", "\x00\x01binary"])
def test_garbled_settings_is_a_warning(studio_home: Path, text: str, caplog: pytest.LogCaptureFixture) -> None:
    studio_home.mkdir(parents=True)
    storage.settings_path().write_text(text)
    with caplog.at_level("WARNING"):
        assert storage.load_settings() == storage.StudioSettings()
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{storage.settings_path()}: the studio settings file is ") and "defaults" in message
    assert "just" not in message and "{{{" not in message  # never the file's content


def test_retry_after_disk_full_resumes(clip: Path, tmp_path: Path) -> None:
    """The disk-full reason is final (retrying cannot help until the user frees space), and ``retry`` after
    freeing space runs the job to done."""
    queue = JobQueue()
    job_id = queue.add("render", {"input": str(clip), "output": str(tmp_path / "o.mp4"), "style": "pencil"})
    queue.claim("w", cpu_slots=1)
    job = queue.fail(job_id, "w", str(disk.disk_full_error(OSError(errno.ENOSPC, "full"), tmp_path, 1 << 20)),
                     final=DiskFullError.user_error)
    assert job.state == "failed" and job.attempts == 1 and "disk full" in job.error
    queue.retry(job_id)
    from core.studio.worker import run_worker

    assert run_worker(once=True, poll_s=0.05) == 1
    assert queue.get(job_id).state == "done" and os.path.getsize(tmp_path / "o.mp4") > 0
