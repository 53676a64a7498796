"""Atomic file writes: a temp name in the same folder, fsync, rename. Readers never see half a file.

A temp name carries the writer's pid (``.<stem>.<pid>.partial<ext>``, ``.<name>.<pid>.<hex>.tmp``), so a
file left by a writer that was killed is known as such: the next write of the same file removes it
(:func:`remove_stale`), and nothing of a killed run stays beside the user's output once a run succeeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the folder that holds it (best effort where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_path(final: Path, suffix: str | None = None) -> Path:
    """A hidden sibling of ``final`` that keeps its extension (muxers pick formats by extension)."""
    suffix = final.suffix if suffix is None else suffix
    return final.with_name(f".{final.stem}.{os.getpid()}.partial{suffix}")


#: temp names of :func:`temp_path` and :func:`write_bytes`: the final file's stem or name, the writer's pid
_TEMP_NAMES = (re.compile(r"\.(?P<final>.+)\.(?P<pid>\d+)\.partial(?:\.[^.]*)?"),
               re.compile(r"\.(?P<final>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp"))


def temp_writer(path: Path) -> tuple[str, int] | None:
    """``(final stem or name, writer pid)`` when ``path`` is named like one of our temp files, else None."""
    for pattern in _TEMP_NAMES:
        m = pattern.fullmatch(path.name)
        if m:
            return m["final"], int(m["pid"])
    return None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one we may not signal counts as running; a zombie,
    dead but not yet reaped by its parent, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    return True


def remove_stale(folder: Path | str, final: Path | str | None = None) -> list[Path]:
    """Remove the temp files in ``folder`` whose writer is no longer running (killed mid-write); only
    those of ``final`` (by its stem and name) when given. Returns what was removed.

    A writer is known by its pid, so this is for folders written from this machine: a temp file whose pid
    now names another live process is kept (the next run removes it); one written by another machine into
    a shared folder may look stale here, so callers clear only files that no other machine writes at the
    same time (a render holds its job's work lock).
    """
    folder = Path(folder)
    names = None if final is None else {Path(final).stem, Path(final).name}
    removed: list[Path] = []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".")]
    except OSError:
        return removed
    for entry in entries:
        found = temp_writer(Path(entry.name))
        if found is None or (names is not None and found[0] not in names) or pid_alive(found[1]):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def publish(tmp: Path, final: Path) -> None:
    """fsync ``tmp`` then atomically rename it over ``final``."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``final``, on any error it is removed. Temp files
    of ``final`` that a killed writer left are removed first."""
    final = Path(final)
    remove_stale(final.parent, final)
    tmp = temp_path(final)
    try:
        yield tmp
        publish(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(final: Path | str, data: bytes) -> None:
    """Atomically write ``data`` to ``final`` (created with the usual umask permissions); temp files of
    ``final`` that a killed writer left are removed first."""
    final = Path(final)
    remove_stale(final.parent, final)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_json(final: Path | str, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    write_bytes(final, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
