"""Fine-tuning: AdamW, warm-up then cosine decay, a validation split, early stopping, best checkpoint.

A run lives in one folder::

    last.pt      everything needed to resume after the last finished epoch (atomic, weights_only)
    best.pt      the weights with the lowest validation loss so far
    log.jsonl    one JSON object per finished epoch (what the studio plots), then one "end" record

Reproducible: the crops and flips of epoch ``e`` come from a generator seeded with (seed, e), so a run
interrupted after epoch 3 and resumed gives the same weights as one that never stopped (on a CPU).
On a GPU the forward/backward passes run under automatic mixed precision (float16 with a grad scaler).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import atomic
from core.errors import ConfigError

from .dataset import Pair, PairCrops, split
from .losses import LossWeights, fidelity, total
from .model import TransformerNet
from .weights import load_checkpoint, net_from_state, save_checkpoint

LAST, BEST, LOG = "last.pt", "best.pt", "log.jsonl"


@dataclass(frozen=True)
class FinetuneConfig:
    """``warmup``: share of all steps spent ramping the learning rate up; ``patience``: epochs without a
    relative improvement of ``min_delta`` in validation loss before stopping; ``repeats``: random crops
    per training pair per epoch; ``scale_min``: the smallest random scale of a training frame (1: none; see
    :class:`~trainer.dataset.PairCrops`)."""

    epochs: int = 20
    batch: int = 8
    crop: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    patience: int = 4
    min_delta: float = 0.002
    val_fraction: float = 0.2
    repeats: int = 4
    scale_min: float = 0.5
    seed: int = 0
    device: str = "auto"
    loss: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        checks = {"epochs": self.epochs >= 1, "batch": self.batch >= 1, "lr": self.lr > 0,
                  "warmup": 0 <= self.warmup < 1, "patience": self.patience >= 1,
                  "val_fraction": 0 < self.val_fraction < 1, "repeats": self.repeats >= 1,
                  "scale_min": 0 < self.scale_min <= 1,
                  "device": self.device in ("auto", "cpu", "cuda")}
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"fine-tune setting {key}={getattr(self, key)!r} is out of range")

    def key(self) -> str:
        """What a resumed run must share with the interrupted one (everything but the epoch budget)."""
        d = asdict(self)
        d.pop("epochs")
        d.pop("device")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    lr: float
    seconds: float
    best_val: float
    improved: bool

    def to_json(self) -> dict[str, Any]:
        return {"event": "epoch", **asdict(self)}


@dataclass(frozen=True)
class FinetuneResult:
    """``first_val``: the validation loss of the weights the run started from (the base's), measured before
    the first step; ``best_val``: the lowest epoch's (its weights are ``best``). Both are the same
    :func:`~trainer.losses.fidelity` on the same centre crops of the held-out pairs, so they compare directly:
    a ``best_val`` above ``first_val`` means no epoch beat the base (the first steps moved it away from the
    pairs: AdamW moves every weight by about the learning rate at first, whatever its gradient)."""

    folder: Path
    best: Path
    best_val: float
    first_val: float
    epochs_run: int
    stopped_early: bool
    history: tuple[EpochRecord, ...]


StepFn = Callable[[int, int], None]
EpochFn = Callable[[EpochRecord], None]


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("fine-tune device cuda: torch sees no CUDA GPU")
    return torch.device(name)


def _schedule(total_steps: int, warmup: float) -> Callable[[int], float]:
    warm = max(1, round(total_steps * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return factor


def _batches(crops: PairCrops, batch: int, seed: int, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled batches; the order and the crops depend only on (seed, epoch)."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(crops), generator=gen).tolist()
    torch.manual_seed(seed * 100_003 + epoch)  # PairCrops draws positions and flips from torch's RNG
    out = []
    for i in range(0, len(order), batch):
        items = [crops[j] for j in order[i:i + batch]]
        out.append((torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])))
    return out


def _validate(net: TransformerNet, crops: PairCrops, cfg: FinetuneConfig, device: torch.device) -> float:
    net.eval()
    with torch.no_grad():
        losses = [float(fidelity(net(a[None].to(device)), b[None].to(device), cfg.loss))
                  for a, b in (crops[i] for i in range(len(crops)))]
    net.train()
    return sum(losses) / len(losses)


def _read_log(path: Path, upto: int) -> list[EpochRecord]:
    """Epoch records up to ``upto`` (a crash between a log line and its checkpoint leaves one extra)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        if d.get("event") == "epoch" and d["epoch"] <= upto:
            out.append(EpochRecord(**{k: v for k, v in d.items() if k != "event"}))
    return out


def _write_log(path: Path, records: Sequence[EpochRecord], end: dict[str, Any] | None = None) -> None:
    lines = [json.dumps(r.to_json()) for r in records]
    if end is not None:
        lines.append(json.dumps({"event": "end", **end}))
    atomic.write_bytes(path, ("\n".join(lines) + "\n").encode())


def finetune(net: TransformerNet, pairs: Sequence[Pair], folder: str | Path, cfg: FinetuneConfig, *,
             resume: bool = False, on_step: StepFn | None = None, on_epoch: EpochFn | None = None) -> FinetuneResult:
    """Train ``net`` (in place) on ``pairs``; returns where the best weights are. ``resume=True`` continues
    from ``folder/last.pt`` when it exists (the settings must match, except ``epochs``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    device = _device(cfg.device)
    train_pairs, val_pairs = split(pairs, cfg.val_fraction)
    smallest = min(min(p.input.shape[:2]) for p in pairs)
    crop = min(cfg.crop, smallest - smallest % 4)
    train_set = PairCrops(train_pairs, crop, train=True, repeats=cfg.repeats, scale=(cfg.scale_min, 1.0))
    val_set = PairCrops(val_pairs, crop, train=False)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch)
    total_steps = steps_per_epoch * cfg.epochs

    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(total_steps, cfg.warmup))
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    start, history, best_val, bad = 1, [], math.inf, 0
    state = load_checkpoint(folder / LAST) if resume and (folder / LAST).is_file() else None
    if state is not None and (state.get("config") != cfg.key() or state["arch"] != net.arch.to_json()):
        raise ConfigError(f"{folder / LAST}: made with other settings or another network; "
                          f"start a new run folder or use the same settings")
    # the starting weights' loss, before any step: kept in the checkpoint, so a resumed run reports the
    # base's figure, not its own first epoch's (a checkpoint from before it was kept: ``net``, the base here)
    first_val = state["first_val"] if state is not None and "first_val" in state else \
        _validate(net, val_set, cfg, device)
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start, best_val, bad = state["epoch"] + 1, state["best_val"], state["bad_epochs"]
        history = _read_log(folder / LOG, state["epoch"])

    stopped = bad >= cfg.patience
    epoch = start - 1
    for epoch in range(start, cfg.epochs + 1):
        if stopped:
            break
        t0, losses = time.perf_counter(), []
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + epoch)  # the temporal term's motions
        for i, (a, b) in enumerate(_batches(train_set, cfg.batch, cfg.seed, epoch)):
            a, b = a.to(device), b.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = total(net, a, b, cfg.loss, gen)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            losses.append(float(loss.detach()))
            if on_step:
                on_step((epoch - 1) * steps_per_epoch + i + 1, total_steps)
        val = _validate(net, val_set, cfg, device)
        improved = val < best_val * (1 - cfg.min_delta)
        if improved:
            best_val, bad = val, 0
            save_checkpoint(folder / BEST, {"model": net.state_dict(), "arch": net.arch.to_json(),
                                            "epoch": epoch, "val_loss": val})
        else:
            bad += 1
        record = EpochRecord(epoch, sum(losses) / len(losses), val, sched.get_last_lr()[0],
                             time.perf_counter() - t0, best_val, improved)
        history.append(record)
        _write_log(folder / LOG, history)
        save_checkpoint(folder / LAST, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                        "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                                        "epoch": epoch, "best_val": best_val, "bad_epochs": bad,
                                        "first_val": first_val,
                                        "arch": net.arch.to_json(), "config": cfg.key()})
        if on_epoch:
            on_epoch(record)
        stopped = bad >= cfg.patience
    epochs_run = history[-1].epoch if history else 0
    _write_log(folder / LOG, history, {"best_val": best_val, "first_val": first_val, "epochs": epochs_run,
                                       "stopped_early": stopped and epochs_run < cfg.epochs})
    return FinetuneResult(folder, folder / BEST, best_val, first_val, epochs_run,
                          stopped and epochs_run < cfg.epochs, tuple(history))


@dataclass(frozen=True)
class HeldOutScores:
    """How close a network's outputs come to the held-out pairs' targets, on whole frames.

    ``psnr_db``: PSNR of all held-out pixels pooled (peak 1.0; inf when identical); ``ssim``: the mean SSIM
    (grey, :func:`core.quality.metrics.ssim`). Higher is closer for both.
    """

    pairs: int
    psnr_db: float
    ssim: float


def score_held_out(net: TransformerNet, pairs: Sequence[Pair]) -> HeldOutScores:
    """Score ``net`` (unchanged: its mode is restored) on the whole frames of ``pairs`` on the CPU, output
    clamped to [0, 1] and rounded to uint8 as the deployed model's is rendered."""
    from core.quality.metrics import mse, ssim
    from core.video.frames import nchw_to_hwc, to_uint8

    if not pairs:
        raise ConfigError("score_held_out: no pairs to score")
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    errors, similarities = [], []
    try:
        with torch.no_grad():
            for p in pairs:
                x = torch.from_numpy(np.ascontiguousarray(p.input.transpose(2, 0, 1)))[None].float().div(255.0)
                out = to_uint8(nchw_to_hwc(net(x.to(device)).clamp(0, 1).cpu().numpy()))
                errors.append(mse(out, p.target))
                similarities.append(ssim(out, p.target))
    finally:
        net.train(was_training)
    pooled = float(np.mean(errors))
    return HeldOutScores(len(pairs), float("inf") if pooled == 0 else float(10 * np.log10(1.0 / pooled)),
                         float(np.mean(similarities)))


def load_best(result: FinetuneResult) -> TransformerNet:
    """The best weights of a run, in a fresh network on the CPU, in eval mode."""
    state = load_checkpoint(result.best)
    return net_from_state(state, result.best).eval()
