"""The commands that read a video and print what they found, as JSON: ``probe`` (streams, timing, colour),
``analyze`` (shots and their difficulty) and ``metrics`` (a render's quality against its input).

They write nothing but what ``--jsonl`` asks for; progress goes to stderr, so stdout stays one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_probe_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="print what the studio knows about a video, as JSON")
    p.add_argument("input")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    from core.video.probe import probe

    print(json.dumps(probe(args.input).to_json(), indent=2))
    return 0


def add_analyze_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="shots, nine scores per shot and a difficulty class, as JSON")
    p.add_argument("input")
    p.add_argument("--every", type=int, default=2, help="measure flow and scores on every Nth frame")
    p.add_argument("--long-side", type=int, default=256, help="long side of the analysis copy, pixels")
    p.add_argument("--per-frame", action="store_true", help="include the per-frame arrays")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.quality.shots import analyze

    bar = tqdm(unit="frame", desc="analyse", dynamic_ncols=True, disable=args.quiet or None, file=sys.stderr)

    def on_progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = analyze(args.input, every=args.every, long_side=args.long_side, on_progress=on_progress)
    finally:
        bar.close()
    print(json.dumps(result.to_json(per_frame=args.per_frame), indent=2))
    return 0


def add_metrics_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help="quality metrics of a render against its input: JSON summary on stdout")
    p.add_argument("input", help="the source video")
    p.add_argument("output", help="the rendered video (same frame count)")
    p.add_argument("--jsonl", default=None, metavar="FILE", help="also write per-frame metrics, one JSON a line")
    p.add_argument("--long-side", type=int, default=320, help="measure on frames downscaled to this (0 = full)")
    p.add_argument("--every", type=int, default=1, help="measure every N-th frame")
    p.add_argument("--flow-preset", default="fast", choices=["ultrafast", "fast", "medium"],
                   help="DIS optical-flow preset of the warping error")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_metrics)


def cmd_metrics(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.quality.metrics import MetricsConfig, compare_videos, write_jsonl

    cfg = MetricsConfig(long_side=args.long_side, every=args.every, flow_preset=args.flow_preset)
    _check_measurable(args.input, cfg.long_side)
    bar = tqdm(unit="frame", desc="metrics", dynamic_ncols=True, disable=args.quiet or None, file=sys.stderr)

    def on_progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        records, summary = compare_videos(Path(args.input), Path(args.output), cfg, on_progress=on_progress)
    finally:
        bar.close()
    if args.jsonl:
        write_jsonl(records, Path(args.jsonl))
    print(json.dumps(summary, indent=2))
    return 0


def _check_measurable(path: str, long_side: int) -> None:
    """Refuse a clip whose working copy (longer side ``long_side``) is under 7 px across, SSIM's window, with
    one line naming it, instead of scikit-image's message from the first frame."""
    from core.errors import UnsupportedVideoError
    from core.video.probe import probe

    info = probe(path)
    w, h = info.width, info.height
    k = long_side / max(w, h) if 0 < long_side < max(w, h) else 1.0
    if min(round(w * k), round(h * k)) < 7:
        raise UnsupportedVideoError(f"{path}: {w}x{h} frames are too small to measure (SSIM needs 7 px across "
                                    f"the {min(long_side or max(w, h), max(w, h))}-px working copy)")
