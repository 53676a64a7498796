"""The disk: free space, and a full disk met while writing turned into one clear error.

Any package that writes uses :func:`disk_full_guard`; the studio's own guard before a job
(:func:`core.studio.storage.check_free_space`) builds on :func:`free_bytes`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import DiskFullError
from .paths import studio_home


def existing_folder(path: Path) -> Path:
    """``path``, or its nearest parent that exists (what a disk question can be asked of)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | Path | None = None) -> int:
    """Free bytes for an unprivileged user on the disk holding ``path`` (default: the studio home)."""
    return shutil.disk_usage(existing_folder(Path(path) if path is not None else studio_home())).free


#: errno values of a full disk: no space, and a user's quota exhausted
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from (``__cause__`` / ``__context__``: a RenderError
    wrapping a worker's OSError), is a full disk: ENOSPC or EDQUOT (PyAV's ``av.error.OSError`` carries
    the errno too) or SQLite's SQLITE_FULL."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and (
                (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_FULL or "disk is full" in str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def mount_point(path: str | Path) -> Path:
    """The mount point of the disk holding ``path`` (or its nearest existing parent)."""
    p = existing_folder(Path(path).absolute())
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def human_bytes(n: float) -> str:
    """``1536`` -> "1.5 KiB": sizes for one-line messages."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # unreachable; keeps type checkers content


def _written(exc: BaseException | None) -> str | None:
    """The file a full-disk error names (OSError.filename, PyAV's too), searching the cause chain."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and isinstance(exc.filename, str | os.PathLike) and str(exc.filename):
            return str(exc.filename)
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full_error(exc: BaseException | None, where: str | Path, need_bytes: int = 0, *,
                    cleaned: bool = True) -> DiskFullError:
    """A :class:`DiskFullError` for a write that found the disk full: one line naming the folder written (the
    file in ``exc`` when it names one, else ``where``), the disk's mount point, what is free there and
    ``need_bytes`` (the caller's estimate of what the write needed); ``cleaned``: the caller removed what the
    write had begun (the message says so). An existing DiskFullError is returned as is."""
    if isinstance(exc, DiskFullError):
        return exc
    written = _written(exc)
    folder = existing_folder(Path(written).absolute().parent if written else Path(where).absolute())
    mount = mount_point(folder)
    try:
        free = human_bytes(shutil.disk_usage(folder).free)
    except OSError:
        free = "no space"
    need = f"; the write needs about {human_bytes(need_bytes)}" if need_bytes > 0 else ""
    err = DiskFullError(f"{folder}: disk full (the disk mounted at {mount} has {free} free{need}); "
                        f"{'partial files removed: ' if cleaned else ''}free space there or write elsewhere")
    err.errno = errno.ENOSPC  # str() stays the one line; callers testing errno still see a full disk
    err.mount, err.short_bytes = str(mount), max(0, int(need_bytes))
    return err


def remove_partials(folder: str | Path) -> int:
    """Remove the hidden temp files of atomic writes in ``folder`` (:mod:`core.atomic`'s ``.NAME.PID.partial.EXT``
    and ``.NAME.PID.TOKEN.tmp``): what a write cut short by a full disk, or a killed process, left. Only for a
    folder no one else writes now (a job's work folder under its lock). Returns the bytes they held."""
    n = 0
    with contextlib.suppress(OSError):
        for p in Path(folder).iterdir():
            if p.name.startswith(".") and (".partial" in p.name or p.name.endswith(".tmp")) and p.is_file():
                with contextlib.suppress(OSError):
                    size = p.stat().st_size
                    p.unlink()
                    n += size
    return n


@contextlib.contextmanager
def disk_full_guard(where: str | Path, need_bytes: int = 0, *, partials: Iterable[str | Path] = ()) -> Iterator[None]:
    """Turn a full disk met inside the block into one :class:`DiskFullError` (:func:`disk_full_error`), after
    removing the partial files in the folders ``partials`` (:func:`remove_partials`). The space needed named is
    ``need_bytes`` (the caller's estimate) or what the partial files had reached, whichever is more (the write
    needed at least that). Other errors pass as they are."""
    try:
        yield
    except BaseException as exc:
        if not is_disk_full(exc):
            raise
        reached = sum(remove_partials(folder) for folder in partials)
        err = disk_full_error(exc, where, max(need_bytes, reached))
        if err is exc:
            raise
        raise err from None
