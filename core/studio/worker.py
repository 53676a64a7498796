"""The job worker: claims jobs from the queue (:mod:`core.studio.queue`), runs them, reports progress.

One worker process runs up to ``cpu_slots`` CPU jobs and ``gpu_slots`` GPU jobs at once (the slot limits
are counted over every worker of the database, in the claim), each in its own thread. For each job:

- a keep-alive thread extends the lease every ``lease_s / 3`` seconds (a render's analysis or a trainer's
  export report no progress for a while) and notices a pause or cancel request;
- the job's own progress callbacks send heartbeats (stage, percent, fps, ETA, message), at most one every
  :data:`REPORT_INTERVAL_S` unless the stage changes or a record (a train epoch) comes with it;
- a stop (pause/cancel requested, the worker shutting down, the lease lost) is raised as :class:`JobStopped`
  from the next progress callback, which unwinds the core function: ``render`` kills its chunk processes
  and keeps its checkpoint (finished chunks), ``finetune`` keeps ``last.pt`` (finished epochs). The job is
  then released (paused / cancelled / queued again) without using up an attempt.

Outcomes: a :class:`~core.errors.StudioError` with ``user_error`` (a missing file, a bad setting, model or
LUT, a full disk) fails the job at once with its message, since running it again cannot help; any other
exception counts as an attempt (the queue re-queues the job until ``max_attempts``). A worker that dies is
counted apart, by the queue, when its lease expires. A job is marked done only by :meth:`JobQueue.finish`,
which checks that the output file exists.

A full disk under the studio folder must not leave a job "running" for ever: recording the failure is
retried, and if the database still has no room the job's own work files (its finished chunks: a failed job
starts again anyway) are removed to make it. A claim that meets a full disk waits and tries again; the
worker does not exit over it.

SIGTERM / SIGINT (when run in the main thread): stop claiming, stop the running jobs at their next
progress report and release them to the queue, then return. SIGKILL cannot be caught: the job's lease
runs out and the next claim, by any worker, re-queues it to resume from its checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError, DiskFullError, MediaNotFoundError, StudioError

from . import telemetry
from .advice import advise
from .kinds import sets_text
from .queue import DEFAULT_LEASE_S, Job, JobQueue, LeaseLostError

log = logging.getLogger(__name__)

#: least seconds between two progress heartbeats of one job (stage changes and records always go)
REPORT_INTERVAL_S = 0.25


class JobStopped(Exception):
    """Raised from a progress callback to stop the running job. ``reason``: "paused" or "cancelled" (asked
    by a user), "shutdown" (the worker is stopping), "lost" (the lease went to another worker)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"job stopped: {reason}")
        self.reason = reason


class Reporter:
    """A running job's line to the queue: rate-limited heartbeats, and the stop check.

    :meth:`report` is called from the job's thread (its progress callbacks) and raises JobStopped when the
    job must stop; :meth:`keep_alive` from the keep-alive thread only records the answer, since raising
    there would stop nothing.
    """

    def __init__(self, queue: JobQueue, job: Job, worker: str, shutdown: threading.Event) -> None:
        self.queue, self.job, self.worker, self.shutdown = queue, job, worker, shutdown
        self.stop_reason: str | None = None
        self._stage: str | None = None
        self._last = 0.0

    def check(self) -> None:
        """Raise JobStopped if the job was asked to stop or the worker is shutting down."""
        if self.stop_reason is not None:
            raise JobStopped(self.stop_reason)
        if self.shutdown.is_set():
            raise JobStopped("shutdown")

    def report(self, stage: str, percent: float, *, fps: float | None = None, eta_s: float | None = None,
               message: str = "", data: dict[str, Any] | None = None) -> None:
        """Send a heartbeat (unless one went less than REPORT_INTERVAL_S ago for the same stage), then
        :meth:`check`. ``percent`` in [0, 100]."""
        self.check()
        telemetry.job_progress(self.job.id, stage, fps)
        now = time.monotonic()
        if data is None and stage == self._stage and percent < 100 and now - self._last < REPORT_INTERVAL_S:
            return
        self._stage, self._last = stage, now
        self._answer(self.queue.heartbeat(self.job.id, self.worker, stage=stage, percent=percent, fps=fps,
                                          eta_s=eta_s, message=message, data=data))
        self.check()

    def keep_alive(self) -> None:
        self._answer(self.queue.touch(self.job.id, self.worker))

    def _answer(self, state: str) -> None:
        if state != "running" and self.stop_reason is None:
            log.info("job %d: %s", self.job.id, {"lost": "lease lost"}.get(state, f"{state} requested"))
            self.stop_reason = state


