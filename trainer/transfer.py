"""Does a fine-tune carry to footage it never saw? Learn a look from frames of one clip, score it on another.

The figure issue 19 asks of the learning loop: a LUT-like look learnt from <= 40 pairs of one clip must reach
>= 28 dB on another clip within 5 minutes on a CPU. Held-out frames of the training clip cannot show it:
frames of one clip are near-copies, so they measure memory (the grade net scored 33.5 dB on its own clip
and 25.6 dB on another). Used by the tests and the benchmark, with the studio's own training path
(:func:`trainer.train.train_model`: pairs folder, fine-tune, export, registration) and a render's inference.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.quality.metrics import psnr
from core.video.stills import write_image

from .finetune import FinetuneConfig
from .train import train_model


def lut_look(lut: Path) -> Callable[[np.ndarray, int], np.ndarray]:
    """The cinematic style as a pure LUT grade (no curve, bloom, grain or vignette): a look that is a function
    of the colour alone, what the transfer check learns."""
    from dataclasses import replace

    from stylizers import STYLIZERS

    cls = STYLIZERS["cinematic"]
    params = replace(cls.Params(), lut=str(lut), curve=0.0, bloom=0.0, grain=0.0, vignette=0.0)
    return cls(params, cls.analyze(params, []))


def at_most(frames: Sequence[np.ndarray], width: int) -> list[np.ndarray]:
    """Frames wider than ``width`` scaled down to it (area filter), the others as they are: a per-pixel look
    does not depend on size, and training reads smaller frames faster."""
    import cv2

    return [cv2.resize(f, (width, round(width * f.shape[0] / f.shape[1])), interpolation=cv2.INTER_AREA)
            if f.shape[1] > width else f for f in frames]


@dataclass(frozen=True)
class Transfer:
    """PSNR (dB) of the fine-tune's output to the look on the other clip's frames (mean, worst), the
    identity's for comparison (the input itself against the look), on its own held-out frames, and the
    wall seconds of the whole training path (fine-tune, export, checks, registration)."""

    psnr_mean: float
    psnr_min: float
    identity_db: float
    own_clip_db: float
    seconds: float
    epochs: int

    def line(self) -> str:
        return (f"{self.psnr_mean:.2f} dB on the other clip (worst {self.psnr_min:.2f}; the input itself "
                f"{self.identity_db:.2f}), {self.own_clip_db:.2f} dB on held-out frames of its own clip, "
                f"{self.epochs} epochs, {self.seconds:.0f} s")


def transfer(train: Sequence[np.ndarray], test: Sequence[np.ndarray], look: Callable[[np.ndarray, int], np.ndarray],
             base: str, cfg: FinetuneConfig, name: str = "transfer-check") -> Transfer:
    """Fine-tune ``base`` on ``(frame, look(frame))`` pairs of ``train`` (one clip) and score the registered
    model, run as a render runs it, against ``look`` on ``test`` (another clip). Registers ``name`` in the
    studio home (the caller's: a scratch one in tests and the benchmark)."""
    from stylizers.fast_style import FastStyle, FastStyleParams

    with tempfile.TemporaryDirectory(prefix="vp-transfer-") as tmp:
        folder = Path(tmp) / "pairs"
        for i, rgb in enumerate(train):
            write_image(folder / "inputs" / f"a{i:03d}.png", rgb)
            write_image(folder / "targets" / f"a{i:03d}.png", look(rgb, i))
        t = time.perf_counter()
        report = train_model(folder, base, name, cfg, folder=Path(tmp) / "run", description="transfer check")
        seconds = time.perf_counter() - t
    model = FastStyle(FastStyleParams(model=report.entry.spec))
    targets = [look(rgb, i) for i, rgb in enumerate(test)]
    scores = [psnr(model(rgb, i), want) for i, (rgb, want) in enumerate(zip(test, targets, strict=True))]
    identity = float(np.mean([psnr(rgb, want) for rgb, want in zip(test, targets, strict=True)]))
    return Transfer(float(np.mean(scores)), float(np.min(scores)), identity, report.after.psnr_db, seconds,
                    report.run.epochs_run)
