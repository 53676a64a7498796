"""Pipelined stages inside a chunk: same output as the sequential loop, failures surface, memory is bounded."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from core.render import stages
from core.render.chunk import stage_costs
from core.render.pipeline import render
from core.render.spec import build_job


def _run(pipelined: bool, n: int = 50, **kw) -> tuple[list[int], stages.StageTimes]:
    out: list[int] = []
    times = stages.StageTimes()
    stages.run(range(n), lambda x: None if x % 7 == 3 else x * 2, out.append, times, pipelined=pipelined, **kw)
    return out, times


@pytest.mark.parametrize("pipelined", [True, False])
def test_order_kept_and_skipped_items_dropped(pipelined: bool) -> None:
    out, times = _run(pipelined)
    assert out == [x * 2 for x in range(50) if x % 7 != 3]
    assert set(times.busy) >= {"decode", "process", "encode"}


@pytest.mark.parametrize("where", ["decode", "process", "encode"])
def test_a_failing_stage_raises_here_and_stops_the_others(where: str) -> None:
    before = threading.active_count()

    def source():
        for i in range(1000):
            if where == "decode" and i == 20:
                raise ValueError("bad packet")
            yield i

    def process(x: int) -> int:
        if where == "process" and x == 20:
            raise ValueError("bad frame")
        return x

    def sink(x: int) -> None:
        if where == "encode" and x == 20:
            raise ValueError("encoder refused")

    t0 = time.perf_counter()
    with pytest.raises(ValueError):
        stages.run(source(), process, sink, stages.StageTimes(), pipelined=True)
    assert time.perf_counter() - t0 < 5
    assert threading.active_count() == before  # no stage thread left behind


def test_back_pressure_bounds_what_is_decoded_ahead() -> None:
    """A slow encoder holds the decoder back: never more than the two queues and the items in hand ahead."""
    produced, consumed, ahead = [0], [0], []

    def source():
        for i in range(60):
            produced[0] += 1
            ahead.append(produced[0] - consumed[0])
            yield i

    def sink(_: int) -> None:
        time.sleep(0.002)
        consumed[0] += 1

    stages.run(source(), lambda x: x, sink, stages.StageTimes(), pipelined=True, depth=3)
    assert consumed[0] == 60
    assert max(ahead) <= 2 * 3 + 3
    times = stages.StageTimes()
    stages.run(range(40), lambda x: x, lambda _: time.sleep(0.003), times, pipelined=True, depth=2)
    assert times.wait["decode:out"] > times.wait["encode:in"]  # the decoder waited for room, not the encoder


def test_bottleneck_names_the_slowest_stage() -> None:
    rec = {"frames": 100, "threads": 2, "wait": {},
           "busy": {"decode": 0.3, "prepare": 4.0, "process": 2.0, "encode": 2.8, "stylize": 3.0, "motion": 1.0,
                    "temporal": 2.0, "measure": 0.5}}
    b = stages.bottleneck(stages.merge([rec, rec]))
    assert b is not None and b.slowest == "encode" and b.frames == 200
    assert b.thread_ms == {"decode": 3.0, "prepare": 20.0, "process": 20.0, "encode": 28.0}  # the pool: per thread
    assert "encode: 1.4x slower than prepare" in b.advice and "faster encoder preset" in b.advice
    rec["busy"].update(encode=0.5, measure=0.1, prepare=8.0, stylize=7.0)
    b = stages.bottleneck(rec)
    assert b.slowest == "prepare" and "mostly stylize" in b.advice
    assert "on 2 threads: 2.0x slower than process" in b.advice
    assert stages.bottleneck({"frames": 0, "busy": {}}) is None


@pytest.mark.parametrize("style", ["none", "pencil", "cartoon", "cinematic"])
def test_pipelined_render_equals_sequential(clips: dict[str, Path], tmp_path: Path, style: str) -> None:
    sets = {"lut": str(Path("luts/teal_orange.cube").resolve()), "curve": "0", "bloom": "0", "grain": "0",
            "vignette": "0"} if style == "cinematic" else {}  # cinematic: the LUT-only table path
    digests, results, perfs = [], [], []
    # one chunk at a time (its frames prepared on 2 threads), then 2 chunks at once: each against its loop
    for pipelined, workers in ((True, 1), (False, 1), (True, 2), (False, 2)):
        spec = build_job(clips["cut"], tmp_path / f"{pipelined}{workers}.mp4", style, sets=sets, chunk_seconds=0.5)
        results.append(render(spec, workers=workers, pipelined=pipelined))
        digests.append(hashlib.sha256(Path(spec.output).read_bytes()).hexdigest())
        perfs.append(json.loads((Path(results[-1].record) / "perf.json").read_text()))
    assert digests[0] == digests[1] and digests[2] == digests[3]
    if style != "none" and style != "cinematic":
        assert results[0].stages["threads"] == min(2, os.cpu_count() or 1)  # the prepare pool
    piped = results[0]
    assert piped.stages["frames"] == piped.frames
    assert piped.stages["wait"]  # the threaded path records its waits
    b = piped.bottleneck()
    assert b is not None and b.slowest in stages.THREADS
    assert perfs[0]["bottleneck"] == b.slowest and perfs[0]["frames"] == piped.frames


def test_stage_costs_cover_the_parts_of_a_style(clips: dict[str, Path], tmp_path: Path) -> None:
    costs = stage_costs(build_job(clips["cfr"], tmp_path / "x.mp4", "cartoon"), frames=12)
    assert costs["frames"] == 12
    assert {"decode", "process", "encode", "stylize", "temporal", "measure"} <= set(costs["busy"])
    assert costs["busy"]["stylize"] > 0 and not (tmp_path / "x.mp4").exists()
    # the metrics run on the process thread, after the blend, and the record says so
    assert costs["parts"]["measure"] == "process" and costs["parts"]["temporal"] == "process"
    assert costs["busy"]["process"] >= costs["busy"]["temporal"] + costs["busy"]["measure"]


def test_the_encoders_share_leaves_out_the_metrics_only_where_they_ran_there() -> None:
    """The benchmark's per-part figures read records from both sides of the metrics' move (its ``profile`` section
    measures an older commit beside this one): a record without ``parts`` had them on the encoder's thread."""
    from scripts.bench.stages import part_ms

    busy = {"decode": 0.1, "prepare": 0.8, "process": 0.3, "encode": 0.6, "stylize": 0.5, "motion": 0.3,
            "temporal": 0.2, "measure": 0.1}
    old = {"frames": 100, "busy": busy}
    new = {"frames": 100, "busy": busy, "parts": {"temporal": "process", "measure": "process"}}
    assert part_ms(old)["encode"] == pytest.approx(5.0) and part_ms(new)["encode"] == pytest.approx(6.0)
    assert part_ms(old)["measure"] == part_ms(new)["measure"] == pytest.approx(1.0)


