"""The local worker pool: processes that render chunks, report progress, and die with their parent.

Workers come from a forkserver (fast to start, and free of the threads a parent such as the studio app
may hold). :func:`warm_up` starts the forkserver early, so its imports overlap with the caller's.

No render process outlives the process that started it (Linux): the forkserver and every pool worker ask
the kernel for SIGKILL when their parent dies (``PR_SET_PDEATHSIG``), and multiprocessing's resource
tracker ends on its own once they are gone (it exits when the last holder of its pipe closes it). Without
that, a ``kill -9`` of a render left the forkserver, the tracker and the pool (~300 MB) alive under init,
a worker still encoding its chunk. A normal exit stops the forkserver and the tracker and waits for them
(:func:`stop_server`), so nothing of ours is left running after the process has gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

#: imported by the forkserver before it forks anyone: this module first, so it arms its death signal
#: (:func:`_arm_forkserver`) before the heavy imports of the pipeline
PRELOAD = ["core.render.pool", "core.render.chunk"]
#: the pid of the process starting the forkserver, for the forkserver to check its parent against
OWNER_ENV = "VP_FORKSERVER_OWNER"
#: prctl(2) option: the signal this process gets when its parent (the thread that forked it) ends
_PR_SET_PDEATHSIG = 1
#: how much lower a worker's warming thread runs than the job's analysis beside it (nice steps, per thread)
WARM_NICE = 5

log = logging.getLogger(__name__)

_progress_queue: Any = None
_parent_pid: int | None = None
_server_pid: int | None = None  # set in the forkserver when it armed itself; its pool workers inherit it


def die_with_parent(expected_parent: int | None) -> bool:
    """Have the kernel SIGKILL this process when its parent dies; False where it cannot (not Linux).

    The parent may have died before the request took effect (then the signal never comes): when the
    parent is no longer ``expected_parent`` the process exits at once. Note the kernel's "parent" is the
    *thread* that forked this process, so such a parent must start children from a thread that lives as
    long as it does (:func:`_ensure_server`).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)  # orphaned before the request: nobody will collect what this process would do
    return True


def _arm_forkserver() -> None:
    """On import in a forkserver that one of our processes started: die with that process.

    The forkserver runs ``python -c "from multiprocessing.forkserver import main; ..."`` and imports
    :data:`PRELOAD` first thing; its starter put its own pid in :data:`OWNER_ENV`. The variable is removed
    here, so the pool workers forked from this server do not see it.
    """
    global _server_pid
    owner = os.environ.get(OWNER_ENV, "")
    server = sys.modules.get("multiprocessing.forkserver")
    if not owner.isdigit() or server is None or sys.argv[:1] != ["-c"]:
        return
    frame = sys._getframe()
    while frame is not None and frame.f_code is not server.main.__code__:  # imported by the server's preload
        frame = frame.f_back
    if frame is None:
        return
    del os.environ[OWNER_ENV]
    if die_with_parent(int(owner)):
        _server_pid = os.getpid()


_arm_forkserver()


def _context() -> Any:
    ctx = mp.get_context("forkserver")
    with contextlib.suppress(RuntimeError, ValueError):
        ctx.set_forkserver_preload(PRELOAD)
    _ensure_server()
    return ctx


_keeper_lock = threading.Lock()
_keeper_calls: queue.SimpleQueue = queue.SimpleQueue()
_keeper: threading.Thread | None = None
_stop_registered = False


def _ensure_server() -> None:
    """Start the forkserver (and multiprocessing's resource tracker) unless it runs, from a thread that
    lives as long as this process: the main thread, or else a daemon thread kept for it. A server started
    from a job's thread would get its death signal when that job ends."""
    from multiprocessing import forkserver, util

    global _stop_registered
    os.environ[OWNER_ENV] = str(os.getpid())
    with _keeper_lock:
        _own_temp_dir()
    if threading.current_thread() is threading.main_thread():
        forkserver.ensure_running()
    else:
        _on_keeper(forkserver.ensure_running)
    with _keeper_lock:
        if not _stop_registered:
            # after multiprocessing's own exit work (its semaphores unregister with the tracker at priority 0)
            util.Finalize(None, stop_server, exitpriority=-100)
            _stop_registered = True


#: prefix of the folder multiprocessing keeps the forkserver's socket in, followed by the owner's pid
TEMP_PREFIX = "vp-mp-"


def _own_temp_dir() -> None:
    """Give multiprocessing a temp folder named after this process, and remove those of processes gone.

    multiprocessing keeps the forkserver's socket in a temp folder (``pymp-*``) that it removes at exit; a
    killed process left one behind each time (hundreds in ``/tmp`` after a day of tests). Named
    ``vp-mp-<pid>-*``, the next process that starts a forkserver knows them and removes them. Uses
    multiprocessing's private ``_config`` (as :func:`multiprocessing.util.get_temp_dir` does).
    """
    import shutil
    import tempfile
    from multiprocessing import process, util

    from core.atomic import pid_alive

    config = getattr(process.current_process(), "_config", None)
    if not isinstance(config, dict) or config.get("tempdir") is not None:
        return
    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for old in base.glob(f"{TEMP_PREFIX}*"):
            pid = old.name[len(TEMP_PREFIX):].split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)) and old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
    tempdir = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
    util.Finalize(None, shutil.rmtree, args=(tempdir, True), exitpriority=-100)
    config["tempdir"] = tempdir


