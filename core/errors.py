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
    """An ONNX model we cannot run: unreadable, an input layout we do not support, or out of memory at the
    smallest tile on every device; the message names the model file."""

    user_error = False
