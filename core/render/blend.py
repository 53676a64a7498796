"""The stabiliser's per-pixel work fused into one compiled pass per frame (Numba).

OpenCV has no primitive for "blend the base with the warped past, blend the lines with theirs, lay the
lines over the base, round": as OpenCV calls that was ten passes over each 32-row band (a colour conversion,
a cast, two ``blendLinear``, a channel extract and insert, a third ``blendLinear`` with the ink, a rounding,
a conversion back), and the EMA mode's four. Here each pixel is read once and written once. Thread CPU time
inside a real render (cartoon, 720p, 300 frames): the flow blend 11.1 -> 4.7-5.0 ms a frame (balanced preset;
the rest is the warp, which OpenCV still does), the EMA 3.2 -> 1.4 ms (speed preset); the kernels alone take
1.7 and 1.0 ms a 720p frame.

The bytes are those OpenCV's calls gave: every step is the same IEEE single-precision operation in the same
order as OpenCV's. ``blendLinear`` is ``(a*w1 + b*w2) / (w1 + w2 + 1e-5)`` with a multiply and an add, never
a fused multiply-add, and Numba without ``fastmath`` neither contracts nor reorders them; ``addWeighted`` on
float images is ``fma(a, alpha, b*beta)`` on CPUs with FMA (its vector path), which :func:`_fma` asks LLVM
for; ``convertScaleAbs`` is round-half-even of the absolute value, saturated. ``tests/render/test_blend.py``
holds both kernels to OpenCV's calls on the machine it runs on.

Numba compiles a kernel on its first call and keeps the machine code beside this file (``cache``); another
process loads it, which still costs ~0.4 s the first time in a process (Numba's import and typing tables):
:func:`warm` lets a render worker pay that while the job's analysis runs (:class:`core.render.pool.LocalPool`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba.core.extending import intrinsic

_ONE = np.float32(1.0)
_TOP = np.float32(255.0)


def _compiled(fn: Callable[..., None]) -> Any:
    """``fn`` compiled without the GIL, with NumPy's float semantics (no zero-division checks, which would
    keep the loop from vectorising), and cached on disk; where Numba finds no writable place for its cache
    (a read-only install and home), compiled afresh in each process instead of failing the import."""
    try:
        return numba.njit(cache=True, nogil=True, error_model="numpy")(fn)
    except RuntimeError:
        return numba.njit(nogil=True, error_model="numpy")(fn)


@_compiled
def blend_compose(old: np.ndarray, base: np.ndarray, lines: np.ndarray, rel: np.ndarray,
                  s_base: np.float32, s_lines: np.float32, eps_base: np.float32, eps_lines: np.float32,
                  eps_ink: np.float32, ink0: np.float32, ink1: np.float32, ink2: np.float32,
                  new: np.ndarray, out: np.ndarray) -> None:
    """The flow blend of a frame (or any run of whole pixels), all arrays flat and C-ordered: ``old`` the
    warped past state and ``new`` the new one (4 floats a pixel: base RGB, ink coverage), ``base`` the styled
    base (3 a pixel, uint8 or float32), ``lines`` the coverage and ``rel`` the flow's reliability (1 a pixel),
    ``out`` the composed frame (3 uint8 a pixel).

    The past weighs ``rel * s_base`` in the base and ``rel * s_lines`` in the lines; the lines are then laid
    over the base in ink ``(ink0, ink1, ink2)``. Each of the three blends is ``cv2.blendLinear``'s with its
    ``eps``: passing a weight of 0 *and* an ``eps`` of 0 makes a blend an exact copy of its current value (no
    past, no lines), so one loop without branches (which would keep it from vectorising) serves every case.
    """
    for i in range(rel.size):
        r = rel[i]
        wb = r * s_base
        ib = _ONE - wb
        db = wb + ib + eps_base
        b0 = (old[4 * i] * wb + np.float32(base[3 * i]) * ib) / db
        b1 = (old[4 * i + 1] * wb + np.float32(base[3 * i + 1]) * ib) / db
        b2 = (old[4 * i + 2] * wb + np.float32(base[3 * i + 2]) * ib) / db
        wl = r * s_lines
        il = _ONE - wl
        c = (old[4 * i + 3] * wl + lines[i] * il) / (wl + il + eps_lines)
        new[4 * i] = b0
        new[4 * i + 1] = b1
        new[4 * i + 2] = b2
        new[4 * i + 3] = c
        ic = _ONE - c
        dc = ic + c + eps_ink
        out[3 * i] = np.uint8(min(np.rint(abs((b0 * ic + ink0 * c) / dc)), _TOP))
        out[3 * i + 1] = np.uint8(min(np.rint(abs((b1 * ic + ink1 * c) / dc)), _TOP))
        out[3 * i + 2] = np.uint8(min(np.rint(abs((b2 * ic + ink2 * c) / dc)), _TOP))


@intrinsic
def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> tuple[Any, Callable[..., Any]]:
    """``a * b + c`` rounded once (LLVM's ``fma``: the CPU's instruction, or an exact libm call without one),
    which is what OpenCV's vector ``addWeighted`` computes for float images on CPUs with FMA."""
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fma(*args)

    return a(a, b, c), codegen