def _on_keeper(fn: Any) -> Any:
    """Run ``fn()`` on the keeper thread and return its result (or raise its exception)."""
    global _keeper
    with _keeper_lock:
        if _keeper is None or not _keeper.is_alive():
            _keeper = threading.Thread(target=_keep, daemon=True, name="forkserver-parent")
            _keeper.start()
    fut: Future = Future()
    _keeper_calls.put((fn, fut))
    return fut.result()


def _keep() -> None:
    while True:
        fn, fut = _keeper_calls.get()
        try:
            fut.set_result(fn())
        except BaseException as exc:
            fut.set_exception(exc)


def stop_server(timeout: float = 5.0) -> None:
    """Stop the forkserver and the resource tracker this process started, and wait for them to exit.

    Run at exit (after the pools are shut down): each ends by itself once the last holder of its pipe
    closes it, but only after this process has gone, and a CLI render then left them running for a moment
    after it exited. The forkserver is also sent SIGTERM: left to end by itself, its interpreter's teardown
    (NumPy, OpenCV, FFmpeg) kept every CLI command waiting ~55 ms more. Pool workers die with it. One
    that does not end within ``timeout`` seconds is killed. Uses multiprocessing's private state (Python 3.11 to 3.13);
    where that differs, nothing is done.
    """
    from multiprocessing import forkserver, resource_tracker

    server = getattr(forkserver, "_forkserver", None)
    with contextlib.suppress(AttributeError, OSError), server._lock:
        pid, fd, address = server._forkserver_pid, server._forkserver_alive_fd, server._forkserver_address
        if pid is not None:
            server._forkserver_pid = server._forkserver_alive_fd = server._forkserver_address = None
            os.close(fd)  # the server's "alive" pipe: at EOF it would exit by itself, after ~55 ms of teardown
            with contextlib.suppress(OSError):  # which nothing needs: it holds no state, and its workers are gone
                os.kill(pid, signal.SIGTERM)
            _reap(pid, timeout)
            if isinstance(address, str) and not address.startswith("\0"):
                with contextlib.suppress(OSError):
                    os.unlink(address)
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    with contextlib.suppress(AttributeError, OSError), tracker._lock:
        pid, fd = tracker._pid, tracker._fd
        if pid is not None and fd is not None:
            tracker._pid = tracker._fd = None
            os.close(fd)
            _reap(pid, timeout)


def _reap(pid: int, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for child ``pid`` to exit, then kill it."""
    deadline = time.monotonic() + timeout
    try:
        while os.waitpid(pid, os.WNOHANG)[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.002)
    except ChildProcessError:
        pass


def warm_up() -> None:
    """Start the forkserver (and its imports) now, in the background of whatever the caller does next."""
    with contextlib.suppress(Exception):
        _context()


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def init_worker(progress_queue: Any, cv_threads: int, warm: tuple[str, ...] = ()) -> None:
    """Pool initializer: die with the parent (the forkserver), progress channel, polite thread counts; and
    the ``warm()`` of each module in ``warm`` on a thread of its own (:func:`_warm`)."""
    global _progress_queue, _parent_pid
    die_with_parent(_server_pid)
    _progress_queue, _parent_pid = progress_queue, os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt means
    tune_process(cv_threads)
    if warm:
        threading.Thread(target=_warm, args=(warm,), name="vp-warm", daemon=True).start()


def _warm(modules: tuple[str, ...]) -> None:
    """Import ``modules`` and call their ``warm()`` in order, at a lower priority, while the job's analysis runs:
    a style's one-time set-up (the cartoon's OpenCV Lab tables, 0.09 s, which its analysis would otherwise wait
    for) and compiled kernels (:mod:`core.render.blend`: ~0.4 s of Numba's import and typing tables, which would
    otherwise stall the first chunk's first frame). A failure here is left to the code that needs the module,
    which reports it with its job."""
    from .stages import lower_priority

    lower_priority(WARM_NICE)
    for name in modules:
        try:
            importlib.import_module(name).warm()
        except Exception:  # the chunk that calls the kernel meets it again and fails with its job
            log.debug("warming %s failed", name, exc_info=True)


def tune_process(cv_threads: int) -> None:
    """What any process that renders chunks wants (a pool worker, a Dask worker): glibc keeping freed frame
    buffers, OpenCV and ONNX Runtime's CPU sessions using ``cv_threads`` threads so the processes on one
    machine do not oversubscribe it,
    and NumPy's BLAS on the calling thread only (:func:`single_thread_blas`)."""
    _keep_freed_memory()
    import cv2

    from core.ml import session as ml_session

    cv2.setNumThreads(cv_threads)
    ml_session.set_cpu_threads(cv_threads)  # ONNX Runtime's CPU sessions: the same share of the cores
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
#: still let it grow for the first few chunks (each chunk's threads split its frames between them
#: differently): the worker's anonymous memory went 132 -> 172 MiB over a 10-chunk clip, the process tree's
#: peak 492 vs 459 MiB for one chunk (1.07x). One arena: 130 -> 141 MiB, 462 vs 459 MiB (1.01x), and no
#: slower (cartoon at 720p, alternating runs: balanced 12.3-15.0 s vs 13.3-14.6 s, speed 6.1-8.1 vs
#: 6.5-7.2 s); the threads' few large allocations a frame barely contend for it.
ARENAS = 1


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

    def __init__(self, workers: int, warm: tuple[str, ...] = ()) -> None:
        """``warm``: modules whose ``warm()`` each worker calls as it starts (:func:`init_worker`)."""
        ctx = _context()
        self.queue = ctx.Queue()
        cv_threads = max(1, (os.cpu_count() or 1) // workers)
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker,
                                            initargs=(self.queue, cv_threads, warm))
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
