"""Where the studio's files are: its data folder and the repository's bundled folders.

Imports nothing of ours, so every package may use it.
"""

from __future__ import annotations

import os
from pathlib import Path


def studio_home() -> Path:
    """The studio's data folder (work dirs, logs, custom presets): ``$VP_HOME`` or ``~/.video-producer``."""
    return Path(os.environ.get("VP_HOME") or Path.home() / ".video-producer")
