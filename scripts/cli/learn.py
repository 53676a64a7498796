"""The commands of the learning loop: ``feedback`` (the A/B ratings: list, export, approve a training pair, fit
the preference model) and ``autotune`` (search a style's parameters, scored by the metrics or that model).
"""

from __future__ import annotations

import argparse

from core.errors import ConfigError
from scripts.cli.args import add_job_args


def add_feedback_parser(sub: argparse._SubParsersAction) -> None:
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


def add_autotune_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("autotune", help="search a style's parameters on the clip's worst frames, print a ranked table")
    p.add_argument("input")
    add_job_args(p)
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
