"""core.studio.worker: jobs run from the queue; SIGKILL mid-render resumes identically; SIGTERM releases; pause and
cancel stop a running render; failures use up attempts; two workers never run one job; train, autotune, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.render.checkpoint import Checkpoint
from core.render.cost import history_path
from core.render.pipeline import render
from core.render.spec import build_job
from core.render.workdir import work_root
from core.studio import worker as worker_mod
from core.studio.queue import JobQueue
from core.studio.worker import run_worker
from core.video.probe import probe
from core.video.synthetic import ClipSpec, make_clip
from scripts import cli

ROOT = Path(__file__).resolve().parents[2]
CLIP = ClipSpec(width=160, height=96, frames=48, gop=12)
#: four chunks of 12 frames, one worker process: small, but enough chunks to be interrupted between
RENDER = {"style": "cartoon", "chunk_seconds": 0.5, "workers": 1}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("worker") / "in.mp4", CLIP)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reference(clip: Path, out: Path) -> str:
    """An uninterrupted render of the same job; its work folder is removed so nothing is shared."""
    render(build_job(clip, out, RENDER["style"], "balanced", chunk_seconds=RENDER["chunk_seconds"]),
           workers=RENDER["workers"])
    assert not any(work_root().glob("*/checkpoint.json"))
    return _sha(out)


def _done_chunks() -> int:
    for ck in work_root().glob("*/checkpoint.json"):
        try:
            return len(json.loads(ck.read_text())["done"])
        except (OSError, ValueError, KeyError):
            pass
    return 0


def _worker_process(studio_home: Path, hold_after: int, hold_s: float, *args: str) -> subprocess.Popen:
    """``worker --once`` in its own session, holding ``hold_s`` seconds after its ``hold_after``-th finished
    chunk is checkpointed: the test then kills or stops it at a known point, mid-render."""
    code = (
        "import sys, time\n"
        "from core.render.checkpoint import Checkpoint\n"
        "mark = Checkpoint.mark_done\n"
        "def held(self, cid, rec):\n"
        "    mark(self, cid, rec)\n"
        f"    if len(self.done) >= {hold_after}: time.sleep({hold_s})\n"
        "Checkpoint.mark_done = held\n"
        "from scripts.cli import main\n"
        f"sys.exit(main(['worker', '--once', '--poll', '0.2', *{list(args)!r}]))\n")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "VP_HOME": str(studio_home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for(cond, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------------ smoke


def test_smoke_render_job(clip: Path, tmp_path: Path) -> None:
    queue = JobQueue()
    out = tmp_path / "out.mp4"
    job_id = queue.add("render", {"input": str(clip), "output": str(out), **RENDER})
    assert run_worker(once=True, poll_s=0.05) == 1
    job = queue.get(job_id)
    assert (job.state, job.attempts, job.progress, job.error) == ("done", 1, 1.0, "")
    assert job.output == str(out) and probe(out).frame_count == CLIP.frames
    assert job.result["frames"] == CLIP.frames and job.result["chunks"] == 4 and job.result["reused_chunks"] == []
    assert job.result["summary"].startswith("rendered 48 frames")
    events = queue.events(job_id)
    stages = [e.stage for e in events]
    assert stages[:4] == ["queued", "start", "analyse", "render"] and stages[-1] == "done"
    last_render = [e for e in events if e.stage == "render"][-1]
    assert last_render.percent == 100 and last_render.fps and last_render.message == "48/48 frames"
    history = history_path().read_text().splitlines()  # ETAs learn from queued renders too
    assert len(history) == 1 and json.loads(history[0])["frames"] == CLIP.frames


# ------------------------------------------------------------------------------------------------ crashes


def test_sigkill_mid_render_resumes_from_checkpoint_identically(clip: Path, tmp_path: Path,
                                                               studio_home: Path) -> None:
    ref = _reference(clip, tmp_path / "ref.mp4")
    queue = JobQueue()
    out = tmp_path / "out.mp4"
    job_id = queue.add("render", {"input": str(clip), "output": str(out), **RENDER})
    proc = _worker_process(studio_home, 2, 600, "--lease", "2")
    try:
        _wait_for(lambda: _done_chunks() >= 2, proc=proc)
        running = queue.get(job_id)
        assert (running.state, running.attempts) == ("running", 1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and _done_chunks() == 2
    dead = queue.get(job_id)
    assert dead.state == "running"  # nobody knows yet: the lease has not run out
    time.sleep(max(0.0, dead.lease_until - time.time()) + 0.1)
    assert run_worker(once=True, poll_s=0.05, lease_s=5) == 1
    job = queue.get(job_id)
    assert (job.state, job.attempts, job.lost) == ("done", 1, 1)  # a dead worker is no failed attempt
    assert job.result["reused_chunks"] == [0, 1]
    assert _sha(out) == ref  # the resumed render is byte-identical to the uninterrupted one
    stages = [e.stage for e in queue.events(job_id)]
    assert stages.count("start") == 2 and "requeued" in stages
    messages = [e.message for e in queue.events(job_id)]
    assert "resuming: 24 of 48 frames already rendered" in messages
    assert any("stopped reporting during render (lease expired" in m for m in messages)


def test_sigterm_releases_the_job_to_resume(clip: Path, tmp_path: Path, studio_home: Path) -> None:
    queue = JobQueue()
    out = tmp_path / "out.mp4"
    job_id = queue.add("render", {"input": str(clip), "output": str(out), **RENDER})
    proc = _worker_process(studio_home, 1, 1.0)
    try:
        _wait_for(lambda: _done_chunks() >= 1, proc=proc)
        proc.send_signal(signal.SIGTERM)  # the worker only, as a service manager would
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    job = queue.get(job_id)
    assert (job.state, job.attempts, job.worker, job.error) == ("queued", 0, None, "")
    assert not out.exists() and _done_chunks() >= 1
    assert run_worker(once=True, poll_s=0.05) == 1
    job = queue.get(job_id)
    assert job.state == "done" and job.attempts == 1 and job.result["reused_chunks"]
    assert probe(out).frame_count == CLIP.frames


def test_cardinality_two_workers_never_run_one_job_twice(clip: Path, tmp_path: Path, studio_home: Path) -> None:
    queue = JobQueue()
    ids = [queue.add("render", {"input": str(clip), "output": str(tmp_path / f"o{i}.mp4"), "style": "none",
                                "sets": {"encoder.crf": 18 + i}, "workers": 1}) for i in range(3)]
    env = {**os.environ, "VP_HOME": str(studio_home)}
    procs = [subprocess.Popen([sys.executable, "-m", "scripts.cli", "worker", "--once", "--slots", "2",
                               "--poll", "0.1"], cwd=ROOT, env=env, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        assert p.wait(180) == 0, p.stderr.read().decode()[-2000:]
    for job_id in ids:
        job = queue.get(job_id)
        assert (job.state, job.attempts) == ("done", 1)
        assert [e.stage for e in queue.events(job_id)].count("start") == 1
        assert probe(job.output).frame_count == CLIP.frames


# ------------------------------------------------------------------------------------------------ stops


@pytest.mark.parametrize(("action", "state"), [("pause", "paused"), ("cancel", "cancelled")])
def test_pause_or_cancel_stops_a_running_render(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 action: str, state: str) -> None:
    queue = JobQueue()
    out = tmp_path / "out.mp4"
    job_id = queue.add("render", {"input": str(clip), "output": str(out), **RENDER})
    mark = Checkpoint.mark_done

    def asked(self: Checkpoint, cid: int, rec: dict) -> None:
        mark(self, cid, rec)
        if len(self.done) == 1:
            getattr(JobQueue(), action)(job_id)  # as a page would, while the render runs

    monkeypatch.setattr(Checkpoint, "mark_done", asked)
    assert run_worker(once=True, poll_s=0.05) == 1
    job = queue.get(job_id)
    assert (job.state, job.attempts, job.requested, job.worker) == (state, 0, None, None)
    assert not out.exists() and _done_chunks() >= 1  # stopped before the end; the checkpoint is kept
    stages = [e.stage for e in queue.events(job_id)]
    assert action in stages and stages[-1] == state
    monkeypatch.setattr(Checkpoint, "mark_done", mark)
    (queue.resume if action == "pause" else queue.retry)(job_id)
    assert run_worker(once=True, poll_s=0.05) == 1
    job = queue.get(job_id)
    assert job.state == "done" and job.result["reused_chunks"] and probe(out).frame_count == CLIP.frames


# ------------------------------------------------------------------------------------------------ failures


def test_a_failing_job_ends_failed_after_three_attempts(clip: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    queue = JobQueue()
    job_id = queue.add("render", {"input": str(clip), "output": str(tmp_path / "o.mp4"), **RENDER})

    def boom(job, rep):
        rep.report("render", 10, message="about to fail")
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setitem(worker_mod.RUNNERS, "render", boom)
    assert run_worker(once=True, poll_s=0.05) == 3
    job = queue.get(job_id)
    assert (job.state, job.attempts) == ("failed", 3)
    assert job.error == "failed 3 times; last error: RuntimeError: the GPU caught fire"
    assert [e.stage for e in queue.events(job_id)].count("error") == 2


def test_a_user_error_fails_at_once(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = JobQueue()
    job_id = queue.add("render", {"input": str(clip), "output": str(tmp_path / "o.mp4"), **RENDER})

    def bad(job, rep):
        raise ConfigError("--set n_colors=99: out of range")

    monkeypatch.setitem(worker_mod.RUNNERS, "render", bad)
    assert run_worker(once=True, poll_s=0.05) == 1
    job = queue.get(job_id)
    assert (job.state, job.attempts, job.error) == ("failed", 1, "--set n_colors=99: out of range")


def test_a_damaged_input_fails_at_once(clip: Path, tmp_path: Path) -> None:
    """An input that turned to garbage after it was queued: the real render's refusal is final (issue 16: a
    deterministic input error was retried three times)."""
    src = tmp_path / "in.mp4"
    src.write_bytes(clip.read_bytes())
    queue = JobQueue()
    job_id = queue.add("render", {"input": str(src), "output": str(tmp_path / "o.mp4"), **RENDER})
    src.write_bytes(b"\x00garbage" * 4096)
    assert run_worker(once=True, poll_s=0.05) == 1
    job = queue.get(job_id)
    assert (job.state, job.attempts) == ("failed", 1), job.error
    assert str(src) in job.error and "failed 1 times" not in job.error
    assert [e.stage for e in queue.events(job_id)].count("error") == 0


def test_done_needs_the_output(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = JobQueue()
    job_id = queue.add("render", {"input": str(clip), "output": str(tmp_path / "o.mp4"), **RENDER}, max_attempts=1)
    monkeypatch.setitem(worker_mod.RUNNERS, "render", lambda job, rep: (job.output, {}))  # claims, writes nothing
    run_worker(once=True, poll_s=0.05)
    job = queue.get(job_id)
    assert job.state == "failed" and "cannot be marked done, its output does not exist" in job.error


# ------------------------------------------------------------------------------------------------ other kinds


def test_autotune_job(clip: Path) -> None:
    queue = JobQueue()
    job_id = queue.add("autotune", {"input": str(clip), "style": "pencil", "budget": 2, "frames": 2,
                                    "params": {"blur_sigma": "2,6"}})
    run_worker(once=True, poll_s=0.05)
    job = queue.get(job_id)
    assert job.state == "done" and job.output is None, job.error
    assert len(job.result["candidates"]) == 2 and job.result["best_sets"][0].startswith("blur_sigma=")
    assert job.result["lines"][0].startswith("pencil: 2 candidates")
    assert [e.percent for e in queue.events(job_id) if e.stage == "autotune"][-1] == 100


def test_train_job_epochs_are_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    import trainer.train
    from tests.trainer.test_trainer import write_pairs

    monkeypatch.setattr(trainer.train, "measure_fps", lambda path: 1.0)  # 5 s at 1280x720; test_trainer covers it
    queue = JobQueue()
    pairs = write_pairs(tmp_path / "pairs", n=6)
    job_id = queue.add("train", {"pairs": str(pairs), "base": "compact", "name": "queued", "epochs": 2, "batch": 8,
                                 "crop": 32, "device": "cpu", "description": "inverted soft blur"})
    run_worker(once=True, poll_s=0.05)
    job = queue.get(job_id)
    assert job.state == "done", job.error
    assert job.result["model"] == "queued@1" and Path(job.output).is_file()
    epochs = [e.data for e in queue.events(job_id) if e.data]
    assert [d["epoch"] for d in epochs] == [1, 2] and all("val_loss" in d for d in epochs)
    assert job.result["history"] == epochs
    assert job.result["card"].startswith("# queued@1: inverted soft blur")  # the page shows it
    assert Path(job.output).with_suffix(".md").read_text() == job.result["card"]
    assert set(job.result["held_out"]) == {"pairs", "base", "model"} and job.result["int8"] is None


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_queue_and_worker(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.mp4"
    assert cli.main(["queue", "add", "render", str(clip), "-o", str(out), "--style", "pencil",
                     "--set", "blur_sigma=4", "--chunk-seconds", "1", "--workers", "1"]) == 0
    assert "queued job 1 (render)" in capsys.readouterr().out
    assert cli.main(["queue", "add", "render", str(clip), "-o", str(tmp_path / "x.mp4"), "--style", "nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert cli.main(["queue", "add", "render", str(clip), "-o", str(tmp_path / "two.mp4")]) == 0
    assert cli.main(["queue", "pause", "2"]) == 0 and cli.main(["queue", "cancel", "2"]) == 0
    assert cli.main(["queue", "resume", "2"]) == 2  # cancelled: illegal, one line, exit 2
    assert "job 2 is cancelled: cannot resume it" in capsys.readouterr().err
    assert cli.main(["worker", "--once", "--poll", "0.05"]) == 0
    capsys.readouterr()
    assert cli.main(["queue", "list", "--json"]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert [(j["id"], j["state"]) for j in jobs] == [(1, "done"), (2, "cancelled")]
    assert jobs[0]["spec"]["sets"] == {"blur_sigma": "4"} and out.is_file()
    assert cli.main(["queue", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "done" in lines[0] and "cli.mp4" in lines[0] and "cancelled" in lines[1]
    assert cli.main(["queue", "events", "1"]) == 0
    assert "done" in capsys.readouterr().out.splitlines()[-1]
    assert cli.main(["queue", "retry", "2"]) == 0 and JobQueue().get(2).state == "queued"
    assert cli.main(["worker", "--slots", "-1"]) == 2
    assert "cpu_slots must be an integer >= 0, got -1" in capsys.readouterr().err


def test_disk_guard_refuses_to_start_a_render(clip: Path, tmp_path: Path) -> None:
    """A job queued from the CLI meets the same disk guard as one queued from the Dashboard."""
    from dataclasses import replace

    from core.studio.storage import load_settings, save_settings

    save_settings(replace(load_settings(), min_free_gb=9_999.0))
    queue = JobQueue()
    job_id = queue.add("render", {"input": str(clip), "output": str(tmp_path / "o.mp4"), **RENDER})
    assert run_worker(once=True, poll_s=0.05) == 1
    job = queue.get(job_id)
    assert job.state == "failed" and "GiB free" in job.error and not (tmp_path / "o.mp4").exists()
