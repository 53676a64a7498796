"""The networks' architectures as values, without torch: what the Trainer page and the CLI offer to train
from scratch, and what is stored beside every checkpoint and registered model (so weights are always
loaded into the network they were trained in). The networks themselves are in :mod:`trainer.model`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

NORMS = ("instance", "none")


@dataclass(frozen=True)
class Arch:
    """Channels at full, half and quarter resolution; residual blocks at quarter resolution; the kernel of
    the first and last convolution; the normalisation ("instance" or "none"); ``skips`` adds the encoder's
    full- and half-resolution features to the decoder's (U-Net style), so fine detail need not squeeze
    through the quarter-resolution bottleneck: a small network then learns in hundreds of steps, not tens
    of thousands.

    ``residual``: the output is the input plus what the network learns (a grade is the picture plus a change:
    detail the network never has to carry cannot be lost, where a plain net blurred its teacher's grade).
    ``pointwise``: width of a full-resolution per-pixel branch (1x1 convolutions) added to the output, so a
    colour mapping is exact at every pixel instead of rebuilt from upsampled features (0: none).
    ``mono``: the network computes one tone per pixel, which a learned per-pixel tint (1 -> 3 channels) turns
    into colour: a drawing in one ink on one paper cannot come out in the input's colours, where a net with
    three outputs spent its steps learning to drop the colour first.
    ``log_luma``: the first convolution also sees the logarithm of luma, so ratios of brightness (what a
    colour dodge, a local contrast or the eye's own Weber law looks at) become differences, which a
    convolution computes exactly where a stack of ReLUs only approximates a division.
    ``contrast``: Gaussian sigmas (pixels) of local-contrast inputs, log luma minus the log of its local mean at
    each scale, fed to the first convolution and to the per-pixel branch. A drawing's tone at a pixel is a
    function of how much darker it is than its surroundings (a colour dodge is exactly that ratio): one
    blur of 37 taps is out of reach of a few 3x3 layers, and without it the ink net drew flat saturated
    colour grey where the pencil leaves white paper."""

    channels: tuple[int, int, int] = (32, 64, 128)
    blocks: int = 5
    outer_kernel: int = 9
    norm: str = "instance"
    skips: bool = False
    residual: bool = False
    pointwise: int = 0
    mono: bool = False
    log_luma: bool = False
    contrast: tuple[float, ...] = ()
    spatial: bool = True

    def __post_init__(self) -> None:
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise ValueError(f"Arch.channels: expected three positive ints, got {self.channels!r}")
        if self.blocks < 0 or self.outer_kernel < 1 or self.outer_kernel % 2 == 0:
            raise ValueError(f"Arch: blocks >= 0 and an odd outer_kernel expected, got {self.blocks}, "
                             f"{self.outer_kernel}")
        if self.pointwise < 0:
            raise ValueError(f"Arch.pointwise: expected a width >= 0, got {self.pointwise}")
        if not self.spatial and not (self.pointwise and self.residual and not self.mono):
            raise ValueError("Arch: without the spatial network a model is its per-pixel branch on the input "
                             "(spatial=False needs pointwise > 0 and residual, not mono)")
        if self.mono and self.residual:
            raise ValueError("Arch: mono and residual exclude each other (a one-tone output is not the input plus "
                             "a change)")
        if any(not 0.5 <= s <= 32 for s in self.contrast):
            raise ValueError(f"Arch.contrast: expected sigmas in 0.5..32 pixels, got {self.contrast!r}")
        if self.norm not in NORMS:
            raise ValueError(f"Arch.norm: expected one of {NORMS}, got {self.norm!r}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        if self.contrast:
            d["contrast"] = list(self.contrast)
        else:  # models saved before the field existed read back equal
            del d["contrast"]
        if self.spatial:
            del d["spatial"]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Arch:
        known = {"channels", "blocks", "outer_kernel", "norm", "skips", "residual", "pointwise", "mono", "log_luma",
                 "contrast", "spatial"}
        if not isinstance(d, dict) or set(d) - known:
            raise ValueError(f"Arch: expected an object with keys {sorted(known)}, got {d!r}")
        return cls(**{**d, "channels": tuple(d.get("channels", cls.channels)),
                      "contrast": tuple(d.get("contrast", ()))})


#: The published network (1.68 M parameters).
JOHNSON = Arch()
#: Half the channels, three blocks and skips (0.28 M parameters): over 3x the fps on a CPU.
COMPACT = Arch(channels=(16, 32, 64), blocks=3, outer_kernel=9, norm="none", skips=True)
#: The compact net plus a per-pixel branch (0.28 M parameters): a look whose colour matters at every pixel.
DETAIL = Arch(channels=(16, 32, 64), blocks=3, outer_kernel=9, norm="none", skips=True, pointwise=16)
#: The compact net as a change to its input, with a wider per-pixel branch: a grade, which must never blur.
GRADE = Arch(channels=(16, 32, 64), blocks=3, outer_kernel=9, norm="none", skips=True, residual=True, pointwise=32)
#: The detail net as a change to its input: a paint filter, which keeps whatever it does not repaint.
PAINT = Arch(channels=(16, 32, 64), blocks=3, outer_kernel=9, norm="none", skips=True, residual=True, pointwise=16)
#: The detail net drawing in one tone, tinted per pixel: a drawing in one ink on one paper.
INK = Arch(channels=(16, 32, 64), blocks=3, outer_kernel=9, norm="none", skips=True, pointwise=16, mono=True)
#: The ink net seeing local contrast at four octaves (2-16 px): a drawing, whose strokes are where a pixel is
#: darker than its surroundings.
DRAW = Arch(channels=(16, 32, 64), blocks=3, outer_kernel=9, norm="none", skips=True, pointwise=16, mono=True,
            log_luma=True, contrast=(2.0, 4.0, 8.0, 16.0))
#: No spatial network: the input plus a per-pixel change (a learned 3D LUT, smooth between the colours it saw).
#: A grade learnt from forty frames of one clip: the grade net, whose convolutions see content, reached
#: 25.6 dB on another clip (33.5 on its own); this one is a function of the colour alone, so what it learnt
#: carries to any picture with those colours.
LOOK = Arch(channels=(16, 32, 64), blocks=0, outer_kernel=1, norm="none", residual=True, pointwise=32, spatial=False)
ARCHS = {"johnson": JOHNSON, "compact": COMPACT, "detail": DETAIL, "grade": GRADE, "paint": PAINT, "ink": INK,
         "draw": DRAW, "look": LOOK}
#: What each architecture is for, in a trainer's words (the Trainer page's and the CLI's help).
ABOUT = {
    "compact": "the fastest",
    "detail": "plus a full-resolution per-pixel branch, for looks whose colour matters at every pixel",
    "grade": "the input plus a learned change: a grade that cannot blur",
    "paint": "the input plus a learned change, in a narrower per-pixel branch: a paint filter",
    "ink": "one tone per pixel in one learned tint: a drawing",
    "draw": "the ink net seeing local contrast at four scales: a drawing whose strokes follow edges of any width",
    "look": "the input plus a per-pixel colour change, no spatial network: a LUT-like grade that carries to other "
            "clips",
    "johnson": "as published (1.7 M parameters, instance norm: slowest)",
}


@dataclass(frozen=True)
class Schedule:
    """A fine-tune's default length and learning rate for a network: enough steps to converge on a CPU in
    minutes. A per-pixel net (``spatial`` False) costs ~1/10 of a step of the spatial nets and starts from the
    identity, so it gets 150 epochs at 3e-3 with patience 30 (a LUT look from 36 frames of one clip: 31.7 dB on
    another clip in 2.6 min on 2 cores, where 20 epochs at 1e-3 reached 23.5); the others 20 at 1e-3."""

    epochs: int
    lr: float
    patience: int


def schedule(arch: Arch) -> Schedule:
    return Schedule(20, 1e-3, 4) if arch.spatial else Schedule(150, 3e-3, 30)


def npz_arch(path: Path) -> Arch:
    """The architecture stored in a trainer ``.npz`` (``__arch__``), read without torch (for the pages)."""
    import json

    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        return Arch.from_json(json.loads(z["__arch__"].tobytes().decode()))


def base_schedule(base: str) -> Schedule:
    """:func:`schedule` of a fine-tune base: an architecture name, or a registered model trained here (its
    weights' architecture); the spatial nets' schedule when the base cannot be read (the trainer then says why)."""
    if base in ARCHS:
        return schedule(ARCHS[base])
    from core.errors import StudioError
    from core.ml import registry

    try:
        return schedule(npz_arch(registry.resolve_weights(base)))
    except (StudioError, OSError, ValueError, KeyError):
        return schedule(Arch())


def describe() -> str:
    """``name (what it is for), ...`` for help texts."""
    return "; ".join(f"{name}: {ABOUT[name]}" for name in ARCHS)
