"""Where the studio's files live, how long they stay, and whether there is room for another job.

Three tiers under :func:`core.paths.studio_home`, each with its own retention (days; 0 keeps forever)::

    uploads/<sha256 of the content, 20 hex>/<its own name>    files given to the studio's upload box
    work/<job hash>/...                                       chunks and checkpoints (core.render.pipeline)
    renders/<input stem>_<style>[_N].<ext>                    finished renders queued from the studio

An upload keeps the name its user gave it (``My Clip (1).mp4`` shows as that in every caption, table and
output name), in a folder named by the content's hash (the same file uploaded twice is stored once; under a
second name it is a hard link beside the first). The name is cleaned first (:func:`clean_name`): its last
path component only, no leading dot, no control or shell-special characters, and the extension one of
:data:`VIDEO_EXTS`, lower-cased; anything else is refused.

Settings (the media folders the studio lists, the retention per tier, the free space a job needs, where
the queue worker renders: ``local`` or ``dask://HOST:PORT``, and decodes: ``cpu`` or ``cuda``) are a
frozen dataclass saved as ``studio_home()/settings.yaml`` and loaded strictly (an unknown key or a bad
value is a :class:`ConfigError` naming the key and the file).

The disk guard, :func:`check_free_space`, refuses a job (:class:`DiskFullError`) when the studio's disk
has less free space than the settings ask for plus what the job is expected to write. A disk that fills
anyway (another program wrote, the estimate was low) is caught where we write, by :func:`disk_full_guard`:
ENOSPC / EDQUOT (PyAV's errors carry the errno too) and SQLite's "database or disk is full" become one
:class:`DiskFullError` naming the disk's mount point, the folder written and the space needed, after the
partial files are removed (a half-written chunk must not keep the disk full).

A settings file that is not YAML at all (garbled, half-written by another tool) is a warning naming the
file and the defaults are used: the studio and its worker must start to let the user fix it. A file that
parses but holds a bad key or value is still refused, naming the key (it is a mistake worth stopping for).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from core import atomic
from core.config import read_yaml, validate, write_yaml
from core.disk import existing_folder, free_bytes, mount_point
from core.errors import ConfigError, DiskFullError, MediaNotFoundError, OutputError
from core.paths import studio_home
from core.video.reader import DECODERS

log = logging.getLogger(__name__)

TIERS = ("uploads", "work", "renders")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mts", ".ts", ".mpg", ".mpeg")
SETTINGS_FILE = "settings.yaml"
GIB = 1 << 30


__all__ = ["DiskFullError"]  # defined in core.errors, kept importable from here (its first home)


@dataclass(frozen=True)
class Retention:
    """Days a file of each tier is kept after its last change (0 = forever)."""

    uploads: float = field(default=30.0, metadata={"min": 0.0, "max": 3650.0, "help": "days; 0 keeps forever"})
    work: float = field(default=7.0, metadata={"min": 0.0, "max": 3650.0, "help": "days; 0 keeps forever"})
    renders: float = field(default=0.0, metadata={"min": 0.0, "max": 3650.0, "help": "days; 0 keeps forever"})


@dataclass(frozen=True)
class StudioSettings:
    """What the studio's Settings page edits. ``media_folders``: folders whose videos the studio lists
    (relative paths are under ``studio_home()``); ``min_free_gb``: free space to keep on the studio's disk."""

    media_folders: tuple[str, ...] = ("samples", "media")
    #: where the studio's pages may write renders (the first is the default); relative ones are under the
    #: studio home. A browser user picks among these, never types a path the studio would write anywhere.
    output_folders: tuple[str, ...] = ("renders",)
    retention: Retention = field(default_factory=Retention)
    min_free_gb: float = field(default=2.0, metadata={"min": 0.0, "max": 10_000.0,
                                                      "help": "a job is refused below this much free space"})
    executor: str = field(default="local", metadata={
        "help": "where the queue worker renders chunks: local (a process pool here) or dask://HOST:PORT (an "
                "existing Dask cluster; inputs, the studio home and outputs on a path every worker sees)"})
    decode: str = field(default="cpu", metadata={
        "choices": DECODERS, "help": "where the queue worker's renders decode frames: cpu, or cuda (NVDEC on an "
                                     "NVIDIA GPU; the CPU, with the reason in the job's result, where it cannot open)"})


def settings_path() -> Path:
    return studio_home() / SETTINGS_FILE


