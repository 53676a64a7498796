"""A chunk's frames through decode -> prepare -> process -> encode, overlapped in threads, timed per stage.

Inside one chunk the stages run in their own threads joined by small bounded queues: the decoder reads
ahead while a frame is stylized, and the encoder compresses the previous one. ``prepare`` is the part of
the work that depends on the input frames alone (the style itself, the motion and cut measures of the
temporal stage): it runs on ``threads`` threads, several frames at once, while ``process`` (what needs
the previous output: the stabiliser's blend) takes the frames in order. The heavy work in every stage
(FFmpeg's decoder and encoder, swscale, OpenCV, ONNX Runtime, large NumPy operations) runs without the
GIL, so the threads really overlap. The queues bound memory (``depth`` frames each, ``2 x threads``
being prepared) and give back-pressure: a fast decoder waits for room instead of decoding the whole chunk
ahead. The pool's threads run at a lower priority than the in-order stages, which nothing can overtake.
Frames keep their order, and each stage sees them exactly as in the sequential loop, so the output is the
same bytes.

Each stage records how long it was busy and how long it waited (for input, or for room downstream);
:func:`bottleneck` turns a render's sums into a sentence a user can act on.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

#: the threads of a chunk (prepare: a pool of ``threads``); their time is also split into parts (stylize, ...)
THREADS = ("decode", "prepare", "process", "encode")

#: frames held in each queue: enough to ride out a slow frame, few enough to keep memory flat
DEPTH = 4

_END = object()
_POLL_S = 0.1


class StageTimes:
    """Busy and wait seconds per stage, plus the frames the chunk wrote. Plain floats: JSON-ready."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.busy: dict[str, float] = {}
        self.wait: dict[str, float] = {}
        self.frames = 0
        self.threads = 1  # the prepare pool's size
        self._lock = threading.Lock()  # parts are timed from the prepare pool's threads too

    def add(self, stage: str, busy: float) -> None:
        with self._lock:
            self.busy[stage] = self.busy.get(stage, 0.0) + busy

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        t = self.clock()
        try:
            yield
        finally:
            self.add(stage, busy=self.clock() - t)

    def to_json(self) -> dict[str, Any]:
        """The sums, and which thread each part ran in (``parts``: the metrics moved from the encoder's thread
        to the process thread, and a reader of older records needs to know which it has)."""
        return {"frames": self.frames, "threads": self.threads, "busy": {k: round(v, 4) for k, v in self.busy.items()},
                "wait": {k: round(v, 4) for k, v in self.wait.items()},
                "parts": {part: thread for thread, parts in _PARTS.items() for part in parts}}


