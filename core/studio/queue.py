"""The studio's persistent job queue: render, train and autotune jobs in the studio database.

Why a queue in SQLite: the pages, the CLI and any number of worker processes share it, a job must
survive a crash of any of them, and two workers must never run one job. Every change is one
``BEGIN IMMEDIATE`` transaction (:func:`core.db.transaction`), so a claim reads and writes under the
write lock and cannot race another claim.

States and who moves a job between them::

    queued --claim--> running --finish--> done
       ^  \\            |  \\---fail (attempts left)--> queued     (the error is kept)
       |   pause        |   \\--fail (no attempts left, or a user error)--> failed
       |     v          |--lease expired--> queued, or failed once max_attempts runs died
     resume paused      |--release (pause/cancel requested, worker shut down)--> paused | cancelled | queued
    cancel: queued/paused -> cancelled at once; running -> requested, the worker stops and releases
    retry: failed/cancelled -> queued with fresh attempts

``attempts`` counts the runs that failed, or are running (the run in progress included); a clean give-back
(:meth:`JobQueue.release`: pause, cancel, worker shutdown) returns its attempt, and so does a lost worker.
A lost worker (its lease expired: killed, hung, the machine went down) says nothing about the job, so it is
counted apart, in ``lost``, against its own, higher cap ``max_lost`` (:data:`DEFAULT_MAX_LOST`): ten worker
kills must not fail a good job, but a job that kills every worker that runs it (it runs out of memory) must
stop somewhere. An error that will repeat (a :class:`~core.errors.StudioError` with ``user_error``: a bad
input, model, LUT or setting; a full disk) fails the job at once with its reason (``fail(final=True)``).

Leases: a claim gives the worker ``lease_s`` seconds; each :meth:`~JobQueue.heartbeat` or
:meth:`~JobQueue.touch` extends it. A worker that dies stops extending it, and the next claim (by any
worker) first re-queues expired jobs (:meth:`~JobQueue.requeue_expired`); a render job then resumes from
its checkpoint, a train job from its run folder's ``last.pt``. Lease times are ``time.time()`` seconds:
every worker is on this workstation, so one clock.

Slots: at most ``gpu_slots`` jobs with ``gpu=True`` and ``cpu_slots`` other jobs run at once, counted over
the whole database (all workers), checked inside the claim transaction.

Progress events (:class:`Event`) are kept per job as history, numbered 1, 2, ... per job (``seq``), so a
page opened late shows the whole story and polls with ``events(job_id, after=last_seq)``. The queue itself
records the transitions (stage = "queued", "start", "paused", "done", ...); workers add progress through
:meth:`~JobQueue.heartbeat` (at most one event per :data:`EVENT_INTERVAL_S` a job, but every change of
stage and every event carrying ``data`` is kept). ``Event.data`` carries structured records (a train
job's epoch: ``{"event": "epoch", "epoch", "train_loss", "val_loss", "lr", "seconds", "best_val",
"improved"}``), so curves are plotted from events, not parsed from messages.

``Job.progress`` is a fraction in [0, 1]; ``Event.percent`` and heartbeat ``percent`` are in [0, 100].
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import db
from core.errors import ConfigError, DiskFullError, MediaNotFoundError, StudioError

from .kinds import check_spec, render_spec

STATES = ("queued", "running", "paused", "done", "failed", "cancelled")
#: a pending request for a running job; the worker sees it in the heartbeat's answer and stops
REQUESTS = ("paused", "cancelled")
#: at most one progress event a job per this many seconds (stage changes and events with data always)
EVENT_INTERVAL_S = 0.5
DEFAULT_LEASE_S = 30.0
#: worker deaths (expired leases) a job survives before it is failed; counted apart from its attempts
DEFAULT_MAX_LOST = 5

db.register("jobs", [
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('render', 'train', 'autotune')),
        state TEXT NOT NULL DEFAULT 'queued'
            CHECK (state IN ('queued', 'running', 'paused', 'done', 'failed', 'cancelled')),
        requested TEXT CHECK (requested IS NULL OR requested IN ('paused', 'cancelled')),
        spec TEXT NOT NULL,
        position REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        max_attempts INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
        gpu INTEGER NOT NULL DEFAULT 0 CHECK (gpu IN (0, 1)),
        error TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL,
        started TEXT,
        finished TEXT,
        progress REAL NOT NULL DEFAULT 0,
        fps REAL,
        eta_s REAL,
        message TEXT NOT NULL DEFAULT '',
        stage TEXT NOT NULL DEFAULT '',
        output TEXT,
        worker TEXT,
        lease_until REAL,
        lease_s REAL,
        result TEXT,
        work_key TEXT
    );
    CREATE INDEX jobs_order ON jobs (position, id);
    CREATE INDEX jobs_state_order ON jobs (state, position, id);
    CREATE TABLE job_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        time TEXT NOT NULL,
        stage TEXT NOT NULL,
        percent REAL NOT NULL,
        fps REAL,
        message TEXT NOT NULL DEFAULT '',
        data TEXT,
        UNIQUE (job_id, seq)
    );
    """,
    # 2: worker deaths counted apart from failed runs (issue 16): a killed worker no longer uses an attempt
    """
    ALTER TABLE jobs ADD COLUMN lost INTEGER NOT NULL DEFAULT 0 CHECK (lost >= 0);
    ALTER TABLE jobs ADD COLUMN max_lost INTEGER NOT NULL DEFAULT 5 CHECK (max_lost >= 1);
    """,
])


