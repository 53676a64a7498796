"""Watch folders: a video dropped into a folder is queued as a render job, once, when it is complete.

Why each rule:

- **Complete first.** A file being copied in grows for a while; queueing it early renders half a clip. A
  candidate is handled only once its size and mtime have stayed unchanged for ``settle_s`` seconds of
  this process's clock (and it is not empty).
- **Never twice.** The file's SHA-256 is recorded in the studio database (table ``watch_seen``, one row
  per (watch folder, content)), so the same content under another name, the same file touched again, or
  a restart of the watcher queues nothing new. The row is written *before* the job is queued: a crash in
  between loses that one file (re-queue it by hand) rather than rendering it twice.
- **Only videos.** Hidden and partial names (``.*``, ``*.part``, ``*.tmp``, ``*.crdownload``) are ignored
  while they change; a name without a video extension (:data:`core.studio.storage.VIDEO_EXTS`) or content that
  does not probe as a video is logged once and skipped (a bad video's hash is recorded with the reason).
- **Outputs elsewhere.** Renders go to the folder's ``out`` folder as ``<stem>_<style>_<sha8>.mp4`` (a
  ``-N`` suffix if that exists); ``out`` may not be the watched folder, or every render would be queued
  again. Folders are watched flat (not recursively), so ``out`` may be a subfolder.

Events come from a watchdog ``Observer`` (inotify here); the loop also lists the folder every ``poll_s``
seconds, which is the polling fallback when the observer cannot start (inotify limits, network mounts)
and what re-checks a file that is still settling.

Configuration lives in ``$VP_HOME/watch.yaml`` (:class:`WatchSettings`, loaded strictly)::

    enabled: true
    folders:
      - folder: /media/incoming
        style: cartoon
        preset: balanced
        out: renders          # relative to $VP_HOME
        sets: [n_colors=6]
        settle_s: 5
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import db
from core.config import read_yaml, validate, write_yaml
from core.errors import ConfigError, OutputError, StudioError
from core.fingerprint import file_sha256
from core.paths import studio_home

from .queue import JobQueue

log = logging.getLogger(__name__)

WATCH_FILE = "watch.yaml"
#: names never looked at: hidden files and the partial names of copy tools and browsers
IGNORED = (".*", "*.part", "*.tmp", "*.crdownload", "*.partial")

db.register("watch", [
    """
    CREATE TABLE watch_seen (
        folder TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        seen TEXT NOT NULL,
        job_id INTEGER,
        error TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (folder, sha256)
    );
    """,
])


@dataclass(frozen=True)
class WatchFolder:
    """One watched folder and what its videos become. ``folder`` and ``out``: relative paths are under
    ``studio_home()``; ``sets``: ``key=value`` overrides as on the command line; ``settle_s``: seconds a
    file's size and mtime must stay unchanged before it is queued."""

    folder: str
    style: str = "none"
    preset: str = "balanced"
    out: str = "renders"
    sets: tuple[str, ...] = ()
    settle_s: float = field(default=5.0, metadata={"min": 0.0, "max": 3600.0,
                                                   "help": "seconds a file must stop changing before it is queued"})

    def folder_path(self) -> Path:
        return _home_relative(self.folder)

    def out_path(self) -> Path:
        return _home_relative(self.out)