@pytest.mark.parametrize("pipelined", [True, False])
def test_prepared_on_a_pool_keeps_order(pipelined: bool) -> None:
    """Items prepared several at once (slowest first here) still reach process and sink in order."""
    out: list[int] = []

    def prepare(x: int) -> int:
        time.sleep(0.002 * (x % 3))
        return x * 3

    stages.run(range(40), lambda pair: pair[0] + pair[1], out.append, stages.StageTimes(), prepare=prepare,
               threads=3, pipelined=pipelined)
    assert out == [4 * x for x in range(40)]


@pytest.mark.parametrize(("pipelined", "threads"), [(True, 3), (True, 1), (False, 1)])
def test_batched_prepare_takes_lists_and_keeps_order(pipelined: bool, threads: int) -> None:
    """A style that takes several frames a call gets lists of ``batch`` consecutive items (the last one
    shorter); process and sink still see one item at a time, in order, and memory stays bounded."""
    lists: list[list[int]] = []
    in_flight, peak = [0], [0]
    lock = threading.Lock()

    def source():
        for i in range(23):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            yield i

    def prepare(items: list[int]) -> list[int]:
        lists.append(items)
        time.sleep(0.002 * (items[0] % 3))
        return [x * 3 for x in items]

    def sink(x: int) -> None:
        with lock:
            in_flight[0] -= 1
        out.append(x)

    out: list[int] = []
    stages.run(source(), lambda pair: pair[0] + pair[1], sink, stages.StageTimes(), prepare=prepare,
               threads=threads, pipelined=pipelined, batch=4, depth=2)
    assert out == [4 * x for x in range(23)]
    assert sorted(lists) == [list(range(i, min(i + 4, 23))) for i in range(0, 23, 4)]
    # two lists being prepared (2 x 3 threads / 4, at least 2), a list being gathered, the queues and items in hand
    assert peak[0] <= 2 * 4 + 4 + 2 * 2 + 3