@dataclass(frozen=True)
class RateClock:
    """Live speed and ETA of work measured in units (frames, steps, candidates) from ``start`` on.
    ``done0``: units already done when the clock started (a resumed render's reused frames)."""

    start: float
    done0: int

    def rate(self, done: int) -> float | None:
        elapsed = time.monotonic() - self.start
        return (done - self.done0) / elapsed if done > self.done0 and elapsed > 0 else None

    def eta(self, done: int, total: int, fallback: float | None = None) -> float | None:
        rate = self.rate(done)
        if rate:
            return (total - done) / rate
        if fallback is None:
            return None
        return max(0.0, fallback - (time.monotonic() - self.start))


# ------------------------------------------------------------------------------------------------ runners

Runner = Callable[[Job, Reporter], tuple[str | None, dict[str, Any]]]


def run_render(job: Job, rep: Reporter) -> tuple[str | None, dict[str, Any]]:
    """A render job: :func:`core.render.pipeline.render`, resuming from the job's checkpoint (render itself keeps
    the job's record and appends fresh renders to the ETA history). Events: stage "analyse", then "render"
    with percent, fps and ETA from the live speed (before the first frames: the cost model's
    :func:`core.render.cost.estimate_seconds`)."""
    from core.render.executors import make_executor
    from core.render.pipeline import render
    from core.render.pool import default_workers
    from core.render.spec import build_job

    from .storage import check_free_space, input_size, load_settings

    s = job.spec
    settings = load_settings()
    url = settings.executor  # local, or a Dask cluster set on the Settings page
    source = s["input"] if url == "local" else str(Path(s["input"]).absolute())  # workers' cwd differs
    spec = build_job(source, s["output"], s["style"], s["preset"], sets_text(s["sets"]), s["chunk_seconds"],
                     audio=s.get("audio", "all"), subtitles=s.get("subtitles", "all"))  # absent in jobs queued earlier

    check_free_space(Path(spec.output).parent, input_size(spec.input))  # the disk guard, also for CLI-queued jobs
    workers = s["workers"] or default_workers()
    model = str(getattr(spec.params, "model", "") or "")  # a registered model is pinned to name@version here
    rep.report("analyse", 0.0, message=f"analysing {Path(spec.input).name}" + (f" (model {model})" if model else ""))
    guess = _Estimate(spec.input, spec.style, workers)
    clock: list[RateClock] = []

    def on_start(total: int, done: int) -> None:
        clock.append(RateClock(time.monotonic(), done))
        telemetry.frames_done(job.id, done, start=True)
        guess.start(total - done)
        what = f"resuming: {done} of {total} frames already rendered" if done else f"rendering {total} frames"
        rep.report("render", 100 * done / max(1, total), eta_s=guess.seconds, message=what)

    def on_progress(done: int, total: int) -> None:
        c = clock[0]
        telemetry.frames_done(job.id, done)
        rep.report("render", 100 * done / max(1, total), fps=c.rate(done), eta_s=c.eta(done, total, guess.seconds),
                   message=f"{done}/{total} frames")

    try:
        with make_executor(url) as (executor, cluster_workers):
            result = render(spec, workers=cluster_workers or s["workers"] or None, executor=executor,
                            on_start=on_start, on_progress=on_progress, decode=settings.decode)
    finally:
        guess.join()
    return result.output, {
        "output": result.output, "frames": result.frames, "duration": result.duration,
        "wall_seconds": round(result.wall_seconds, 3), "fps": round(result.fps, 3), "chunks": result.chunks,
        "reused_chunks": list(result.reused_chunks), "codec": result.codec, "size": list(result.size),
        "padded": result.padded, "cuts": list(result.cuts), "job_hash": result.job_hash,
        "record": getattr(result, "record", None), "summary": result.summary(),
        "perf": perf.to_json() if (perf := result.bottleneck()) else None, "executor": url,
        "decode": result.decode, "decode_note": result.decode_note, "lost_frames": result.lost_frames,
        "model": model}


