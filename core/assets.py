"""Named assets (LUTs, models): a path, or a bare name looked up in the bundled folder and ``$VP_HOME``."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .paths import studio_home

ROOT = Path(__file__).resolve().parent.parent


def asset_folders(kind: str) -> list[Path]:
    """Where assets of ``kind`` (``luts``, ``models``) are looked for: the repo's folder, then the user's."""
    return [ROOT / kind, studio_home() / kind]


def asset_names(kind: str, suffix: str) -> list[str]:
    """The bare names (stems) of the ``kind`` assets in :func:`asset_folders`, sorted: what a picker offers."""
    return sorted({f.stem for d in asset_folders(kind) if d.is_dir() for f in d.glob(f"*{suffix}")})


def resolve_asset(name: str, kind: str, suffix: str) -> Path:
    """A file from a path or a bare name (``look`` or ``look.cube``) in the ``kind`` folders.

    Raises ConfigError listing the names that are available.
    """
    p = Path(name).expanduser()
    if p.is_file():
        return p.resolve()
    for folder in asset_folders(kind):
        for cand in (folder / name, folder / f"{name}{suffix}"):
            if cand.is_file():
                return cand.resolve()
    names = asset_names(kind, suffix)
    what = kind.rstrip("s").upper() if kind == "luts" else kind.rstrip("s")
    raise ConfigError(f"{what} {name!r}: no such file, and no {what} of that name "
                      f"(available: {', '.join(names) or 'none'})")