@dataclass(frozen=True)
class WatchSettings:
    """``$VP_HOME/watch.yaml``: whether the studio starts its watchers, and the folders."""

    enabled: bool = False
    folders: tuple[WatchFolder, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What the watcher did with one settled file. ``action``: "queued", "duplicate" (content already
    seen in this folder), "skipped" (not a video; ``reason`` says why)."""

    path: str
    action: str
    job_id: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class SeenFile:
    """A row of ``watch_seen``: content first seen in ``folder`` as ``path``; ``job_id`` None with an
    ``error`` when it was skipped."""

    folder: str
    sha256: str
    path: str
    size: int
    seen: str
    job_id: int | None
    error: str


def _home_relative(text: str) -> Path:
    p = Path(text).expanduser()
    return (p if p.is_absolute() else studio_home() / p).absolute()


def watch_path() -> Path:
    return studio_home() / WATCH_FILE


def load_watch_settings(path: str | Path | None = None) -> WatchSettings:
    """The saved watch settings, or the defaults (disabled, no folders). ConfigError naming the file and
    key for an unknown key, a wrong type or a bad ``sets`` item."""
    path = Path(path) if path is not None else watch_path()
    settings = read_yaml(WatchSettings, path, "the watch settings")
    _check(settings, str(path))
    return settings


def save_watch_settings(settings: WatchSettings, path: str | Path | None = None) -> Path:
    """Check and write ``settings`` atomically (default :func:`watch_path`); returns the path."""
    path = Path(path) if path is not None else watch_path()
    _check(settings, str(path))
    return write_yaml(settings, path, "the watch settings")


def _check(settings: WatchSettings, source: str) -> None:
    from core.render.spec import parse_sets

    for i, wf in enumerate(settings.folders):
        where = f"{source}: folders[{i}]"
        validate(wf, where)
        if not wf.folder.strip():
            raise ConfigError(f"{where}.folder: expected a folder path, got {wf.folder!r}")
        try:
            parse_sets(list(wf.sets))
        except ConfigError as exc:
            raise ConfigError(f"{where}.sets: {exc}") from None
        if wf.out_path() == wf.folder_path():
            raise ConfigError(f"{where}.out: {wf.out_path()} is the watched folder itself; renders would be "
                              "queued again (choose another folder or a subfolder)")


def _check_job(wf: WatchFolder) -> None:
    """Style, preset and sets checked up front: a typo must stop the watcher, not skip every file."""
    from core.render.spec import build_job, parse_sets

    try:
        build_job(wf.folder_path() / "check.mp4", wf.out_path() / "check.mp4", wf.style, wf.preset,
                  parse_sets(list(wf.sets)))
    except ConfigError as exc:
        raise ConfigError(f"watch {wf.folder_path()}: {exc}") from None


def seen_files(db_path: str | Path | None = None) -> list[SeenFile]:
    """Every file the watchers have handled, newest first (for the Settings page and the CLI)."""
    with _open(db_path) as conn:
        rows = conn.execute("SELECT * FROM watch_seen ORDER BY seen DESC").fetchall()
    return [SeenFile(**dict(r)) for r in rows]


@contextlib.contextmanager
def _open(db_path: str | Path | None) -> Iterator[sqlite3.Connection]:
    """A connection to the studio database with the "watch" schema migrated, closed on exit."""
    conn = db.connect(db_path)
    try:
        db.migrate(conn, ["watch"])
        yield conn
    finally:
        conn.close()


def output_for(folder: Path, input: Path, style: str, sha256: str) -> Path:
    """``folder/<stem>_<style>_<sha8>.mp4``, with ``-2``, ``-3``, ... while that name exists. The content
    hash in the name keeps two inputs with one stem apart even before either render exists."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in input.stem)[:60] or "clip"
    base = f"{stem}_{style}_{sha256[:8]}"
    path, n = folder / f"{base}.mp4", 1
    while path.exists():
        n += 1
        path = folder / f"{base}-{n}.mp4"
    return path


class Watcher:
    """Watches one folder (:class:`WatchFolder`) and queues each new, settled video once.

    Use as a context manager, or :meth:`start` / :meth:`stop`; :meth:`scan` runs one pass by hand. Each
    handled file is reported to ``on_outcome`` (from the watcher's thread). ``observer=False``: polling
    only.
    """

    def __init__(self, config: WatchFolder, *, db_path: str | Path | None = None, poll_s: float = 1.0,
                 observer: bool = True, on_outcome: Callable[[Outcome], None] | None = None) -> None:
        _check(WatchSettings(folders=(config,)), "watch")
        if not poll_s > 0:
            raise ConfigError(f"watch: poll_s must be > 0, got {poll_s!r}")
        self.config, self.poll_s, self.on_outcome = config, poll_s, on_outcome
        self.folder, self.out = config.folder_path(), config.out_path()
        if not self.folder.is_dir():
            raise ConfigError(f"watch: {self.folder} is not a folder")
        _check_job(config)
        self.queue = JobQueue(db_path)
        self._use_observer = observer
        self._settling: dict[Path, tuple[int, int, float]] = {}  # path -> (size, mtime_ns, first seen so)
        self._handled: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime_ns) when last handled
        self._logged: set[Path] = set()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._observer = None

    # ------------------------------------------------------------------------------------------ life

    def start(self) -> Watcher:
        """Start the observer (falling back to polling if it cannot) and the loop thread."""
        if self._use_observer:
            self._observer = self._start_observer()
        self._thread = threading.Thread(target=self._loop, name=f"watch-{self.folder.name}", daemon=True)
        self._thread.start()
        log.info("watching %s: %s/%s -> %s (settle %gs)", self.folder, self.config.style, self.config.preset,
                 self.out, self.config.settle_s)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
            self._observer = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_observer(self) -> Any:  # watchdog picks the Observer class per platform
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        wake = self._wake

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                wake.set()  # the loop re-lists the folder; an event only makes it look sooner

        observer = Observer()
        try:
            observer.schedule(Handler(), str(self.folder), recursive=False)
            observer.start()
        except OSError as exc:
            log.warning("watch %s: no file events (%s); polling every %gs", self.folder, exc, self.poll_s)
            return None
        return observer

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan()
            except Exception:  # a busy database or a vanished folder: try again next round
                log.exception("watch %s: scan failed", self.folder)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    # ------------------------------------------------------------------------------------------ scanning

    def scan(self) -> list[Outcome]:
        """One pass: note new or changed files, handle those settled for ``settle_s`` seconds."""
        now = time.monotonic()
        out = []
        for path in self._candidates():
            if self._stop.is_set():  # stopping: the file in hand was finished; the rest wait for the next run
                break
            try:
                st = path.stat()
            except OSError:  # removed or renamed since listing
                continue
            key = (st.st_size, st.st_mtime_ns)
            if self._handled.get(path) == key:
                continue
            first = self._settling.get(path)
            if first is None or first[:2] != key:
                self._settling[path] = (*key, now)
                continue
            if st.st_size == 0 or now - first[2] < self.config.settle_s:
                continue
            del self._settling[path]
            self._handled[path] = key
            out.append(self._handle(path, st.st_size))
        return out

    def _candidates(self) -> Iterator[Path]:
        from .storage import VIDEO_EXTS

        try:
            entries = sorted(os.scandir(self.folder), key=lambda e: e.name)
        except OSError as exc:
            raise OutputError(f"watch: cannot list {self.folder} ({exc.strerror or exc})") from None
        for entry in entries:
            if any(fnmatch.fnmatch(entry.name, pat) for pat in IGNORED) or not entry.is_file():
                continue
            path = Path(entry.path)
            if Path(entry.name).suffix.lower() not in VIDEO_EXTS:
                if path not in self._logged:
                    self._logged.add(path)
                    log.info("watch %s: %s is not a video file name; skipped", self.folder, entry.name)
                continue
            yield path

    def _handle(self, path: Path, size: int) -> Outcome:
        sha = file_sha256(path)
        if not self._claim(path, sha, size):
            log.info("watch %s: %s: content already seen here; ignored", self.folder, path.name)
            return self._report(Outcome(str(path), "duplicate"))
        from core.render.spec import parse_sets
        from core.video.probe import probe

        try:
            probe(path)
        except StudioError as exc:  # the content is not a video: remembered, so it is skipped for good
            log.warning("watch %s: %s is not a video; skipped: %s", self.folder, path.name, exc)
            self._record(sha, None, str(exc))
            return self._report(Outcome(str(path), "skipped", reason=str(exc)))
        spec = {"input": str(path), "output": str(output_for(self.out, path, self.config.style, sha)),
                "style": self.config.style, "preset": self.config.preset, "sets": parse_sets(list(self.config.sets))}
        try:
            job_id = self.queue.add("render", spec)
        except StudioError as exc:  # not the file's fault (an unwritable out folder): tried again when it changes
            log.warning("watch %s: %s not queued: %s", self.folder, path.name, exc)
            self._forget(sha)
            return self._report(Outcome(str(path), "skipped", reason=str(exc)))
        self._record(sha, job_id, "")
        log.info("watch %s: queued %s as job %d", self.folder, path.name, job_id)
        return self._report(Outcome(str(path), "queued", job_id=job_id))

    def _claim(self, path: Path, sha: str, size: int) -> bool:
        """Record the content as seen; False when this folder had it already (a duplicate)."""
        with _open(self.queue.path) as conn, db.transaction(conn):
            cur = conn.execute("INSERT OR IGNORE INTO watch_seen (folder, sha256, path, size, seen) "
                               "VALUES (?, ?, ?, ?, ?)", (str(self.folder), sha, str(path), size,
                                                          datetime.now(UTC).isoformat(timespec="milliseconds")))
            return cur.rowcount == 1

    def _record(self, sha: str, job_id: int | None, error: str) -> None:
        with _open(self.queue.path) as conn, db.transaction(conn):
            conn.execute("UPDATE watch_seen SET job_id = ?, error = ? WHERE folder = ? AND sha256 = ?",
                         (job_id, error, str(self.folder), sha))

    def _forget(self, sha: str) -> None:
        with _open(self.queue.path) as conn, db.transaction(conn):
            conn.execute("DELETE FROM watch_seen WHERE folder = ? AND sha256 = ?", (str(self.folder), sha))

    def _report(self, outcome: Outcome) -> Outcome:
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome


