"""core.render.blend: the stabiliser's compiled blends give the bytes of the OpenCV calls they replaced.

The references below are those calls as the stabiliser made them before (commit 1793c1f): ``cv2.blendLinear``
for the flow blend and the ink, ``cv2.addWeighted`` for the EMA, ``cv2.convertScaleAbs`` for the rounding.
Random layers and weights, a width that no vector length divides, weights of exactly 0 and 1, uint8 and float
bases: every float the kernels write must equal OpenCV's, bit for bit.
"""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from core.presets import TemporalConfig
from core.render import blend
from core.render.temporal import BLEND_EPS, BLEND_MODULE, Stabiliser

H, W = 23, 53  # 53: no SIMD width divides a row, so OpenCV's scalar tails are compared too
INK = (np.float32(30), np.float32(20), np.float32(200))


def _layers(seed: int, base_type: type) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    old = rng.random((H, W, 4), dtype=np.float32) * np.float32(255)
    old[..., 3] = rng.random((H, W), dtype=np.float32)
    base = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    if base_type is np.float32:
        base = rng.random((H, W, 3), dtype=np.float32) * np.float32(255)
    lines = rng.random((H, W), dtype=np.float32)
    lines[rng.random((H, W)) < 0.3] = 0  # most pixels carry no ink
    lines[rng.random((H, W)) < 0.1] = 1
    rel = rng.random((H, W), dtype=np.float32)
    rel[rng.random((H, W)) < 0.3] = 1
    rel[rng.random((H, W)) < 0.2] = 0
    return old, base, lines, rel


def _flow_reference(old: np.ndarray, base: np.ndarray, lines: np.ndarray | None, rel: np.ndarray, s_base: np.float32,
                    s_lines: np.float32, blend_base: bool, blend_lines: bool) -> tuple[np.ndarray, np.ndarray]:
    """The flow blend as OpenCV calls (the stabiliser's band loop before the kernel)."""
    cur = cv2.cvtColor(base, cv2.COLOR_RGB2RGBA).astype(np.float32, copy=False)
    if blend_base:
        w_past = rel * s_base
        state = cv2.blendLinear(old, cur, w_past, 1.0 - w_past)
    else:
        state = cur.copy()
    if lines is None:
        return state, cv2.cvtColor(cv2.convertScaleAbs(state), cv2.COLOR_RGBA2RGB)
    cover = lines
    if blend_lines:
        w_past = rel * s_lines
        cover = cv2.blendLinear(cv2.extractChannel(old, 3), lines, w_past, 1.0 - w_past)
    cv2.insertChannel(cover, state, 3)
    ink = np.empty((H, W, 4), np.float32)
    ink[:] = (*INK, 0)
    return state, cv2.cvtColor(cv2.convertScaleAbs(cv2.blendLinear(state, ink, 1.0 - cover, cover)),
                               cv2.COLOR_RGBA2RGB)


@pytest.mark.parametrize("base_type", [np.uint8, np.float32])
@pytest.mark.parametrize(("blend_base", "blend_lines", "has_lines"),
                         [(True, True, True), (False, True, True), (True, False, True), (True, False, False),
                          (False, False, True), (False, False, False)])
def test_flow_blend_equals_opencv(base_type: type, blend_base: bool, blend_lines: bool, has_lines: bool) -> None:
    for seed in range(3):
        old, base, lines, rel = _layers(seed, base_type)
        s_base, s_lines = np.float32(0.4), np.float32(0.83)
        want_state, want_out = _flow_reference(old, base, lines if has_lines else None, rel, s_base, s_lines,
                                               blend_base, blend_lines)
        no = np.float32(0)
        new, out = np.empty((H, W, 4), np.float32), np.empty((H, W, 3), np.uint8)
        blend.blend_compose(old.ravel(), base.ravel(), (lines if has_lines else np.zeros((H, W), np.float32)).ravel(),
                            rel.ravel(), s_base if blend_base else no, s_lines if blend_lines else no,
                            BLEND_EPS if blend_base else no, BLEND_EPS if blend_lines else no,
                            BLEND_EPS if has_lines else no, *INK, new.ravel(), out.ravel())
        assert np.array_equal(out, want_out), f"seed {seed}: {np.count_nonzero(out != want_out)} bytes differ"
        channels = 4 if has_lines else 3  # without lines the 4th channel is never read
        assert np.array_equal(new[..., :channels].view(np.uint32), want_state[..., :channels].view(np.uint32))


@pytest.mark.parametrize("base_type", [np.uint8, np.float32])
@pytest.mark.parametrize(("fresh_base", "fresh_lines", "has_lines"),
                         [(False, False, True), (True, False, True), (False, True, True), (True, True, True),
                          (False, False, False)])
