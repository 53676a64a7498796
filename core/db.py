"""The studio's one SQLite database (``$VP_HOME/studio.db``) and its tiny migration system.

Why SQLite: several processes write at once (the Style Lab, the CLI, render workers, the job queue of
issue 6) and a rating a person gave must never be lost or half-written. SQLite in WAL mode gives
crash-safe transactions across processes on one workstation with nothing to run or configure.

Connection settings (:func:`connect`):

- ``journal_mode=WAL``: readers never block the writer and the writer never blocks readers; a process
  killed mid-transaction leaves the database as of its last commit.
- ``synchronous=FULL``: every commit fsyncs the WAL, so a transaction that returned survives a power
  cut, not only a process crash (``NORMAL`` would keep the file consistent but could forget the last
  commits). Our writes come at human speed (ratings, approvals) or job speed (a few per second), so an
  fsync per commit costs nothing that matters.
- ``busy_timeout`` (10 s by default): a writer waits for another's lock instead of failing at once.
- ``foreign_keys=ON``: SQLite's default is off, per connection.
- autocommit mode (``isolation_level=None``): transactions are explicit, through :func:`transaction`,
  which uses ``BEGIN IMMEDIATE`` so the write lock is taken up front (a deferred transaction that
  upgrades later can fail with "database is locked" without waiting).
- rows are :class:`sqlite3.Row` (index by column name).

Migrations: each component registers an ordered list of SQL scripts under its own name
(``register("feedback", [...])``); version ``n`` is the ``n``-th script. :func:`migrate` applies the
missing ones, each component in one ``BEGIN IMMEDIATE`` transaction together with its row in
``schema_versions(component, version)``, so two processes starting at once cannot both migrate and a
crash mid-migration leaves the previous version. A database whose version of a component is higher
than the scripts we know was written by a newer studio: :class:`SchemaError`, naming the file.

Faults (:func:`sqlite_errors`): a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB) is a
:class:`~core.errors.DatabaseCorruptError` naming it and the repair; a full disk (SQLITE_FULL, or an I/O
error where the disk has no room left: SQLite then cannot even size its ``-shm`` index) a
:class:`~core.errors.DiskFullError` naming the disk. Reading must work on a full disk (``queue list`` is how
a user sees what filled it): :func:`connect_readonly` opens the file ``immutable``, which needs no
``-shm``. :func:`core.studio.repair.repair` moves a damaged file aside and starts a new one with every row
SQLite's recovery can still read.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .errors import ConfigError, DatabaseCorruptError, OutputError, StudioError
from .paths import studio_home

log = logging.getLogger(__name__)

DB_NAME = "studio.db"
BUSY_TIMEOUT_S = 10.0

#: SQLite primary result codes we translate (``sqlite3.Error.sqlite_errorcode & 0xFF``)
_IOERR, _CORRUPT, _FULL, _NOTADB = 10, 11, 13, 26
#: room a write needs beyond what is there (the WAL grows by a few pages a transaction; its checkpoint more)
_WRITE_ROOM = 1 << 20

#: component name -> its migration scripts, oldest first (version n = scripts[n - 1]).
MIGRATIONS: dict[str, tuple[str, ...]] = {}

_VERSIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_versions (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL CHECK (version >= 0)
)"""


class SchemaError(StudioError, RuntimeError):
    """A database this studio cannot use: written by a newer studio (a component's schema version is
    higher than the migrations we know). The message names the file; the fix is to upgrade the studio."""


def default_path() -> Path:
    """``studio_home() / "studio.db"``."""
    return studio_home() / DB_NAME


def db_file(conn: sqlite3.Connection) -> str:
    """The file behind ``conn`` (for error messages); ":memory:" for an in-memory database."""
    row = conn.execute("PRAGMA database_list").fetchone()
    return (row[2] if row is not None else "") or ":memory:"


