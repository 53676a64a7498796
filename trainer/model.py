"""Feed-forward style networks: Johnson et al.'s TransformerNet and a compact variant for CPU speed.

Both map (N, 3, H, W) float32 RGB in [0, 1] to the same shape and range (the output is clamped only at
export, so training sees gradients everywhere). Any H and W work: reflection padding keeps the borders
clean, and the two stride-2 downsamplings are undone by nearest upsampling + convolution to the input's
exact size, so odd sizes round-trip. The smallest input is 8 x 8 (reflection padding needs a quarter-
resolution map of at least 2 x 2; core.ml.session pads tiles to a multiple of 8).

The architecture is a value (:class:`Arch`) stored beside every checkpoint and registered model, so
weights are always loaded into the network they were trained in.

``norm``: Johnson's net uses instance norm (as published). The compact net defaults to no normalisation:
its output then depends only on a pixel's neighbourhood, so tiled inference equals untiled inference
and frame-global statistics cannot make a render pump.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

NORMS = ("instance", "none")


@dataclass(frozen=True)
class Arch:
    """Channels at full, half and quarter resolution; residual blocks at quarter resolution; the kernel of
    the first and last convolution; the normalisation ("instance" or "none"); ``skips`` adds the encoder's
    full- and half-resolution features to the decoder's (U-Net style), so fine detail need not squeeze
    through the quarter-resolution bottleneck: a small network then learns in hundreds of steps, not tens
    of thousands."""

    channels: tuple[int, int, int] = (32, 64, 128)
    blocks: int = 5
    outer_kernel: int = 9
    norm: str = "instance"
    skips: bool = False

    def __post_init__(self) -> None:
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise ValueError(f"Arch.channels: expected three positive ints, got {self.channels!r}")
        if self.blocks < 0 or self.outer_kernel < 1 or self.outer_kernel % 2 == 0:
            raise ValueError(f"Arch: blocks >= 0 and an odd outer_kernel expected, got {self.blocks}, "
                             f"{self.outer_kernel}")
        if self.norm not in NORMS:
            raise ValueError(f"Arch.norm: expected one of {NORMS}, got {self.norm!r}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Arch:
        known = {"channels", "blocks", "outer_kernel", "norm", "skips"}
        if not isinstance(d, dict) or set(d) - known:
            raise ValueError(f"Arch: expected an object with keys {sorted(known)}, got {d!r}")
        return cls(**{**d, "channels": tuple(d.get("channels", cls.channels))})


#: The published network (1.68 M parameters).
JOHNSON = Arch()
#: Half the channels, three blocks and skips (0.28 M parameters): over 3x the fps on a CPU.
COMPACT = Arch(channels=(16, 32, 64), blocks=3, outer_kernel=9, norm="none", skips=True)
ARCHS = {"johnson": JOHNSON, "compact": COMPACT}


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True) if kind == "instance" else nn.Identity()


class ConvLayer(nn.Module):
    """Reflection pad + convolution: no zero border for the style to darken."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.norm1 = _norm(norm, channels)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.norm2 = _norm(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(y))


class UpsampleConv(nn.Module):
    """Nearest upsampling to an exact size, then a convolution (no transposed-conv checkerboard)."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv = ConvLayer(cin, cout, kernel)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class TransformerNet(nn.Module):
    """(N, 3, H, W) float32 RGB in [0, 1] -> (N, 3, H, W) float32 (unclamped; see :class:`Exportable`)."""

    def __init__(self, arch: Arch = JOHNSON) -> None:
        super().__init__()
        self.arch = arch
        c1, c2, c3 = arch.channels
        k = arch.outer_kernel
        self.conv1, self.norm1 = ConvLayer(3, c1, k), _norm(arch.norm, c1)
        self.conv2, self.norm2 = ConvLayer(c1, c2, 3, stride=2), _norm(arch.norm, c2)
        self.conv3, self.norm3 = ConvLayer(c2, c3, 3, stride=2), _norm(arch.norm, c3)
        self.blocks = nn.Sequential(*(ResidualBlock(c3, arch.norm) for _ in range(arch.blocks)))
        self.up1, self.norm4 = UpsampleConv(c3, c2, 3), _norm(arch.norm, c2)
        self.up2, self.norm5 = UpsampleConv(c2, c1, 3), _norm(arch.norm, c1)
        self.out = ConvLayer(c1, 3, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = F.relu(self.norm1(self.conv1(x)))
        y2 = F.relu(self.norm2(self.conv2(y1)))
        y = F.relu(self.norm3(self.conv3(y2)))
        y = self.blocks(y)
        y = F.relu(self.norm4(self.up1(y, y2.shape[-2:])))
        if self.arch.skips:
            y = y + y2
        y = F.relu(self.norm5(self.up2(y, y1.shape[-2:])))
        if self.arch.skips:
            y = y + y1
        return self.out(y)


class Exportable(nn.Module):
    """The deployed form: a model whose output is clamped to [0, 1], as the renderer expects."""

    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).clamp(0.0, 1.0)


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
