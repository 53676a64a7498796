"""core.db: connection settings, transactions, migrations (fresh, idempotent, newer refused, concurrent)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from core import db
from core.db import SchemaError
from core.errors import ConfigError, StudioError
from core.studio import repair

COMPONENT = "test_component"
SCRIPTS = (
    "CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
    """
    CREATE TABLE log (x INTEGER);
    CREATE TRIGGER things_log AFTER INSERT ON things BEGIN INSERT INTO log VALUES (new.id); END;
    """,
)
# Not idempotent on purpose (a second application fails on CREATE TABLE), and slow enough (~0.1 s) that
# two processes started together would overlap if migrate() did not serialise them.
RACE = "test_race"
RACE_SCRIPTS = ("""
    CREATE TABLE race (x INTEGER);
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
    INSERT INTO race SELECT x FROM c;
""",)


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the test components for one test only."""
    monkeypatch.setitem(db.MIGRATIONS, COMPONENT, SCRIPTS)
    monkeypatch.setitem(db.MIGRATIONS, RACE, RACE_SCRIPTS)


def test_smoke(studio_home: Path) -> None:
    conn = db.connect()
    try:
        assert Path(db.db_file(conn)) == studio_home / "studio.db"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
        assert conn.row_factory is sqlite3.Row
        assert not conn.in_transaction  # autocommit: transactions are explicit
    finally:
        conn.close()