def test_ema_blend_equals_opencv(base_type: type, fresh_base: bool, fresh_lines: bool, has_lines: bool) -> None:
    for seed in range(3):
        old, base, lines, _ = _layers(seed, base_type)
        past, cover = np.ascontiguousarray(old[..., :3]), np.ascontiguousarray(old[..., 3])
        s_base, s_lines = np.float32(0.25), np.float32(0.4)
        cur = base.astype(np.float32)
        # the reference: the stabiliser's EMA before the kernel
        want_base = cur.copy() if fresh_base else cv2.addWeighted(past, float(s_base), cur, float(1 - s_base), 0.0)
        if has_lines:
            want_cover = lines.copy() if fresh_lines else cv2.addWeighted(cover, float(s_lines), lines,
                                                                         float(1 - s_lines), 0.0)
            ink = np.empty((H, W, 3), np.float32)
            ink[:] = INK
            want_out = cv2.convertScaleAbs(cv2.blendLinear(want_base, ink, 1.0 - want_cover, want_cover))
        else:
            want_out = cv2.convertScaleAbs(want_base)
        one, no = np.float32(1), np.float32(0)
        state, cover_state, out = past.copy(), cover.copy(), np.empty((H, W, 3), np.uint8)
        if not has_lines:
            cover_state = lines = np.zeros((H, W), np.float32)
        blend.ema_compose(state.ravel(), base.ravel(), cover_state.ravel(), lines.ravel(),
                          *((no, one) if fresh_base else (s_base, one - s_base)),
                          *((no, one) if fresh_lines else (s_lines, one - s_lines)),
                          BLEND_EPS if has_lines else no, *INK, out.ravel())
        assert np.array_equal(out, want_out), f"seed {seed}: {np.count_nonzero(out != want_out)} bytes differ"
        assert np.array_equal(state.view(np.uint32), want_base.view(np.uint32))
        if has_lines:
            assert np.array_equal(cover_state.view(np.uint32), want_cover.view(np.uint32))


def test_the_kernels_can_fail() -> None:
    """Held to the reference, a kernel fed another weight differs: the comparisons above can fail."""
    old, base, lines, rel = _layers(0, np.uint8)
    _, want_out = _flow_reference(old, base, lines, rel, np.float32(0.4), np.float32(0.83), True, True)
    new, out = np.empty((H, W, 4), np.float32), np.empty((H, W, 3), np.uint8)
    blend.blend_compose(old.ravel(), base.ravel(), lines.ravel(), rel.ravel(), np.float32(0.41), np.float32(0.83),
                        BLEND_EPS, BLEND_EPS, BLEND_EPS, *INK, new.ravel(), out.ravel())
    assert not np.array_equal(out, want_out)


def test_which_stabilisers_use_the_kernels() -> None:
    assert Stabiliser(TemporalConfig(mode="flow")).compiled == (BLEND_MODULE,)
    assert Stabiliser(TemporalConfig(mode="ema")).compiled == (BLEND_MODULE,)
    assert Stabiliser(TemporalConfig(mode="neural")).compiled == ()
    assert Stabiliser(TemporalConfig(mode="off")).compiled == ()
    assert Stabiliser(TemporalConfig(mode="flow"), enabled=False).compiled == ()


def test_numba_is_not_imported_by_the_pipeline_itself() -> None:
    """The CLI's process imports the pipeline for every render, an identity one too: Numba (~0.15 s) must wait
    for the first blend, in the worker."""
    code = ("import sys, core.render.pipeline, core.render.chunk, core.render.temporal, scripts.cli.render; "
            "sys.exit('numba' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_pool_workers_load_the_kernels_as_they_start() -> None:
    """A worker told to warm the kernels has them compiled (or loaded) without any chunk calling them."""
    from core.render.pool import LocalPool

    pool = LocalPool(1, (BLEND_MODULE,))
    try:
        assert pool.executor.submit(_warmed_within, 60.0).result(timeout=120)
    finally:
        pool.close(kill=False)
    cold = LocalPool(1)
    try:
        assert not cold.executor.submit(_warmed_within, 0.5).result(timeout=60)
    finally:
        cold.close(kill=False)


def _warmed_within(seconds: float) -> bool:
    """In a worker: whether the flow kernel has a compiled signature within ``seconds``."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        module = sys.modules.get(BLEND_MODULE)
        if module is not None and len(module.blend_compose.signatures) >= 2:
            return True
        time.sleep(0.02)
    return False
