"""The commands of the neural styles' model registry: ``models`` (list, activate, discard, roll back, info),
``download-model`` (fetch, verify, register) and ``train`` (fine-tune, export, register a candidate).

A trained version is a candidate until ``models activate NAME@VERSION`` (see :mod:`core.ml.registry`): the
review gate between a finished run and every render that asks for ``model=NAME``.

torch is imported only inside ``train`` (through :mod:`trainer`): the other commands, and the CLI's start, do
without it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from core.errors import ConfigError
from trainer.arch import describe


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models and their states; activate or discard a candidate, "
                                      "roll back; show one")
    p.add_argument("action", choices=["list", "activate", "discard", "rollback", "info"],
                   help="activate NAME@VERSION: make it what NAME renders with (a candidate's review passed); "
                        "discard NAME@VERSION: mark a candidate rejected (its files stay); rollback NAME: the "
                        "previously active version again")
    p.add_argument("target", nargs="?", default="",
                   help="NAME@VERSION (activate, discard) or NAME (rollback, info)")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from core.ml import registry

    if args.action == "list":
        return _list_models()
    if not args.target:
        want = "NAME@VERSION" if args.action in ("activate", "discard") else "NAME"
        raise ConfigError(f"models {args.action}: give a model {want}")
    if args.action in ("activate", "discard"):
        name, _, version = args.target.partition("@")
        if not version.isdigit():
            raise ConfigError(f"models {args.action}: expected NAME@VERSION, got {args.target!r}")
        before = registry.info(name).active
        if args.action == "activate":
            e = registry.activate(name, int(version))
            was = "" if before in (None, e.version) else \
                f" (was {name}@{before}; `models rollback {name}` returns to it)"
            print(f"active: {e.spec}{was}")
        else:
            e = registry.discard(name, int(version))
            now = f"{name}@{before}" if before is not None else "none"
            print(f"rejected: {e.spec} (its files stay in {e.path.parent}; active: {now})")
    elif args.action == "rollback":
        print(f"active: {registry.rollback(args.target).spec}")
    else:
        info = registry.info(args.target)
        print(json.dumps({"name": info.name, "active": info.active, "history": list(info.history),
                          "versions": [{**e.to_json(), "state": info.state(e.version), "path": str(e.path),
                                        **_convention(e), "card": None if e.card_path is None else str(e.card_path),
                                        "review": None if e.review_path is None else str(e.review_path)}
                                       for e in info.versions]}, indent=2))
    return 0


def _list_models() -> int:
    """One line per version, every state: ``*`` marks the active one, then the state (active, candidate,
    released, rejected), the look, licence and speed, the file; a closing line when candidates wait."""
    from core.ml import registry

    entries = registry.list_models(candidates=True)
    if not entries:
        print("no models registered (add one with `download-model`; `download-model --list` shows the known ones)")
    infos = {name: registry.info(name) for name in {e.name for e in entries}}
    waiting = []
    for e in entries:
        state = infos[e.name].state(e.version)
        waiting += [e.spec] if state == registry.CANDIDATE else []
        mark = "*" if state == registry.ACTIVE else " "
        fps = f", {e.measured_fps:.1f} fps" if e.measured_fps is not None else ""
        print(f"{mark} {e.spec}  {state:<9}  {e.style or '-'}  ({e.licence or 'licence unknown'}{fps})  {e.path}")
    if waiting:
        print(f"{len(waiting)} candidate{'s' if len(waiting) != 1 else ''} awaiting review ({', '.join(waiting)}): "
              f"renders by name keep the active version until `models activate NAME@VERSION`; "
              f"`models discard NAME@VERSION` rejects one")
    return 0


def _convention(e) -> dict:
    """What ``models info`` shows of a version's input convention: the resolved one and, per field, where it
    came from (registry, sidecar, detected from the graph, default). A missing file shows nothing."""
    from core.ml import convention

    if not e.path.is_file():
        return {}
    conv, origin = convention.resolve(e.path, None, e.convention)
    return {"convention": conv.describe(), "convention_from": {k: v for k, v in origin.items() if v != "default"}}


def add_download_model_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download-model", help="fetch a known model by name, or any model (URL or path) with its "
                                              "SHA-256; verify and register it")
    p.add_argument("source", metavar="NAME|URL|PATH", nargs="?", default="",
                   help="a known model's name (see --list), or a URL or file with --sha256 and --name")
    p.add_argument("--sha256", default=None, help="expected SHA-256 of the file (64 hex digits); optional for a "
                                                  "known model")
    p.add_argument("--name", default=None, help="registry name; the file becomes its next version")
    p.add_argument("--list", action="store_true", help="show the known models and which are registered")
    p.add_argument("--no-activate", action="store_true", help="register without making it the active version")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download_model)


def cmd_download_model(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.ml import fetch, registry, zoo

    if args.list:
        return _list_known()
    source, name = args.source, args.name
    is_url = source.startswith(("http://", "https://"))
    by_name = bool(source) and not is_url and zoo.known(source) and not os.path.exists(source)
    if not source or (not by_name and not name):
        raise ConfigError("download-model: give a known model's name (see --list), or a URL or file with --name"
                          " and --sha256")
    if by_name and name not in (None, source):
        raise ConfigError(f"download-model {source}: a known model is registered under its own name, not {name!r}")
    label = source if by_name else name
    bar: tqdm | None = None

    def on_progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:  # a resumed download starts its bar (and its ETA) at the bytes already here
            bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                       dynamic_ncols=True, disable=args.quiet or None)
        bar.update(done - bar.n)

    try:
        if by_name:
            result = fetch.download_known(source, on_progress=on_progress, activate=not args.no_activate)
        elif not is_url and zoo.known(name):
            result = fetch.register_known_file(source, name, args.sha256, activate=not args.no_activate)
        elif args.sha256 is None:
            raise ConfigError(f"download-model {source}: --sha256 is required for a model that is not known "
                              "(see --list)")
        else:
            result = registry.download(source, args.sha256, name, on_progress=on_progress if is_url else None,
                                     activate=not args.no_activate)
    finally:
        if bar is not None:
            bar.close()
    if isinstance(result, fetch.Fetched):
        _report(result)
    else:
        print(f"registered {result.spec} -> {result.path}")
    return 0


_CHECKS = {"pinned": "matches the catalogue's pinned hash",
           "recorded": "matches the hash recorded at this model's first download",
           "given": "matches --sha256",
           "first": "no published hash: recorded now, later downloads of this name must match it"}


def _report(done) -> None:
    """What a known model's download did: where it is, how its bytes were checked, its convention and licence."""
    from core.ml import zoo

    e, model = done.entry, zoo.get(done.entry.name)
    if done.resumed_from:
        print(f"resumed a partial download at byte {done.resumed_from} (HTTP Range)")
    print(f"registered {e.spec} -> {e.path}")
    print(f"sha256 {done.sha256} ({_CHECKS[done.check]})")
    size = f" {model.input_size[0]}x{model.input_size[1]}" if model.input_size else ""
    print(f"input {model.channels.upper()} 0..{model.value_range}{size}; licence {model.licence}; {model.source}")


