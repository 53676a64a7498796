"""The fine-tuning loss: pixels (L1), edges (Sobel L1), optionally the same at coarser scales, and temporal
consistency under synthetic motion.

Why the temporal term: a frame-by-frame style flickers when a one-pixel shift of the input changes the
output by more than a one-pixel shift. Warping the input by a small random affine motion (shift,
rotation, zoom) and asking that ``f(warp(x)) == warp(f(x))`` teaches the model equivariance without any
optical-flow data. Border pixels that the warp invents are masked out.

All tensors are (N, 3, H, W) float32 in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three terms; ``shift_px``, ``rotate_deg`` and ``zoom`` bound the synthetic motion."""

    l1: float = 1.0
    edge: float = 0.5
    temporal: float = 0.2
    multiscale: float = 0.0
    shift_px: float = 3.0
    rotate_deg: float = 1.0
    zoom: float = 0.02


def sobel(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 2C, H, W): horizontal and vertical gradients per channel (replicate padding)."""
    c = x.shape[1]
    kx = _SOBEL_X.to(x)
    k = torch.stack([kx, kx.t()])[:, None].repeat(c, 1, 1, 1)  # (2C, 1, 3, 3), grouped per channel
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=c)


def edge_loss(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(sobel(y), sobel(target))


def random_affine(n: int, h: int, w: int, weights: LossWeights, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, 2, 3) affine matrices in ``F.affine_grid``'s normalised coordinates: small motions."""
    r = torch.rand(n, 4, generator=generator) * 2 - 1  # uniform in [-1, 1]
    angle = r[:, 0] * math.radians(weights.rotate_deg)
    scale = 1 + r[:, 1] * weights.zoom
    tx, ty = r[:, 2] * weights.shift_px * 2 / w, r[:, 3] * weights.shift_px * 2 / h
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin * h / w, tx], 1), torch.stack([sin * w / h, cos, ty], 1)], 1)
    return theta.to(device)


def warp(x: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp ``x`` by ``theta``; also return the mask (N, 1, H, W) of pixels that came from inside ``x``."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    ones = torch.ones_like(x[:, :1])
    mask = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out, (mask > 0.999).to(x.dtype)


def temporal_loss(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                  weights: LossWeights, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean |net(warp(x)) - warp(y)| over pixels inside both, where ``y = net(x)`` is already computed."""
    theta = random_affine(x.shape[0], x.shape[2], x.shape[3], weights, generator, x.device)
    xw, mask = warp(x, theta)
    yw, _ = warp(y, theta)
    diff = (net(xw) - yw).abs() * mask
    return diff.sum() / (mask.sum() * x.shape[1]).clamp_min(1.0)


def multiscale_loss(y: torch.Tensor, target: torch.Tensor, levels: int = 2) -> torch.Tensor:
    """L1 of the half- and quarter-size averages, plus their gradients: tone and broad shapes (a bloom, a
    wash) weigh as much as the fine detail the full-size terms already see."""
    loss = y.new_zeros(())
    for _ in range(levels):
        y, target = F.avg_pool2d(y, 2), F.avg_pool2d(target, 2)
        loss = loss + F.l1_loss(y, target) + edge_loss(y, target)
    return loss / levels


def fidelity(y: torch.Tensor, target: torch.Tensor, weights: LossWeights) -> torch.Tensor:
    """How far the output is from the target: L1 plus the edge term (plus the multi-scale term where it is
    weighted). The validation loss."""
    loss = weights.l1 * F.l1_loss(y, target) + weights.edge * edge_loss(y, target)
    if weights.multiscale > 0:
        loss = loss + weights.multiscale * multiscale_loss(y, target)
    return loss


def total(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor,
          weights: LossWeights, generator: torch.Generator | None = None) -> torch.Tensor:
    """The training loss: fidelity plus the weighted temporal term, skipped when its weight is 0 and for a
    per-pixel network (``arch.spatial`` False), which moves exactly as its input does: the term would double
    the cost of a step to measure interpolation noise."""
    y = net(x)
    loss = fidelity(y, target, weights)
    arch = getattr(net, "arch", None)
    if weights.temporal > 0 and getattr(arch, "spatial", True):
        loss = loss + weights.temporal * temporal_loss(net, x, y, weights, generator)
    return loss
