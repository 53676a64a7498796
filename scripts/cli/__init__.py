"""The studio's command line: ``python -m scripts.cli COMMAND ...`` (see ``--help``).

A thin shell: parse arguments, build a job, call one core function, print the result.

Exit codes, the same for every command (:func:`main`): 0 done; 2 for anything the user gave (a file, model,
LUT, parameter or path: fix it and run again); 1 for a failure of ours (a bug, a crashed worker: the traceback
goes to the log file, never the terminal); 130 interrupted (run it again to resume). Every error is one line
on stderr, and never quotes the content of a file the user did not mean to show.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

from core.errors import ConfigError, StudioError

EXIT_USER, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
#: An OSError with one of these on a path is about that path (the user's to fix): exit 2, not a failure of ours.
PATH_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EROFS,
                         errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST, errno.ENXIO, errno.ENOSPC, errno.EDQUOT,
                         errno.EFBIG, errno.ETXTBSY})


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``error: PROG: MESSAGE (see PROG --help)``, exit 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _add_job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--style", default="none", help="style name (see `styles`)")
    p.add_argument("--preset", default="balanced", help="preset name or path to a preset YAML")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a style parameter or a preset field (encoder.crf=18); repeatable")


#: core.video.stitch.KEEP_CHOICES, not imported for the parser: it loads PyAV, which most commands do not need
KEEP_CHOICES = ("all", "none")


def _add_track_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio", choices=KEEP_CHOICES, default="all",
                   help="the input's audio tracks: all (default; with their language and title) or none")
    p.add_argument("--subtitles", choices=KEEP_CHOICES, default="all",
                   help="the input's subtitle tracks: all (default; converted where the container needs it, e.g. "
                        "to mov_text in .mp4) or none")


def cmd_render(args: argparse.Namespace) -> int:
    from core.render.pool import warm_up

    if args.executor in (None, "local"):
        warm_up()  # the worker forkserver imports while we do
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


def cmd_preview(args: argparse.Namespace) -> int:
    from core.render.pipeline import preview_frame
    from core.render.spec import build_job, parse_sets
    from core.video.stills import write_image

    out = Path(args.output)
    spec = build_job(args.input, out.with_suffix(".mp4"), args.style, args.preset, parse_sets(args.sets))
    write_image(out, preview_frame(spec, args.at))
    print(f"wrote {out} ({args.style} at {args.at} s)")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from core.video.probe import probe

    print(json.dumps(probe(args.input).to_json(), indent=2))
    return 0


def cmd_hardware(args: argparse.Namespace) -> int:
    from core.hardware import report

    rep = report()
    print(rep.to_json() if args.json else "\n".join(rep.lines()))
    return 0


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


def cmd_styles(args: argparse.Namespace) -> int:
    from core.config import schema
    from stylizers import STYLIZERS

    if args.json:
        print(json.dumps({n: {"description": c.description, "params": schema(c.Params)}
                          for n, c in STYLIZERS.items()}, indent=2))
        return 0
    for name, cls in STYLIZERS.items():
        print(f"{name}: {cls.description}" + (f" (needs {cls.requires})" if cls.requires else ""))
        for f in schema(cls.Params):
            rng = f" [{f['min']} .. {f['max']}]" if "min" in f else ""
            choices = f" ({' | '.join(map(str, f['choices']))})" if "choices" in f else ""
            help_ = f"  {f['help']}" if "help" in f else ""
            print(f"    {f['name']} = {f['default']!r}  ({f['type']}){rng}{choices}{help_}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    import yaml

    from core.config import to_dict
    from core.presets import apply_sets, list_presets, save_preset
    from core.render.spec import parse_sets
    from stylizers import checked_preset

    if args.action == "list":
        for name in list_presets():
            print(f"{name}: {checked_preset(name).description}")
    elif args.action == "show":
        print(yaml.safe_dump(to_dict(checked_preset(args.name)), sort_keys=False), end="")
    else:
        preset = apply_sets(checked_preset(args.base), parse_sets(args.sets))
        print(f"saved {save_preset(preset, args.name)}")
    return 0


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


def cmd_lut(args: argparse.Namespace) -> int:
    from core.color import apply_u8, bake_u8, read_lut, summarize

    lut = read_lut(args.lut)
    if args.lut_action == "check":
        print("\n".join(summarize(lut).lines()))
        return 0
    from core.video.stills import read_image, write_image

    rgb = read_image(args.input)
    out = write_image(args.output, apply_u8(bake_u8(lut), rgb))
    print(f"wrote {out} ({lut.name}, {rgb.shape[1]}x{rgb.shape[0]})")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from core.ml import registry

    if args.action == "list":
        entries = registry.list_models()
        if not entries:
            print("no models registered (add one with `download-model`)")
        for e in entries:
            mark = "*" if registry.info(e.name).active == e.version else " "
            fps = f", {e.measured_fps:.1f} fps" if e.measured_fps is not None else ""
            print(f"{mark} {e.spec}  {e.style or '-'}  ({e.licence or 'licence unknown'}{fps})  {e.path}")
        return 0
    if not args.target:
        raise ConfigError(f"models {args.action}: give a model " + ("NAME@VERSION" if args.action == "activate"
                                                                    else "NAME"))
    if args.action == "activate":
        name, _, version = args.target.partition("@")
        if not version.isdigit():
            raise ConfigError(f"models activate: expected NAME@VERSION, got {args.target!r}")
        print(f"active: {registry.activate(name, int(version)).spec}")
    elif args.action == "rollback":
        print(f"active: {registry.rollback(args.target).spec}")
    else:
        info = registry.info(args.target)
        print(json.dumps({"name": info.name, "active": info.active, "history": list(info.history),
                          "versions": [{**e.to_json(), "path": str(e.path)} for e in info.versions]}, indent=2))
    return 0


def cmd_download_model(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.ml.registry import download

    bar: tqdm | None = None

    def on_progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=args.name,
                       dynamic_ncols=True, disable=args.quiet or None)
        bar.update(done - bar.n)

    is_url = args.source.startswith(("http://", "https://"))
    try:
        entry = download(args.source, args.sha256, args.name, on_progress=on_progress if is_url else None,
                         activate=not args.no_activate)
    finally:
        if bar is not None:
            bar.close()
    print(f"registered {entry.spec} -> {entry.path}")
    return 0


def _calibration_frames(clips: list[str], per_clip: int = 8) -> list:
    """A few frames spread over each clip, for int8 calibration."""
    from core.video.probe import probe
    from core.video.reader import Reader

    frames = []
    for clip in clips:
        info = probe(clip)
        picks = sorted({i * info.frame_count // per_clip for i in range(per_clip)})
        with Reader(info) as reader:
            frames += [f.rgb for i in picks for f in reader.frames(i, i + 1)]
    return frames


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from trainer.finetune import EpochRecord, FinetuneConfig
    from trainer.train import train_model

    cfg = FinetuneConfig(epochs=args.epochs, batch=args.batch, crop=args.crop, lr=args.lr, patience=args.patience,
                         device=args.device)
    bar: tqdm | None = None

    def on_step(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=done - 1, unit="step", desc="fine-tune", dynamic_ncols=True,
                       disable=args.quiet or None)
        bar.update(done - bar.n)

    def on_epoch(r: EpochRecord) -> None:
        msg = (f"epoch {r.epoch}/{args.epochs}  loss {r.train_loss:.4f}  val {r.val_loss:.4f}"
               f"{'  (best)' if r.improved else ''}  {r.seconds:.1f} s")
        if bar is not None:
            bar.set_postfix_str(f"epoch {r.epoch}, loss {r.train_loss:.4f}, val {r.val_loss:.4f}")
            bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr)

    try:
        report = train_model(args.pairs, args.base, args.name, cfg, folder=args.run, resume=args.run is not None,
                             int8=args.int8, min_psnr=args.min_psnr,
                             calibration=_calibration_frames(args.calibrate), activate=not args.no_activate,
                             on_step=on_step, on_epoch=on_epoch)
    finally:
        if bar is not None:
            bar.close()
    run, e = report.run, report.export
    worst = max(err for _, err in e.max_abs_error)
    print(f"best val loss {run.best_val:.4f} (from {run.first_val:.4f}) after {run.epochs_run} epochs"
          f"{', stopped early' if run.stopped_early else ''}; run folder {run.folder}")
    print(f"exported: parity max error {worst:.1e} (<= {e.tol:g}), {e.parameters} parameters, "
          f"{e.file_bytes / 1e6:.2f} MB")
    if report.quant is not None and not report.int8_refused:
        q = report.quant
        print(f"int8: {q.psnr_db:.1f} dB vs fp32 (gate {q.min_psnr:g}), {q.speed_ratio:.2f}x fp32 speed")
    if report.int8_refused:
        print(f"int8 refused, registered fp32: {report.int8_refused}")
    state = "active" if models_active(report.entry) else "not active"
    print(f"registered {report.entry.spec} ({state}), {report.fps:.2f} fps at 1280x720 -> {report.entry.path}")
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from core.learn import feedback

    if args.action == "list":
        records = feedback.list_records(clip=args.clip, rater=args.rater)
        if not records:
            print("no feedback recorded yet (the Style Lab's A/B page records it)")
        for r in records:
            at = f"frame {r.frame_index}" if r.time_range is None else f"{r.time_range[0]:g}-{r.time_range[1]:g}s"
            fixes = f"  (corrects {r.supersedes})" if r.supersedes else ""
            a, b = (f"{v.style}{f' ({v.model})' if v.model else ''}" for v in (r.a, r.b))
            print(f"{r.id}  {r.created}  {r.clip} {at}  A={a}  B={b}  choice={r.choice}"
                  f"  rating={r.rating or '-'}  by {r.rater}{fixes}")
    elif args.action == "export":
        print(f"wrote {feedback.export_jsonl(args.path)} records to {args.path}")
    elif args.action == "fit":
        from core.learn.preference import PreferenceModel

        model = PreferenceModel.fit(feedback.ab_dataset())
        path = model.save()
        print("\n".join(model.report.lines()))
        print(f"saved the preference model to {path} (autotune and the Style Lab use it from now on)")
    else:
        if not args.record_id.isdigit():
            raise ConfigError(f"feedback approve: expected a record id, got {args.record_id!r}")
        folder = feedback.approve(int(args.record_id), args.variant, args.pair_set)
        print(f"approved {feedback.pair_stem(int(args.record_id), args.variant)} into {folder} "
              f"(train with --pairs {folder})")
    return 0


def models_active(entry) -> bool:
    from core.ml import registry

    return registry.info(entry.name).active == entry.version


def cmd_autotune(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.learn.autotune import TuneConfig, tune
    from core.learn.preference import PreferenceModel, default_path
    from core.render.spec import parse_sets

    restrict: dict[str, str] = {}
    for item in args.params:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise ConfigError(f"--param {item!r}: expected NAME=LO:HI[:STEPS] or NAME=A,B,C")
        restrict[name.strip()] = spec.strip()
    use_model = args.objective == "preference" or (args.objective == "auto" and default_path().is_file())
    model = PreferenceModel.load() if use_model else None
    bar: tqdm | None = None

    def on_progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="candidate", desc=f"autotune {args.style}", dynamic_ncols=True,
                       disable=args.quiet or None)
        bar.update(done - bar.n)

    try:
        result = tune(args.input, args.style, args.budget, preset=args.preset, sets=parse_sets(args.sets),
                      restrict=restrict, model=model, config=TuneConfig(frames=args.frames, edge_floor=args.edge_floor),
                      seed=args.seed, pairs=args.pairs, on_progress=on_progress)
    finally:
        if bar is not None:
            bar.close()
    print("\n".join(result.lines(top=args.top)))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from core.studio.worker import default_worker_id, run_worker

    worker = default_worker_id()
    where = args.db or "the studio database"
    print(f"worker {worker}: running queued jobs from {where}"
          f"{' until the queue is empty' if args.once else ' (Ctrl-C to stop; running jobs resume later)'}",
          file=sys.stderr)
    n = run_worker(args.db, worker_id=worker, cpu_slots=args.slots, gpu_slots=args.gpu_slots, poll_s=args.poll,
                   lease_s=args.lease, once=args.once, metrics_port=args.metrics_port or None)
    print(f"worker {worker}: started {n} job{'s' if n != 1 else ''}", file=sys.stderr)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    import threading

    from core.studio.watch import WatchFolder, interrupt_on_signals, load_watch_settings, run_watchers, watch_path

    if args.folder is not None:
        folders = (WatchFolder(folder=str(Path(args.folder).absolute()), style=args.style, preset=args.preset,
                               out=str(Path(args.out).absolute()) if args.out else "renders", sets=tuple(args.sets),
                               settle_s=args.settle),)
    else:
        settings = load_watch_settings()
        if not settings.enabled:
            raise ConfigError(f"{watch_path()}: watch folders are not enabled there (give a DIR, or set enabled: true)")
        folders = settings.folders
    try:
        with interrupt_on_signals():  # SIGTERM (a service manager) stops cleanly, like Ctrl-C
            print(f"watching {', '.join(f.folder for f in folders)} (Ctrl-C to stop)", file=sys.stderr)
            run_watchers(folders, threading.Event(), db_path=args.db)
    except KeyboardInterrupt:
        if not args.verbose:  # with -v the console already shows run_watchers' "watch: stopped" log line
            print("watch: stopped", file=sys.stderr)
    return 0


def _queue_spec(args: argparse.Namespace) -> dict:
    """The job spec of ``queue add KIND``, from the same options the direct commands take."""
    from core.render.spec import parse_sets

    if args.kind == "render":
        return {"input": args.input, "output": args.output, "style": args.style, "preset": args.preset,
                "sets": parse_sets(args.sets), "chunk_seconds": args.chunk_seconds, "workers": args.workers,
                "audio": args.audio, "subtitles": args.subtitles}
    if args.kind == "train":
        return {"pairs": args.pairs, "base": args.base, "name": args.name, "epochs": args.epochs, "batch": args.batch,
                "crop": args.crop, "lr": args.lr, "patience": args.patience, "device": args.device,
                "int8": args.int8, "min_psnr": args.min_psnr}
    return {"input": args.input, "style": args.style, "preset": args.preset, "sets": parse_sets(args.sets),
            "params": parse_sets(args.params), "budget": args.budget, "frames": args.frames, "seed": args.seed}


def _job_line(job) -> str:
    s = job.spec
    what = {"render": lambda: f"{Path(s['input']).name} -> {s['output']} ({s['style']}, {s['preset']})",
            "train": lambda: f"{s['pairs']} on {s['base']}" + (f" -> {s['name']}" if s["name"] else ""),
            "autotune": lambda: f"{Path(s['input']).name} ({s['style']}, budget {s['budget']})"}[job.kind]()
    tail = job.error if job.state == "failed" else job.message
    pending = f" ({job.requested} requested)" if job.requested else ""
    tries = f"  [{job.tries()}]" if job.attempts or job.lost else ""
    return (f"{job.id:>5}  {job.state + pending:<12} {job.kind:<8} {job.progress * 100:5.1f}%  "
            f"{'gpu' if job.gpu else 'cpu'}  {what}  {tail}{tries}").rstrip()


def cmd_queue(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from core.studio.queue import JobQueue

    if args.action == "repair":  # before JobQueue, which refuses a damaged file
        from core.studio.repair import repair

        print(repair(args.db).line())
        return 0
    queue = JobQueue(args.db)
    if args.action == "add":
        job_id = queue.add(args.kind, _queue_spec(args), gpu=args.gpu, max_attempts=args.max_attempts)
        print(f"queued job {job_id} ({args.kind})")
    elif args.action == "list":
        jobs = queue.list(args.state or None)
        if args.json:
            print(json.dumps([asdict(j) for j in jobs], indent=2))
        elif not jobs:
            print("the queue is empty")
        for job in jobs if not args.json else []:
            print(_job_line(job))
    elif args.action == "events":
        events = queue.events(args.job_id)
        if args.json:
            print(json.dumps([asdict(e) for e in events], indent=2))
        for e in events if not args.json else []:
            print(f"{e.time}  {e.stage:<9} {e.percent:5.1f}%  {e.message}")
    else:
        job = getattr(queue, args.action)(args.job_id)
        print(_job_line(job))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from core.video.reader import DECODERS

    parser = _Parser(prog="python -m scripts.cli", description="Video Producer studio")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to the console")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("render", help="render a video through a style (resumes automatically)")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    _add_job_args(p)
    p.add_argument("--chunk-seconds", type=float, default=None, help="target chunk length (default: preset)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--keep-work", action="store_true", help="keep chunk files after publishing")
    _add_track_args(p)
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

    p = sub.add_parser("preview", help="write one stylized frame as an image")
    p.add_argument("input")
    p.add_argument("--at", type=float, default=0.0, help="time in seconds")
    p.add_argument("-o", "--output", required=True, help=".png or .jpg")
    _add_job_args(p)
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("probe", help="print what the studio knows about a video, as JSON")
    p.add_argument("input")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("hardware", help="GPUs, encoders that open, a codec per preset, CPU, RAM, disk")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_hardware)

    p = sub.add_parser("analyze", help="shots, nine scores per shot and a difficulty class, as JSON")
    p.add_argument("input")
    p.add_argument("--every", type=int, default=2, help="measure flow and scores on every Nth frame")
    p.add_argument("--long-side", type=int, default=256, help="long side of the analysis copy, pixels")
    p.add_argument("--per-frame", action="store_true", help="include the per-frame arrays")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("styles", help="list styles and their parameters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_styles)

    p = sub.add_parser("presets", help="list, show or save presets")
    p.add_argument("action", choices=["list", "show", "save"])
    p.add_argument("name", nargs="?", default="balanced", help="preset to show, or name to save as")
    p.add_argument("--from", dest="base", default="balanced", help="preset to start from (save)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("models", help="list registered models, activate or roll back a version, show one")
    p.add_argument("action", choices=["list", "activate", "rollback", "info"])
    p.add_argument("target", nargs="?", default="", help="NAME@VERSION (activate) or NAME (rollback, info)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("download-model", help="fetch a model (URL or path), verify its SHA-256, register it")
    p.add_argument("source", metavar="URL_OR_PATH")
    p.add_argument("--sha256", required=True, help="expected SHA-256 of the file (64 hex digits)")
    p.add_argument("--name", required=True, help="registry name; the file becomes its next version")
    p.add_argument("--no-activate", action="store_true", help="register without making it the active version")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download_model)

    p = sub.add_parser("train", help="fine-tune a neural style on input/target pairs, export, register a version")
    p.add_argument("--pairs", required=True, metavar="DIR", help="folder with inputs/ and targets/ (same names)")
    p.add_argument("--base", required=True, help="registered model NAME[@VERSION], or compact/johnson from scratch")
    p.add_argument("--name", default=None, help="register as this name (default: the base's name)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128, help="training crop side in pixels")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, warm-up then cosine)")
    p.add_argument("--patience", type=int, default=4, help="epochs without improvement before stopping")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--run", default=None, metavar="DIR", help="run folder; an existing one is resumed")
    p.add_argument("--int8", choices=["no", "try", "require"], default="no",
                   help="int8 quantisation: try (fall back to fp32 below the gate) or require")
    p.add_argument("--min-psnr", type=float, default=32.0, help="int8 quality gate vs fp32, dB")
    p.add_argument("--calibrate", action="append", default=[], metavar="CLIP",
                   help="a clip whose frames calibrate int8 (repeatable; the pair inputs are always used)")
    p.add_argument("--no-activate", action="store_true", help="register without making it the active version")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

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

    p = sub.add_parser("lut", help="check a LUT file, or grade an image with it")
    lut_sub = p.add_subparsers(dest="lut_action", required=True)
    q = lut_sub.add_parser("check", help="validate a LUT and print its kind, sizes, domain and behaviour")
    q.add_argument("lut", help=".cube file")
    q.set_defaults(func=cmd_lut)
    q = lut_sub.add_parser("apply", help="grade one image through the baked 8-bit LUT")
    q.add_argument("lut", help=".cube file")
    q.add_argument("input", help=".png or .jpg")
    q.add_argument("-o", "--output", required=True, help=".png or .jpg")
    q.set_defaults(func=cmd_lut)

    p = sub.add_parser("feedback", help="list or export A/B feedback, approve an output as a training pair")
    fb_sub = p.add_subparsers(dest="action", required=True)
    q = fb_sub.add_parser("list", help="one line per A/B record, oldest first")
    q.add_argument("--clip", default=None, help="only this clip's records")
    q.add_argument("--rater", default=None, help="only this rater's records")
    q.set_defaults(func=cmd_feedback)
    q = fb_sub.add_parser("export", help="write every record as JSON lines (atomic)")
    q.add_argument("path", help="output .jsonl file")
    q.set_defaults(func=cmd_feedback)
    q = fb_sub.add_parser("approve", help="make a record's input and chosen output a training pair")
    q.add_argument("record_id", metavar="ID")
    q.add_argument("variant", choices=["A", "B"])
    q.add_argument("--pair-set", default="approved", help="pair folder name under $VP_HOME/pairs")
    q.set_defaults(func=cmd_feedback)
    q = fb_sub.add_parser("fit", help="fit the preference model on every A/B rating, report accuracy, ECE, drivers")
    q.set_defaults(func=cmd_feedback)

    p = sub.add_parser("autotune", help="search a style's parameters on the clip's worst frames, print a ranked table")
    p.add_argument("input")
    _add_job_args(p)
    p.add_argument("--budget", type=int, default=24, help="candidates to evaluate (grid if it fits, else random)")
    p.add_argument("--param", dest="params", action="append", default=[], metavar="NAME=LO:HI[:STEPS]|NAME=A,B,C",
                   help="search only these parameters, over this range or these values; repeatable")
    p.add_argument("--frames", type=int, default=8, help="worst frames to measure each candidate on")
    p.add_argument("--edge-floor", type=float, default=None,
                   help="least mean edge coherence a candidate may have (default: 0.8 x the base's)")
    p.add_argument("--objective", choices=["auto", "metrics", "preference"], default="auto",
                   help="auto: the preference model when one has been fitted, else the metrics")
    p.add_argument("--pairs", type=int, default=0, help="propose this many A/B pairs to rate (preference model)")
    p.add_argument("--top", type=int, default=10, help="rows of the ranked table")
    p.add_argument("--seed", type=int, default=0, help="seed of the random search")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_autotune)
    p = sub.add_parser("worker", help="run queued jobs (render, train, autotune) until stopped")
    p.add_argument("--once", action="store_true", help="exit when nothing is left to run")
    p.add_argument("--slots", type=int, default=None, help="CPU jobs at once, over all workers (default: cores)")
    p.add_argument("--gpu-slots", type=int, default=1, help="GPU jobs at once, over all workers")
    p.add_argument("--lease", type=float, default=30.0, help="seconds without a heartbeat before a job is re-queued")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between looks at an empty queue")
    p.add_argument("--db", default=None, help="studio database (default: $VP_HOME/studio.db)")
    p.add_argument("--metrics-port", type=int, default=0, metavar="N",
                   help="serve Prometheus metrics at http://127.0.0.1:N/metrics (default 0: off)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("watch", help="queue a render for each video that lands in a folder (once per content)")
    p.add_argument("folder", nargs="?", default=None, metavar="DIR",
                   help="folder to watch (default: the folders in $VP_HOME/watch.yaml)")
    _add_job_args(p)
    p.add_argument("--out", default=None, metavar="OUTDIR",
                   help="where renders go (default: $VP_HOME/renders; not the watched folder)")
    p.add_argument("--settle", type=float, default=5.0, metavar="S",
                   help="seconds a file must stop growing before it is queued")
    p.add_argument("--db", default=None, help="studio database (default: $VP_HOME/studio.db)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("queue", help="add, list, pause, resume, cancel or retry queued jobs")
    p.add_argument("--db", default=None, help="studio database (default: $VP_HOME/studio.db)")
    q_sub = p.add_subparsers(dest="action", required=True)
    q = q_sub.add_parser("add", help="queue a job")
    kind_sub = q.add_subparsers(dest="kind", required=True)
    k = kind_sub.add_parser("render", help="queue a render (same options as `render`)")
    k.add_argument("input")
    k.add_argument("-o", "--output", required=True)
    _add_job_args(k)
    k.add_argument("--chunk-seconds", type=float, default=None)
    k.add_argument("--workers", type=int, default=None)
    _add_track_args(k)
    k = kind_sub.add_parser("train", help="queue a fine-tune (same options as `train`)")
    k.add_argument("--pairs", required=True, metavar="DIR")
    k.add_argument("--base", required=True)
    k.add_argument("--name", default=None)
    k.add_argument("--epochs", type=int, default=20)
    k.add_argument("--batch", type=int, default=8)
    k.add_argument("--crop", type=int, default=128)
    k.add_argument("--lr", type=float, default=1e-3)
    k.add_argument("--patience", type=int, default=4)
    k.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    k.add_argument("--int8", choices=["no", "try", "require"], default="no")
    k.add_argument("--min-psnr", type=float, default=32.0)
    k = kind_sub.add_parser("autotune", help="queue a parameter search (same options as `autotune`)")
    k.add_argument("input")
    _add_job_args(k)
    k.add_argument("--budget", type=int, default=24)
    k.add_argument("--param", dest="params", action="append", default=[], metavar="NAME=LO:HI[:STEPS]|NAME=A,B,C")
    k.add_argument("--frames", type=int, default=8)
    k.add_argument("--seed", type=int, default=0)
    for k in kind_sub.choices.values():
        k.add_argument("--gpu", action="store_true", help="needs the GPU (at most one GPU job runs at a time)")
        k.add_argument("--max-attempts", type=int, default=3, help="runs before the job is marked failed")
    q = q_sub.add_parser("list", help="jobs in queue order")
    q.add_argument("--state", action="append", default=[], help="only jobs in this state; repeatable")
    q.add_argument("--json", action="store_true")
    q = q_sub.add_parser("events", help="a job's progress history")
    q.add_argument("job_id", type=int, metavar="ID")
    q.add_argument("--json", action="store_true")
    for action in ("cancel", "pause", "resume", "retry"):
        q = q_sub.add_parser(action, help=f"{action} a job")
        q.add_argument("job_id", type=int, metavar="ID")
    q_sub.add_parser("repair", help="move a damaged studio database aside and start a new one with what can be "
                                    "read (stop the workers first)")
    p.set_defaults(func=cmd_queue)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code (see the module docstring); never raises, never prints a
    traceback unless ``-v`` asks for one."""
    args = build_parser().parse_args(argv)  # a bad option or value: one line and exit 2 (_Parser.error)
    if getattr(args, "workers", None) is not None and args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return EXIT_USER
    try:
        from core.logging_config import setup_logging

        setup_logging(args.verbose)
        return args.func(args)
    except StudioError as exc:
        return _fail(EXIT_USER if exc.user_error else EXIT_FAILED, str(exc))
    except KeyboardInterrupt:
        return _fail(EXIT_INTERRUPTED, "interrupted; run the same command again to resume")
    except BrokenPipeError:  # `cli ... | head`: the reader left; nothing more to say, and nowhere to say it
        _drop_stdout()
        return EXIT_FAILED
    except OSError as exc:  # a path the user gave that we could not use, caught nowhere nearer
        if exc.errno in PATH_ERRNOS and exc.filename is not None:
            return _fail(EXIT_USER, f"{exc.filename}: {exc.strerror or type(exc).__name__}")
        return _internal(exc, args.verbose)
    except Exception as exc:
        return _internal(exc, args.verbose)