class _Estimate:
    """The cost model's ETA, worked out in the background (it probes the input, and may measure the style
    for about a second on first use) so it never delays the render it estimates. :meth:`join` before the
    job ends: a thread still inside FFmpeg or OpenCV when the process exits aborts it."""

    def __init__(self, path: str, style: str, workers: int) -> None:
        self.path, self.style, self.workers = path, style, workers
        self.seconds: float | None = None
        self._thread: threading.Thread | None = None

    def start(self, frames: int) -> None:
        self._thread = threading.Thread(target=self._run, args=(frames,), name="eta-estimate")
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _run(self, frames: int) -> None:
        from core.render.cost import estimate_seconds
        from core.video.probe import probe

        try:
            info = probe(self.path)
            self.seconds = estimate_seconds(self.style, info.width, info.height, frames, workers=self.workers)
        except Exception as exc:  # an ETA is a nicety: never let it fail or log loudly
            log.debug("%s: no ETA estimate (%s)", self.path, exc)


def run_train(job: Job, rep: Reporter) -> tuple[str | None, dict[str, Any]]:
    """A train job: :func:`trainer.train.train_model` in the run folder ``$VP_HOME/training/job-<id>``, so a
    re-claimed job resumes after its last finished epoch. Events: stage "train"; per step percent, steps/s
    (as ``fps``) and ETA; per epoch one event whose ``data`` is the epoch record (``EpochRecord.to_json()``).
    The model is registered as a candidate (``state``; ``review``: its review record, see trainer.review):
    the job finishing activates nothing."""
    from core.paths import studio_home
    from trainer.finetune import EpochRecord, FinetuneConfig
    from trainer.train import train_model

    s = job.spec
    cfg = FinetuneConfig(epochs=s["epochs"], batch=s["batch"], crop=s["crop"], lr=s["lr"], patience=s["patience"],
                         scale_min=s["scale_min"], device=s["device"])
    folder = studio_home() / "training" / f"job-{job.id}"
    rep.report("train", 0.0, message=f"loading pairs from {s['pairs']}")
    clock: list[RateClock] = []

    def on_step(done: int, total: int) -> None:
        if not clock:
            clock.append(RateClock(time.monotonic(), done - 1))
        c = clock[0]
        rep.report("train", 100 * done / total, fps=c.rate(done), eta_s=c.eta(done, total),
                   message=f"step {done}/{total}")

    def on_epoch(r: EpochRecord) -> None:
        rep.report("train", 100 * r.epoch / s["epochs"], data=r.to_json(),
                   message=f"epoch {r.epoch}/{s['epochs']}  loss {r.train_loss:.4f}  val {r.val_loss:.4f}"
                           f"{'  (best)' if r.improved else ''}")

    report = train_model(s["pairs"], s["base"], s["name"], cfg, folder=folder, resume=True, int8=s["int8"],
                         min_psnr=s["min_psnr"], description=s["description"], on_step=on_step, on_epoch=on_epoch)
    run = report.run
    return str(report.entry.path), {
        "model": report.entry.spec, "state": report.entry.state, "path": str(report.entry.path),
        "run_folder": str(run.folder),
        "best_val": run.best_val, "first_val": run.first_val, "epochs_run": run.epochs_run,
        "stopped_early": run.stopped_early, "history": [r.to_json() for r in run.history],
        "parity_max_error": max(err for _, err in report.export.max_abs_error), "fps": report.fps,
        "held_out": {"pairs": report.after.pairs,
                     "base": {"psnr_db": report.before.psnr_db, "ssim": report.before.ssim},
                     "model": {"psnr_db": report.after.psnr_db, "ssim": report.after.ssim}},
        "int8": None if report.int8 is None else report.int8.to_json(), "card": report.card,
        "review": report.review}


