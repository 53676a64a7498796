"""The local worker pool: processes that render chunks, report progress, and die with their parent.

Workers come from a forkserver (fast to start, and free of the threads a parent such as the studio app
may hold). :func:`warm_up` starts the forkserver early, so its imports overlap with the caller's.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any

PRELOAD = ["core.pipeline"]

_progress_queue: Any = None
_parent_pid: int | None = None


def _context() -> Any:
    ctx = mp.get_context("forkserver")
    with contextlib.suppress(RuntimeError, ValueError):
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


def warm_up() -> None:
    """Start the forkserver (and its imports) now, in the background of whatever the caller does next."""
    from multiprocessing import forkserver

    _context()
    with contextlib.suppress(Exception):
        forkserver.ensure_running()


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def init_worker(progress_queue: Any, cv_threads: int) -> None:
    """Pool initializer: progress channel, polite thread counts, die with the parent."""
    global _progress_queue, _parent_pid
    _progress_queue, _parent_pid = progress_queue, os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt means
    tune_process(cv_threads)


def tune_process(cv_threads: int) -> None:
    """What any process that renders chunks wants (a pool worker, a Dask worker): glibc keeping freed frame
    buffers, OpenCV using ``cv_threads`` threads so the processes on one machine do not oversubscribe it,
    and NumPy's BLAS on the calling thread only (:func:`single_thread_blas`)."""
    _keep_freed_memory()
    import cv2

    cv2.setNumThreads(cv_threads)
    single_thread_blas()


def single_thread_blas() -> None:
    """Run NumPy's BLAS (OpenBLAS) calls on the calling thread, never on a pool of its own.

    A render calls BLAS only for small products (a frame's luma weights, edge coherence's correlation), and
    OpenBLAS hands each to one thread per core that then busy-waits for the next: beside the decoder, the
    stage threads and the other chunks' processes, those spinning threads took the cores' time. On 2 cores,
    a 720p 30-s shot: cinematic 28.9 -> 37 fps, cartoon 21.4 -> 26.4 fps. One thread also makes a float sum's
    order, and so the frames, independent of the machine's core count.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


#: glibc ``mallopt`` parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD and M_ARENA_MAX.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
#: malloc arenas a render process may use: every chunk starts its stage threads afresh, and glibc gave new
#: threads new arenas (up to 8 per core), each keeping up to the trim threshold of freed frames: a pool
#: process grew by ~60 MiB a chunk (pencil, 640x360, 10 chunks: 736 vs 428 MiB for 1 chunk). Two arenas
#: bound that; the threads' few large allocations a frame barely contend for them.
ARENAS = 2


def _keep_freed_memory() -> None:
    """Let glibc reuse freed frame buffers instead of handing them back to the kernel after every frame.

    A frame's temporaries (decoded RGB, lookup indices, swscale and encoder frames) are megabytes each;
    glibc's adaptive thresholds kept returning them (mmap/trim) for the first few hundred frames of a
    process, and every new page then faulted in again: ~2600 page faults and ~5 ms of system time a 720p
    frame, in a process that renders only one or two chunks. Fixed thresholds (32 MiB, glibc's own cap
    for the adaptive one, and trimming only past 64 MiB free) keep them, for a few MiB more resident.
    A no-op where the C library is not glibc.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
        libc.mallopt(_M_ARENA_MAX, ARENAS)


def report_progress(chunk_id: int, frames_done: int) -> None:
    """Called by a chunk as it goes; a no-op outside a local pool (e.g. on a Dask worker)."""
    if _parent_pid is not None and os.getppid() != _parent_pid:
        os._exit(1)  # our render process is gone: stop burning CPU on work nobody will collect
    if _progress_queue is not None:
        with contextlib.suppress(Exception):
            _progress_queue.put_nowait((chunk_id, frames_done))


def _ready() -> None:
    """A task that does nothing: submitting one per worker starts them all."""


class LocalPool:
    """A process pool plus the queue its workers report progress on."""

    def __init__(self, workers: int) -> None:
        ctx = _context()
        self.queue = ctx.Queue()
        cv_threads = max(1, (os.cpu_count() or 1) // workers)
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker,
                                            initargs=(self.queue, cv_threads))
        # Start every worker now (the executor starts one per task that finds none idle): the first job (the
        # analysis) only occupies one, so the others' start-up overlaps it instead of delaying chunks.
        for _ in range(workers):
            self.executor.submit(_ready)

    def drain(self) -> list[tuple[int, int]]:
        out = []
        with contextlib.suppress(queue.Empty, OSError, ValueError):
            while True:
                out.append(self.queue.get_nowait())
        return out

    def close(self, kill: bool) -> None:
        if kill:  # running chunks would only finish work nobody records; stop them now
            for proc in list(getattr(self.executor, "_processes", {}).values()):
                with contextlib.suppress(Exception):
                    proc.kill()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.queue.close()
