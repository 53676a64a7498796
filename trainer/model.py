"""Feed-forward style networks: Johnson et al.'s TransformerNet and a compact variant for CPU speed.

Both map (N, 3, H, W) float32 RGB in [0, 1] to the same shape and range (the output is clamped only at
export, so training sees gradients everywhere). Any H and W work: reflection padding keeps the borders
clean, and the two stride-2 downsamplings are undone by nearest upsampling + convolution to the input's
exact size, so odd sizes round-trip. The smallest input is 8 x 8 (reflection padding needs a quarter-
resolution map of at least 2 x 2; core.ml.session pads tiles to a multiple of 8).

The architecture is a value (:class:`~trainer.arch.Arch`, torch-free) stored beside every checkpoint and
registered model, so weights are always loaded into the network they were trained in.

``norm``: Johnson's net uses instance norm (as published). The compact net defaults to no normalisation:
its output then depends only on a pixel's neighbourhood, so tiled inference equals untiled inference
and frame-global statistics cannot make a render pump.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .arch import ARCHS, COMPACT, DETAIL, DRAW, GRADE, INK, JOHNSON, LOOK, NORMS, PAINT, Arch

__all__ = ["ARCHS", "COMPACT", "DETAIL", "DRAW", "GRADE", "INK", "JOHNSON", "LOOK", "NORMS", "PAINT", "Arch",
           "Exportable", "TransformerNet", "parameter_count"]


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


def log_luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 4, H, W): the RGB and log2 of BT.601 luma, scaled from
    [log2(1/256), 0] onto [0, 1] (a floor of 1/256: black has no logarithm, and darker than one code value is
    noise)."""
    luma = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return torch.cat([x, torch.log2(luma.clamp_min(0.0) + 1.0 / 256) / 8.0 + 1.0], dim=1)


def gaussian_taps(sigma: float) -> torch.Tensor:
    """1-D normalised Gaussian of radius ceil(3 sigma), as (1, 1, 1, K)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).view(1, 1, 1, -1)


class LocalContrast(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] -> (N, S, H, W): log2 luma minus log2 of its Gaussian local mean at each of
    ``sigmas`` (fixed separable blurs, replicate-padded so any size works), divided by 8: 0 where a pixel
    equals its surroundings, negative where it is darker (what a colour dodge draws)."""

    def __init__(self, sigmas: tuple[float, ...]) -> None:
        super().__init__()
        self.sigmas = sigmas
        for i, sigma in enumerate(sigmas):
            self.register_buffer(f"taps{i}", gaussian_taps(sigma))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        luma = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        luma = luma.clamp_min(0.0) + 1.0 / 256
        log_l = torch.log2(luma)
        out = []
        for i in range(len(self.sigmas)):
            taps = getattr(self, f"taps{i}")
            r = taps.shape[-1] // 2
            mean = F.conv2d(F.pad(luma, (r, r, 0, 0), mode="replicate"), taps)
            mean = F.conv2d(F.pad(mean, (0, 0, r, r), mode="replicate"), taps.transpose(-1, -2))
            out.append((log_l - torch.log2(mean)) / 8.0)
        return torch.cat(out, dim=1)


class TransformerNet(nn.Module):
    """(N, 3, H, W) float32 RGB in [0, 1] -> (N, 3, H, W) float32 (unclamped; see :class:`Exportable`)."""

    def __init__(self, arch: Arch = JOHNSON) -> None:
        super().__init__()
        self.arch = arch
        extra = len(arch.contrast)
        self.contrast = LocalContrast(arch.contrast) if extra else None
        tones = 1 if arch.mono else 3
        if arch.spatial:
            self._spatial(arch, extra, tones)
        w = arch.pointwise  # built after the spatial layers: the seeded initialisation of existing nets is kept
        self.pixel = nn.Sequential(nn.Conv2d(3 + extra, w, 1), nn.ReLU(), nn.Conv2d(w, w, 1), nn.ReLU(),
                                   nn.Conv2d(w, tones, 1)) if w else None
        if not arch.spatial:  # start as the identity: a grade learnt from few frames begins at "no change"
            nn.init.zeros_(self.pixel[-1].weight)
            nn.init.zeros_(self.pixel[-1].bias)
        self.tint = nn.Conv2d(1, 3, 1) if arch.mono else None
        if self.tint is not None:  # start grey: a random tint spent most of training unlearning a colour cast
            nn.init.ones_(self.tint.weight)
            nn.init.zeros_(self.tint.bias)

    def _spatial(self, arch: Arch, extra: int, tones: int) -> None:
        c1, c2, c3 = arch.channels
        k = arch.outer_kernel
        self.conv1, self.norm1 = ConvLayer(3 + arch.log_luma + extra, c1, k), _norm(arch.norm, c1)
        self.conv2, self.norm2 = ConvLayer(c1, c2, 3, stride=2), _norm(arch.norm, c2)
        self.conv3, self.norm3 = ConvLayer(c2, c3, 3, stride=2), _norm(arch.norm, c3)
        self.blocks = nn.Sequential(*(ResidualBlock(c3, arch.norm) for _ in range(arch.blocks)))
        self.up1, self.norm4 = UpsampleConv(c3, c2, 3), _norm(arch.norm, c2)
        self.up2, self.norm5 = UpsampleConv(c2, c1, 3), _norm(arch.norm, c1)
        self.out = ConvLayer(c1, tones, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.contrast(x) if self.contrast is not None else None
        if not self.arch.spatial:
            return x + self.pixel(x if local is None else torch.cat([x, local], dim=1))
        inp = log_luma(x) if self.arch.log_luma else x
        if local is not None:
            inp = torch.cat([inp, local], dim=1)
        y1 = F.relu(self.norm1(self.conv1(inp)))
        y2 = F.relu(self.norm2(self.conv2(y1)))
        y = F.relu(self.norm3(self.conv3(y2)))
        y = self.blocks(y)
        y = F.relu(self.norm4(self.up1(y, y2.shape[-2:])))
        if self.arch.skips:
            y = y + y2
        y = F.relu(self.norm5(self.up2(y, y1.shape[-2:])))
        if self.arch.skips:
            y = y + y1
        y = self.out(y)
        if self.pixel is not None:
            y = y + self.pixel(x if local is None else torch.cat([x, local], dim=1))
        if self.tint is not None:
            y = self.tint(y)
        return x + y if self.arch.residual else y


class Exportable(nn.Module):
    """The deployed form: a model whose output is clamped to [0, 1], as the renderer expects."""

    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).clamp(0.0, 1.0)


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
