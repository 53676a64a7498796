"""The commands that make pictures: ``render`` a whole video, ``preview`` one frame, and ``hardware``, what
the machine can render with (GPUs, encoders, a codec per preset).

Each shell builds a job from its options and calls one core function; the pipeline and tqdm are imported inside
the command, so that the other commands start without them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scripts.cli.args import add_job_args, add_track_args


def add_render_parser(sub: argparse._SubParsersAction) -> None:
    from core.video.reader import DECODERS

    p = sub.add_parser("render", help="render a video through a style (resumes automatically)")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    add_job_args(p)
    p.add_argument("--chunk-seconds", type=float, default=None, help="target chunk length (default: preset)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--keep-work", action="store_true", help="keep chunk files after publishing")
    add_track_args(p)
    p.add_argument("--pipeline", choices=("auto", "on", "off"), default="auto",
                   help="overlap each chunk's decode, stylize and encode in threads: on, off (one loop per chunk), "
                        "or auto (on when the chunks running at once leave cores idle); the output is the same")
    p.add_argument("--executor", default=None, metavar="URL",
                   help="where chunks run: local (default: a process pool here) or dask://HOST:PORT (an existing "
                        "Dask cluster; input and $VP_HOME must be on a path every worker sees)")
    p.add_argument("--decode", choices=DECODERS, default="cpu",
                   help="where frames decode: cpu (default) or cuda (NVDEC on an NVIDIA GPU, which frees the CPU's "
                        "decode share for the stages; falls back to the CPU, and says why, where it cannot open); "
                        "the output is the same")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    # the workers' forkserver was started before the parsers' imports (scripts.cli._renders_here)
    from tqdm import tqdm

    from core.render.executors import make_executor
    from core.render.pipeline import render
    from core.render.spec import build_job, parse_sets

    source = args.input if args.executor in (None, "local") else Path(args.input).absolute()  # workers' cwd differs
    spec = build_job(source, args.output, args.style, args.preset, parse_sets(args.sets), args.chunk_seconds,
                     audio=args.audio, subtitles=args.subtitles)
    bar: tqdm | None = None

    def on_start(total: int, done: int) -> None:
        nonlocal bar
        if done:
            print(f"resuming: {done} of {total} frames already rendered", file=sys.stderr)
        bar = tqdm(total=total, initial=done, unit="frame", desc=Path(args.output).name, dynamic_ncols=True,
                   disable=args.quiet or None)

    def on_progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    try:
        with make_executor(args.executor) as (executor, cluster_workers):
            result = render(spec, workers=cluster_workers or args.workers, executor=executor, on_start=on_start,
                            on_progress=on_progress, keep_work=args.keep_work,
                            pipelined={"auto": None, "on": True, "off": False}[args.pipeline], decode=args.decode)
    finally:
        if bar is not None:
            bar.close()
    print(result.summary())
    perf = result.bottleneck()
    if perf is not None and not args.quiet:
        print(perf.line())
    return 0


def add_preview_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="write one stylized frame as an image")
    p.add_argument("input")
    p.add_argument("--at", type=float, default=0.0, help="time in seconds")
    p.add_argument("-o", "--output", required=True, help=".png or .jpg")
    add_job_args(p)
    p.set_defaults(func=cmd_preview)


def cmd_preview(args: argparse.Namespace) -> int:
    from core.render.preview import preview_frame
    from core.render.spec import build_job, parse_sets
    from core.video.stills import write_image

    out = Path(args.output)
    spec = build_job(args.input, out.with_suffix(".mp4"), args.style, args.preset, parse_sets(args.sets))
    write_image(out, preview_frame(spec, args.at))
    print(f"wrote {out} ({args.style} at {args.at} s)")
    return 0


def add_hardware_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hardware", help="GPUs, encoders that open, a codec per preset, CPU, RAM, disk")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_hardware)


def cmd_hardware(args: argparse.Namespace) -> int:
    from core.hardware import report

    rep = report()
    print(rep.to_json() if args.json else "\n".join(rep.lines()))
    return 0