_LEASE_ROW = "SELECT state, worker, requested, lease_s FROM jobs WHERE id = ?"


class LeaseLostError(StudioError, RuntimeError):
    """A worker reported on a job that is no longer its own (its lease expired and the job was re-queued
    or claimed by another worker, or it was finished elsewhere). The message names the job and worker."""

    user_error = False


@dataclass(frozen=True)
class Job:
    """One row of the queue, as a value. ``spec``: the kind's settings, complete with defaults (see
    :func:`check_spec`); ``progress`` in [0, 1]; times ISO 8601 UTC; ``output``: the file the job makes
    (a render's output from the start, a train job's model once done); ``result``: kind-specific summary
    once done; ``requested``: "paused"/"cancelled" while a running job has been asked to stop; ``lost``: how
    many times its worker died under it (lease expired), failed at ``max_lost``."""

    id: int
    kind: str
    state: str
    spec: dict[str, Any]
    position: float
    attempts: int
    max_attempts: int
    gpu: bool
    error: str
    created: str
    started: str | None
    finished: str | None
    progress: float
    fps: float | None
    eta_s: float | None
    message: str
    stage: str
    output: str | None
    worker: str | None
    result: dict[str, Any] | None
    requested: str | None = None
    lease_until: float | None = None
    lost: int = 0
    max_lost: int = DEFAULT_MAX_LOST
    work_key: str | None = None  # a render's job hash: it names the work folder (core.render.workdir.work_root)

    def tries(self) -> str:
        """"attempt 2/3" and, once a worker died under it, ", 1/5 workers lost": for one-line displays."""
        lost = f", {self.lost}/{self.max_lost} workers lost" if self.lost else ""
        return f"attempt {self.attempts}/{self.max_attempts}{lost}"


@dataclass(frozen=True)
class Event:
    """One progress report or transition of a job. ``percent`` in [0, 100]; ``seq`` numbers a job's events
    from 1 (pass the last one seen as ``after``); ``data``: a structured record (train epochs) or None."""

    job_id: int
    time: str
    stage: str
    percent: float
    fps: float | None
    message: str
    seq: int = 0
    data: dict[str, Any] | None = None


# ------------------------------------------------------------------------------------------- spec checks


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")




# ------------------------------------------------------------------------------------------------ rows


def _json(value: Any) -> str:
    """JSON for the database; numpy scalars and other strays become numbers or strings, never an error."""
    def default(v: Any) -> Any:
        if hasattr(v, "item"):
            return v.item()
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, set | frozenset | tuple):
            return list(v)
        return str(v)
    return json.dumps(value, default=default, sort_keys=True)


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _job(row: sqlite3.Row) -> Job:
    return Job(id=row["id"], kind=row["kind"], state=row["state"], spec=json.loads(row["spec"]),
               position=row["position"], attempts=row["attempts"], max_attempts=row["max_attempts"],
               gpu=bool(row["gpu"]), error=row["error"], created=row["created"], started=row["started"],
               finished=row["finished"], progress=row["progress"], fps=row["fps"], eta_s=row["eta_s"],
               message=row["message"], stage=row["stage"], output=row["output"], worker=row["worker"],
               result=json.loads(row["result"]) if row["result"] is not None else None,
               requested=row["requested"], lease_until=row["lease_until"], lost=row["lost"],
               max_lost=row["max_lost"], work_key=row["work_key"])


