"""Transfer functions (encoded <-> linear light) for the 8-bit path, as float functions and lookup tables.

``to_linear`` maps an encoded value in [0, 1] to linear light, ``from_linear`` the reverse. "rec709" is the BT.709
camera OETF and its inverse (not the BT.1886 display EOTF). The float functions accept any range: the linear
segments extend below 0 and pure powers keep the sign (``sign(x) * |x|^g``).

Tables: :func:`decode_table` (256,) float32 indexed by a uint8 code; :func:`encode_table` (4096,) uint8
indexed by ``round(x * 4095)`` for linear ``x`` clipped to [0, 1]. That table alone round-trips every code
for srgb, rec709 and linear, but a pure gamma is too steep near black for any uniform table (gamma 2.2 puts
codes 0..4 below 0.5/4095: all five would come back as 0), so :func:`encode_u8` searches the exact code in
those few dark bins and round-trips every code of every transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from core.errors import ConfigError
from core.video.frames import to_uint8

ENCODE_SIZE = 4096
#: BT.709's 1.099 and 0.018 to full precision (as BT.2020 gives them): the rounded pair leaves a step at the
#: knee (0.081 vs 0.08125) where the curve and its inverse disagree.
_ALPHA = 1.09929682680944
_BETA = 0.018053968510807


@dataclass(frozen=True)
class Transfer:
    """A named pair of float32 -> float32 functions: ``to_linear`` (decode) and ``from_linear`` (encode)."""

    name: str
    to_linear: Callable[[np.ndarray], np.ndarray]
    from_linear: Callable[[np.ndarray], np.ndarray]


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decode: encoded float -> linear float32."""
    v = np.asarray(v, dtype=np.float32)
    return np.where(v <= 0.04045, v / 12.92, ((np.maximum(v, 0.04045) + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encode: linear float -> encoded float32."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055).astype(
        np.float32)


def rec709_to_linear(v: np.ndarray) -> np.ndarray:
    """Inverse BT.709 OETF: encoded float -> scene-linear float32."""
    v = np.asarray(v, dtype=np.float32)
    knee = 4.5 * _BETA
    return np.where(v < knee, v / 4.5, ((np.maximum(v, knee) + _ALPHA - 1) / _ALPHA) ** (1 / 0.45)).astype(
        np.float32)


def linear_to_rec709(x: np.ndarray) -> np.ndarray:
    """BT.709 OETF: scene-linear float -> encoded float32."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x < _BETA, x * 4.5, _ALPHA * np.maximum(x, _BETA) ** 0.45 - (_ALPHA - 1)).astype(np.float32)


def _power(g: float) -> Callable[[np.ndarray], np.ndarray]:
    def fn(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return (np.sign(x) * np.abs(x) ** g).astype(np.float32)

    fn.__name__ = f"power_{g:g}"
    return fn


def _identity(x: np.ndarray) -> np.ndarray:
    return np.array(x, dtype=np.float32)


TRANSFERS: dict[str, Transfer] = {
    "srgb": Transfer("srgb", srgb_to_linear, linear_to_srgb),
    "rec709": Transfer("rec709", rec709_to_linear, linear_to_rec709),
    "gamma2.2": Transfer("gamma2.2", _power(2.2), _power(1 / 2.2)),
    "gamma2.4": Transfer("gamma2.4", _power(2.4), _power(1 / 2.4)),
    "linear": Transfer("linear", _identity, _identity),
}


def transfer(name: str) -> Transfer:
    """Look a transfer up by name; an unknown name raises :class:`ConfigError` listing the known ones."""
    try:
        return TRANSFERS[name]
    except KeyError:
        raise ConfigError(f"unknown transfer function {name!r} (known: {', '.join(TRANSFERS)})") from None


@cache
def decode_table(name: str) -> np.ndarray:
    """(256,) float32, read-only: linear light for each uint8 code of the encoding ``name``."""
    table = transfer(name).to_linear(np.arange(256, dtype=np.float32) / np.float32(255))
    table.setflags(write=False)
    return table


@cache
def encode_table(name: str) -> np.ndarray:
    """(4096,) uint8, read-only: entry i is the code for linear ``i / 4095`` (see :func:`encode_u8`)."""
    table = to_uint8(transfer(name).from_linear(np.arange(ENCODE_SIZE, dtype=np.float32) / np.float32(ENCODE_SIZE - 1)))
    table.setflags(write=False)
    return table


def decode_u8(name: str, codes: np.ndarray) -> np.ndarray:
    """uint8 codes (any shape) -> float32 linear light of the same shape (a new array)."""
    if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8:
        raise ConfigError(f"decode_u8({name}): expected a uint8 array, got {getattr(codes, 'dtype', type(codes))}")
    return decode_table(name)[codes]


def encode_u8(name: str, linear: np.ndarray) -> np.ndarray:
    """float linear light (any shape, clipped to [0, 1]) -> uint8 codes of the same shape.

    Looks ``round(x * 4095)`` up in :func:`encode_table`; in the dark bins where that table cannot tell
    codes apart (pure gammas only) it searches the exact code instead, so ``encode_u8(decode_u8(c)) == c``
    for every code of every transfer.
    """
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    index = _table_index(x)
    out = encode_table(name).take(index)
    limit, thresholds = _dark_search(name)
    if limit:
        dark = index < limit
        if dark.any():
            out[dark] = np.searchsorted(thresholds, x[dark], side="right")
    return out


@cache
def _dark_search(name: str) -> tuple[int, np.ndarray]:
    """The table index below which :func:`encode_table` misses codes (0: nowhere), and the 255 linear values
    halfway (in code space) between consecutive codes, for an exact search there."""
    codes = np.arange(256)
    index = _table_index(decode_table(name))
    missed = index[encode_table(name)[index] != codes]
    limit = int(missed.max()) + 1 if missed.size else 0
    thresholds = transfer(name).to_linear((np.arange(255, dtype=np.float32) + np.float32(0.5)) / np.float32(255))
    return limit, thresholds


def _table_index(x: np.ndarray) -> np.ndarray:
    """``floor(x * 4095 + 0.5)`` (round half up) as uint16 for ``x`` in [0, 1]; in-place passes only."""
    scaled = x * np.float32(ENCODE_SIZE - 1)
    scaled += np.float32(0.5)
    return scaled.astype(np.uint16)