def run_autotune(job: Job, rep: Reporter) -> tuple[str | None, dict[str, Any]]:
    """An autotune job: :func:`core.learn.autotune.tune`; no output file, the ranked table is the result. Events:
    stage "autotune", percent and ETA per candidate evaluated."""
    from core.learn.autotune import TuneConfig, tune
    from core.learn.preference import PreferenceModel, default_path

    s = job.spec
    use_model = s["objective"] == "preference" or (s["objective"] == "auto" and default_path().is_file())
    model = PreferenceModel.load() if use_model else None
    rep.report("autotune", 0.0, message="reading the clip's worst frames")
    clock = RateClock(time.monotonic(), 0)

    def on_progress(done: int, total: int) -> None:
        rep.report("autotune", 100 * done / total, eta_s=clock.eta(done, total), message=f"candidate {done}/{total}")

    result = tune(s["input"], s["style"], s["budget"], preset=s["preset"], sets=sets_text(s["sets"]),
                  restrict=sets_text(s["params"]) or None, model=model,
                  config=TuneConfig(frames=s["frames"], edge_floor=s["edge_floor"]), seed=s["seed"], pairs=s["pairs"],
                  on_progress=on_progress)

    def cand(c: Any) -> dict[str, Any]:
        return {"point": dict(c.point), "score": c.score, "feasible": c.feasible, "reason": c.reason,
                "metrics": dict(c.metrics), "params": dict(c.params)}

    return None, {"style": result.style, "mode": result.mode, "objective": result.objective,
                  "edge_floor": result.edge_floor, "frames": list(result.frames), "best_sets": result.best_sets(),
                  "candidates": [cand(c) for c in result.candidates], "base": cand(result.base),
                  "why": dict(result.why), "lines": result.lines()}


#: job kind -> what runs it: ``runner(job, reporter) -> (output file or None, result dict)``
RUNNERS: dict[str, Runner] = {"render": run_render, "train": run_train, "autotune": run_autotune}


# ------------------------------------------------------------------------------------------------ one job


def run_job(queue: JobQueue, job: Job, worker: str, shutdown: threading.Event,
            lease_s: float = DEFAULT_LEASE_S) -> str:
    """Run one claimed job to its end state and return that state (or "lost"). Never raises for the job's
    own errors: they go to :meth:`JobQueue.fail`."""
    rep = Reporter(queue, job, worker, shutdown)
    with _keep_alive(rep, lease_s / 3), telemetry.timing(job.id):
        try:
            output, result = RUNNERS[job.kind](job, rep)
        except JobStopped as stop:
            return _stopped(queue, job, worker, stop.reason)
        except StudioError as exc:
            return _failed(queue, job, worker, exc, final=exc.user_error)
        except Exception as exc:
            log.exception("job %d (%s) failed", job.id, job.kind)
            return _failed(queue, job, worker, exc, final=False)
        try:
            return queue.finish(job.id, worker, output, result).state
        except MediaNotFoundError as exc:
            return _failed(queue, job, worker, exc, final=False)
        except LeaseLostError as exc:
            log.warning("%s", exc)
            return "lost"


def _stopped(queue: JobQueue, job: Job, worker: str, reason: str) -> str:
    if reason == "lost":
        log.warning("job %d: lease lost to another worker; stopped", job.id)
        return "lost"
    try:
        return queue.release(job.id, worker).state
    except LeaseLostError as exc:
        log.warning("%s", exc)
        return "lost"


#: tries at recording a failure on a full disk, and the seconds between them
FAIL_TRIES, FAIL_WAIT_S = 3, 0.5


def _failed(queue: JobQueue, job: Job, worker: str, exc: BaseException, *, final: bool) -> str:
    """Record the failure with its advice (:mod:`core.studio.advice`): the queue page shows the words and the
    action, the technical line folded below."""
    gives_up = final or job.attempts >= job.max_attempts
    advice = advise(exc, job.spec, final=gives_up)
    for attempt in range(1, FAIL_TRIES + 1):
        try:
            return queue.fail(job.id, worker, advice.technical, final=final, advice=advice.to_dict()).state
        except LeaseLostError as exc:
            log.warning("%s", exc)
            return "lost"
        except DiskFullError as exc:  # the database cannot grow: make room with this job's own work files
            freed = _free_work(job) if attempt == FAIL_TRIES - 1 else 0
            log.warning("job %d: cannot record its failure yet (%s)%s", job.id, exc,
                        f"; removed its work files ({freed} bytes)" if freed else "")
            if attempt == FAIL_TRIES:
                log.error("job %d: left running; its lease expires and the next claim re-queues it", job.id)
                return "running"
            time.sleep(FAIL_WAIT_S)
    return "running"  # unreachable: the loop returns


