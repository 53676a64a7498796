"""Input/target image pairs for fine-tuning, read from a folder, with random crops and flips.

Folder layout (what the CLI's ``--pairs DIR`` and the Style Lab's approved pairs use)::

    DIR/inputs/<stem>.png     the source frame
    DIR/targets/<stem>.png    what the model should make of it (same size)

    DIR/groups.json           optional: {stem: group}, the clip (or shot) each pair came from

Every stem must appear in both folders with equal image sizes; anything else is a :class:`ConfigError`
naming the file. The split into training and validation is by a hash of the pair's group where there are
two groups or more, else of its stem, so it is stable when pairs are added (a pair never moves from
validation into training). Why by group: frames of one clip are near-copies of each other, so a
validation frame from a training clip measures memory, not the look: a fine-tune scored 24.6 dB on held-out
frames of its own clip and 19.5 dB on another. The Style Lab's approvals write ``groups.json`` (the rated
clip). Images are held in memory as uint8: pair sets here are hundreds of frames, not millions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from core.errors import ConfigError, MediaNotFoundError, UnsupportedVideoError
from core.fingerprint import file_sha256
from core.video.stills import IMAGE_EXTS, read_image

INPUTS, TARGETS, GROUPS = "inputs", "targets", "groups.json"


@dataclass(frozen=True)
class Pair:
    stem: str
    input: np.ndarray  # (H, W, 3) uint8 RGB
    target: np.ndarray  # (H, W, 3) uint8 RGB
    group: str = ""  # the clip it came from ("": unknown, the pair is its own group)

    @property
    def key(self) -> str:
        """What the validation split hashes: the group, else the stem."""
        return self.group or self.stem


def read_groups(root: Path) -> dict[str, str]:
    """``root/groups.json`` as {stem: group} ({} when absent); ConfigError naming the file when malformed."""
    path = root / GROUPS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"{path}: expected an object mapping each pair's stem to its clip, e.g. "
                          '{"fb000001-A": "office.mp4"}')
    return data


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
    groups, pairs = read_groups(root), []
    for stem in sorted(ins):
        try:
            a, b = read_image(ins[stem]), read_image(outs[stem])
        except UnsupportedVideoError as exc:
            raise ConfigError(str(exc)) from None
        if a.shape != b.shape:
            raise ConfigError(f"{outs[stem]}: size {b.shape[1]}x{b.shape[0]} differs from its input's "
                              f"{a.shape[1]}x{a.shape[0]}")
        pairs.append(Pair(stem, a, b, groups.get(stem, "")))
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
    """(train, validation). Both are non-empty when there are two or more pairs. With two or more groups
    (clips) whole groups go to validation, at least one and never all: the held-out score is then on clips
    the fine-tune never saw."""
    if len(pairs) < 2:
        raise ConfigError(f"fine-tuning needs at least 2 pairs (one to train, one to validate), got {len(pairs)}")
    grouped = len({p.group for p in pairs if p.group}) >= 2
    key = (lambda p: p.key) if grouped else (lambda p: p.stem)
    keys = sorted({key(p) for p in pairs}, key=lambda k: hashlib.sha256(k.encode()).digest())
    held = {k for k in keys if is_validation(k, fraction)} or {keys[0]}  # tiny sets: the lowest hash validates
    if len(held) == len(keys):
        held = {keys[0]}
    val = [p for p in pairs if key(p) in held]
    train = [p for p in pairs if key(p) not in held]
    return train, val


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)


class PairCrops(torch.utils.data.Dataset):
    """Crops of ``crop`` x ``crop`` pixels from pairs as (input, target) float32 (3, h, w) in [0, 1].

    ``train=True``: a random scale in ``scale`` (both images resized alike by nearest neighbour, so every
    pixel stays a true pair: an area filter averages a non-linear look's targets), a random position
    and a random horizontal flip per item (seeded through torch's RNG). Why scales: forty frames of one clip
    show its objects at one size; the same look on another clip meets them larger or smaller. A look tied
    to pixel size (strokes of a fixed width) keeps ``scale=(1, 1)``. ``train=False``: the centre crop at
    full scale, so the validation loss is a fixed function of the weights. Images smaller than ``crop``
    are used whole in that dimension.
    """

    def __init__(self, pairs: Sequence[Pair], crop: int, train: bool, repeats: int = 1,
                 scale: tuple[float, float] = (1.0, 1.0)) -> None:
        if crop < 16:
            raise ConfigError(f"crop must be >= 16 pixels, got {crop}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"scale: expected 0 < low <= high <= 1, got {scale}")
        self.pairs, self.crop, self.train, self.repeats = list(pairs), crop, train, max(1, repeats)
        self.scale = scale

    def __len__(self) -> int:
        return len(self.pairs) * self.repeats

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pairs[i % len(self.pairs)]
        a_full, b_full = pair.input, pair.target
        if self.train and self.scale[0] < 1:
            s = self.scale[0] + float(torch.rand(())) * (self.scale[1] - self.scale[0])
            h, w = a_full.shape[:2]
            # never below the crop: a side already smaller than it stays as it is
            size = (w if w < self.crop else max(self.crop, round(w * s)),
                    h if h < self.crop else max(self.crop, round(h * s)))
            if size != (w, h):
                a_full = cv2.resize(a_full, size, interpolation=cv2.INTER_NEAREST)
                b_full = cv2.resize(b_full, size, interpolation=cv2.INTER_NEAREST)
        h, w = a_full.shape[:2]
        ch, cw = min(self.crop, h), min(self.crop, w)
        if self.train:
            y = int(torch.randint(0, h - ch + 1, ()).item())
            x = int(torch.randint(0, w - cw + 1, ()).item())
            flip = bool(torch.rand(()) < 0.5)
        else:
            y, x, flip = (h - ch) // 2, (w - cw) // 2, False
        a = a_full[y:y + ch, x:x + cw]
        b = b_full[y:y + ch, x:x + cw]
        if flip:
            a, b = a[:, ::-1], b[:, ::-1]
        return _to_tensor(a), _to_tensor(b)