def test_a_failing_prepare_raises_here() -> None:
    before = threading.active_count()

    def prepare(x: int) -> int:
        if x == 7:
            raise ValueError("bad frame")
        return x

    with pytest.raises(ValueError, match="bad frame"):
        stages.run(range(100), lambda pair: pair, lambda _: None, stages.StageTimes(), prepare=prepare, threads=2)
    assert threading.active_count() == before


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="per-thread priorities are a POSIX/Linux feature")
def test_prepare_pool_gives_way_to_the_in_order_stages() -> None:
    """The pool's threads run ``PREPARE_NICE`` steps below the blend and the encoder; this thread is untouched."""
    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = nice()
    seen: dict[str, set[int]] = {"prepare": set(), "process": set(), "sink": set()}

    def prepare(x: int) -> int:
        seen["prepare"].add(nice())
        return x

    def process(pair: tuple[int, int]) -> int:
        seen["process"].add(nice())
        return pair[0]

    stages.run(range(20), process, lambda _: seen["sink"].add(nice()), stages.StageTimes(), prepare=prepare,
               threads=2)
    assert seen["process"] == seen["sink"] == {mine} == {nice()}
    assert seen["prepare"] == {min(19, mine + stages.PREPARE_NICE)}


def test_pool_workers_run_blas_on_the_calling_thread() -> None:
    """OpenBLAS's own threads busy-wait between calls and took the cores from the other stages."""
    from threadpoolctl import threadpool_info

    from core.render.pool import LocalPool

    pool = LocalPool(1)
    try:
        info = pool.executor.submit(threadpool_info).result(timeout=120)
    finally:
        pool.close(kill=False)
    blas = [lib for lib in info if lib["user_api"] == "blas"]
    assert blas, "numpy's BLAS not found in the worker"
    assert all(lib["num_threads"] == 1 for lib in blas), blas


def _malloc_heaps() -> int:
    """How many malloc arenas this process has after 4 new threads each allocate a frame-sized buffer
    (glibc's ``malloc_info`` lists each arena as a ``<heap>``); 0 where the C library is not glibc."""
    import ctypes
    import tempfile

    libc = ctypes.CDLL(None)
    if not hasattr(libc, "malloc_info"):
        return 0
    held: list[bytearray] = []
    threads = [threading.Thread(target=lambda: held.append(bytearray(1 << 20))) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "malloc.xml")
        fh = libc.fopen(path.encode(), b"w")
        libc.malloc_info(0, fh)
        libc.fclose(fh)
        return Path(path).read_text().count("<heap nr=")


def test_pool_workers_keep_every_thread_in_one_malloc_arena() -> None:
    """Each chunk starts its stage threads afresh; with an arena per thread (glibc's default) or even two, the
    worker's memory grew over a clip's first chunks (the benchmark's 10x longer clip: 1.07x with two arenas,
    1.01x with one)."""
    from core.render.pool import ARENAS, LocalPool

    pool = LocalPool(1)
    try:
        heaps = pool.executor.submit(_malloc_heaps).result(timeout=120)
    finally:
        pool.close(kill=False)
    if heaps == 0:
        pytest.skip("the C library is not glibc (no malloc_info)")
    assert heaps == ARENAS == 1