def load_settings(path: str | Path | None = None) -> StudioSettings:
    """The saved settings, or the defaults when none were saved. ConfigError naming the file if malformed."""
    path = Path(path) if path is not None else settings_path()
    if _garbled(path):
        return StudioSettings()
    settings = read_yaml(StudioSettings, path, "the studio settings")
    validate(settings, str(path))
    from core.render.executors import check_url

    check_url(settings.executor, f"{path}: executor")
    return settings


def _garbled(path: Path) -> bool:
    """True (after a warning naming the file) when ``path`` exists but is not a YAML mapping at all."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        why = f"not readable YAML ({type(exc).__name__}" + (f" at line {m.line + 1})" if (
            m := getattr(exc, "problem_mark", None)) is not None else ")")
    else:
        if data is None or isinstance(data, dict):
            return False
        why = f"a {type(data).__name__}, not a mapping of settings"
    log.warning("%s: the studio settings file is %s; using the defaults until it is saved again", path, why)
    return True


def save_settings(settings: StudioSettings, path: str | Path | None = None) -> Path:
    """Check and write ``settings`` atomically (default :func:`settings_path`); returns the path."""
    path = Path(path) if path is not None else settings_path()
    validate(settings, str(path))
    for name in ("media_folders", "output_folders"):
        for folder in getattr(settings, name):
            if not isinstance(folder, str) or not folder.strip():
                raise ConfigError(f"{path}: {name}: expected folder paths, got {folder!r}")
    if not settings.output_folders:
        raise ConfigError(f"{path}: output_folders: at least one folder is needed (renders go there)")
    from core.render.executors import check_url

    check_url(settings.executor, f"{path}: executor")
    return write_yaml(settings, path, "the studio settings")


def tier_folder(tier: str) -> Path:
    """The folder of one of :data:`TIERS`."""
    if tier not in TIERS:
        raise ConfigError(f"unknown storage tier {tier!r} (choose from: {', '.join(TIERS)})")
    return studio_home() / tier


def media_folders(settings: StudioSettings | None = None) -> list[Path]:
    """The configured media folders as absolute paths (relative ones are under ``studio_home()``)."""
    settings = settings or load_settings()
    return [p if p.is_absolute() else studio_home() / p for p in (Path(f).expanduser() for f in settings.media_folders)]


def list_media(settings: StudioSettings | None = None, *, with_uploads: bool = True) -> list[Path]:
    """Video files (by extension) in the media folders and, with ``with_uploads``, the uploads; sorted,
    without duplicates. Hidden files (a partial write) are left out; missing folders are skipped."""
    folders = media_folders(settings)
    uploads = tier_folder("uploads")
    if with_uploads and uploads.is_dir():  # each upload in its content's folder (older ones loose beside them)
        folders += [uploads, *sorted(p for p in uploads.iterdir() if p.is_dir() and not p.name.startswith("."))]
    seen: dict[Path, None] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in VIDEO_EXTS and not p.name.startswith("."):
                seen.setdefault(p.resolve(), None)
    return list(seen)


def safe_extension(name: str) -> str:
    """The lower-cased video extension of an uploaded file's name; ConfigError for anything else."""
    ext = Path(str(name)).suffix.lower()
    if ext not in VIDEO_EXTS:
        raise ConfigError(f"upload {name!r}: not a video file name (accepted: {', '.join(VIDEO_EXTS)})")
    return ext


#: characters an upload's or an output's name keeps beside letters and digits (any script); others become "_"
_NAME_OK = frozenset(" ._-()[]+,&'@")


def clean_name(name: str, limit: int = 100) -> str:
    """The stem of a user's file name, safe as a file name: its last path component, anything but letters,
    digits and :data:`_NAME_OK` as "_", no leading dots or spaces, at most ``limit`` characters; "clip" if
    nothing is left."""
    stem = Path(str(name).replace("\\", "/").rsplit("/", 1)[-1]).stem
    cleaned = "".join(c if c.isalnum() or c in _NAME_OK else "_" for c in stem).strip(" .")[:limit].strip(" .")
    return cleaned or "clip"


