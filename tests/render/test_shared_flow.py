"""The render's metrics take the stabiliser's flow and the reduced input copy instead of measuring them again
(issue 21): what they report must not change. On a synthetic clip with motion and a cut, a meter given the
stabiliser's flow pairs and the frame features' reduced copies reports exactly what one measuring its own does."""

from __future__ import annotations

import math
from dataclasses import astuple
from pathlib import Path

from core.presets import load_preset
from core.quality.metrics import MetricsMeter
from core.render.chunk import RENDER_METRICS
from core.render.temporal import Stabiliser, cut_distance, frame_features
from core.video.probe import probe
from core.video.reader import Reader
from core.video.synthetic import ClipSpec, make_clip
from stylizers import STYLIZERS


def test_metrics_with_the_stabilisers_flow_equal_their_own(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", ClipSpec(width=200, height=120, frames=24, cut_at=13))
    with Reader(probe(clip)) as r:
        frames = [f.rgb for f in r.frames(0, 24)]
    temporal = load_preset("balanced").temporal
    cls = STYLIZERS["cartoon"]
    style = cls(cls.Params(), cls.analyze(cls.Params(), frames[::6]))
    stab = Stabiliser(temporal)
    shared, own = MetricsMeter(RENDER_METRICS), MetricsMeter(RENDER_METRICS)
    prev = None
    reported = used = 0
    for i, rgb in enumerate(frames):
        feats = frame_features(rgb, True)
        cut = cut_distance(prev, feats) > temporal.cut_threshold
        motion = None if cut else stab.motion_between(prev, feats, rgb.shape[:2])
        prev = feats
        if cut:
            stab.reset()
            shared.reset()
            own.reset()
        out = stab.apply(style.stylize(rgb, i), motion)
        a = shared.update(i, rgb, out, None if motion is None else motion.pair, small_in=feats.reduced)
        b = own.update(i, rgb, out)
        if a is None or b is None:
            assert a is b, f"frame {i}"
            continue
        # what the flow feeds is the same to the bit; edge coherence's float64 dot product follows BLAS's
        # threads in a test process (render workers keep BLAS on one thread), so the rest match to 1e-7
        assert (a.warping_error, a.flat_flicker, a.temporal_ssim) == (b.warping_error, b.flat_flicker,
                                                                      b.temporal_ssim), f"frame {i}"
        assert all(math.isclose(x, y, rel_tol=1e-7) for x, y in zip(astuple(a), astuple(b), strict=True)
                   if x is not None and y is not None), f"frame {i}: {a} vs {b}"
        reported += a is not None
        used += a is not None and motion is not None and a.warping_error is not None
    assert reported >= 6 and used >= 3  # measured frames, and some of them on the shared flow
