"""Repairing a damaged studio database: move it aside, keep every row that can still be read.

``queue repair`` runs this. The new database is migrated for every component the studio knows (their
migrations register when their modules import), then the rows read from the damaged file (``sqlite3
.recover``, else row by row past the damaged pages) are copied in by common columns.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from core.db import BUSY_TIMEOUT_S, connect, default_path, migrate, transaction, translate
from core.errors import DatabaseCorruptError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair` did. ``moved_to``: where the damaged file went (None: it was healthy, nothing done);
    ``rows``: table -> rows kept in the new database; ``method``: how they were read ("sqlite3 .recover",
    "row by row", or "" when nothing was readable); ``damage``: what SQLite said was wrong."""

    path: Path
    moved_to: Path | None = None
    rows: dict[str, int] = field(default_factory=dict)
    method: str = ""
    damage: str = ""

    def line(self) -> str:
        if self.moved_to is None:
            return f"{self.path}: the studio database is healthy; nothing to repair"
        kept = ", ".join(f"{n} {t}" for t, n in self.rows.items()) or "no rows"
        return (f"{self.path}: damaged ({self.damage}); moved aside to {self.moved_to.name}, a new database kept "
                f"{kept} ({self.method or 'nothing was readable'})")


def damage(path: str | Path | None = None) -> str | None:
    """What is wrong with the database file (SQLite's words), or None when it is healthy or absent.
    ``PRAGMA quick_check`` reads every page: milliseconds for the studio's few MB."""
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        return None
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        err = translate(exc, path)
        if isinstance(err, DatabaseCorruptError):
            return str(exc)
        if err is not None:
            raise err from None  # a full disk is no damage: say that instead
        raise
    finally:
        conn.close()
    if rows == ["ok"]:
        return None
    problems = [ln.strip() for r in rows for ln in str(r).splitlines() if ln.strip() and not ln.startswith("***")]
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return f"{problems[0] if problems else 'quick_check failed'}{more}"  # one line, whatever SQLite listed


def repair(path: str | Path | None = None) -> RepairReport:
    """Move a damaged database aside (``studio.db.corrupt-<UTC stamp>``, with its ``-wal``) and start a new
    one holding what SQLite's recovery can read. A healthy database is left alone.

    Recovery: the ``sqlite3`` command's ``.recover`` where it is installed (it reads rows page by page, past
    damaged ones), else every readable row of each table read with Python's sqlite3. The rows then go into a
    freshly migrated database by the columns both have, so the new file has this studio's schema whatever
    the old one held; rows that break a constraint (or point at a lost row) are left out. Run it with no
    worker using the database (the studio does, on start, before it starts its worker).
    """
    path = Path(path) if path is not None else default_path()
    why = damage(path)
    if why is None:
        return RepairReport(path)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    path.replace(aside)
    for tail in ("-wal", "-shm"):  # the log holds committed rows: it moves along; the index is rebuilt from it
        side = path.with_name(path.name + tail)
        if side.exists():
            if tail == "-wal":
                side.replace(aside.with_name(aside.name + tail))
            else:
                side.unlink()
    scratch = path.with_name(f".{path.name}.recovered-{stamp}")
    try:
        method = _recover(aside, scratch)
        rows = _adopt(path, scratch)
    finally:
        for tail in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                scratch.with_name(scratch.name + tail).unlink()
        with contextlib.suppress(FileNotFoundError):  # the index reading it made
            aside.with_name(aside.name + "-shm").unlink()
        with contextlib.suppress(FileNotFoundError):  # a log with rows stays with the file; an empty one goes
            if (wal := aside.with_name(aside.name + "-wal")).stat().st_size == 0:
                wal.unlink()
    return RepairReport(path, aside, rows, method if any(rows.values()) else "", why)


def _recover(damaged: Path, scratch: Path) -> str:
    """Copy what is readable of ``damaged`` into a new file ``scratch``; returns the method used."""
    cli = shutil.which("sqlite3")
    if cli is not None:
        try:
            # some builds lack the sqlite_dbpage table .recover reads pages through: they fail here
            dump = subprocess.run([cli, str(damaged), ".recover"], capture_output=True, timeout=300, check=False)
            if dump.returncode == 0:
                load = subprocess.run([cli, str(scratch)], input=dump.stdout, capture_output=True, timeout=300,
                                      check=False)
                if load.returncode == 0 and scratch.is_file():
                    return "sqlite3 .recover"
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("%s: sqlite3 .recover failed (%s); reading row by row", damaged, exc)
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
    _rows_by_hand(damaged, scratch)
    return "row by row"


