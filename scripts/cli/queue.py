"""The commands of the studio's job queue: ``worker`` runs queued jobs, ``watch`` queues a render for each
clip that lands in a folder, ``queue`` adds, lists and steers jobs (and repairs a damaged database).

``queue add KIND`` takes the options of the command of that name which a job needs (not its progress or
console ones), so a queued job reads like the command one would have run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import ConfigError
from scripts.cli.args import add_job_args, add_track_args


def add_worker_parser(sub: argparse._SubParsersAction) -> None:
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


def add_watch_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="queue a render for each video that lands in a folder (once per content)")
    p.add_argument("folder", nargs="?", default=None, metavar="DIR",
                   help="folder to watch (default: the folders in $VP_HOME/watch.yaml)")
    add_job_args(p)
    p.add_argument("--out", default=None, metavar="OUTDIR",
                   help="where renders go (default: $VP_HOME/renders; not the watched folder)")
    p.add_argument("--settle", type=float, default=5.0, metavar="S",
                   help="seconds a file must stop growing before it is queued")
    p.add_argument("--db", default=None, help="studio database (default: $VP_HOME/studio.db)")
    p.set_defaults(func=cmd_watch)


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


def add_queue_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("queue", help="add, list, pause, resume, cancel or retry queued jobs")
    p.add_argument("--db", default=None, help="studio database (default: $VP_HOME/studio.db)")
    q_sub = p.add_subparsers(dest="action", required=True)
    q = q_sub.add_parser("add", help="queue a job")
    kind_sub = q.add_subparsers(dest="kind", required=True)
    k = kind_sub.add_parser("render", help="queue a render (same options as `render`)")
    k.add_argument("input")
    k.add_argument("-o", "--output", required=True)
    add_job_args(k)
    k.add_argument("--chunk-seconds", type=float, default=None)
    k.add_argument("--workers", type=int, default=None)
    add_track_args(k)
    k = kind_sub.add_parser("train", help="queue a fine-tune (same options as `train`)")
    k.add_argument("--pairs", required=True, metavar="DIR")
    k.add_argument("--base", required=True)
    k.add_argument("--name", default=None, help="the new model's name (default: <base>-ft-<n>)")
    k.add_argument("--description", default="", metavar="TEXT", help="the new model's look, for its card")
    k.add_argument("--epochs", type=int, default=None, help="default: the base's own")
    k.add_argument("--batch", type=int, default=8)
    k.add_argument("--crop", type=int, default=128)
    k.add_argument("--lr", type=float, default=None, help="default: the base's own")
    k.add_argument("--patience", type=int, default=None, help="default: the base's own")
    k.add_argument("--scale-min", type=float, default=0.5)
    k.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    k.add_argument("--int8", choices=["no", "try", "require"], default="no")
    k.add_argument("--min-psnr", type=float, default=32.0)
    k = kind_sub.add_parser("autotune", help="queue a parameter search (same options as `autotune`)")
    k.add_argument("input")
    add_job_args(k)
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
        if action == "cancel":
            q.add_argument("--keep-partial", action="store_true",
                           help="first write the render's finished part beside its output (<name>_partial.mp4)")
    q_sub.add_parser("repair", help="move a damaged studio database aside and start a new one with what can be "
                                    "read (stop the workers first)")
    p.set_defaults(func=cmd_queue)


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
        if args.action == "cancel" and args.keep_partial:
            _keep_partial(queue.get(args.job_id))
        job = getattr(queue, args.action)(args.job_id)
        print(_job_line(job))
    return 0


def _keep_partial(job) -> None:
    """Write a render's finished part (core.render.live.keep_partial) and say where, before it is cancelled."""
    from core.errors import ConfigError
    from core.render import live
    from core.render.workdir import work_root

    if job.kind != "render" or not job.work_key:
        raise ConfigError(f"job {job.id}: only a render has a finished part to keep")
    kept = live.keep_partial(work_root() / job.work_key, job.spec["input"], job.spec["output"],
                             audio=job.spec.get("audio", "all"), subtitles=job.spec.get("subtitles", "all"))
    if kept is None:
        print(f"job {job.id}: no part finished yet; nothing kept")
    else:
        print(f"job {job.id}: kept the first {kept[1].frames} of {kept[1].total_frames} frames as {kept[0]}")


def _queue_spec(args: argparse.Namespace) -> dict:
    """The job spec of ``queue add KIND``, from the same options the direct commands take."""
    from core.render.spec import parse_sets

    if args.kind == "render":
        return {"input": args.input, "output": args.output, "style": args.style, "preset": args.preset,
                "sets": parse_sets(args.sets), "chunk_seconds": args.chunk_seconds, "workers": args.workers,
                "audio": args.audio, "subtitles": args.subtitles}
    if args.kind == "train":
        from trainer.arch import base_schedule

        plan = base_schedule(args.base)
        return {"pairs": args.pairs, "base": args.base, "name": args.name, "description": args.description,
                "epochs": args.epochs or plan.epochs, "batch": args.batch, "crop": args.crop,
                "lr": args.lr or plan.lr, "patience": args.patience or plan.patience, "scale_min": args.scale_min,
                "device": args.device,
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
