"""What a failed job tells the supervisor: the file by the name they gave it, what went wrong in words, what to
do about it, and the technical line (folded away in the pages) for whoever has to dig.

Why a separate step: the errors the library raises are one precise line each ("<internal path>: not a video
file FFmpeg can read (Invalid data ...)"), right for a log and a CLI, but a supervisor looking at a queue needs
the action ("re-export the file") more than the cause. The advice is made where the exception is still an
object (the worker), from its class and the few facts it carries, so no page has to parse messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.disk import human_bytes
from core.errors import (
    BadModelError,
    ClusterMismatchError,
    ConfigError,
    DatabaseCorruptError,
    DiskFullError,
    LutError,
    MediaNotFoundError,
    ModelError,
    OutputError,
    RenderError,
    StudioError,
    UnsupportedVideoError,
)


@dataclass(frozen=True)
class Advice:
    """``file``: the input as its user named it ("" for jobs without one); ``summary``: what went wrong, one
    sentence naming the file; ``action``: what to do; ``technical``: the error's own line; ``final``: the job is
    not tried again (the same input fails the same way)."""

    file: str
    summary: str
    action: str
    technical: str
    final: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Advice | None:
        """The advice a failed event recorded, or None for events from before advice was recorded."""
        if not data or not isinstance(data.get("summary"), str):
            return None
        return cls(str(data.get("file", "")), data["summary"], str(data.get("action", "")),
                   str(data.get("technical", "")), bool(data.get("final", False)))


def display_name(spec: Mapping[str, Any]) -> str:
    """The input's name as the user gave it. Uploads are stored as ``uploads/<hash>/<their name>``
    (:func:`core.studio.storage.store_upload`), so the file name is theirs either way."""
    source = spec.get("input") or spec.get("pairs") or ""
    return Path(str(source)).name if source else ""


_RETRY_THEN_REPORT = ("Press Retry. If it fails the same way again, report it with the technical detail below "
                      "(the studio's log has the rest).")


def advise(exc: BaseException, spec: Mapping[str, Any], *, final: bool) -> Advice:
    """Advice for the exception a job's run raised; ``final``: whether the queue gives up on the job now."""
    name = display_name(spec)
    it = name or "the job"
    technical = str(exc) if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}"
    summary, action = _words(exc, it, spec)
    return Advice(name, summary, action, technical, final)


def _words(exc: BaseException, it: str, spec: Mapping[str, Any]) -> tuple[str, str]:
    text = str(exc)
    if isinstance(exc, MediaNotFoundError):
        return (f"{it}: the file is no longer where the job expects it (moved, renamed or deleted).",
                "Put the file back, or upload it again and queue a new render.")
    if isinstance(exc, UnsupportedVideoError):
        if "no video stream" in text:
            what = "it has no video track (audio only, or not a video at all)"
        elif "empty" in text:
            what = "the file is empty (an upload or copy that did not finish)"
        else:
            what = "it is damaged, cut short or in a form the studio cannot decode"
        return (f"{it} could not be read as a video: {what}.",
                "Re-export the file from the editing or recording software (H.264 in .mp4 or ProRes in .mov) "
                "and upload it again.")
    if isinstance(exc, DiskFullError):
        where = f" on {exc.mount}" if exc.mount else " on the disk named below"
        room = f"Free {human_bytes(exc.short_bytes)}{where}" if exc.short_bytes > 0 else f"Free space{where}"
        return (f"{it}: the disk ran out of room{where}.",
                f"{room} (Settings > Storage can clean up finished work files) or choose an output folder on "
                "another disk, then press Retry.")
    if isinstance(exc, LutError):
        return (f"{it}: the colour LUT cannot be used.",
                "Pick another LUT in the job's settings, or fix the file and line named below.")
    if isinstance(exc, ModelError) and "out of memory" in text:
        sets = spec.get("sets") if isinstance(spec.get("sets"), Mapping) else {}
        tile = sets.get("tile") or sets.get("params.tile")
        smaller = f" (this job asked for {tile} px)" if tile else ""
        return (f"{it}: the style model ran out of memory, even in the smallest tiles tried.",
                f"Pick a smaller tile{smaller}, a smaller output size, or close other programs using the memory.")
    if isinstance(exc, BadModelError):
        return (f"{it}: the style model cannot be used.",
                "Pick another model or version (the Trainer page lists them), or re-export the model.")
    if isinstance(exc, ConfigError):
        return (f"{it}: a setting of this job is not valid.",
                "Change the setting named below and queue the render again.")
    if isinstance(exc, OutputError):
        return (f"{it}: the output cannot be written where the job asked.",
                "Choose another output folder or file name (Settings lists the folders the studio may write).")
    if isinstance(exc, DatabaseCorruptError):
        return ("The studio database is damaged.",
                "Stop the workers and run `python -m scripts.cli queue repair`, then queue the job again.")
    if isinstance(exc, ClusterMismatchError):
        return (f"{it}: the Dask cluster runs other code than this studio.",
                "Update the cluster's workers to this version, or render with local workers.")
    if isinstance(exc, RenderError) and "process died" in text:
        return (f"{it}: the process rendering it crashed (often a damaged file, or the machine ran out of memory).",
                "Re-export the file and upload it again; if other files render, press Retry once.")
    if isinstance(exc, StudioError):
        return f"{it}: the render failed.", _RETRY_THEN_REPORT
    return f"{it}: an internal error stopped the job.", _RETRY_THEN_REPORT