def run_watchers(folders: tuple[WatchFolder, ...], stop: threading.Event, *, db_path: str | Path | None = None,
                 poll_s: float = 1.0) -> None:
    """Watch every folder until ``stop`` is set (the CLI's ``watch``; a launcher runs this in a thread
    or runs ``python -m scripts.cli watch`` as a process). ConfigError before anything starts if any
    folder is bad."""
    watchers = [Watcher(wf, db_path=db_path, poll_s=poll_s) for wf in folders]
    if not watchers:
        raise ConfigError(f"watch: no folders to watch (add some to {watch_path()})")
    try:
        for w in watchers:
            w.start()
        stop.wait()
    finally:
        for w in watchers:  # all of them: an interrupt may land inside a start(); stop() on an unstarted one is a no-op
            w.stop()
        log.info("watch: stopped")


@contextlib.contextmanager
def interrupt_on_signals(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """SIGTERM (a service manager's stop) acts like Ctrl-C: the first signal raises KeyboardInterrupt, later
    ones are ignored so the shutdown is not cut short. Main thread only. It raises rather than setting an
    Event because ``Event.set`` in a handler can deadlock on the lock ``Event.wait`` holds."""
    def interrupt(signum: int, frame: object) -> None:
        for s in signums:
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, interrupt) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