@_compiled
def ema_compose(state: np.ndarray, base: np.ndarray, cover: np.ndarray, lines: np.ndarray,
                s_base: np.float32, t_base: np.float32, s_lines: np.float32, t_lines: np.float32,
                eps_ink: np.float32, ink0: np.float32, ink1: np.float32, ink2: np.float32, out: np.ndarray) -> None:
    """The in-place EMA of both layers and their composition, all arrays flat: ``state`` the base's (3 floats
    a pixel) and ``cover`` the lines' (1), updated in place, from ``base`` (3 a pixel, uint8 or float32) and
    ``lines`` (1); ``out`` the composed frame (3 uint8 a pixel).

    Each EMA is ``cv2.addWeighted(past, s, current, t, 0)``'s ``fma(past, s, current * t)``; a weight ``s`` of 0
    and ``t`` of 1 copies the current layer exactly (the state must then hold finite numbers: zeros when new).
    The composition is :func:`blend_compose`'s, with ``eps_ink`` 0 and zero lines for a frame without lines.
    """
    for i in range(cover.size):
        b0 = _fma(state[3 * i], s_base, np.float32(base[3 * i]) * t_base)
        b1 = _fma(state[3 * i + 1], s_base, np.float32(base[3 * i + 1]) * t_base)
        b2 = _fma(state[3 * i + 2], s_base, np.float32(base[3 * i + 2]) * t_base)
        c = _fma(cover[i], s_lines, lines[i] * t_lines)
        state[3 * i] = b0
        state[3 * i + 1] = b1
        state[3 * i + 2] = b2
        cover[i] = c
        ic = _ONE - c
        dc = ic + c + eps_ink
        out[3 * i] = np.uint8(min(np.rint(abs((b0 * ic + ink0 * c) / dc)), _TOP))
        out[3 * i + 1] = np.uint8(min(np.rint(abs((b1 * ic + ink1 * c) / dc)), _TOP))
        out[3 * i + 2] = np.uint8(min(np.rint(abs((b2 * ic + ink2 * c) / dc)), _TOP))


def warm() -> None:
    """Load (or compile) the kernel for the layer types renders use, so a render's first frame does not wait
    for it; idempotent and cheap once done."""
    f = np.float32
    for base_type in (np.uint8, np.float32):
        blend_compose(np.zeros(4, f), np.zeros(3, base_type), np.zeros(1, f), np.zeros(1, f), f(0), f(0), f(0),
                      f(0), f(0), f(0), f(0), f(0), np.zeros(4, f), np.zeros(3, np.uint8))
        ema_compose(np.zeros(3, f), np.zeros(3, base_type), np.zeros(1, f), np.zeros(1, f), f(0), f(1), f(0), f(1),
                    f(0), f(0), f(0), f(0), np.zeros(3, np.uint8))