def _list_known() -> int:
    from core.ml import fetch, registry, zoo

    have = {e.name for e in registry.list_models()}
    print("known models (python -m scripts.cli download-model NAME):")
    for model in zoo.CATALOGUE.values():
        print(f"{'*' if model.name in have else ' '} {fetch.describe(model)}")
    print("* registered")
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a neural style on input/target pairs, export, register it as a "
                                     "candidate (`models activate NAME@VERSION` makes it live)")
    p.add_argument("--pairs", required=True, metavar="DIR", help="folder with inputs/ and targets/ (same names)")
    p.add_argument("--base", required=True, help=f"registered model NAME[@VERSION], or an architecture from scratch "
                        f"({describe()})")
    p.add_argument("--name", default=None,
                   help="the new model's name (default: <base>-ft-<n>, the first n free; give the base's own name "
                        "to register a new version of it instead)")
    p.add_argument("--description", default="", metavar="TEXT",
                   help="the new model's look in your words: the title of its card and its style in the registry")
    p.add_argument("--epochs", type=int, default=None,
                   help="default: the base's own (20; 150 for the per-pixel `look`, whose steps are ~10x cheaper)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128, help="training crop side in pixels")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (AdamW, warm-up then cosine); default: the base's own (1e-3; look 3e-3)")
    p.add_argument("--patience", type=int, default=None,
                   help="epochs without improvement before stopping; default: the base's own (4; 30 for look)")
    p.add_argument("--scale-min", type=float, default=0.5, metavar="S",
                   help="train on frames scaled at random between S and 1 (objects of other sizes than the clip's); "
                        "1 for a look tied to pixel size, such as strokes of a fixed width")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--run", default=None, metavar="DIR", help="run folder; an existing one is resumed")
    p.add_argument("--int8", choices=["no", "try", "require"], default="no",
                   help="int8 quantisation, kept only at >= --min-psnr dB vs fp32 and >= 1.1x fp32's speed here: try "
                        "(else register fp32, the card says why) or require (else fail)")
    p.add_argument("--min-psnr", type=float, default=32.0, help="int8 quality gate vs fp32, dB")
    p.add_argument("--calibrate", action="append", default=[], metavar="CLIP",
                   help="a clip whose frames calibrate int8 (repeatable; the pair inputs are always used)")
    # every fine-tune is registered as a candidate now; the flag is still accepted so older scripts run
    p.add_argument("--no-activate", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from trainer.arch import base_schedule
    from trainer.finetune import EpochRecord, FinetuneConfig
    from trainer.train import train_model

    plan = base_schedule(args.base)
    args.epochs = args.epochs or plan.epochs
    cfg = FinetuneConfig(epochs=args.epochs, batch=args.batch, crop=args.crop, lr=args.lr or plan.lr,
                         patience=args.patience or plan.patience, scale_min=args.scale_min, device=args.device)
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
                             int8=args.int8, min_psnr=args.min_psnr, description=args.description,
                             calibration=_calibration_frames(args.calibrate), on_step=on_step, on_epoch=on_epoch)
    finally:
        if bar is not None:
            bar.close()
    run, e = report.run, report.export
    worst = max(err for _, err in e.max_abs_error)
    print(f"best val loss {run.best_val:.4f} (from {run.first_val:.4f}) after {run.epochs_run} epochs"
          f"{', stopped early' if run.stopped_early else ''}; run folder {run.folder}")
    print(f"exported: parity max error {worst:.1e} (<= {e.tol:g}), {e.parameters} parameters, "
          f"{e.file_bytes / 1e6:.2f} MB")
    b, a = report.before, report.after
    print(f"held-out pairs ({a.pairs}): base PSNR {b.psnr_db:.2f} dB, SSIM {b.ssim:.3f} -> "
          f"fine-tune PSNR {a.psnr_db:.2f} dB, SSIM {a.ssim:.3f}")
    if report.int8 is not None:
        print(f"registered {report.int8.precision}: {report.int8.reason}")
    e = report.entry
    active = _active_spec(e.name)
    keeps = f"`model={e.name}` keeps rendering {active}" if active else f"`model={e.name}` has no active version yet"
    print(f"registered {e.spec} (candidate), {report.fps:.2f} fps at 1280x720 -> {e.path}")
    print(f"model card: {e.card_path}")
    print(f"review it (Trainer page, or the card), then `python -m scripts.cli models activate {e.spec}` to make it "
          f"live or `models discard {e.spec}`; until then {keeps}")
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


def _active_spec(name: str) -> str | None:
    from core.ml import registry

    active = registry.info(name).active
    return None if active is None else f"{name}@{active}"
