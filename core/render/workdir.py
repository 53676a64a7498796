"""A job's work folder (``$VP_HOME/work/<job hash>/``): where it lives, who holds it, what goes.

One render at a time per folder, across processes (a lock file beside it); a killed render's lock and temp
files are cleared by the next; a finished job's folder, and those of earlier jobs for the same output, are
removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core import atomic
from core.paths import studio_home


def work_root() -> Path:
    return studio_home() / "work"


def remove_superseded(root: Path, output: str, keep: Path) -> None:
    """Drop work folders of earlier, different jobs for the same output: they can never resume now."""
    if not root.is_dir():
        return
    for ck in root.glob("*/checkpoint.json"):
        if ck.parent == keep:
            continue
        with contextlib.suppress(OSError, ValueError):
            if json.loads(ck.read_text()).get("output") == output:
                shutil.rmtree(ck.parent, ignore_errors=True)


@contextlib.contextmanager
def work_lock(job_hash: str) -> Iterator[None]:
    """One render per work folder at a time, across processes: the same job sent to two outputs shares
    a work folder (its hash leaves the output out), and one must not delete it while the other stitches.
    The lock file sits beside the folder, so removing the folder never removes a lock someone waits on.

    Nothing piles up: the holder removes the lock file before it lets go (a waiter then finds the file it
    locked gone from the path and locks the new one, :func:`_lock_file`), and once held, lock files nobody
    holds (left by a killed render) and the temp files a killed run left in the job's work folder are
    removed."""
    root = work_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".{job_hash}.lock"
    fh = _lock_file(path, wait=True)
    try:
        _remove_free_locks(root)
        atomic.remove_stale(root / job_hash)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still held: nobody else holds this file, and whoever waits on it will look again
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _lock_file(path: Path, wait: bool) -> Any:
    """The open, exclusively locked lock file at ``path`` (created when ``wait``); None when ``wait`` is off
    and someone holds it or it is gone. A file locked after its holder removed it is not the lock any more
    (the path names a new file, or none): then the one now at the path is locked instead."""
    while True:
        try:
            fh = open(path, "a" if wait else "r")  # noqa: SIM115 (held beyond this function)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            held, now = os.fstat(fh.fileno()), os.stat(path)
            if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
                return fh
        except (BlockingIOError, FileNotFoundError):
            pass
        except BaseException:
            fh.close()
            raise
        fh.close()
        if not wait:
            return None


def _remove_free_locks(root: Path) -> None:
    """Remove the lock files in ``root`` that nobody holds (each locked first, so none is removed under a
    render that holds it or is about to)."""
    for path in root.glob(".*.lock"):
        fh = _lock_file(path, wait=False)
        if fh is not None:
            with contextlib.suppress(OSError):
                path.unlink()
            fh.close()
