"""Options that several commands take, defined once so that ``render``, ``preview``, ``autotune``, ``watch``
and ``queue add`` spell them, their defaults and their help the same way."""

from __future__ import annotations

import argparse


def add_job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--style", default="none", help="style name (see `styles`)")
    p.add_argument("--preset", default="balanced", help="preset name or path to a preset YAML")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a style parameter or a preset field (encoder.crf=18); repeatable")


#: core.video.stitch.KEEP_CHOICES, not imported for the parser: it loads PyAV, which most commands do not need
KEEP_CHOICES = ("all", "none")


def add_track_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio", choices=KEEP_CHOICES, default="all",
                   help="the input's audio tracks: all (default; with their language and title) or none")
    p.add_argument("--subtitles", choices=KEEP_CHOICES, default="all",
                   help="the input's subtitle tracks: all (default; converted where the container needs it, e.g. "
                        "to mov_text in .mp4) or none")
