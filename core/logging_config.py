"""Logging: a daily rotating file under ``$VP_HOME/logs`` plus the console (warnings, or info with -v)."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from .paths import studio_home

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def setup_logging(verbose: bool = False, keep_days: int = 14) -> None:
    """Configure the root logger once; safe to call again (handlers are replaced, not stacked)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_studio", False):
            root.removeHandler(h)
            h.close()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    console._studio = True  # type: ignore[attr-defined]
    root.addHandler(console)
    try:
        folder = studio_home() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.TimedRotatingFileHandler(folder / "studio.log", when="midnight", backupCount=keep_days,
                                                       encoding="utf-8", delay=True)
    except OSError as exc:  # a read-only home must not stop a render
        console.handle(logging.makeLogRecord({"levelno": logging.WARNING, "levelname": "WARNING",
                                              "msg": f"file logging off: {exc}"}))
        return
    fh.setLevel(logging.DEBUG if verbose else logging.INFO)
    fh.setFormatter(logging.Formatter(FORMAT))
    fh._studio = True  # type: ignore[attr-defined]
    root.addHandler(fh)