def _rows_by_hand(damaged: Path, scratch: Path) -> None:
    """Every row Python's sqlite3 can read, table by table, stopping a table at its first unreadable page."""
    out = sqlite3.connect(scratch, isolation_level=None)
    try:
        src = sqlite3.connect(f"file:{urllib.parse.quote(str(damaged.absolute()))}?mode=ro", uri=True)
    except sqlite3.Error:
        out.close()
        return
    try:
        try:
            tables = src.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                 "'sqlite_%'").fetchall()
        except sqlite3.Error:
            tables = []
        for name, sql in tables:
            with contextlib.suppress(sqlite3.Error):
                out.execute(sql)
            out.execute("BEGIN")
            _copy_readable(src, out, name)
            out.execute("COMMIT")
    finally:
        src.close()
        out.close()


def _copy_readable(src: sqlite3.Connection, out: sqlite3.Connection, table: str, skips: int = 64) -> None:
    """Copy ``table``'s rows in rowid order; past a damaged page, seek on (rowid > the last one read, then ever
    further) up to ``skips`` times: the rows of the pages after it are often still reachable."""
    last, step = -(1 << 62), 1
    for _ in range(skips):
        try:
            cur = src.execute(f'SELECT rowid, * FROM "{table}" WHERE rowid > ? ORDER BY rowid', (last,))
            for row in cur:
                with contextlib.suppress(sqlite3.Error):
                    out.execute(f'INSERT INTO "{table}" VALUES ({", ".join("?" * (len(row) - 1))})', row[1:])
                last, step = row[0], 1
            return
        except sqlite3.Error:
            last, step = last + step, step * 2
        except OverflowError:
            return


def _adopt(path: Path, scratch: Path) -> dict[str, int]:
    """Create the new database at ``path`` (every registered component migrated) and copy the recovered rows
    of ``scratch`` into it by common columns; returns table -> rows kept."""
    from . import queue as jobs  # noqa: F401  (their migrations register on import)

    conn = connect(path)
    rows: dict[str, int] = {}
    try:
        migrate(conn)
        if not scratch.is_file():
            return rows
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("ATTACH DATABASE ? AS rec", (str(scratch),))
        with transaction(conn):
            have = {r[0]: r[1] for r in conn.execute("SELECT name, sql FROM main.sqlite_master WHERE type = 'table'")}
            found = [r[0] for r in conn.execute("SELECT name FROM rec.sqlite_master WHERE type = 'table' AND name NOT "
                                                "LIKE 'sqlite_%' AND name != 'lost_and_found' ORDER BY rowid")]
            for table in found:
                if table not in have:  # a component this studio does not know: keep its table as it was
                    sql = conn.execute("SELECT sql FROM rec.sqlite_master WHERE name = ?", (table,)).fetchone()[0]
                    conn.execute(sql)
                cols = _columns(conn, "main", table) & _columns(conn, "rec", table)
                if table == "schema_versions":  # ours are current; keep only components we did not migrate
                    conn.execute("INSERT OR IGNORE INTO main.schema_versions SELECT * FROM rec.schema_versions")
                    continue
                names = ", ".join(f'"{c}"' for c in sorted(cols))
                before = conn.total_changes
                conn.execute(f'INSERT OR IGNORE INTO main."{table}" ({names}) SELECT {names} FROM rec."{table}"')
                rows[table] = conn.total_changes - before
            for table, rowid, _parent, _fk in conn.execute("PRAGMA main.foreign_key_check").fetchall():
                conn.execute(f'DELETE FROM main."{table}" WHERE rowid = ?', (rowid,))  # points at a lost row
                rows[table] -= 1
        conn.execute("DETACH DATABASE rec")
    finally:
        conn.close()
    return rows


def _columns(conn: sqlite3.Connection, schema: str, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f'PRAGMA {schema}.table_info("{table}")')}
