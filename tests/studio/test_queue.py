"""core.studio.queue: the persistent queue (specs, states, order, slots, leases, attempts, events, restart, speed)."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import db
from core.errors import ConfigError, MediaNotFoundError, OutputError, StudioError
from core.studio.kinds import KINDS, check_spec
from core.studio.queue import EVENT_INTERVAL_S, STATES, Job, JobQueue, LeaseLostError
from core.video.synthetic import ClipSpec, make_clip

ROOT = Path(__file__).resolve().parents[2]
TINY = ClipSpec(width=160, height=96, frames=24)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("jobs") / "in.mp4", TINY)


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(tmp_path / "studio.db")


def render_spec(clip: Path, out: Path, **extra) -> dict:
    return {"input": str(clip), "output": str(out), "style": "cartoon", **extra}


def pairs_dir(root: Path) -> Path:
    for sub in ("inputs", "targets"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def add_n(queue: JobQueue, clip: Path, tmp_path: Path, n: int, same: bool = False) -> list[int]:
    """``n`` render jobs; distinct settings (so distinct work folders) unless ``same``."""
    return [queue.add("render", render_spec(clip, tmp_path / f"o{i}.mp4", sets={} if same else {"encoder.crf": 10 + i}))
            for i in range(n)]


# ------------------------------------------------------------------------------------------------ smoke


def test_smoke(queue: JobQueue, clip: Path, tmp_path: Path, studio_home: Path) -> None:
    job_id = queue.add("render", render_spec(clip, tmp_path / "out.mp4"))
    job = queue.get(job_id)
    assert isinstance(job, Job) and (job.kind, job.state, job.attempts, job.max_attempts) == ("render", "queued", 0, 3)
    assert job.spec == {"input": str(clip), "output": str(tmp_path / "out.mp4"), "style": "cartoon",
                        "preset": "balanced", "sets": {}, "chunk_seconds": None, "workers": None, "audio": "all",
                        "subtitles": "all"}
    assert job.output == str(tmp_path / "out.mp4") and job.progress == 0 and job.result is None
    assert [j.id for j in queue.list()] == [job_id]
    assert [(e.seq, e.stage) for e in queue.events(job_id)] == [(1, "queued")]
    conn = db.connect(queue.path)
    try:
        assert db.versions(conn)["jobs"] == len(db.MIGRATIONS["jobs"])
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert JobQueue().path == studio_home / "studio.db"  # the studio database by default
    assert KINDS == ("render", "train", "autotune") and len(STATES) == 6


def test_spec_round_trip_every_kind(clip: Path, tmp_path: Path) -> None:
    render = render_spec(clip, tmp_path / "r.mkv", preset="speed", sets={"n_colors": "6", "encoder.crf": 20},
                         chunk_seconds=1.5, workers=2, audio="none", subtitles="all")
    train = {"pairs": str(pairs_dir(tmp_path / "pairs")), "base": "compact", "name": "mine",
             "description": "my look", "epochs": 3, "lr": 2e-3,
             "batch": 4, "crop": 64, "patience": 2, "scale_min": 0.75, "int8": "try", "min_psnr": 30.0, "device": "cpu"}
    tune = {"input": str(clip), "style": "pencil", "budget": 5, "preset": "quality", "sets": {"blur_sigma": "3"},
            "params": {"blur_sigma": "2:8:3"}, "frames": 2, "seed": 7, "pairs": 1, "objective": "metrics",
            "edge_floor": 0.1}
    for kind, spec in (("render", render), ("train", train), ("autotune", tune)):
        assert check_spec(kind, spec) == spec


def test_relative_paths_become_absolute(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(clip.parent)
    spec = check_spec("render", {"input": clip.name, "output": "rel.mp4", "style": "none"})
    assert spec["input"] == str(clip) and spec["output"] == str(clip.parent / "rel.mp4")


# ------------------------------------------------------------------------------------------------ exceptions


@pytest.mark.parametrize(("kind", "change", "error", "match"), [
    ("nope", {}, ConfigError, "unknown job kind 'nope'"),
    ("render", {"colour": "red"}, ConfigError, "unknown setting 'colour'"),
    ("render", {"style": "nosuch"}, ConfigError, "nosuch"),
    ("render", {"sets": {"n_colors": "999"}}, ConfigError, "n_colors"),
    ("render", {"sets": {"nokey": "1"}}, ConfigError, "nokey"),
    ("render", {"workers": 0}, ConfigError, "workers=0 is out of range"),
    ("render", {"chunk_seconds": "5"}, ConfigError, "chunk_seconds must be a number"),
    ("render", {"input": "/no/such.mp4"}, MediaNotFoundError, "/no/such.mp4"),
    ("render", {"output": "/tmp/x.avi"}, OutputError, "unsupported output container"),
    ("autotune", {"budget": 0}, ConfigError, "budget=0"),
    ("autotune", {"params": {"nosuch": "1:2"}}, ConfigError, "nosuch"),
    ("train", {"int8": "maybe"}, ConfigError, "int8='maybe' is not one of"),
    ("train", {"epochs": 2.5}, ConfigError, "epochs must be an integer"),
    ("train", {"pairs": "/no/pairs"}, MediaNotFoundError, "/no/pairs"),
    ("train", {"name": "no way"}, ConfigError, "name: bad model name 'no way'"),
    ("train", {"description": 5}, ConfigError, "description must be a string"),
    ("train", {"description": "x" * 2001}, ConfigError, "at most 2000 characters"),
])
def test_exception_bad_spec(queue: JobQueue, clip: Path, tmp_path: Path, kind: str, change: dict,
                            error: type, match: str) -> None:
    base = {"render": render_spec(clip, tmp_path / "o.mp4"),
            "autotune": {"input": str(clip), "style": "pencil"},
            "train": {"pairs": str(pairs_dir(tmp_path / "p")), "base": "compact"}}.get(kind, {})
    with pytest.raises(error, match=match):
        queue.add(kind, {**base, **change})
    assert queue.list() == []


def test_exception_missing_setting_and_attempts(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing setting 'output'"):
        queue.add("render", {"input": str(clip)})
    with pytest.raises(ConfigError, match="max_attempts"):
        queue.add("render", render_spec(clip, tmp_path / "o.mp4"), max_attempts=0)


def test_exception_same_output_twice(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    first = queue.add("render", render_spec(clip, tmp_path / "o.mp4"))
    with pytest.raises(ConfigError, match=f"job {first} already renders to this output"):
        queue.add("render", render_spec(clip, tmp_path / "o.mp4", style="pencil"))
    queue.cancel(first)
    queue.add("render", render_spec(clip, tmp_path / "o.mp4"))  # a cancelled job no longer holds it


def test_exception_illegal_transitions(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    job_id = queue.add("render", render_spec(clip, tmp_path / "o.mp4"))
    with pytest.raises(ConfigError, match=f"job {job_id} is queued: cannot resume"):
        queue.resume(job_id)
    with pytest.raises(ConfigError, match=f"job {job_id} is queued: cannot retry"):
        queue.retry(job_id)
    queue.cancel(job_id)
    for action in (queue.cancel, queue.pause, queue.resume):
        with pytest.raises(ConfigError, match=f"job {job_id} is cancelled"):
            action(job_id)
    with pytest.raises(ConfigError, match="no job 99"):
        queue.get(99)
    with pytest.raises(ConfigError, match="unknown job state 'sleeping'"):
        queue.list(["sleeping"])
    assert issubclass(LeaseLostError, StudioError) and not LeaseLostError.user_error


# ------------------------------------------------------------------------------------------------ states


def test_pause_resume_cancel_retry_queued(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    a, b = add_n(queue, clip, tmp_path, 2)
    assert queue.pause(a).state == "paused"
    assert queue.claim("w", cpu_slots=4).id == b  # a paused job is skipped
    assert queue.resume(a).state == "queued"
    assert queue.cancel(a).state == "cancelled" and queue.get(a).finished is not None
    job = queue.retry(a)
    assert (job.state, job.attempts, job.finished) == ("queued", 0, None)
    stages = [e.stage for e in queue.events(a)]
    assert stages == ["queued", "paused", "resumed", "cancelled", "retry"]


def test_pause_and_cancel_running_are_requests(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    (a,) = add_n(queue, clip, tmp_path, 1)
    queue.claim("w", cpu_slots=1)
    job = queue.pause(a)
    assert (job.state, job.requested) == ("running", "paused")
    assert queue.heartbeat(a, "w", stage="render", percent=10) == "paused"
    assert queue.resume(a).requested is None  # withdrawn before the worker saw it
    assert queue.heartbeat(a, "w", stage="render", percent=20) == "running"
    queue.cancel(a)
    assert queue.heartbeat(a, "w", stage="render", percent=30) == "cancelled"
    job = queue.release(a, "w")
    assert (job.state, job.attempts, job.worker, job.requested) == ("cancelled", 0, None, None)
    assert job.progress == pytest.approx(0.3)  # kept: the checkpoint resumes from there


def test_release_on_shutdown_requeues_without_using_an_attempt(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    (a,) = add_n(queue, clip, tmp_path, 1)
    for _ in range(5):  # more than max_attempts: a clean give-back never counts
        assert queue.claim("w", cpu_slots=1).attempts == 1
        job = queue.release(a, "w")
        assert (job.state, job.attempts) == ("queued", 0)


def test_fail_three_times_then_failed_with_reason(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    (a,) = add_n(queue, clip, tmp_path, 1)
    for attempt in (1, 2):
        assert queue.claim("w", cpu_slots=1).attempts == attempt
        job = queue.fail(a, "w", f"boom {attempt}")
        assert (job.state, job.error, job.worker) == ("queued", f"boom {attempt}", None)
    queue.claim("w", cpu_slots=1)
    job = queue.fail(a, "w", "boom 3")
    assert (job.state, job.attempts) == ("failed", 3)
    assert job.error == "failed 3 times; last error: boom 3" and job.finished is not None
    assert queue.claim("w", cpu_slots=1) is None
    assert [e.stage for e in queue.events(a)][-1] == "failed"
    assert queue.retry(a).attempts == 0


def test_user_error_fails_at_once(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    (a,) = add_n(queue, clip, tmp_path, 1)
    queue.claim("w", cpu_slots=1)
    job = queue.fail(a, "w", "in.mp4: not a video", final=True)
    assert (job.state, job.attempts, job.error) == ("failed", 1, "in.mp4: not a video")


def test_finish_needs_the_output(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    (a,) = add_n(queue, clip, tmp_path, 1)
    queue.claim("w", cpu_slots=1)
    with pytest.raises(MediaNotFoundError, match=r"o0\.mp4"):
        queue.finish(a, "w", str(tmp_path / "o0.mp4"), {})
    assert queue.get(a).state == "running"
    (tmp_path / "o0.mp4").write_bytes(b"x")
    job = queue.finish(a, "w", str(tmp_path / "o0.mp4"), {"frames": 24, "reused": (1, 2)})
    assert (job.state, job.progress, job.result) == ("done", 1.0, {"frames": 24, "reused": [1, 2]})


# ------------------------------------------------------------------------------------------------ order and slots


def test_order_and_move(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    ids = add_n(queue, clip, tmp_path, 4)
    assert [j.id for j in queue.list()] == ids
    queue.move(ids[3], before=ids[0])
    assert [j.id for j in queue.list()] == [ids[3], ids[0], ids[1], ids[2]]
    queue.move(ids[3], before=None)
    assert [j.id for j in queue.list()] == ids
    for _ in range(40):  # 80 halvings, past float precision: positions get renumbered
        queue.move(ids[2], before=ids[1])
        queue.move(ids[1], before=ids[2])
    assert [j.id for j in queue.list()] == ids
    queue.move(ids[2], before=ids[2])  # before itself: no change
    assert [j.id for j in queue.list(limit=2)] == ids[:2]
    assert queue.claim("w", cpu_slots=1).id == ids[0]


def test_gpu_and_cpu_slots(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    g1 = queue.add("render", render_spec(clip, tmp_path / "g1.mp4", style="pencil"), gpu=True)
    g2 = queue.add("render", render_spec(clip, tmp_path / "g2.mp4", style="none"), gpu=True)
    c1, c2 = add_n(queue, clip, tmp_path, 2)
    assert queue.claim("a", cpu_slots=1).id == g1
    assert queue.claim("b", cpu_slots=1).id == c1  # the GPU is busy: the next CPU job, out of order
    assert queue.claim("c", cpu_slots=1) is None  # one GPU job and one CPU job already run (over all workers)
    assert queue.claim("c", cpu_slots=2).id == c2
    assert queue.claim("c", cpu_slots=3, gpu_slots=2).id == g2


def test_jobs_sharing_a_work_folder_never_run_at_once(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    """Same input, style and settings to two outputs: one job hash, one work folder; run one after the other."""
    a, _ = add_n(queue, clip, tmp_path, 2, same=True)
    c = queue.add("render", render_spec(clip, tmp_path / "c.mp4", sets={"n_colors": "5"}))
    assert queue.claim("w", cpu_slots=3).id == a
    assert queue.claim("w", cpu_slots=3).id == c
    assert queue.claim("w", cpu_slots=3) is None
    queue.fail(a, "w", "boom")
    assert queue.claim("w", cpu_slots=3).id == a  # its place in the queue is kept
    queue.release(a, "w")
    assert queue.claim("w", cpu_slots=3).id == a


# ------------------------------------------------------------------------------------------------ leases


def test_expired_lease_requeues_then_fails(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    """A dead worker is counted in ``lost``, not in ``attempts``, up to its own cap (issue 16: ten worker kills
    used to fail good jobs after three)."""
    a = queue.add("render", render_spec(clip, tmp_path / "o0.mp4"), max_lost=4)
    for lost in (0, 1, 2, 3):
        job = queue.claim("dead", cpu_slots=1, lease_s=0.05)
        assert job.attempts == 1 and job.lost == lost and job.worker == "dead"
        queue.heartbeat(a, "dead", stage="render", percent=40)
        time.sleep(0.1)
        assert queue.requeue_expired() == [a]
    job = queue.get(a)
    assert job.state == "failed" and job.lost == 4 and job.attempts == 1
    assert "its worker died 4 times" in job.error and "worker dead stopped reporting during render" in job.error
    assert [e.stage for e in queue.events(a)].count("requeued") == 3


def test_lost_workers_and_failures_counted_apart(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    (a,) = add_n(queue, clip, tmp_path, 1)
    assert queue.get(a).max_lost == 5
    for _ in range(4):  # four worker deaths: more than max_attempts, the job lives on
        queue.claim("dead", cpu_slots=1, lease_s=0.05)
        time.sleep(0.1)
        queue.requeue_expired()
    for attempt in (1, 2):
        job = queue.claim("w", cpu_slots=1)
        assert (job.attempts, job.lost) == (attempt, 4)
        assert f"attempt {attempt}/3, 4/5 workers lost" in job.message
        assert queue.fail(a, "w", "RenderError: boom").state == "queued"
    queue.claim("w", cpu_slots=1)
    job = queue.fail(a, "w", "RenderError: boom")
    assert job.state == "failed" and "failed 3 times" in job.error and job.tries() == "attempt 3/3, 4/5 workers lost"
    job = queue.retry(a)
    assert (job.attempts, job.lost) == (0, 0)


def test_final_failure_is_not_retried(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    (a,) = add_n(queue, clip, tmp_path, 1)
    queue.claim("w", cpu_slots=1)
    job = queue.fail(a, "w", "x.cube: not a LUT", final=True)
    assert job.state == "failed" and job.error == "x.cube: not a LUT" and job.attempts == 1


def test_migrates_a_version_1_database(tmp_path: Path, clip: Path) -> None:
    """A database made before the ``lost`` column gains it (default 0, cap 5) and keeps its jobs."""
    path = tmp_path / "old.db"
    conn = db.connect(path)
    with db.transaction(conn):
        conn.execute(db._VERSIONS_TABLE)
        for statement in db._statements(db.MIGRATIONS["jobs"][0]):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_versions VALUES ('jobs', 1)")
        conn.execute("INSERT INTO jobs (kind, spec, position, created, attempts) VALUES ('render', ?, 1, 'now', 2)",
                     (json.dumps(render_spec(clip, tmp_path / "o.mp4")),))
    conn.close()
    job = JobQueue(path).get(1)
    assert (job.attempts, job.lost, job.max_lost) == (2, 0, 5)
    assert db.versions(db.connect(path))["jobs"] == len(db.MIGRATIONS["jobs"])


def test_lease_lost_to_another_worker(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    (a,) = add_n(queue, clip, tmp_path, 1)
    queue.claim("slow", cpu_slots=1, lease_s=0.05)
    time.sleep(0.1)
    assert queue.claim("fresh", cpu_slots=1).id == a  # the claim re-queues the expired job first
    assert queue.heartbeat(a, "slow", stage="render", percent=50) == "lost"
    assert queue.touch(a, "slow") == "lost"
    with pytest.raises(LeaseLostError, match=f"job {a} is no longer worker slow's"):
        queue.finish(a, "slow", None, {})
    assert queue.touch(a, "fresh") == "running"


def test_heartbeat_extends_the_lease(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    (a,) = add_n(queue, clip, tmp_path, 1)
    queue.claim("w", cpu_slots=1, lease_s=0.3)
    for _ in range(4):
        time.sleep(0.15)
        assert queue.touch(a, "w") == "running"
    assert queue.requeue_expired() == []


# ------------------------------------------------------------------------------------------------ events


def test_events_are_throttled_but_keep_stages_and_records(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    (a,) = add_n(queue, clip, tmp_path, 1)
    queue.claim("w", cpu_slots=1)
    queue.heartbeat(a, "w", stage="analyse", percent=0)
    t = time.monotonic()
    for i in range(20):  # each commit is fsynced (~10-30 ms), so some of these are due
        queue.heartbeat(a, "w", stage="render", percent=i, fps=12.5, eta_s=3.0, message=f"{i}/20 frames")
    most = 1 + int((time.monotonic() - t) / EVENT_INTERVAL_S)
    queue.heartbeat(a, "w", stage="train", percent=50, data={"epoch": 1, "val_loss": 0.5})
    queue.heartbeat(a, "w", stage="train", percent=51, data={"epoch": 2, "val_loss": 0.4})
    events = queue.events(a)
    stages = [e.stage for e in events]
    assert stages[:4] == ["queued", "start", "analyse", "render"] and stages[-2:] == ["train", "train"]
    assert 1 <= stages.count("render") <= min(most, 19)
    assert [e.data for e in events[-2:]] == [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.4}]
    job = queue.get(a)  # the job row always has the latest report, events or not
    assert (job.stage, job.progress, job.fps) == ("train", 0.51, None)
    time.sleep(EVENT_INTERVAL_S)
    queue.heartbeat(a, "w", stage="train", percent=60, message="later")
    assert [e.seq for e in queue.events(a, after=events[-1].seq)] == [events[-1].seq + 1]


def test_events_history_per_job(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    a, b = add_n(queue, clip, tmp_path, 2)
    queue.pause(b)
    assert [e.seq for e in queue.events(a)] == [1] and [e.seq for e in queue.events(b)] == [1, 2]
    assert queue.events(b, after=1)[0].stage == "paused"


# ------------------------------------------------------------------------------------------------ processes


def _claimer(db_path: str, name: str, out: str) -> None:
    q = JobQueue(db_path)
    got = []
    while (job := q.claim(name, cpu_slots=100, lease_s=60)) is not None:
        got.append(job.id)
        q.finish(job.id, name, None, {"by": name})
    Path(out).write_text(json.dumps(got))


def test_cardinality_concurrent_claims_never_share_a_job(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    ids = add_n(queue, clip, tmp_path, 40)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_claimer, args=(str(queue.path), f"w{i}", str(tmp_path / f"w{i}.json")))
             for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    claimed = [i for k in range(4) for i in json.loads((tmp_path / f"w{k}.json").read_text())]
    assert sorted(claimed) == ids  # every job exactly once
    assert all(j.state == "done" and j.attempts == 1 for j in queue.list())
    assert all([e.stage for e in queue.events(i)].count("start") == 1 for i in ids)


def test_restart_keeps_the_queue_and_every_setting(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    queue.add("render", render_spec(clip, tmp_path / "r.mkv", preset="speed", sets={"n_colors": "6"},
                                    chunk_seconds=2.0, workers=1), max_attempts=5)
    queue.add("train", {"pairs": str(pairs_dir(tmp_path / "pairs")), "base": "compact", "name": "x", "epochs": 2},
              gpu=True)
    tune = queue.add("autotune", {"input": str(clip), "style": "pencil", "budget": 3, "params": {"blur_sigma": "2:6"}})
    queue.pause(tune)
    first = queue.add("render", render_spec(clip, tmp_path / "first.mp4"))
    queue.move(first, before=1)
    before = [dataclasses.asdict(j) for j in queue.list()]
    code = ("import dataclasses, json, sys; from core.studio.queue import JobQueue; "
            "print(json.dumps([dataclasses.asdict(j) for j in JobQueue(sys.argv[1]).list()]))")
    out = subprocess.run([sys.executable, "-c", code, str(queue.path)], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == before
    assert [j["kind"] for j in before] == ["render", "render", "train", "autotune"]
    assert before[2]["gpu"] and before[1]["max_attempts"] == 5 and before[3]["state"] == "paused"


def test_list_200_jobs_is_one_indexed_query(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    spec = json.dumps(check_spec("render", render_spec(clip, tmp_path / "o.mp4")))
    conn = db.connect(queue.path)
    try:
        with db.transaction(conn):
            conn.executemany("INSERT INTO jobs (kind, spec, position, created) VALUES ('render', ?, ?, 'now')",
                             [(spec, float(i)) for i in range(200)])
        for sql in ("SELECT * FROM jobs ORDER BY position, id",
                    "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY position, id"):
            plan = " ".join(str(tuple(r)) for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
            assert "INDEX jobs_" in plan, plan
    finally:
        conn.close()
    t = time.perf_counter()
    jobs = queue.list()
    assert len(jobs) == 200 and time.perf_counter() - t < 0.5
    assert len(queue.list(["queued"], limit=50)) == 50


def test_counts_match_a_count_of_the_listed_jobs(queue: JobQueue, clip: Path, tmp_path: Path) -> None:
    assert queue.counts() == dict.fromkeys(STATES, 0)  # every state present, even in an empty queue
    a, b, c, d, e, _ = add_n(queue, clip, tmp_path, 6)
    for _ in range(4):
        queue.claim("w", cpu_slots=4)  # a, b, c, d running
    (tmp_path / "o0.mp4").write_bytes(b"x")
    queue.finish(a, "w", str(tmp_path / "o0.mp4"), {})
    queue.fail(b, "w", "bad input", final=True)
    queue.fail(c, "w", "flaky")  # attempts left: queued again
    queue.pause(d)  # running: only a request, still running
    queue.cancel(e)
    listed = dict.fromkeys(STATES, 0)
    for job in queue.list():
        listed[job.state] += 1
    assert queue.counts() == listed
    assert listed == {"queued": 2, "running": 1, "paused": 0, "done": 1, "failed": 1, "cancelled": 1}
