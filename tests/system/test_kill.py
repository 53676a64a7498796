"""The kill campaign: ``kill -9`` of a CLI render and of the queue worker at random (seeded) moments.

After every kill no process of ours outlives the killed one by more than 2 s (processes are found in /proc
by the ``VP_TEST_TAG`` each run carries in its environment), and a re-run resumes. At the end the output is
byte-identical to an uninterrupted render, nothing else is left in the output folder, no lock file in the
work folder, and (the queue) every job was done exactly once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from fractions import Fraction
from pathlib import Path

from core import atomic
from core.video.synthetic import ClipSpec, make_clip
from tests.system.test_hygiene import TAG_ENV, kill_tagged, linux_only, tagged, wait_gone

ROOT = Path(__file__).resolve().parents[2]
pytestmark = linux_only

#: a tiny pencil render in several chunks on two workers: analysis, chunks (with carried state), stitch
#: (with audio) and publish each take a noticeable share of a run
CLIP = ClipSpec(width=96, height=64, frames=75, fps=Fraction(25), gop=12, audio=True, seed=5)
RENDER = ["--style", "pencil", "--chunk-seconds", "0.5", "--workers", "2", "-q"]
KILLS = 20
PHASES = ("analysis", "chunks", "stitch", "publish")
#: seconds a run (Python, the forkserver's imports, the render) gets before an "analysis" kill, at most
EARLY_S = 0.8
#: the same for the last try at an "analysis" kill: well inside the interpreter's own start-up
EARLY_LAST_S = 0.1


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(args: list[str], home: Path, tag: str) -> subprocess.Popen:
    """``python -m scripts.cli ARGS`` with its own studio home and tag; output to a file (a pipe nobody
    reads could block it)."""
    log = open(home.parent / f"{tag}.log", "w")  # noqa: SIM115 (handed to the child, closed with it below)
    try:
        return subprocess.Popen([sys.executable, "-m", "scripts.cli", *args], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "VP_HOME": str(home), TAG_ENV: tag})
    finally:
        log.close()


def _run(args: list[str], home: Path, tag: str, timeout: float = 300) -> None:
    proc = _cli(args, home, tag)
    assert proc.wait(timeout) == 0, (home.parent / f"{tag}.log").read_text()[-3000:]
    left = tagged(tag)  # a normal exit waits for its forkserver and tracker: nothing is left, at once
    assert not left, left


def _kill(proc: subprocess.Popen, tag: str) -> None:
    """kill -9 the one process (not its group: its children must go by themselves), then check they did."""
    proc.kill()
    proc.wait()
    left = wait_gone(tag, 2.0)
    assert not left, f"outlived the killed process by more than 2 s: {left}"


def _phase(out_dir: Path, out: Path, work: Path, pid: int, since: float) -> str:
    """Where a run stands, from what it has written: published; stitching (its own temp output); rendering
    chunks (a worker writes a chunk, or the plan of a fresh job was just saved); else starting or analysing."""
    if out.exists():
        return "publish"
    if (out_dir / f".{out.stem}.{pid}.partial{out.suffix}").exists():
        return "stitch"
    writing = [w for p in work.glob("*/.chunk_*") if (w := atomic.temp_writer(p)) and atomic.pid_alive(w[1])]
    if writing or any(ck.stat().st_mtime >= since for ck in work.glob("*/checkpoint.json")):
        return "chunks"
    return "analysis"


def _wait_phase(proc: subprocess.Popen, want: str, out_dir: Path, out: Path, work: Path, since: float) -> None:
    """Poll (every 2 ms) until the run reaches ``want`` or a later phase, or ends."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # a file removed while looked at
            if PHASES.index(_phase(out_dir, out, work, proc.pid, since)) >= PHASES.index(want):
                return
        time.sleep(0.002)


