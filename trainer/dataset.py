"""Input/target image pairs for fine-tuning, read from a folder, with random crops and flips.

Folder layout (what the CLI's ``--pairs DIR`` and the Style Lab's approved pairs use)::

    DIR/inputs/<stem>.png     the source frame
    DIR/targets/<stem>.png    what the model should make of it (same size)

Every stem must appear in both folders with equal image sizes; anything else is a :class:`ConfigError`
naming the file. The split into training and validation is by a hash of the stem, so it is stable when
pairs are added (a pair never moves from validation into training). Images are held in memory as uint8:
pair sets here are hundreds of frames, not millions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.errors import ConfigError, MediaNotFoundError, UnsupportedVideoError
from core.fingerprint import file_sha256
from core.video.stills import IMAGE_EXTS, read_image

INPUTS, TARGETS = "inputs", "targets"


@dataclass(frozen=True)
class Pair:
    stem: str
    input: np.ndarray  # (H, W, 3) uint8 RGB
    target: np.ndarray  # (H, W, 3) uint8 RGB


def _images(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            if p.stem in found:
                raise ConfigError(f"{p}: two images share the stem {p.stem!r} ({found[p.stem].name})")
            found[p.stem] = p
    return found


def load_pairs(root: str | Path) -> list[Pair]:
    """Every pair under ``root`` (see the module docstring), sorted by stem; raises on any mismatch."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MediaNotFoundError(f"pairs folder {root} does not exist")
    for sub in (INPUTS, TARGETS):
        if not (root / sub).is_dir():
            raise ConfigError(f"{root}: expected sub-folders {INPUTS}/ and {TARGETS}/ with same-named images; "
                              f"{sub}/ is missing")
    ins, outs = _images(root / INPUTS), _images(root / TARGETS)
    if missing := sorted(set(ins) ^ set(outs)):
        stem = missing[0]
        where = root / (TARGETS if stem in ins else INPUTS)
        raise ConfigError(f"{where}: no image for {stem!r} (every stem needs an input and a target)")
    if not ins:
        raise ConfigError(f"{root}: no image pairs ({', '.join(IMAGE_EXTS)} files) found")
    pairs = []
    for stem in sorted(ins):
        try:
            a, b = read_image(ins[stem]), read_image(outs[stem])
        except UnsupportedVideoError as exc:
            raise ConfigError(str(exc)) from None
        if a.shape != b.shape:
            raise ConfigError(f"{outs[stem]}: size {b.shape[1]}x{b.shape[0]} differs from its input's "
                              f"{a.shape[1]}x{a.shape[0]}")
        pairs.append(Pair(stem, a, b))
    return pairs


def data_hash(root: str | Path) -> str:
    """SHA-256 over the stems and file contents of a pair folder: the model's lineage names its data."""
    root = Path(root)
    h = hashlib.sha256()
    for sub in (INPUTS, TARGETS):
        for stem, p in sorted(_images(root / sub).items()):
            h.update(f"{sub}/{stem}:{file_sha256(p)}\n".encode())
    return h.hexdigest()


def is_validation(stem: str, fraction: float) -> bool:
    """A stable split: the stem's hash decides, so adding pairs never reshuffles old ones."""
    bucket = int.from_bytes(hashlib.sha256(stem.encode()).digest()[:4], "big") / 2**32
    return bucket < fraction


def split(pairs: Sequence[Pair], fraction: float) -> tuple[list[Pair], list[Pair]]:
    """(train, validation). Both are non-empty when there are two or more pairs."""
    if len(pairs) < 2:
        raise ConfigError(f"fine-tuning needs at least 2 pairs (one to train, one to validate), got {len(pairs)}")
    val = [p for p in pairs if is_validation(p.stem, fraction)]
    train = [p for p in pairs if not is_validation(p.stem, fraction)]
    if not val:  # tiny sets: the pair that hashes lowest validates
        first = min(pairs, key=lambda p: hashlib.sha256(p.stem.encode()).digest())
        val, train = [first], [p for p in pairs if p is not first]
    if not train:
        train, val = val[1:], val[:1]
    return train, val


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)


class PairCrops(torch.utils.data.Dataset):
    """Crops of ``crop`` x ``crop`` pixels from pairs as (input, target) float32 (3, h, w) in [0, 1].

    ``train=True``: a random position and a random horizontal flip per item (seeded by the DataLoader's
    generator through torch's RNG). ``train=False``: the centre crop, so the validation loss is a fixed
    function of the weights. Images smaller than ``crop`` are used whole in that dimension.
    """

    def __init__(self, pairs: Sequence[Pair], crop: int, train: bool, repeats: int = 1) -> None:
        if crop < 16:
            raise ConfigError(f"crop must be >= 16 pixels, got {crop}")
        self.pairs, self.crop, self.train, self.repeats = list(pairs), crop, train, max(1, repeats)

    def __len__(self) -> int:
        return len(self.pairs) * self.repeats

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pairs[i % len(self.pairs)]
        h, w = pair.input.shape[:2]
        ch, cw = min(self.crop, h), min(self.crop, w)
        if self.train:
            y = int(torch.randint(0, h - ch + 1, ()).item())
            x = int(torch.randint(0, w - cw + 1, ()).item())
            flip = bool(torch.rand(()) < 0.5)
        else:
            y, x, flip = (h - ch) // 2, (w - cw) // 2, False
        a = pair.input[y:y + ch, x:x + cw]
        b = pair.target[y:y + ch, x:x + cw]
        if flip:
            a, b = a[:, ::-1], b[:, ::-1]
        return _to_tensor(a), _to_tensor(b)