def _fail(code: int, message: str) -> int:
    """Print ``error: MESSAGE`` as one line (a message spanning lines is joined) and return ``code``."""
    line = " ".join(message.split())
    try:
        print(line if code == EXIT_INTERRUPTED else f"error: {line}", file=sys.stderr)
    except OSError:  # stderr itself is gone: the exit code still tells
        pass
    return code


def _internal(exc: BaseException, verbose: bool) -> int:
    """A failure of ours: the traceback to the log file (and to the console with ``-v``), one line here.
    The line names only the exception's type: its text may quote a file the user never meant to show."""
    import logging
    import traceback

    record = logging.getLogger("scripts.cli").makeRecord(
        "scripts.cli", logging.ERROR, __file__, 0, "unexpected %s", (type(exc).__name__,),
        (type(exc), exc, exc.__traceback__))
    logged = [h for h in logging.getLogger().handlers
              if isinstance(h, logging.FileHandler) and getattr(h, "_studio", False)]  # ours, not a test's
    for handler in logged:
        handler.handle(record)
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    where = f"; the traceback is in {logged[0].baseFilename}" if logged else ""
    return _fail(EXIT_FAILED, f"internal error ({type(exc).__name__}), not caused by your input{where}")


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so Python's flush at exit does not raise BrokenPipeError a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout (captured, closed): nothing to flush at exit either
        pass


if __name__ == "__main__":
    sys.exit(main())