def test_path_override(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "other.db"
    db.connect(path).close()
    assert path.is_file()


def test_migrate_fresh(tmp_path: Path, scripts: None) -> None:
    conn = db.connect(tmp_path / "s.db")
    assert db.versions(conn) == {}
    assert db.migrate(conn, [COMPONENT]) == {COMPONENT: 2}
    conn.execute("INSERT INTO things (name) VALUES ('x')")
    assert [tuple(r) for r in conn.execute("SELECT x FROM log")] == [(1,)]  # the trigger survived the statement split
    conn.close()


def test_migrate_idempotent(tmp_path: Path, scripts: None, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.db"
    monkeypatch.setitem(db.MIGRATIONS, COMPONENT, SCRIPTS[:1])
    conn = db.connect(path)
    assert db.migrate(conn, [COMPONENT]) == {COMPONENT: 1}
    conn.close()
    monkeypatch.setitem(db.MIGRATIONS, COMPONENT, SCRIPTS)  # a newer studio adds version 2
    for _ in range(2):
        conn = db.connect(path)
        assert db.migrate(conn, [COMPONENT]) == {COMPONENT: 2}
        conn.close()


def test_migrate_failure_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(db.MIGRATIONS, "broken", ("CREATE TABLE half (x); CREATE TABLE oops (;",))
    conn = db.connect(tmp_path / "s.db")
    with pytest.raises(sqlite3.OperationalError):
        db.migrate(conn, ["broken"])
    assert db.versions(conn).get("broken", 0) == 0
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    conn.close()


def test_exception_newer_database(tmp_path: Path, scripts: None) -> None:
    path = tmp_path / "from_the_future.db"
    conn = db.connect(path)
    db.migrate(conn, [COMPONENT])
    with db.transaction(conn):
        conn.execute("UPDATE schema_versions SET version = 7 WHERE component = ?", (COMPONENT,))
    conn.close()
    conn = db.connect(path)
    with pytest.raises(SchemaError, match=r"from_the_future\.db.*version 7.*knows up to 2") as err:
        db.migrate(conn, [COMPONENT])
    assert isinstance(err.value, StudioError) and isinstance(err.value, RuntimeError)
    conn.close()


def test_exception_register(scripts: None) -> None:
    db.register(COMPONENT, SCRIPTS)  # the same scripts again: a module imported twice
    with pytest.raises(ConfigError, match="already registered"):
        db.register(COMPONENT, ["CREATE TABLE x (y);"])
    with pytest.raises(ConfigError, match="non-empty"):
        db.register("empty", [])
    with pytest.raises(ConfigError, match="nobody"):
        db.migrate(sqlite3.connect(":memory:"), ["nobody"])


def test_transaction(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "s.db")
    conn.execute("CREATE TABLE t (x)")
    with db.transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(KeyError), db.transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise KeyError("boom")
    assert [r[0] for r in conn.execute("SELECT x FROM t")] == [1]
    with pytest.raises(RuntimeError, match="does not nest"), db.transaction(conn), db.transaction(conn):
        pass
    assert not conn.in_transaction
    conn.close()


def _migrate_worker(path: str, barrier) -> None:
    db.MIGRATIONS[RACE] = RACE_SCRIPTS
    barrier.wait()
    conn = db.connect(path)
    db.migrate(conn, [RACE])
    conn.close()


def test_concurrent_migrate(tmp_path: Path, scripts: None) -> None:
    path = str(tmp_path / "race.db")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_migrate_worker, args=(path, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    conn = db.connect(path)
    assert db.versions(conn) == {RACE: 1}
    assert conn.execute("SELECT count(*) FROM race").fetchone()[0] == 100_000  # applied exactly once
    conn.close()


def _hold_lock_worker(path: str, ready) -> None:
    conn = db.connect(path)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES ('uncommitted')")
    ready.set()
    signal.pause()


def test_killed_inside_transaction(tmp_path: Path) -> None:
    """A writer SIGKILLed while holding the write lock: its row is gone and the lock is free at once."""
    path = str(tmp_path / "s.db")
    conn = db.connect(path)
    conn.execute("CREATE TABLE t (x)")
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    p = ctx.Process(target=_hold_lock_worker, args=(path, ready))
    p.start()
    assert ready.wait(60)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    with db.transaction(conn):
        conn.execute("INSERT INTO t VALUES ('after')")
    assert [r[0] for r in conn.execute("SELECT x FROM t")] == ["after"]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


# ------------------------------------------------------------------------------------------------ faults (issue 16)


def test_exception_full_database_is_disk_full(tmp_path: Path) -> None:
    """SQLITE_FULL inside a transaction (here a page cap; on a real disk ENOSPC) is a DiskFullError naming the file
    and its disk, and the transaction is rolled back, leaving the connection usable."""
    from core.errors import DiskFullError

    conn = db.connect(tmp_path / "t.db")
    with db.transaction(conn):
        conn.execute("CREATE TABLE blobs (b BLOB)")
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0] + 2}")
    with pytest.raises(DiskFullError, match=rf"{tmp_path}/t\.db: disk full \(the disk mounted at /"), \
            db.transaction(conn):
        conn.execute("INSERT INTO blobs VALUES (zeroblob(1000000))")
    assert not conn.in_transaction and conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 0
    with db.transaction(conn):
        conn.execute("INSERT INTO blobs VALUES (x'00')")


def test_exception_damaged_file_names_it(tmp_path: Path) -> None:
    from core.errors import DatabaseCorruptError

    path = tmp_path / "t.db"
    path.write_bytes(b"this is no database" * 300)
    with pytest.raises(DatabaseCorruptError, match=rf"{tmp_path}/t\.db: the studio database is damaged \(file is not "
                                                   r"a database\); `python -m scripts.cli queue repair`"):
        db.connect(path)
    assert DatabaseCorruptError.user_error is False  # exit 1: the file is ours, not something the user gave
    assert repair.damage(path) == "file is not a database"


def test_readonly_open_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = db.connect(path)
    with db.transaction(conn):
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    ro = db.connect_readonly(path)
    assert [tuple(r) for r in ro.execute("SELECT x FROM t")] == [(1,)]
    with pytest.raises(sqlite3.OperationalError):
        ro.execute("INSERT INTO t VALUES (2)")
    ro.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no -wal, no -shm made


def test_repair_a_healthy_or_absent_database_does_nothing(tmp_path: Path) -> None:
    assert repair.repair(tmp_path / "none.db").moved_to is None and not (tmp_path / "none.db").exists()
    path = tmp_path / "t.db"
    db.connect(path).close()
    report = repair.repair(path)
    assert report.moved_to is None and "healthy" in report.line() and list(tmp_path.glob("*corrupt*")) == []
