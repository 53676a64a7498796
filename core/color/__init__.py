"""Colour management: LUT files read strictly, applied through OpenColorIO, baked for the 8-bit path.

* :mod:`.lut` the parsed form (:class:`Lut`), :mod:`.cube` the ``.cube`` reader (Iridas and Resolve) and writer;
  :mod:`.readers` :data:`LUT_READERS` maps an extension to its reader and :func:`read_lut` dispatches on it.
* :mod:`.ocio` builds an OpenColorIO processor from our parsed data: :func:`apply_float` (float32 RGB).
* :mod:`.bake` :func:`bake_u8` (a cached (256, 256, 256, 3) uint8 table) and :func:`apply_u8` (uint8 frames);
  :func:`packed_table` its 32-bit form for :func:`lookup_u8` (RGB frames) and :func:`lookup_rgbx` (4-byte pixels).
* :mod:`.transfer` sRGB, Rec.709, gamma 2.2/2.4: float functions and 8-bit lookup tables.

May import: the base and ``core.video`` (the frame contract).
"""

from __future__ import annotations

from .bake import apply_u8, bake_path, bake_u8, lookup_rgbx, lookup_u8, pack_table, packed_table
from .cube import read_cube, write_cube
from .lut import Lut, Lut1D, Lut3D
from .ocio import apply_float, processor
from .readers import LUT_READERS, read_lut
from .summary import LutSummary, summarize
from .transfer import TRANSFERS, Transfer, decode_table, decode_u8, encode_table, encode_u8

__all__ = [
    "LUT_READERS", "TRANSFERS", "Lut", "Lut1D", "Lut3D", "LutSummary", "Transfer", "apply_float", "apply_u8",
    "bake_path", "bake_u8", "decode_table", "decode_u8", "encode_table", "encode_u8", "lookup_rgbx", "lookup_u8",
    "pack_table", "packed_table", "processor", "read_cube", "read_lut", "summarize", "write_cube",
]
