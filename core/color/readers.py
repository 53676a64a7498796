"""The LUT reader registry: one reader per file format, chosen by the file's extension.

A new format is one reader module (like :mod:`.cube`) plus one line in :data:`LUT_READERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.errors import LutError

from .cube import read_cube
from .lut import Lut

#: One reader per LUT format, by lower-case file extension.
LUT_READERS: dict[str, Callable[[str | Path], Lut]] = {".cube": read_cube}


def read_lut(path: str | Path) -> Lut:
    """Read any supported LUT file, choosing the reader by extension; LutError for an unknown one."""
    path = Path(path)
    reader = LUT_READERS.get(path.suffix.lower())
    if reader is None:
        raise LutError(f"{path}: unsupported LUT format {path.suffix or '(no extension)'!r} "
                       f"(supported: {', '.join(LUT_READERS)})")
    return reader(path)
