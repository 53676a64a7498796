"""One error family for the studio.

Library code raises these; only the CLI turns them into exit codes and only ``app/`` into messages.
Each subclass also subclasses the matching builtin so callers can catch either.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base of every error the studio raises on purpose; ``str(err)`` is one line for a user."""

    #: True when the cause is the user's input or settings (CLI exit code 2), not a failure of ours.
    user_error: bool = True


class MediaNotFoundError(StudioError, FileNotFoundError):
    """An input path that does not exist."""


class UnsupportedVideoError(StudioError, ValueError):
    """A file that exists but is not a video we can render (empty, not a video, truncated, no frames)."""


class ConfigError(StudioError, ValueError):
    """A bad preset, style name, parameter or ``--set`` value."""


class LutError(StudioError, ValueError):
    """A colour LUT file we cannot use (missing, unreadable, malformed); the message names the file and line."""


class OutputError(StudioError, OSError):
    """An output path we must not or cannot write."""


class RenderError(StudioError, RuntimeError):
    """A render that failed while running (a chunk failed, a worker died)."""

    user_error = False


class ModelError(StudioError, RuntimeError):
    """A model that failed while running in a way that is ours to fix (out of memory at the smallest tile on
    every device, a training or export step that failed); the message names the model file. A model the
    user gave that we cannot use is a :class:`BadModelError`."""

    user_error = False


class BadModelError(ModelError, ValueError):
    """A model file the user gave (or registered) that we cannot use: missing, not ONNX, unreadable, an input
    layout we do not support, a fixed input too small to tile with, a checksum that does not match. Exit 2:
    running it again fails the same way, so a queue fails the job at once instead of retrying."""

    user_error = True


class DiskFullError(StudioError, OSError):
    """A disk with no room left (ENOSPC, EDQUOT, SQLite's "database or disk is full"), or too little free space to
    start a job; the message names the disk (its mount point and the folder written) and the space needed.

    ``user_error`` stays True (CLI exit 2): nothing of ours failed, the fix is on the user's side (free space
    or choose another disk), and a queued job fails at once instead of filling the disk three times.

    ``mount`` (the disk's mount point) and ``short_bytes`` (how much more room the work needed, 0 when unknown)
    are set where they are known, so a supervisor can be told "free 3 GB on /data" (:mod:`core.studio.advice`)."""

    mount: str = ""
    short_bytes: int = 0


class DatabaseCorruptError(StudioError, RuntimeError):
    """A studio database SQLite cannot read (not a database, a damaged page); the message names the file and
    the repair (``python -m scripts.cli queue repair``). Exit 1: the file is ours, not something the user gave."""

    user_error = False


class ClusterMismatchError(StudioError, RuntimeError):
    """A Dask cluster whose workers run other code than ours (cannot import the project, another version of it,
    of Python or of a package that renders); the message names the address and what differs. Exit 2: the
    cluster is the user's to fix (or not to use)."""


class DownloadError(StudioError, ConnectionError):
    """A download the network stopped: no connection (refused, no DNS, timed out) or a transfer cut off
    mid-file; the message names the URL and what to do (run again to resume, or fetch it elsewhere and
    register the file). Exit 2: nothing of ours failed, and a file kept for resuming is not registered."""