def connect(path: str | Path | None = None, timeout: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open (creating it and its folder if needed) the studio database with the settings in the module
    docstring. ``path`` defaults to :func:`default_path`. Does not migrate: call :func:`migrate`.

    Raises :class:`OutputError` when the folder cannot be made or the file cannot be opened.
    """
    path = Path(path) if path is not None else default_path()
    try:
        with sqlite_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        if isinstance(exc, StudioError):
            raise
        raise OutputError(f"{path}: cannot open the studio database ({exc})") from None
    try:
        with sqlite_errors(path):
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            _set_wal(conn, path, timeout)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def connect_readonly(path: str | Path | None = None) -> sqlite3.Connection:
    """Open the database to read only, writing nothing at all: ``immutable=1`` needs no ``-shm`` index, so it
    works on a full disk where :func:`connect` cannot. Transactions still in the ``-wal`` that no checkpoint
    has copied back are not seen (a warning says so); no other process may be relied on to be writing."""
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise OutputError(f"{path}: no studio database there to read")
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        log.warning("%s: read without its write-ahead log (the disk is full): the latest changes may not show", path)
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?immutable=1"
    with sqlite_errors(path):
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # a damaged file fails here, translated
    return conn


def translate(exc: sqlite3.Error, path: str | Path) -> StudioError | None:
    """The StudioError a SQLite error stands for (a damaged file, a full disk), or None for any other."""
    from .disk import disk_full_error, free_bytes

    path = Path(path)
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    text = str(exc)
    if code in (_CORRUPT, _NOTADB) or "malformed" in text or "not a database" in text:
        return DatabaseCorruptError(f"{path}: the studio database is damaged ({text}); "
                                    "`python -m scripts.cli queue repair` moves it aside and keeps what can be read")
    full = code == _FULL or "disk is full" in text
    if not full and code == _IOERR:  # SQLite does not say why; a disk with no room left is the usual cause
        with contextlib.suppress(OSError):
            full = free_bytes(path.parent) < _WRITE_ROOM
    if full:
        return disk_full_error(exc, path, _WRITE_ROOM, cleaned=False)  # SQLite rolled back: nothing half-written
    return None


@contextlib.contextmanager
def sqlite_errors(path: str | Path) -> Iterator[None]:
    """Raise what :func:`translate` makes of a SQLite error inside the block (others pass unchanged)."""
    try:
        yield
    except sqlite3.Error as exc:
        err = translate(exc, path)
        if err is None:
            raise
        raise err from None


def _set_wal(conn: sqlite3.Connection, path: Path, timeout: float) -> None:
    """Switch to WAL. The mode is stored in the file, so this only writes once, on creation; there, two
    processes creating the file together can see SQLITE_BUSY without the busy handler, hence the retry."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise translate(exc, path) or OutputError(f"{path}: cannot open the studio database ({exc})") from None
            time.sleep(0.02)
    if str(mode).lower() != "wal":
        raise OutputError(f"{path}: the studio database needs WAL mode, SQLite gave {mode!r} "
                          "(a network or read-only file system?)")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any exception (which propagates).

    The write lock is taken at ``BEGIN``, waiting up to the busy timeout, so the body never fails half
    way with "database is locked". ``conn`` must come from :func:`connect` (autocommit mode) and not be in
    a transaction already: nesting raises :class:`RuntimeError`.
    """
    if conn.in_transaction:
        raise RuntimeError(f"{db_file(conn)}: transaction() does not nest")
    with sqlite_errors(db_file(conn)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")  # a COMMIT that fails (a full disk) leaves the transaction open: rolled back below
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # when even that fails, SQLite undoes it on close
                    conn.execute("ROLLBACK")
            raise


def register(component: str, migrations: Sequence[str]) -> None:
    """Register ``component``'s migration scripts (version ``n`` = ``migrations[n - 1]``).

    Scripts are append-only: a released one is never edited, a schema change is a new script.
    Registering the same list again is a no-op (a module imported twice); a different one is a
    :class:`ConfigError`, since two definitions of one component's schema cannot both be right.
    """
    if not component or not isinstance(component, str):
        raise ConfigError(f"migration component must be a non-empty name, got {component!r}")
    scripts = tuple(migrations)
    if not scripts or not all(isinstance(s, str) and s.strip() for s in scripts):
        raise ConfigError(f"migrations for {component!r} must be a non-empty list of SQL scripts")
    if MIGRATIONS.get(component, scripts) != scripts:
        raise ConfigError(f"migrations for {component!r} are already registered with different scripts")
    MIGRATIONS[component] = scripts


def versions(conn: sqlite3.Connection) -> dict[str, int]:
    """The schema version of every component recorded in the database ({} for a fresh one)."""
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_versions'").fetchone()
    if not has:
        return {}
    return {r[0]: r[1] for r in conn.execute("SELECT component, version FROM schema_versions")}


def migrate(conn: sqlite3.Connection, components: Iterable[str] | None = None) -> dict[str, int]:
    """Bring ``components`` (default: every registered one) up to their latest version; return the
    versions now in the database.

    Each component that needs work is migrated in its own ``BEGIN IMMEDIATE`` transaction, re-reading
    its version under the lock, so a second process starting at the same time waits, then finds nothing
    to do. Up-to-date databases are checked without taking the write lock.

    Raises :class:`SchemaError` (naming the file) when the database holds a higher version than we know,
    and :class:`ConfigError` for a component nobody registered.
    """
    names = list(MIGRATIONS) if components is None else list(components)
    for name in names:
        if name not in MIGRATIONS:
            raise ConfigError(f"no migrations registered for component {name!r} "
                              f"(known: {', '.join(sorted(MIGRATIONS)) or 'none'})")
    current = versions(conn)
    for name in names:
        _check_known(conn, name, current.get(name, 0))
    todo = [n for n in names if current.get(n, 0) < len(MIGRATIONS[n])]
    for name in todo:
        with transaction(conn):
            conn.execute(_VERSIONS_TABLE)
            row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (name,)).fetchone()
            have = row[0] if row is not None else 0
            _check_known(conn, name, have)
            for version in range(have + 1, len(MIGRATIONS[name]) + 1):
                for statement in _statements(MIGRATIONS[name][version - 1]):
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                         "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                         (name, len(MIGRATIONS[name])))
    return versions(conn)


def _check_known(conn: sqlite3.Connection, name: str, have: int) -> None:
    known = len(MIGRATIONS[name])
    if have > known:
        raise SchemaError(f"{db_file(conn)}: component {name!r} is at schema version {have}, this studio "
                          f"knows up to {known}; the database was written by a newer studio (upgrade it)")


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements. ``executescript`` cannot be used: it commits first, which would
    break the one-transaction-per-migration rule. ``complete_statement`` keeps triggers (``;`` inside
    ``BEGIN ... END``) and string literals whole."""
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\r\n;"):
                yield buf.strip()
            buf = ""
    if buf.strip(" \t\r\n;"):
        raise ConfigError(f"incomplete SQL statement in a migration: {buf.strip()[:80]!r}")


# ------------------------------------------------------------------------------------------------ repair