def merge(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum the :meth:`StageTimes.to_json` of a render's chunks."""
    out: dict[str, Any] = {"frames": 0, "threads": 1, "busy": {}, "wait": {}}
    for rec in records:
        if "parts" in rec:
            out["parts"] = rec["parts"]
        out["frames"] += rec.get("frames", 0)
        out["threads"] = max(out["threads"], rec.get("threads", 1))
        for kind in ("busy", "wait"):
            for k, v in rec.get(kind, {}).items():
                out[kind][k] = round(out[kind].get(k, 0.0) + v, 4)
    return out


class _Stopped(Exception):
    """Another stage failed; this one leaves quietly so the failure that matters is the one raised."""


def run(source: Iterable[Any], process: Callable[[Any], Any], sink: Callable[[Any], None], times: StageTimes,
        *, prepare: Callable[[Any], Any] | None = None, threads: int = 1, pipelined: bool = True,
        depth: int = DEPTH, batch: int = 1) -> None:
    """Pull items from ``source`` (decode), map them with ``process`` (None: nothing to hand on) and hand
    the results to ``sink`` (encode), in order. With ``prepare``, ``process`` gets ``(item, prepare(item))``;
    ``prepare`` must depend on its item alone (it may run on another thread, ahead of order). With ``batch``
    above 1, ``prepare`` takes a list of up to ``batch`` consecutive items and returns their results in
    order (a GPU model's one run for several frames); ``process`` still sees one item at a time.

    ``pipelined``: the stages in their own threads (this one runs ``process``) and ``prepare`` on a pool of
    ``threads``; otherwise one loop, which is what the stage costs of a benchmark are measured with. An
    exception in any stage stops the others and is raised here.
    """
    if pipelined:
        times.threads = max(1, threads) if prepare is not None else 1
        _threaded(iter(source), process, sink, times, depth, prepare, batch)
        return
    clock = times.clock
    items = (_prepared(iter(source), prepare, 0, times, batch) if prepare is not None
             else _timed_source(iter(source), times))
    for item in items:
        t1 = clock()
        out = process(item)
        t2 = clock()
        times.add("process", busy=t2 - t1)
        if out is not None:
            sink(out)
            times.add("encode", busy=clock() - t2)


def _timed_source(it: Iterator[Any], times: StageTimes) -> Iterator[Any]:
    clock = times.clock
    while True:
        t = clock()
        item = next(it, _END)
        times.add("decode", busy=clock() - t)
        if item is _END:
            return
        yield item


def _prepared(items: Iterator[Any], prepare: Callable[[Any], Any], threads: int,
              times: StageTimes, batch: int = 1, in_flight: int = 0) -> Iterator[tuple[Any, Any]]:
    """``(item, prepare(item))`` in order: inline when ``threads`` < 2 (decode timed here too, for the
    sequential loop), else on a pool with ``in_flight`` (default ``2 x threads``) items in flight. With
    ``batch`` above 1, lists of that many items go to ``prepare`` together, about ``2 x threads`` frames in
    flight still (2 lists at least): memory stays what it was, and a GPU gets one list while the next is
    gathered."""
    if batch > 1:
        groups = iter(lambda: list(itertools.islice(items, batch)), [])
        lists = max(2, -(-2 * threads // batch))
        for group, results in _prepared(groups, prepare, threads, times, in_flight=lists):
            yield from zip(group, results, strict=True)
        return
    clock = times.clock

    def timed(item: Any) -> Any:
        t = clock()
        try:
            return prepare(item)
        finally:
            times.add("prepare", busy=clock() - t)

    if threads < 2:
        src = _timed_source(items, times) if threads == 0 else items
        for item in src:
            yield item, timed(item)
        return
    waited = 0.0
    pool = ThreadPoolExecutor(threads, thread_name_prefix="vp-prepare", initializer=lower_priority)
    try:
        window: deque = deque()
        for item in items:
            window.append((item, pool.submit(timed, item)))
            if len(window) >= (in_flight or 2 * threads):
                head, fut = window.popleft()
                t = clock()
                res = fut.result()
                waited += clock() - t
                yield head, res
        while window:
            head, fut = window.popleft()
            t = clock()
            res = fut.result()
            waited += clock() - t
            yield head, res
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        times.wait["process:prepare"] = times.wait.get("process:prepare", 0.0) + waited


#: how much lower the prepare pool's threads run than the in-order stages (Linux nice steps, per thread).
#: The pool's work can wait in its window; the blend and the encoder cannot without stalling everything
#: behind them. Given way to, they keep the cores busy: pencil at 720p on 2 cores went from 94.5 % to
#: 96.5 % busy (comic 93.4 -> 96.4 %), three runs each; nice 2 and 10 did less.
PREPARE_NICE = 5


def lower_priority(nice: int = PREPARE_NICE) -> None:
    """Lower this thread's priority (not the process's) by ``nice`` steps; harmless where unsupported. The
    prepare pool's initializer, and a render worker's warming thread (:func:`core.render.pool.init_worker`)."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)


def _threaded(it: Iterator[Any], process: Callable[[Any], Any], sink: Callable[[Any], None], times: StageTimes,
              depth: int, prepare: Callable[[Any], Any] | None, batch: int = 1) -> None:
    clock = times.clock
    decoded: queue.Queue = queue.Queue(depth)
    processed: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    errors: list[BaseException] = []
    # each key written by one thread only; summed into ``times`` at the end. "in": starved, "out": blocked
    waits = {k: 0.0 for k in ("decode:out", "process:in", "process:out", "encode:in")}
    busy = {s: 0.0 for s in ("decode", "encode")}

    def put(q: queue.Queue, item: Any, stage: str) -> None:
        t = clock()
        while True:
            try:
                q.put(item, timeout=_POLL_S)
                break
            except queue.Full:
                if stop.is_set():
                    raise _Stopped from None
        waits[f"{stage}:out"] += clock() - t

    def get(q: queue.Queue, stage: str) -> Any:
        t = clock()
        while True:
            try:
                item = q.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if stop.is_set():
                    raise _Stopped from None
        waits[f"{stage}:in"] += clock() - t
        return item

    def guarded(loop: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                loop()
            except _Stopped:
                pass
            except BaseException as exc:  # handed to the caller's thread, raised there
                errors.append(exc)
                stop.set()
        return body

    def decode_loop() -> None:
        while True:
            t = clock()
            item = next(it, _END)
            busy["decode"] += clock() - t
            put(decoded, item, "decode")
            if item is _END:
                return

    def encode_loop() -> None:
        while (item := get(processed, "encode")) is not _END:
            t = clock()
            sink(item)
            busy["encode"] += clock() - t

    def inputs() -> Iterator[Any]:
        while (item := get(decoded, "process")) is not _END:
            yield item

    threads = [threading.Thread(target=guarded(decode_loop), name="vp-decode", daemon=True),
               threading.Thread(target=guarded(encode_loop), name="vp-encode", daemon=True)]
    for th in threads:
        th.start()
    try:
        items = _prepared(inputs(), prepare, times.threads, times, batch) if prepare is not None else inputs()
        for item in items:
            t = clock()
            out = process(item)
            times.add("process", busy=clock() - t)
            if out is not None:
                put(processed, out, "process")
        put(processed, _END, "process")
        threads[1].join()  # the encoder drains its queue; a failure there is in ``errors``
    except _Stopped:
        pass
    except BaseException:
        stop.set()
        raise
    finally:
        for th in threads:
            th.join()
        for s, v in busy.items():
            times.add(s, busy=v)
        for k, v in waits.items():
            times.wait[k] = times.wait.get(k, 0.0) + v
    if errors:
        raise errors[0]


@dataclass(frozen=True)
class Bottleneck:
    """Milliseconds per frame of each thread and of the process stage's parts, and the advice."""

    frames: int
    thread_ms: dict[str, float]
    part_ms: dict[str, float] = field(default_factory=dict)
    wait_ms: dict[str, float] = field(default_factory=dict)
    slowest: str = ""
    advice: str = ""

    def line(self) -> str:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in self.part_ms.items())
        threads = ", ".join(f"{k} {v:.1f}" for k, v in self.thread_ms.items())
        inner = f" ({parts})" if parts else ""
        return f"stages, ms per frame: {threads}{inner}. {self.advice}"

    def to_json(self) -> dict[str, Any]:
        return {"frames": self.frames, "thread_ms": self.thread_ms, "part_ms": self.part_ms, "wait_ms": self.wait_ms,
                "bottleneck": self.slowest, "advice": self.advice}


#: what to do about each bottleneck: a thread, or its biggest part
_ADVICE = {
    "decode": "consider a lighter input (an intermediate proxy) or hardware decoding",
    "encode": "consider a faster encoder preset (or NVENC) or more workers",
    "stylize": "consider lighter style settings or more cores",
    "motion": "consider the speed preset (EMA instead of flow-compensated stabilising) or more cores",
    "temporal": "consider the speed preset (EMA instead of flow-compensated stabilising)",
    "measure": "metrics are sampled every few frames; more workers spread them",
    "prepare": "consider lighter style settings or more cores",
    "process": "consider the speed preset (EMA instead of flow-compensated stabilising)",
}
#: which parts run in which thread
_PARTS = {"prepare": ("stylize", "motion"), "process": ("temporal", "measure")}


def bottleneck(stages: dict[str, Any]) -> Bottleneck | None:
    """Name the slowest thread of a render from its merged stage times (the prepare pool's time divided by
    its threads; its biggest part too) and how much slower it is than the next; None when nothing was
    timed (e.g. every chunk was reused from a checkpoint)."""
    n = stages.get("frames", 0)
    busy = stages.get("busy", {})
    if n <= 0 or not any(busy.get(s) for s in THREADS):
        return None
    pool = max(1, stages.get("threads", 1))
    ms = {s: round(1000 * busy.get(s, 0.0) / n / (pool if s == "prepare" else 1), 2) for s in THREADS}
    parts = {k: round(1000 * v / n, 2) for k, v in sorted(busy.items(), key=lambda kv: -kv[1]) if k not in THREADS}
    waits = {k: round(1000 * v / n, 2) for k, v in stages.get("wait", {}).items()}
    order = sorted(THREADS, key=lambda s: ms[s], reverse=True)
    slow, second = order[0], order[1]
    ratio = ms[slow] / ms[second] if ms[second] > 0 else float("inf")
    than = f": {ratio:.1f}x slower than {second}" if ratio < 100 else ""
    inside = [p for p in parts if p in _PARTS.get(slow, ())]
    own = 1000 * busy.get(slow, 0.0) / n - sum(parts[p] for p in inside)  # e.g. the encoder's own work
    if inside and parts[inside[0]] > own:
        name = f"{slow} (mostly {inside[0]}, {parts[inside[0]]:.1f} ms a frame)"
        tip = _ADVICE[inside[0]]
    else:
        name, tip = slow, _ADVICE[slow]
    on = f" on {pool} threads" if slow == "prepare" and pool > 1 else ""
    advice = f"The bottleneck is {name}{on}{than}; {tip}."
    return Bottleneck(frames=n, thread_ms=ms, part_ms=parts, wait_ms=waits, slowest=slow, advice=advice)
