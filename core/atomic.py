"""Atomic file writes: a temp name in the same folder, fsync, rename. Readers never see half a file."""

from __future__ import annotations

import contextlib
import json
import os
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


def publish(tmp: Path, final: Path) -> None:
    """fsync ``tmp`` then atomically rename it over ``final``."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``final``, on any error it is removed."""
    final = Path(final)
    tmp = temp_path(final)
    try:
        yield tmp
        publish(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(final: Path | str, data: bytes) -> None:
    """Atomically write ``data`` to ``final`` (created with the usual umask permissions)."""
    final = Path(final)
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
