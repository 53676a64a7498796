"""One stylized frame at a time, fast, as a render would make it: the Dashboard's and Style Lab's preview.

Seeks to the keyframe before the frame and decodes forward; the style's job-wide analysis is the render's
own, cached per clip state, style and parameters so scrubbing does not refit it per frame.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.video.probe import check_input_file
from core.video.reader import Reader
from stylizers import get_style

from .plan import Analysis, analyze_job, read_samples, sample_indices
from .spec import JobSpec

_ANALYSES: dict[tuple[Any, ...], Analysis] = {}


_ANALYSES_KEPT = 8
_LOCK = threading.Lock()


def cached_analysis(spec: JobSpec) -> Analysis:
    """``analyze_job`` once per (input file state, style, parameters): scrubbing a preview through a clip
    must not re-fit the cartoon palette (about a second at 1080p) for every frame. Thread-safe (the Style
    Lab renders its two variants at once); two threads may both fit a missing entry, and one result stays."""
    st = Path(spec.input).stat()
    key = (str(Path(spec.input).resolve()), st.st_size, st.st_mtime_ns, spec.style, repr(spec.params))
    with _LOCK:
        found = _ANALYSES.get(key)
    if found is not None:
        return found
    analysis = analyze_job(spec, samples=lambda info, n: _samples(key[:3], info, n))
    with _LOCK:
        while len(_ANALYSES) >= _ANALYSES_KEPT:
            _ANALYSES.pop(next(iter(_ANALYSES)))
        return _ANALYSES.setdefault(key, analysis)


_SAMPLES: dict[tuple[Any, ...], list[np.ndarray]] = {}
_SAMPLE_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}


def _samples(clip: tuple[Any, ...], info: Any, n: int) -> list[np.ndarray]:
    """A clip's ``n`` analysis samples, decoded once per clip state: the Style Lab's two variants (and every
    change of a parameter) fit their analyses on the same frames, whose seeks and decodes were most of a
    cartoon variant's first second. One thread decodes; another asking meanwhile waits for it."""
    key = (*clip, n)
    with _LOCK:
        lock = _SAMPLE_LOCKS.setdefault(key, threading.Lock())
    with lock:
        with _LOCK:
            found = _SAMPLES.get(key)
        if found is None:
            found = read_samples(info, sample_indices(info, n))
            with _LOCK:
                while len(_SAMPLES) >= 2:  # a clip or two: 8 full frames each
                    _SAMPLES.pop(next(iter(_SAMPLES)))
                _SAMPLES[key] = found
        return found


def preview_frame(spec: JobSpec, seconds: float) -> np.ndarray:
    """One stylized frame at ``seconds``, fast: seek to the keyframe before it and decode forward.

    Runs the style's job-wide analysis on the same samples a render would use (cached per clip, style and
    parameters), so the preview matches the render.
    """
    check_input_file(Path(spec.input))
    analysis = cached_analysis(spec)
    if not 0 <= seconds <= analysis.info.duration:
        raise ConfigError(f"{spec.input}: --at {seconds} is outside the clip (0 .. {analysis.info.duration:.3f} s)")
    with Reader(analysis.info) as r:
        frame = r.frame_at(seconds)
    cls = get_style(spec.style)
    return cls(spec.params, analysis.shared)(frame.rgb, frame.index)
