"""The demo: render a sample clip through every style and print where the outputs are.

``python -m scripts.demo [--input CLIP] [--out DIR]``. Without ``--input`` it makes a synthetic
640x360 clip with audio and a scene cut (no download), so it works on a fresh, offline machine.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

from core.errors import StudioError


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from core.logging_config import setup_logging
    from core.paths import studio_home
    from core.render.pipeline import render
    from core.render.spec import build_job
    from core.video.synthetic import ClipSpec, make_clip
    from stylizers import STYLIZERS

    ap = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--input", help="clip to render (default: a generated sample)")
    ap.add_argument("--out", help="output folder (default: $VP_HOME/demo)")
    ap.add_argument("--preset", default="balanced")
    args = ap.parse_args(argv)
    setup_logging()
    out_dir = Path(args.out) if args.out else studio_home() / "demo"
    try:
        if args.input:
            src = Path(args.input)
        else:
            src = studio_home() / "samples" / "sample_640x360.mp4"
            if not src.exists():
                src.parent.mkdir(parents=True, exist_ok=True)
                print(f"making a sample clip: {src}")
                make_clip(src, ClipSpec(width=640, height=360, frames=150, fps=Fraction(25), audio=True,
                                        cut_at=90, gop=25, seed=7))
        outputs = []
        for style, cls in STYLIZERS.items():
            if cls.requires:
                print(f"skipped {style}: needs {cls.requires}")
                continue
            out = out_dir / f"{src.stem}_{style}.mp4"
            with tqdm(unit="frame", desc=f"{style:>8}", dynamic_ncols=True) as bar:
                def on_progress(done: int, total: int, bar: tqdm = bar) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                result = render(build_job(src, out, style, args.preset), on_progress=on_progress)
            outputs.append((style, result))
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if exc.user_error else 1
    print(f"\nsource: {src}")
    for style, r in outputs:
        print(f"  {style:>8}: {r.output}  ({r.frames} frames, {r.fps:.1f} fps)")
    print("\nnext: python -m scripts.cli render IN -o OUT --style cartoon   (see README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
