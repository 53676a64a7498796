"""Speed and memory targets, measured side by side in one run and printed as ratios.

``python -m scripts.bench [--frames 300] [--only SECTIONS]``. Timings on shared machines are noisy:
compare the ratios printed here, measured in the same run, not absolute numbers across runs.

This module is the command: it parses the options, makes the input clips once, runs the chosen sections
of :data:`SECTIONS` in their order and publishes what they measured. The figures go to
``docs/perf/benchmark.json`` (a partial ``--only`` run replaces just its sections, each dated), a Plotly
chart of them to ``docs/perf/benchmark.html``, and the README's performance tables are regenerated from
the JSON (:mod:`scripts.bench.report`); ``--no-write`` only prints. The targets are listed in
:mod:`scripts.bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scripts.bench import neural, profile, render, speed, stages, studio
from scripts.bench.measure import ROOT, SHARED_CLIP, Bench, compile_sources, make_input


@dataclass(frozen=True)
class Section:
    """A benchmark section: what runs it, and the report keys it writes (a partial run replaces those)."""

    run: Callable[[Bench], None]
    keys: tuple[str, ...]


#: sections in run order, and the report keys each one writes; ``stages`` comes before the in-process
#: sections: their threads (ONNX Runtime, Streamlit) linger
SECTIONS: dict[str, Section] = {
    "identity": Section(render.identity, ("identity_vs_ffmpeg", "identity_vs_ffmpeg_3x")),
    "lut": Section(render.lut, ("lut",)),
    "workers": Section(render.workers, ("workers",)),
    "memory": Section(render.memory, ("memory",)),
    "speed": Section(speed.speed, ("speed", "styles")),
    "stages": Section(stages.stages, ("stages",)),
    "profile": Section(profile.profile, ("profile",)),
    "dask": Section(render.dask, ("dask",)),
    "neural": Section(neural.neural, ("neural",)),
    "gpu": Section(neural.gpu, ("gpu",)),
    "bundled": Section(neural.bundled, ("bundled",)),
    "neural_flicker": Section(neural.flicker, ("neural_flicker",)),
    "loop": Section(studio.loop, ("loop",)),
    "studio": Section(studio.studio, ("studio",)),
}


#: what ``--quick`` runs (CI): the renders against FFmpeg's transcode, in a reduced form
QUICK_SECTIONS = ("identity", "speed")
QUICK_FRAMES = 60


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=None, help=f"clip length (default 300; {QUICK_FRAMES} with --quick)")
    ap.add_argument("--styles", default="none,pencil,cartoon,comic,cinematic")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs per side in the ffmpeg comparison")
    ap.add_argument("--stage-loops", type=int, default=3,
                    help="the stages section renders a shot of this many times --frames (the clip looped)")
    ap.add_argument("--only", default=None, help="sections to run (default: all; with --quick, its sections)")
    ap.add_argument("--baseline", default="", metavar="REF",
                    help="the profile section also measures this git commit's stage costs, beside this checkout's")
    ap.add_argument("--json", help="also write this run's figures as JSON here")
    ap.add_argument("--out", default=str(ROOT / "docs" / "perf"), help="where benchmark.json and .html go")
    ap.add_argument("--no-write", action="store_true", help="print only: no JSON, chart or README update")
    ap.add_argument("--quick", action="store_true",
                    help=f"CI's reduced form: the {', '.join(QUICK_SECTIONS)} sections (unless --only), "
                         f"{QUICK_FRAMES}-frame clips, 720p only, one round; prints only")
    args = ap.parse_args(argv)
    if args.quick:
        args.no_write = True  # a reduced run's figures never replace a full run's
        args.repeat = 1
    if args.only is None:
        args.only = ",".join(QUICK_SECTIONS if args.quick else SECTIONS)
    if args.frames is None:
        args.frames = QUICK_FRAMES if args.quick else 300
    cores = os.cpu_count() or 1
    report: dict = {"cores": cores, "frames": args.frames,  # the source as the README shows it, on any checkout
                    "source": f"../shared/media/{SHARED_CLIP.name}" if SHARED_CLIP.is_file() else "synthetic"}
    with tempfile.TemporaryDirectory(prefix="vp-bench-") as tmp_s:
        tmp = Path(tmp_s)
        home = tmp / "home"
        os.environ["VP_HOME"] = str(home)  # fresh work dirs: no render resumes from a previous one
        print(f"inputs: {args.frames}-frame H.264 clips from {report['source']}; {cores} cores; "
              f"bytecode: {compile_sources()} modules compiled")
        sizes = ((1280, 720),) if args.quick else ((1280, 720), (1920, 1080))
        clips: dict = {h: make_input(tmp / f"in_{h}p.mp4", w, h, args.frames) for w, h in sizes}
        clips["tiny"] = make_input(tmp / "in_tiny.mp4", 320, 180, 2)

        only = set(args.only.split(","))
        unknown = only - set(SECTIONS)
        if unknown:
            ap.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
        bench = Bench(frames=args.frames, repeat=args.repeat, stage_loops=args.stage_loops,
                      styles=args.styles.split(","), cores=cores, clips=clips, tmp=tmp, home=home, report=report,
                      quick=args.quick, baseline=args.baseline)
        for name, section in SECTIONS.items():
            if name in only:
                section.run(bench)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if not args.no_write:
        _publish(report, only, Path(args.out))
    return 0


def _publish(report: dict, only: set[str], out: Path) -> None:
    """Merge this run's sections into ``out/benchmark.json`` (each dated), chart it, regenerate the README."""
    from core import atomic
    from scripts.bench import report as perf_report

    path = out / "benchmark.json"
    try:
        merged = json.loads(path.read_text())
    except (OSError, ValueError):
        merged = {}
    today = time.strftime("%Y-%m-%d")
    merged.setdefault("sections", {})
    for name in only:
        for key in SECTIONS[name].keys:
            if key in report:
                merged[key] = report[key]
        merged["sections"][name] = today
    for key in ("cores", "frames", "source"):
        merged[key] = report[key]
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, merged)
    merged = json.loads(path.read_text())  # as committed (sorted keys): the README test regenerates from that
    atomic.write_bytes(out / "benchmark.html", perf_report.html(merged).encode())
    changed = perf_report.update_readme(ROOT / "README.md", merged)
    print(f"\nwrote {path.relative_to(ROOT)} and benchmark.html; README tables {'updated' if changed else 'unchanged'}")


if __name__ == "__main__":
    sys.exit(main())