def _nothing_to_render(work: Path) -> bool:
    """Whether the job's checkpoint has every chunk of its plan done (a re-run only stitches)."""
    for ck in work.glob("*/checkpoint.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(ck.read_text())
            return bool(data["plan"]) and len(data["done"]) == len(data["plan"])
    return False


def test_kill_campaign_cli_render(tmp_path: Path) -> None:
    """20 kills, five in each phase (in a seeded order, each at a random moment of its phase); a run that
    passes its phase before the moment comes is let finish (its output checked) and the kill is tried again;
    a kill in the chunks is tried on a run that has chunks to render."""
    clip = make_clip(tmp_path / "in.mp4", CLIP)
    ref_home, home = tmp_path / "ref_home", tmp_path / "home"
    ref = tmp_path / "ref" / "out.mp4"
    _run(["render", str(clip), "-o", str(ref), *RENDER], ref_home, f"ref-{uuid.uuid4().hex}")
    out_dir = tmp_path / "out"
    out = out_dir / "out.mp4"
    work = home / "work"
    render = ["render", str(clip), "-o", str(out), *RENDER]
    rng = random.Random(16)
    order = [p for p in PHASES for _ in range(KILLS // len(PHASES))]
    rng.shuffle(order)
    seen: Counter[str] = Counter()
    stale_seen = completed = 0
    tags: list[str] = []

    def check_published() -> None:
        if out.exists():
            assert _sha(out) == _sha(ref)  # published means whole: never a half-written output
            out.unlink()  # so the next run's publish is seen

    try:
        for want in order:
            for attempt in range(6):
                tags.append(tag := f"cli-{uuid.uuid4().hex}")
                if want == "chunks" and _nothing_to_render(work):
                    _run(render, home, tag)
                    check_published()
                    completed += 1
                    tags.append(tag := f"cli-{uuid.uuid4().hex}")
                since = time.time() - 0.01
                proc = _cli(render, home, tag)
                if want == "analysis":
                    # the last try kills early: a re-run whose chunks are all done can end within EARLY_S
                    # (start-up, stitch, publish), and a run that has ended cannot be killed (CI: 19 of 20)
                    time.sleep(rng.uniform(0.0, EARLY_S if attempt < 5 else EARLY_LAST_S))
                else:
                    _wait_phase(proc, want, out_dir, out, work, since)
                    time.sleep(rng.uniform(0.0, {"chunks": 0.2, "stitch": 0.01, "publish": 0.01}[want]))
                try:
                    where = _phase(out_dir, out, work, proc.pid, since)
                except OSError:
                    where = "chunks"  # a chunk file came and went while looked at
                if proc.poll() is None and (where == want or attempt == 5):
                    _kill(proc, tag)
                    seen[where] += 1
                    check_published()
                    stale_seen += any(p.name != out.name for p in out_dir.glob("*"))
                    break
                assert proc.wait(120) == 0, (tmp_path / f"{tag}.log").read_text()[-3000:]
                check_published()
                completed += 1
        tags.append(tag := f"cli-{uuid.uuid4().hex}")
        _run(render, home, tag)
    finally:
        for tag in tags:
            kill_tagged(tag)
    print(f"kills by phase {dict(seen)}, {completed} whole runs between them, "
          f"{stale_seen} times a killed run's temp file was left beside the output")
    assert sum(seen.values()) == KILLS and set(seen) == set(PHASES), seen
    assert _sha(out) == _sha(ref)
    assert sorted(p.name for p in out_dir.iterdir()) == [out.name]
    assert sorted(p.name for p in work.iterdir()) == []  # no work folder, no lock file


# ------------------------------------------------------------------------------------------------ queue

JOBS = 8
WORKER_KILLS = 8
LEASE_S = 1.5
#: worker deaths one job may see in the campaign, under the queue's cap (core.studio.queue: 5 lost workers fail a job)
MAX_LOSSES = 3
QUEUE_RENDER = ["--style", "pencil", "--chunk-seconds", "0.5", "--workers", "1", "--max-attempts", "20"]


def _queue(db: Path) -> list[dict]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:  # WAL: never blocks the workers
        conn.row_factory = sqlite3.Row
        jobs = [dict(r) for r in conn.execute("SELECT * FROM jobs ORDER BY id")]
        for job in jobs:
            job["stages"] = [r[0] for r in conn.execute("SELECT stage FROM job_events WHERE job_id = ? ORDER BY seq",
                                                        (job["id"],))]
    return jobs


def _add_jobs(home: Path, clips: list[Path], out_dir: Path) -> None:
    tag = f"add-{uuid.uuid4().hex}"
    lines = "".join(f"main(['queue', 'add', 'render', {str(c)!r}, '-o', {str(out_dir / f'out_{i}.mp4')!r}, "
                    f"*{QUEUE_RENDER!r}])\n" for i, c in enumerate(clips))
    proc = subprocess.run([sys.executable, "-c", f"from scripts.cli import main\n{lines}"], cwd=ROOT,
                          env={**os.environ, "VP_HOME": str(home), TAG_ENV: tag}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_kill_campaign_queue_worker(tmp_path: Path) -> None:
    clips = [make_clip(tmp_path / f"in_{i}.mp4", ClipSpec(width=96, height=64, frames=40, gop=10, seed=i))
             for i in range(JOBS)]
    ref_home, home = tmp_path / "ref_home", tmp_path / "home"
    ref_dir, out_dir = tmp_path / "ref", tmp_path / "out"
    _add_jobs(ref_home, clips, ref_dir)
    _run(["worker", "--once", "--poll", "0.1", "--slots", "2"], ref_home, f"ref-{uuid.uuid4().hex}")
    assert all(j["state"] == "done" for j in _queue(ref_home / "studio.db"))
    _add_jobs(home, clips, out_dir)
    db = home / "studio.db"
    rng = random.Random(16)
    tags = []
    try:
        for _ in range(WORKER_KILLS):
            tag = f"worker-{uuid.uuid4().hex}"
            tags.append(tag)
            proc = _cli(["worker", "--lease", str(LEASE_S), "--poll", "0.1", "--slots", "2"], home, tag)
            # a random moment once it has claimed something (a kill before any claim loses no job)
            deadline = time.monotonic() + 60
            while (proc.poll() is None and time.monotonic() < deadline
                   and not any(j["worker"] and j["worker"].endswith(f"-{proc.pid}") for j in _queue(db))
                   and not all(j["state"] == "done" for j in _queue(db))):
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 3.0))
            # a job that lost MAX_LOSSES workers finishes first: the queue fails a job whose workers keep dying
            # (its cap on lost workers), which is not what this campaign is about
            while (proc.poll() is None and time.monotonic() < deadline + 120
                   and any(j["state"] == "running" and (j["worker"] or "").endswith(f"-{proc.pid}")
                           and j["stages"].count("start") > MAX_LOSSES for j in _queue(db))):
                time.sleep(0.05)
            assert proc.poll() is None, (tmp_path / f"{tag}.log").read_text()[-3000:]
            _kill(proc, tag)
        time.sleep(LEASE_S + 0.2)  # the last one's jobs: re-queued at the next claim
        tag = f"worker-{uuid.uuid4().hex}"
        tags.append(tag)
        _run(["worker", "--once", "--lease", str(LEASE_S), "--poll", "0.1", "--slots", "2"], home, tag)
    finally:
        for tag in tags:
            kill_tagged(tag)
    jobs = _queue(db)
    print("per job: " + ", ".join(f"{j['id']}: {j['stages'].count('start')} runs" for j in jobs))
    for job in jobs:
        assert job["state"] == "done", (job["id"], job["state"], job["error"])
        assert job["stages"].count("done") == 1, (job["id"], job["stages"])  # done exactly once
        result = json.loads(job["result"])
        i = int(Path(result["output"]).stem.split("_")[1])
        assert _sha(out_dir / f"out_{i}.mp4") == _sha(ref_dir / f"out_{i}.mp4"), job["id"]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"out_{i}.mp4" for i in range(JOBS))
    assert not list((home / "work").glob(".*.lock")), list((home / "work").iterdir())
