"""Model weights on disk, without pickle.

Two forms:
  * training checkpoints (``*.pt``): torch state_dicts (model, optimiser, scheduler, counters) saved with
    ``torch.save`` and always loaded with ``weights_only=True``, which refuses anything but tensors and
    plain containers, so a checkpoint cannot run code;
  * deployable weights (``*.npz`` beside a registered ``.onnx``): the network's arrays plus its
    :class:`~trainer.model.Arch` as JSON, read with ``allow_pickle=False``. They are what ``--base NAME``
    fine-tunes from; third-party ONNX models have none and cannot be fine-tuned.

Every write is atomic (temp name in the same folder, fsync, rename).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import atomic
from core.errors import BadModelError, ConfigError, MediaNotFoundError

from .model import ARCHS, Arch, TransformerNet

ARCH_KEY = "__arch__"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic.write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MediaNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; none is the user's code running
        raise BadModelError(f"{path}: not a readable training checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "arch" not in state:
        raise BadModelError(f"{path}: not a training checkpoint (expected a dict with 'model' and 'arch')")
    return state


def net_from_state(state: dict[str, Any], where: Path) -> TransformerNet:
    try:
        net = TransformerNet(Arch.from_json(state["arch"]))
        net.load_state_dict(state["model"])
    except (ValueError, RuntimeError, TypeError) as exc:
        raise BadModelError(f"{where}: weights do not fit the network ({exc})") from None
    return net


def save_npz(net: TransformerNet, path: Path) -> None:
    """The network's weights and architecture as an .npz (no pickle)."""
    arrays = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    arrays[ARCH_KEY] = np.frombuffer(json.dumps(net.arch.to_json()).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic.write_bytes(path, buf.getvalue())


def load_npz(path: Path) -> TransformerNet:
    if not path.is_file():
        raise MediaNotFoundError(f"weights file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arch = Arch.from_json(json.loads(z[ARCH_KEY].tobytes().decode()))
            state = {k: torch.from_numpy(z[k].copy()) for k in z.files if k != ARCH_KEY}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise BadModelError(f"{path}: not a weights file written by the trainer ({type(exc).__name__})") from None
    return net_from_state({"arch": arch.to_json(), "model": state}, path)


def base_network(base: str, seed: int = 0) -> tuple[TransformerNet, str]:
    """The network to fine-tune and its lineage name: an architecture name ("compact", "johnson") starts
    from seeded random weights; a registered model (``name`` or ``name@version``) from its weights."""
    if base in ARCHS:
        torch.manual_seed(seed)
        return TransformerNet(ARCHS[base]), base
    from core.ml import registry

    if not registry.is_registered(base):
        raise ConfigError(f"base model {base!r}: not a registered model (see `models list`) nor one of "
                          f"{', '.join(ARCHS)} (train from scratch)")
    return load_npz(registry.resolve_weights(base)), registry.entry(base).spec