def _event(row: sqlite3.Row) -> Event:
    return Event(job_id=row["job_id"], time=row["time"], stage=row["stage"], percent=row["percent"], fps=row["fps"],
                 message=row["message"], seq=row["seq"], data=json.loads(row["data"]) if row["data"] else None)


class JobQueue:
    """The queue in the studio database (``db_path``, default ``$VP_HOME/studio.db``).

    Cheap to make and safe to share between threads: every call opens its own connection (SQLite
    connections are per thread) and commits before returning, so any number of pages, CLIs and workers
    in any number of processes may use one database at once. The "jobs" schema is migrated on creation.

    On a full disk the reading methods still answer (:func:`core.db.connect_readonly`) and every change
    raises :class:`~core.errors.DiskFullError` naming the disk; a damaged file raises
    :class:`~core.errors.DatabaseCorruptError` naming it (see :func:`core.studio.repair.repair`).
    """

    def __init__(self, db_path: str | Path | None = None) -> None:
        self.path = Path(db_path) if db_path is not None else db.default_path()
        try:
            with self._open() as conn:
                db.migrate(conn, ["jobs"])
        except DiskFullError as full:  # no room to write: reading may still work, if nothing needs migrating
            with self._open(readonly=True) as conn:
                if db.versions(conn).get("jobs", 0) < len(db.MIGRATIONS["jobs"]):
                    raise full from None

    @contextlib.contextmanager
    def _open(self, readonly: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection, closed after the block; SQLite's errors inside it translated (:func:`core.db.translate`).
        ``readonly``: on a full disk, where a normal open cannot even size its index, open the file immutable."""
        try:
            conn = db.connect(self.path)
        except DiskFullError:
            if not readonly:
                raise
            conn = db.connect_readonly(self.path)
        try:
            with db.sqlite_errors(self.path):
                yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._open() as conn, db.transaction(conn):
            yield conn

    # ------------------------------------------------------------------------------------------ reading

    def get(self, job_id: int) -> Job:
        """The job ``job_id``; ConfigError naming the id and the database when there is none."""
        with self._open(readonly=True) as conn:
            return self._get(conn, job_id)

    def _get(self, conn: sqlite3.Connection, job_id: int) -> Job:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        if row is None:
            raise ConfigError(f"no job {job_id} in {self.path}")
        return _job(row)

    def list(self, states: Sequence[str] | None = None, limit: int | None = None) -> list[Job]:
        """Jobs in queue order (position, then id), optionally only those in ``states``: one indexed query."""
        where, args = "", []
        if states is not None:
            states = list(states)
            bad = [s for s in states if s not in STATES]
            if bad:
                raise ConfigError(f"unknown job state {bad[0]!r} (known: {', '.join(STATES)})")
            if not states:
                return []
            where = f"WHERE state IN ({', '.join('?' * len(states))}) "
            args = states
        sql = f"SELECT * FROM jobs {where}ORDER BY position, id"
        if limit is not None:
            sql += " LIMIT ?"
            args = [*args, max(0, int(limit))]
        with self._open(readonly=True) as conn:
            return [_job(r) for r in conn.execute(sql, args)]

    def counts(self) -> dict[str, int]:
        """Jobs per state, every state of :data:`STATES` present (0 when none): one ``GROUP BY`` query, so a
        metrics scrape or a status line never loads every job's spec."""
        with self._open(readonly=True) as conn:
            rows = conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {**dict.fromkeys(STATES, 0), **dict(rows)}

    def events(self, job_id: int, after: int = 0) -> list[Event]:
        """The job's events with ``seq > after``, oldest first (``after=0``: its whole history)."""
        with self._open(readonly=True) as conn:
            rows = conn.execute("SELECT * FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq",
                                (int(job_id), int(after))).fetchall()
        return [_event(r) for r in rows]

    # ------------------------------------------------------------------------------------------ adding

    def add(self, kind: str, spec: Mapping[str, Any], *, gpu: bool = False, max_attempts: int = 3,
            max_lost: int = DEFAULT_MAX_LOST) -> int:
        """Queue a job at the end and return its id. ``spec`` is checked now (:func:`check_spec`), so a bad
        style, parameter or path is refused at queue time, not when a worker gets to it. A render whose
        output another unfinished job already writes is refused too (the two would overwrite each other)."""
        # Renders of one job hash share a work folder (the hash leaves the output path out): the claim never
        # runs two at once, or one would remove the folder the other is stitching from.
        full, work_key = render_spec(spec) if kind == "render" and isinstance(spec, Mapping) else (
            check_spec(kind, spec), None)
        for name, cap in (("max_attempts", max_attempts), ("max_lost", max_lost)):
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ConfigError(f"{kind} job: {name} must be an integer >= 1, got {cap!r}")
        output = full.get("output") if kind == "render" else None
        with self._write() as conn:
            if output is not None:
                clash = conn.execute(
                    "SELECT id FROM jobs WHERE kind = 'render' AND state IN ('queued', 'running', 'paused') "
                    "AND json_extract(spec, '$.output') = ?", (output,)).fetchone()
                if clash is not None:
                    raise ConfigError(f"{output}: job {clash[0]} already renders to this output; "
                                      "cancel it or choose another name")
            pos = conn.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM jobs").fetchone()[0]
            cur = conn.execute("INSERT INTO jobs (kind, spec, position, max_attempts, max_lost, gpu, created, output, "
                               "stage, work_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                               (kind, _json(full), pos, max_attempts, max_lost, int(bool(gpu)), _now(), output,
                                work_key))
            job_id = int(cur.lastrowid)
            self._event(conn, job_id, "queued", 0.0, None, f"{kind} job queued")
        return job_id

    # ------------------------------------------------------------------------------- user transitions

    def _transition(self, job_id: int, action: str, allowed: Sequence[str], sets: str, args: Sequence[Any],
                    stage: str, message: str) -> Job:
        with self._write() as conn:
            job = self._get(conn, job_id)
            if job.state not in allowed:
                raise ConfigError(f"job {job_id} is {job.state}: cannot {action} it "
                                  f"(only a job that is {' or '.join(allowed)})")
            conn.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*args, job.id))
            self._event(conn, job.id, stage, job.progress * 100, None, message)
            return self._get(conn, job.id)

    def pause(self, job_id: int) -> Job:
        """queued -> paused at once; running -> asks its worker to stop (``requested`` = "paused"; the job
        becomes paused when the worker releases it, resumable from its checkpoint)."""
        job = self.get(job_id)
        if job.state == "running" and job.requested is None:
            return self._transition(job_id, "pause", ("running",), "requested = 'paused'", (), "pause",
                                    "pause requested; the worker stops at its next progress report")
        return self._transition(job_id, "pause", ("queued",), "state = 'paused', stage = 'paused'", (), "paused",
                                "paused")

    def resume(self, job_id: int) -> Job:
        """paused -> queued (keeps its place); a running job with a pending pause: the request is dropped."""
        job = self.get(job_id)
        if job.state == "running" and job.requested == "paused":
            return self._transition(job_id, "resume", ("running",), "requested = NULL", (), "resume",
                                    "pause request withdrawn")
        return self._transition(job_id, "resume", ("paused",), "state = 'queued', stage = 'queued'", (), "resumed",
                                "resumed; waiting for a worker")

    def cancel(self, job_id: int) -> Job:
        """queued/paused -> cancelled at once; running -> asks its worker to stop (``requested`` =
        "cancelled"). The render's checkpoint is kept, so a later :meth:`retry` resumes."""
        job = self.get(job_id)
        if job.state == "running":
            return self._transition(job_id, "cancel", ("running",), "requested = 'cancelled'", (), "cancel",
                                    "cancel requested; the worker stops at its next progress report")
        return self._transition(job_id, "cancel", ("queued", "paused"),
                                "state = 'cancelled', stage = 'cancelled', finished = ?", (_now(),), "cancelled",
                                "cancelled")

    def retry(self, job_id: int) -> Job:
        """failed/cancelled -> queued with its attempts and lost workers reset (the error stays until the next
        run ends)."""
        return self._transition(job_id, "retry", ("failed", "cancelled"),
                                "state = 'queued', stage = 'queued', attempts = 0, lost = 0, finished = NULL, "
                                "requested = NULL",
                                (), "retry", "queued again")

    def move(self, job_id: int, before: int | None) -> Job:
        """Put the job just before job ``before`` in queue order (None: at the end). Positions are floats
        halved between neighbours; when halving runs out of precision every position is renumbered."""
        with self._write() as conn:
            job = self._get(conn, job_id)
            if before is None:
                pos = conn.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM jobs").fetchone()[0]
            elif int(before) == job.id:
                return job
            else:
                pos = self._slot_before(conn, job.id, self._get(conn, before))
            conn.execute("UPDATE jobs SET position = ? WHERE id = ?", (pos, job.id))
            return self._get(conn, job.id)

    def _slot_before(self, conn: sqlite3.Connection, job_id: int, target: Job) -> float:
        for _ in range(2):
            p = conn.execute("SELECT position FROM jobs WHERE id = ?", (target.id,)).fetchone()[0]
            prev = conn.execute("SELECT MAX(position) FROM jobs WHERE (position < ? OR (position = ? AND id < ?)) "
                                "AND id != ?", (p, p, target.id, job_id)).fetchone()[0]
            pos = p - 1.0 if prev is None else (prev + p) / 2
            if prev is None or prev < pos < p:
                return pos
            ids = [r[0] for r in conn.execute("SELECT id FROM jobs ORDER BY position, id")]
            conn.executemany("UPDATE jobs SET position = ? WHERE id = ?", [(i + 1.0, j) for i, j in enumerate(ids)])
        raise RuntimeError(f"{self.path}: cannot place job {job_id} before job {target.id}")

    # ------------------------------------------------------------------------------------- worker side

    def claim(self, worker: str, *, cpu_slots: int, gpu_slots: int = 1, lease_s: float = DEFAULT_LEASE_S) -> Job | None:
        """Atomically take the first queued job (queue order) that fits a free slot, or None.

        In one ``BEGIN IMMEDIATE`` transaction: re-queue expired leases, count running jobs (all workers),
        pick, mark running with a lease of ``lease_s`` seconds and one more attempt. Two workers claiming
        at once are serialised by the write lock, so no job is ever handed out twice.
        """
        if lease_s <= 0:
            raise ConfigError(f"claim: lease_s must be > 0, got {lease_s!r}")
        with self._write() as conn:
            self._requeue_expired(conn)
            running = dict(conn.execute("SELECT gpu, COUNT(*) FROM jobs WHERE state = 'running' GROUP BY gpu"))
            gpu_free = running.get(1, 0) < gpu_slots
            cpu_free = running.get(0, 0) < cpu_slots
            if not (gpu_free or cpu_free):
                return None
            row = conn.execute("SELECT id, attempts, max_attempts, lost, max_lost FROM jobs WHERE state = 'queued' AND "
                               "((gpu = 1 AND ?) OR (gpu = 0 AND ?)) AND (work_key IS NULL OR work_key NOT IN "
                               "(SELECT work_key FROM jobs WHERE state = 'running' AND work_key IS NOT NULL)) "
                               "ORDER BY position, id LIMIT 1", (int(gpu_free), int(cpu_free))).fetchone()
            if row is None:
                return None
            attempt = row["attempts"] + 1
            lost = f", {row['lost']}/{row['max_lost']} workers lost" if row["lost"] else ""
            message = f"attempt {attempt}/{row['max_attempts']}{lost} on worker {worker}"
            conn.execute("UPDATE jobs SET state = 'running', worker = ?, attempts = ?, started = ?, finished = NULL, "
                         "lease_until = ?, lease_s = ?, requested = NULL, stage = 'start', message = ?, fps = NULL, "
                         "eta_s = NULL WHERE id = ?",
                         (worker, attempt, _now(), time.time() + lease_s, lease_s, message, row["id"]))
            job = self._get(conn, row["id"])
            self._event(conn, job.id, "start", job.progress * 100, None, message)
            return job

    def _owned(self, conn: sqlite3.Connection, job_id: int, worker: str) -> Job:
        job = self._get(conn, job_id)
        if job.state != "running" or job.worker != worker:
            raise LeaseLostError(f"job {job_id} is no longer worker {worker}'s (it is {job.state}"
                                 f"{f' on worker {job.worker}' if job.state == 'running' else ''})")
        return job

    def heartbeat(self, job_id: int, worker: str, *, stage: str, percent: float, fps: float | None = None,
                  eta_s: float | None = None, message: str = "", data: Mapping[str, Any] | None = None) -> str:
        """Extend the lease, update the job's progress and record an Event (throttled, see the module
        docstring). Returns what the worker should do: "running" (go on), "paused" or "cancelled" (a stop
        was requested: stop, then :meth:`release`), or "lost" (not this worker's job any more: stop, and
        report nothing more)."""
        percent = min(100.0, max(0.0, _finite(percent) or 0.0))
        fps, eta_s = _finite(fps), _finite(eta_s)
        with self._write() as conn:
            row = conn.execute(_LEASE_ROW, (int(job_id),)).fetchone()
            if row is None or row["state"] != "running" or row["worker"] != worker:
                return "lost"
            conn.execute("UPDATE jobs SET lease_until = ?, progress = ?, fps = ?, eta_s = ?, message = ?, stage = ? "
                         "WHERE id = ?", (time.time() + row["lease_s"], percent / 100, fps, eta_s, message, stage,
                                          int(job_id)))
            last = conn.execute("SELECT stage, time, percent FROM job_events WHERE job_id = ? ORDER BY seq DESC "
                                "LIMIT 1", (int(job_id),)).fetchone()
            due = (last is None or data is not None or last["stage"] != stage
                   or (percent >= 100 > last["percent"])
                   or (datetime.now(UTC) - datetime.fromisoformat(last["time"])).total_seconds() >= EVENT_INTERVAL_S)
            if due:
                self._event(conn, int(job_id), stage, percent, fps, message, data)
            return row["requested"] or "running"

    def touch(self, job_id: int, worker: str) -> str:
        """Extend the lease only (no event): the worker's keep-alive between progress reports, e.g. while a
        render analyses or a trainer exports. Returns the same answers as :meth:`heartbeat`."""
        with self._write() as conn:
            row = conn.execute(_LEASE_ROW, (int(job_id),)).fetchone()
            if row is None or row["state"] != "running" or row["worker"] != worker:
                return "lost"
            conn.execute("UPDATE jobs SET lease_until = ? WHERE id = ?", (time.time() + row["lease_s"], int(job_id)))
            return row["requested"] or "running"

    def finish(self, job_id: int, worker: str, output: str | None, result: Mapping[str, Any]) -> Job:
        """running -> done with ``result``. A job is never marked done before its output exists: an
        ``output`` that is not a file raises MediaNotFoundError naming it (the job stays running; the
        worker then fails it). LeaseLostError when the job is not ``worker``'s any more."""
        if output is not None and not Path(output).is_file():
            raise MediaNotFoundError(f"{output}: job {job_id} cannot be marked done, its output does not exist")
        with self._write() as conn:
            self._owned(conn, job_id, worker)
            conn.execute("UPDATE jobs SET state = 'done', finished = ?, progress = 1, stage = 'done', eta_s = 0, "
                         "message = 'done', output = COALESCE(?, output), result = ?, error = '', requested = NULL, "
                         "lease_until = NULL WHERE id = ?", (_now(), output, _json(dict(result)), int(job_id)))
            self._event(conn, int(job_id), "done", 100.0, None, f"done{f': {output}' if output else ''}")
            return self._get(conn, int(job_id))

    def fail(self, job_id: int, worker: str, error: str, *, final: bool = False,
             advice: Mapping[str, Any] | None = None) -> Job:
        """Record a failed run. Re-queued (keeping its place and the error) while attempts < max_attempts;
        otherwise, or with ``final`` (a user error: retrying cannot help), failed with ``error`` as the reason.
        ``advice`` (:class:`core.studio.advice.Advice` as a dict) goes with the event, and its summary becomes
        the job's message: what the pages show first (:meth:`advice`)."""
        with self._write() as conn:
            job = self._owned(conn, job_id, worker)
            said = str(advice["summary"]) if advice and advice.get("summary") else ""
            if final or job.attempts >= job.max_attempts:
                why = error if final else f"failed {job.attempts} times; last error: {error}"
                conn.execute("UPDATE jobs SET state = 'failed', finished = ?, error = ?, stage = 'failed', "
                             "message = ?, requested = NULL, lease_until = NULL, eta_s = NULL, fps = NULL WHERE id = ?",
                             (_now(), why, said or why, job.id))
                self._event(conn, job.id, "failed", job.progress * 100, None, why, advice)
            else:
                msg = f"attempt {job.attempts}/{job.max_attempts} failed: {said or error}; queued again"
                conn.execute("UPDATE jobs SET state = ?, error = ?, stage = 'error', message = ?, worker = NULL, "
                             "requested = NULL, lease_until = NULL, eta_s = NULL, fps = NULL WHERE id = ?",
                             (job.requested or "queued", error, msg, job.id))
                self._event(conn, job.id, "error", job.progress * 100, None, msg, advice)
            return self._get(conn, job.id)

    def advice(self, job_id: int) -> dict[str, Any] | None:
        """The advice recorded with the job's latest failure (``file``, ``summary``, ``action``, ``technical``,
        ``final``), or None: never failed, or failed before advice was recorded."""
        with self._open(readonly=True) as conn:
            row = conn.execute("SELECT data FROM job_events WHERE job_id = ? AND stage IN ('failed', 'error') "
                               "ORDER BY seq DESC LIMIT 1", (int(job_id),)).fetchone()
        data = json.loads(row["data"]) if row and row["data"] else None
        return data if isinstance(data, dict) and "summary" in data else None

    def release(self, job_id: int, worker: str, message: str = "") -> Job:
        """Give a running job back without using up its attempt: to the requested state (paused/cancelled)
        when a stop was asked, else to the queue (a worker shutting down). Its checkpoint keeps the work."""
        with self._write() as conn:
            job = self._owned(conn, job_id, worker)
            state = job.requested or "queued"
            msg = message or {"paused": "paused", "cancelled": "cancelled",
                              "queued": f"worker {worker} stopped; queued to resume"}[state]
            conn.execute("UPDATE jobs SET state = ?, attempts = MAX(0, attempts - 1), worker = NULL, "
                         "requested = NULL, lease_until = NULL, stage = ?, message = ?, eta_s = NULL, fps = NULL, "
                         "finished = ? WHERE id = ?",
                         (state, state, msg, _now() if state == "cancelled" else None, job.id))
            self._event(conn, job.id, state, job.progress * 100, None, msg)
            return self._get(conn, job.id)

    def requeue_expired(self) -> list[int]:
        """Re-queue running jobs whose lease has expired (their worker died or hung), counting a lost worker
        (``lost``), not an attempt; a job whose workers died ``max_lost`` times fails instead. Returns the ids
        re-queued or failed. :meth:`claim` calls this itself; pages may call it to show the truth sooner."""
        with self._write() as conn:
            return self._requeue_expired(conn)

    def _requeue_expired(self, conn: sqlite3.Connection) -> list[int]:
        rows = conn.execute("SELECT * FROM jobs WHERE state = 'running' AND lease_until < ?", (time.time(),)).fetchall()
        for row in rows:
            job = _job(row)
            lost = job.lost + 1
            why = (f"worker {job.worker} stopped reporting during {job.stage or 'start'} "
                   f"(lease expired; worker lost {lost}/{job.max_lost})")
            if job.requested is not None or lost < job.max_lost:
                state = job.requested or "queued"
                msg = f"{why}; {'queued again to resume' if state == 'queued' else state}"
                conn.execute("UPDATE jobs SET state = ?, error = ?, stage = 'requeued', message = ?, worker = NULL, "
                             "attempts = MAX(0, attempts - 1), lost = ?, requested = NULL, lease_until = NULL, "
                             "eta_s = NULL, fps = NULL WHERE id = ?", (state, why, msg, lost, job.id))
                self._event(conn, job.id, "requeued", job.progress * 100, None, msg)
            else:
                msg = f"its worker died {lost} times; last: {why}"
                conn.execute("UPDATE jobs SET state = 'failed', error = ?, stage = 'failed', message = ?, lost = ?, "
                             "finished = ?, requested = NULL, lease_until = NULL, eta_s = NULL, fps = NULL "
                             "WHERE id = ?",
                             (msg, msg, lost, _now(), job.id))
                self._event(conn, job.id, "failed", job.progress * 100, None, msg)
        return [r["id"] for r in rows]

    @staticmethod
    def _event(conn: sqlite3.Connection, job_id: int, stage: str, percent: float, fps: float | None, message: str,
               data: Mapping[str, Any] | None = None) -> None:
        conn.execute("INSERT INTO job_events (job_id, seq, time, stage, percent, fps, message, data) VALUES "
                     "(?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = ?), ?, ?, ?, ?, ?, ?)",
                     (job_id, job_id, _now(), stage, percent, fps, message,
                      _json(dict(data)) if data is not None else None))
