"""What a render will do before it does it: the job's analysis (steps 2) and its chunk plan (step 3).

The analysis is the probe and the style's job-wide state (a cartoon palette), fitted once on frames spread
over the clip. The plan is a function of the clip and the settings only, never of the workers, so every
worker count and executor renders the same bytes (:func:`plan_chunks`).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.video.probe import VideoInfo, probe
from core.video.reader import Reader
from stylizers import get_style

from .spec import JobSpec


@dataclass(frozen=True)
class Analysis:
    """The once-per-job pass: the probe and the style's shared state (e.g. the cartoon palette)."""

    info: VideoInfo
    shared: dict[str, Any]


@dataclass(frozen=True)
class Chunk:
    """Frames ``start <= i < stop`` are rendered; ``preroll`` frames before ``start`` only warm the state."""

    id: int
    start: int
    stop: int
    preroll: int
    carry: bool = False  # starts from the temporal state chunk ``id - 1`` saved (:func:`state_file`), not cold

    @property
    def frames(self) -> int:
        return self.stop - self.start


#: with fewer keyframes than samples, the samples are taken within this many frames after each keyframe
SAMPLE_REACH = 24


def sample_indices(info: VideoInfo, k: int) -> list[int]:
    """k frames for a style's job-wide analysis (the cartoon palette): keyframes spread over the clip when there
    are enough, since they decode alone; else, spread over the keyframes, frames within :data:`SAMPLE_REACH`
    of each.

    Why not frames spread over the whole clip when keyframes are few (most real clips: x264 puts one every 250
    frames and at cuts): reaching them means decoding nearly all of it, 1.7 s before a 300-frame 1080p cartoon's
    first preview. Encoders put keyframes at shot starts, so the frames after each stand for its shot: on the
    real clips of ../shared the palette fitted this way represents frames from the whole clip as well as the
    spread one (mean Lab error within 1 %) for a third of the decoding (issue 20).
    """
    if k <= 0:
        return []
    keys = list(info.keyframe_indices)
    if len(keys) >= k or not keys or keys[0] != 0:
        pool = keys if len(keys) >= k else range(info.frame_count)
        picks = np.linspace(0, len(pool) - 1, num=min(k, len(pool))).round().astype(int)
        return sorted({pool[i] for i in picks})
    out: set[int] = set()
    for n, (key, end) in enumerate(zip(keys, [*keys[1:], info.frame_count], strict=True)):
        count = k // len(keys) + (n < k % len(keys))
        span = min(SAMPLE_REACH, end - key)
        out.update(key + round(j * (span - 1) / max(1, count - 1)) for j in range(count))
    return sorted(i for i in out if i < info.frame_count)


def read_samples(info: VideoInfo, indices: list[int]) -> list[np.ndarray]:
    """Decode the frames at ``indices`` (ascending): from each one's keyframe, and only those turned into RGB.

    Samples after the same keyframe share one forward decode; the next keyframe starts a new one. On a clip
    with sparse keyframes (a 900-frame 720p shot with 5) this decodes about half the clip instead of all of
    it, and converts 8 frames instead of every one: the cartoon analysis there went from 1.8 s to 1.0 s.
    """
    if not indices:
        return []
    keys = info.keyframe_indices
    groups: list[list[int]] = []
    last_key = None
    for i in indices:
        key = keys[bisect.bisect_right(keys, i) - 1] if keys and keys[0] <= i else None
        if groups and key == last_key:
            groups[-1].append(i)
        else:
            groups.append([i])
        last_key = key
    out = []
    with Reader(info) as r:
        for group in groups:
            want = set(group)
            out += [r.to_rgb(raw) for i, raw in r.decoded(group[0], group[-1] + 1) if i in want]
    return out


def analyze_job(spec: JobSpec, samples: Callable[[VideoInfo, int], list[np.ndarray]] | None = None) -> Analysis:
    """Probe the input and run the style's job-wide analysis. Runs in a worker process. ``samples(info, n)``:
    where the ``n`` sample frames come from when the caller keeps them (the previews share one decode of
    them between styles and parameters); by default they are decoded here."""
    info = probe(spec.input)
    cls = get_style(spec.style)
    cls.check_size(spec.input, info.width, info.height)  # tiny frames: one line, before any frame is read
    if samples is None:
        frames = read_samples(info, sample_indices(info, cls.analysis_samples))
    else:
        frames = samples(info, cls.analysis_samples)
    return Analysis(info=info, shared=cls.analyze(spec.params, frames))