def store_upload(data: bytes, name: str) -> Path:
    """Store uploaded bytes as ``uploads/<content hash>/<clean name><extension>`` (atomically, once per content
    and name) and return the path."""
    if not data:
        raise ConfigError(f"upload {name!r}: the file is empty")
    ext = safe_extension(name)
    folder = tier_folder("uploads") / hashlib.sha256(data).hexdigest()[:20]
    path = folder / f"{clean_name(name)}{ext}"
    if path.is_file():
        return path
    twin = next((p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")), None) \
        if folder.is_dir() else None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if twin is not None:
            os.link(twin, path)  # the same bytes under the user's other name: no second copy
        else:
            check_free_space(folder, len(data))
            atomic.write_bytes(path, data)
    except OSError as exc:
        raise OutputError(f"{path}: cannot store the upload ({exc.strerror or exc})") from None
    return path


def output_folders(settings: StudioSettings | None = None) -> list[Path]:
    """The folders the pages may write renders to, absolute (relative ones under ``studio_home()``); the
    first is the default. ``renders`` is always among them: retention and clean-up know it."""
    settings = settings or load_settings()
    folders = [p if p.is_absolute() else studio_home() / p
               for p in (Path(f).expanduser() for f in settings.output_folders)]
    renders = tier_folder("renders")
    return folders if renders in folders else [*folders, renders]


def check_output_folder(folder: str | Path, settings: StudioSettings | None = None) -> Path:
    """``folder`` (absolute) if it is one of :func:`output_folders`; else an OutputError naming it and the
    allowed ones (a page must not write wherever a request says)."""
    allowed = output_folders(settings)
    path = Path(folder).expanduser()
    path = path if path.is_absolute() else studio_home() / path
    if path.resolve() not in {p.resolve() for p in allowed}:
        raise OutputError(f"{folder}: not an output folder of the studio (allowed: "
                          f"{', '.join(str(p) for p in allowed)}; add it in Settings > Folders)")
    return path


def store_lut(data: bytes, name: str) -> str:
    """Check an uploaded ``.cube`` LUT and store it in ``$VP_HOME/luts`` under its own name (``_2``... when a
    different LUT has that name; the same bytes again reuse the stored one); returns the name a LUT picker and
    ``--set lut=`` take. A file that is not a LUT we can read is a LutError naming the user's file and line."""
    import tempfile

    from core.color.cube import read_cube
    from core.errors import LutError

    base = clean_name(name)
    with tempfile.TemporaryDirectory(prefix="vp-lut-") as tmp:
        probe_path = Path(tmp) / f"{base}.cube"
        probe_path.write_bytes(data)
        try:
            read_cube(probe_path)
        except LutError as exc:
            raise LutError(str(exc).replace(str(probe_path), f"upload {name!r}")) from None
    folder = studio_home() / "luts"
    folder.mkdir(parents=True, exist_ok=True)
    stem, n = base, 1
    while (folder / f"{stem}.cube").is_file() and (folder / f"{stem}.cube").read_bytes() != data:
        n += 1
        stem = f"{base}_{n}"
    path = folder / f"{stem}.cube"
    if not path.is_file():
        try:
            atomic.write_bytes(path, data)
        except OSError as exc:
            raise OutputError(f"{path}: cannot store the LUT ({exc.strerror or exc})") from None
    return stem


def render_path(input: str | Path, style: str, ext: str = ".mp4", folder: str | Path | None = None,
                taken: Iterable[str | Path] = ()) -> Path:
    """A new output path in ``folder`` (default ``renders/``): ``<input's name>_<style><ext>``, then ``_2``,
    ``_3``... so an earlier render is never overwritten, nor the output of a job still queued (``taken``).
    ``folder`` must be one of :func:`output_folders`."""
    folder = tier_folder("renders") if folder is None else check_output_folder(folder)
    base = f"{clean_name(Path(input).name, 80)}_{clean_name(style, 40)}"
    busy = {str(Path(t).absolute()) for t in taken}
    path, n = folder / f"{base}{ext}", 1
    while path.exists() or str(path.absolute()) in busy:
        n += 1
        path = folder / f"{base}_{n}{ext}"
    return path


# ---------------------------------------------------------------------------------------------- disk guard


def input_size(path: str | Path) -> int:
    """Bytes of an input file (what a job's output is estimated from); MediaNotFoundError naming it."""
    try:
        return Path(path).stat().st_size
    except FileNotFoundError:
        raise MediaNotFoundError(f"{path}: file not found") from None


def check_free_space(path: str | Path | None = None, need_bytes: int = 0,
                     settings: StudioSettings | None = None) -> int:
    """The disk guard: free bytes at ``path`` if at least ``need_bytes`` plus the settings' ``min_free_gb``
    would remain free; else :class:`DiskFullError` naming the disk, what is free and what is needed."""
    settings = settings or load_settings()
    where = existing_folder(Path(path) if path is not None else studio_home())
    free = free_bytes(where)
    need = int(need_bytes) + int(settings.min_free_gb * GIB)
    if free < need:
        err = DiskFullError(f"{where}: only {free / GIB:.1f} GiB free, a job needs {need / GIB:.1f} GiB "
                            f"(min_free_gb {settings.min_free_gb:g} in {settings_path()}); free space or clean up")
        err.mount, err.short_bytes = str(mount_point(where)), need - free
        raise err
    return free


# ---------------------------------------------------------------------------------------------- usage and clean-up


@dataclass(frozen=True)
class TierUsage:
    tier: str
    folder: Path
    files: int
    bytes: int
    retention_days: float


def _files(folder: Path) -> Iterable[Path]:
    if folder.is_dir():
        yield from (p for p in folder.rglob("*") if p.is_file())


def usage(settings: StudioSettings | None = None) -> list[TierUsage]:
    """Files and bytes in each tier, with the tier's retention."""
    settings = settings or load_settings()
    out = []
    for tier in TIERS:
        folder = tier_folder(tier)
        files = list(_files(folder))
        out.append(TierUsage(tier, folder, len(files), sum(p.stat().st_size for p in files),
                             getattr(settings.retention, tier)))
    return out


@dataclass(frozen=True)
class CleanupReport:
    removed: tuple[Path, ...]
    bytes: int
    kept_in_use: int


def _in_use(unit: Path, keep: set[Path]) -> bool:
    """True when ``unit`` is a kept path, inside one, or holds one."""
    return any(unit == k or k in unit.parents or unit in k.parents for k in keep)


def cleanup(settings: StudioSettings | None = None, *, keep: Iterable[str | Path] = (), now: float | None = None,
            dry_run: bool = False, only: Iterable[str | Path] | None = None) -> CleanupReport:
    """Remove files older than their tier's retention (by modification time; 0 days keeps forever).

    A work folder goes as a whole once none of its files is recent. ``keep``: paths (files or folders) of
    jobs still queued, running or paused: never removed. ``dry_run`` lists without removing. ``only``: remove
    none but these (the items of a :class:`CleanupPlan` the user confirmed), and those only if still due.
    """
    settings = settings or load_settings()
    now = time.time() if now is None else now
    keep_set = {Path(k).resolve() for k in keep}
    only_set = None if only is None else {Path(p).resolve() for p in only}
    removed: list[Path] = []
    total = in_use = 0
    for tier in TIERS:
        days = getattr(settings.retention, tier)
        folder = tier_folder(tier)
        if days <= 0 or not folder.is_dir():
            continue
        cutoff = now - days * 86400
        for unit in folder.iterdir():
            if unit.name.startswith("."):  # a write in progress (atomic temp names are hidden)
                continue
            if only_set is not None and unit.resolve() not in only_set:
                continue
            files = [unit] if unit.is_file() else list(_files(unit))
            if _in_use(unit.resolve(), keep_set):
                in_use += 1
                continue
            newest = max((p.stat().st_mtime for p in files), default=unit.stat().st_mtime)
            if newest >= cutoff:
                continue
            size = sum(p.stat().st_size for p in files)
            if not dry_run:
                try:
                    shutil.rmtree(unit) if unit.is_dir() else unit.unlink()
                except OSError as exc:
                    raise OutputError(f"{unit}: cannot remove ({exc.strerror or exc})") from None
            removed.append(unit)
            total += size
    return CleanupReport(tuple(removed), total, in_use)


@dataclass(frozen=True)
class CleanupPlan:
    """What :func:`cleanup` would remove at ``now``, for the user to read before anything goes.

    ``tiers``: (tier, items, bytes) for each tier with something due. Confirming is
    ``cleanup(settings, keep=..., now=plan.now, only=plan.items)``: an item that became due, or stopped being in
    use, after the plan was shown is not removed unasked.
    """

    now: float
    items: tuple[Path, ...]
    tiers: tuple[tuple[str, int, int], ...]
    kept_in_use: int

    @property
    def bytes(self) -> int:
        return sum(size for _, _, size in self.tiers)


def plan_cleanup(settings: StudioSettings | None = None, *, keep: Iterable[str | Path] = (),
                 now: float | None = None) -> CleanupPlan:
    """A dry run of :func:`cleanup`, counted and sized per tier (a work folder is one item)."""
    settings = settings or load_settings()
    now = time.time() if now is None else now
    report = cleanup(settings, keep=keep, now=now, dry_run=True)
    tiers = []
    for tier in TIERS:
        folder = tier_folder(tier)
        units = [u for u in report.removed if u.parent == folder]
        if units:
            tiers.append((tier, len(units), sum(p.stat().st_size for u in units
                                                for p in ([u] if u.is_file() else _files(u)))))
    return CleanupPlan(now, report.removed, tuple(tiers), report.kept_in_use)