def _free_work(job: Job) -> int:
    """Remove a render job's work folder (its chunks and checkpoint: ``work_key`` is the job hash that names
    it); returns the bytes freed."""
    import shutil

    from core.render.workdir import work_root

    folder = work_root() / job.work_key if job.kind == "render" and job.work_key else None
    if folder is None or not folder.is_dir():
        return 0
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    shutil.rmtree(folder, ignore_errors=True)
    return size


@contextlib.contextmanager
def _keep_alive(rep: Reporter, interval: float) -> Iterator[None]:
    """A thread that extends the job's lease every ``interval`` seconds until the block ends."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(interval):
            try:
                rep.keep_alive()
            except (sqlite3.Error, StudioError) as exc:  # a busy database: the next beat may get through
                log.warning("job %d: keep-alive failed (%s)", rep.job.id, exc)

    thread = threading.Thread(target=loop, daemon=True, name=f"lease-{rep.job.id}")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


# ------------------------------------------------------------------------------------------------ the loop


def default_worker_id() -> str:
    """``hostname-pid``: unique on the workstation, and says where a job runs."""
    return f"{socket.gethostname()}-{os.getpid()}"


def run_worker(db_path: str | Path | None = None, *, worker_id: str | None = None, cpu_slots: int | None = None,
               gpu_slots: int = 1, poll_s: float = 1.0, lease_s: float = DEFAULT_LEASE_S,
               stop: threading.Event | None = None, once: bool = False, metrics_port: int | None = None) -> int:
    """Claim and run jobs until ``stop`` is set (or SIGTERM/SIGINT, in the main thread); returns how many
    jobs were started. ``once``: return as soon as nothing is claimable and nothing runs here (drain the
    queue, e.g. for scripts and tests). ``cpu_slots``: default the core count. On stop, running jobs are
    stopped at their next progress report and released to the queue to resume later. ``metrics_port``: serve
    Prometheus metrics at ``http://127.0.0.1:PORT/metrics`` while running (:mod:`core.studio.telemetry`; 0 = any
    free port; None = no endpoint)."""
    cpu_slots = cpu_slots if cpu_slots is not None else (os.cpu_count() or 1)
    for name, value, least in (("cpu_slots", cpu_slots, 0), ("gpu_slots", gpu_slots, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"worker: {name} must be an integer >= {least}, got {value!r}")
    if not (lease_s > 0 and poll_s > 0):
        raise ConfigError(f"worker: lease_s and poll_s must be > 0, got {lease_s!r} and {poll_s!r}")
    queue = JobQueue(db_path)
    worker = worker_id or default_worker_id()
    stop = stop if stop is not None else threading.Event()
    wake = threading.Event()
    running: dict[int, threading.Thread] = {}
    started = 0

    def one(job: Job) -> None:
        try:
            state = run_job(queue, job, worker, stop, lease_s)
            log.info("job %d (%s): %s", job.id, job.kind, state)
        finally:
            wake.set()

    with _signals(stop, wake), telemetry.serving(metrics_port, queue.path):
        log.info("worker %s: %d CPU and %d GPU slots on %s", worker, cpu_slots, gpu_slots, queue.path)
        try:
            while not stop.is_set():
                wake.clear()  # before looking, so a job ending from here on wakes the wait below
                running = {i: t for i, t in running.items() if t.is_alive()}
                job = None
                if len(running) < cpu_slots + gpu_slots:
                    try:
                        job = queue.claim(worker, cpu_slots=cpu_slots, gpu_slots=gpu_slots, lease_s=lease_s)
                    except DiskFullError as exc:  # wait for room rather than exit: the user may free space
                        if once and not running:
                            raise
                        log.warning("worker %s: cannot claim a job: %s", worker, exc)
                        wake.wait(max(poll_s, 5.0))
                        continue
                if job is not None:
                    log.info("job %d (%s): claimed, attempt %d/%d", job.id, job.kind, job.attempts, job.max_attempts)
                    thread = threading.Thread(target=one, args=(job,), name=f"job-{job.id}")
                    running[job.id] = thread
                    started += 1
                    thread.start()
                    continue
                if once and not running:
                    break
                wake.wait(poll_s)
        finally:
            if running:
                stop.set()  # what still runs is released to the queue at its next progress report
            for thread in running.values():
                thread.join()
    return started


@contextlib.contextmanager
def _signals(stop: threading.Event, wake: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (main thread only: Python delivers signals there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        log.info("worker: %s received; releasing running jobs", signal.Signals(signum).name)
        stop.set()
        wake.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