#: seconds of video per lane of a style with temporal state (see :func:`plan_chunks`). Lanes let such a
#: style render on several workers at once, but each lane after the first pays the stabiliser's pre-roll
#: (43 frames in the balanced preset) wherever it runs, one worker included, where lanes run one after the
#: other. A lane per 90 s costs a clip under 3 minutes nothing (one lane: on 2 cores the plan it had) and
#: a longer one at most 43 frames per 90 s: 1.6 % of a 30-fps clip's frames, ~1.2 % of its work (pre-roll
#: frames are not encoded); 2.0 % and ~1.5 % at 24 fps.
LANE_SECONDS = 90.0


#: the chunks a stateless plan is balanced for running at once: an even number of chunks, sized so that
#: two workers (a 2-core machine's default) end together; one worker, or four, on a plan of four, do too.
PLANNED_AT_ONCE = 2


def plan_chunks(info: VideoInfo, chunk_seconds: float, preroll: int,
                lane_seconds: float | None = None) -> list[Chunk]:
    """Split the clip into chunks of about ``chunk_seconds``: a function of the clip and the settings only.

    The plan fixes where every chunk starts, its pre-roll and the state it carries, and so the output's
    bytes; it never depends on how many workers render it, so 1, 2 or 4 local workers, with or without the
    pipeline, and a Dask cluster give the same file. Workers decide only when each chunk runs.

    Without temporal state (``preroll`` 0) chunks are independent: an even number of them, at least
    ``duration / chunk_seconds`` and about a second long at least, of equal work for
    :data:`PLANNED_AT_ONCE` workers (:func:`_balanced`).

    With state, the clip is first cut into *lanes* of consecutive chunks, one per ``lane_seconds`` of video
    (:data:`LANE_SECONDS` by default), of equal work. A lane's first chunk pays ``preroll`` frames it does
    not keep (43 in the balanced preset's flow mode) to warm the state; every later chunk of the lane
    *carries* it: it starts from the state its predecessor saved when it finished, so it costs no extra frame
    and its frames equal a single pass's, bit for bit. A lane's chunks render one after the other; lanes
    run at once where there are workers for them, else one after the other. Within a lane, chunks start at
    a keyframe when one lies within a quarter chunk (:func:`_split`).

    Away from keyframes a chunk still starts anywhere (its reader decodes from the keyframe before), so
    clips with sparse keyframes still spread over the workers.
    """
    tb, t0 = info.time_base, info.pts[0]
    times = [float((p - t0) * tb) for p in info.pts]
    times.append(times[-1] + float(info.durations[-1] * tb))  # where the last frame ends
    n_all = info.frame_count
    seconds = max(1, round(info.duration))  # pieces that run at once are a second long at least, about
    if not info.seekable:  # every chunk would decode from the top (a raw stream): one pass, not n^2 decoding
        return [Chunk(id=0, start=0, stop=n_all, preroll=0)]
    if preroll <= 0:
        count = math.ceil(math.ceil(info.duration / chunk_seconds) / PLANNED_AT_ONCE) * PLANNED_AT_ONCE
        bounds = _balanced(info, 0, n_all, min(count, seconds), 0, at_once=PLANNED_AT_ONCE)
        return [Chunk(id=i, start=a, stop=b, preroll=0) for i, (a, b) in enumerate(itertools.pairwise(bounds))]
    lanes = max(1, int(info.duration // (lane_seconds or LANE_SECONDS)))
    lane_bounds = _balanced(info, 0, n_all, lanes, preroll) if lanes > 1 else [0, n_all]
    chunks: list[Chunk] = []
    for a, b in itertools.pairwise(lane_bounds):
        inner = _split(info, times, a, b, chunk_seconds)
        for j, (s0, s1) in enumerate(itertools.pairwise(inner)):
            chunks.append(Chunk(id=len(chunks), start=s0, stop=s1, preroll=min(preroll, s0) if j == 0 else 0,
                                carry=j > 0))
    return chunks


#: a frame's decode as a share of its whole render (decode, stylize, temporal, encode): 720p on 2 cores,
#: comic 7 of 77 ms, cartoon 8 of 81, pencil 8 of 64 (``python -m scripts.bench --only stages``). A chunk
#: that starts between keyframes decodes, at this cost, the frames from the keyframe before.
DECODE_SHARE = 0.1


def _balanced(info: VideoInfo, first: int, stop: int, pieces: int, preroll: int, at_once: int = 0) -> list[int]:
    """Bounds of ``pieces`` pieces of frames ``first``..``stop``, ``at_once`` of them rendering at a time (all
    by default; each worker takes the next piece when its own is done), planned to end together. A piece's
    work: its frames, the ``preroll`` frames every piece after the first renders and drops, and the frames it
    decodes from the keyframe before its first (at :data:`DECODE_SHARE`).

    Pieces of the last round are sized so every worker ends at once, and do not move onto keyframes: the
    slowest sets the render's end, and lanes snapped to the keyframes of a 250-frame GOP had differed by 100
    frames (comic, 720p, 2 cores: a 7-s tail with one core idle), where the decode such a move saves is a
    tenth of that. A piece of an earlier round starts on the next keyframe when the frames that adds are
    fewer than the decode it saves: the last round makes up for it."""
    pieces = max(1, min(pieces, stop - first))
    at_once = min(at_once or pieces, pieces)
    keys = sorted(info.keyframe_indices)

    def skipped(i: int) -> int:  # frames decoded only to reach frame i
        k = bisect.bisect_right(keys, i) - 1
        return i - keys[k] if k >= 0 else i

    def cost_from(i: int) -> float:  # a piece's pre-roll and skipped decode when it starts at frame i
        return min(preroll, i) + DECODE_SHARE * skipped(i - min(preroll, i))

    gaps = [k2 - k1 for k1, k2 in itertools.pairwise([*keys, stop])] or [stop]
    reach = int(DECODE_SHARE * max(gaps)) + preroll + 2  # how far from the even share the best end can lie
    overhead = [0.0] * pieces  # each piece's pre-roll and skipped decode: first taken as none, then as planned
    for _ in range(2):
        bounds, paid, free = [first], [], [0.0] * at_once  # free: when each worker is next free, in frames
        for j in range(pieces):
            a = bounds[-1]
            paid.append(cost_from(a) if j else 0.0)
            start = heapq.heappop(free)  # the worker that takes piece j
            if j == pieces - 1:
                break
            left = pieces - j
            if left <= len(free) + 1:  # the last round: searched near the even share (decode jumps at keys)
                starts = [start, *sorted(free)[: left - 1]]  # when the workers that take the rest start
                mine, later = start - a + paid[j], sum(overhead[j + 2:]) + sum(starts[1:])
                even = round(a + (stop - a + paid[j] + sum(overhead[j + 1:]) + sum(starts)) / left - start - paid[j])
                even = max(a + 1, min(even, stop - left + 1))  # a worker free much earlier may want it all
                b = min(range(max(a + 1, even - reach), min(stop - left + 1, even + reach) + 1),
                        key=lambda e: max(mine + e, (stop - e + cost_from(e) + later) / (left - 1)))
            else:
                b = max(a + 1, min(round(a + (stop - a + paid[j] + sum(overhead[j + 1:])) / left - paid[j]),
                                   stop - (left - 1)))
                nxt = bisect.bisect_left(keys, b)
                if nxt < len(keys) and keys[nxt] - b <= DECODE_SHARE * skipped(b):
                    b = min(keys[nxt], stop - (left - 1))
            overhead[j + 1] = cost_from(b)
            bounds.append(b)
            heapq.heappush(free, start + b - a + paid[j])
        overhead = paid
        bounds.append(stop)
    return bounds


def _split(info: VideoInfo, times: list[float], first: int, stop: int, seconds: float) -> list[int]:
    """Frame bounds from frame ``first`` to ``stop``, about every ``seconds``, each at the nearest keyframe
    within a quarter piece (for chunks that run one after the other). ``times``: each frame's start in
    seconds, and the clip's end after the last."""
    key_idx = info.keyframe_indices
    end = times[stop]
    bounds = [first]
    while True:
        target = times[bounds[-1]] + seconds
        if target >= end - seconds / 4:
            break
        near = [i for i in key_idx if bounds[-1] < i < stop and abs(times[i] - target) <= seconds / 4]
        nxt = min(near, key=lambda i: abs(times[i] - target)) if near else int(np.searchsorted(times, target))
        if nxt <= bounds[-1] or nxt >= stop or end - times[nxt] < seconds / 4:  # a short tail joins the piece
            break
        bounds.append(nxt)
    bounds.append(stop)
    return bounds
