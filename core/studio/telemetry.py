"""The worker's Prometheus metrics: what a dashboard (Grafana, or ``curl``) scrapes from ``/metrics``.

One registry per process (:data:`REGISTRY`, not prometheus_client's global one, so nothing else leaks in).
The worker's progress path feeds it (:func:`job_progress`, :func:`frames_done`, :func:`timing`), and
:func:`serve` exposes it on 127.0.0.1 only: the studio is a workstation tool, never a network service.

Metrics (all prefixed ``vp_``):

- ``vp_frames_rendered_total``: frames rendered by this process's render jobs (a resumed render's frames
  from its checkpoint are not counted again);
- ``vp_fps``: frames (or steps) per second summed over the jobs running here now, 0 when idle;
- ``vp_stage_seconds{stage}``: histogram of time spent in each stage (analyse, render, train, ...) per
  job, observed when the job leaves the stage;
- ``vp_jobs{state}``: jobs in the studio database by state (every state, zeros included), counted on
  each scrape;
- ``vp_gpu_utilization_percent{gpu}``, ``vp_gpu_memory_used_bytes{gpu}``, ``vp_gpu_memory_total_bytes{gpu}``:
  only when ``pynvml`` (nvidia-ml-py) imports and NVML sees a GPU; absent otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.errors import ConfigError, OutputError

log = logging.getLogger(__name__)

#: stage durations span a quick analysis to a long render or a training run
STAGE_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0, float("inf"))

REGISTRY = CollectorRegistry(auto_describe=True)
FRAMES = Counter("vp_frames_rendered", "Frames rendered by this process's render jobs", registry=REGISTRY)
FPS = Gauge("vp_fps", "Frames (or steps) per second, summed over the jobs running in this process",
            registry=REGISTRY)
STAGE_SECONDS = Histogram("vp_stage_seconds", "Seconds a job spent in a stage", ["stage"], buckets=STAGE_BUCKETS,
                          registry=REGISTRY)


@dataclass
class _Running:
    stage: str
    since: float
    fps: float = 0.0
    frames: int | None = None  # frames done so far, once the render has said where it starts


_lock = threading.Lock()
_jobs: dict[int, _Running] = {}


def _fps_now() -> float:
    with _lock:
        return sum(r.fps for r in _jobs.values())


FPS.set_function(_fps_now)


def job_progress(job_id: int, stage: str, fps: float | None = None) -> None:
    """A progress report of a running job: closes the previous stage's timing when the stage changes and
    keeps the job's live fps (None leaves the last value)."""
    now = time.monotonic()
    with _lock:
        run = _jobs.get(job_id)
        if run is None:
            run = _jobs[job_id] = _Running(stage, now)
        elif run.stage != stage:
            STAGE_SECONDS.labels(run.stage).observe(now - run.since)
            run.stage, run.since = stage, now
        if fps is not None:
            run.fps = max(0.0, float(fps))


def frames_done(job_id: int, done: int, *, start: bool = False) -> None:
    """A render's frame count. ``start``: the count it starts from (frames reused from its checkpoint),
    not counted; later calls add what is new since the last one."""
    with _lock:
        run = _jobs.setdefault(job_id, _Running("render", time.monotonic()))
        if not start and run.frames is not None and done > run.frames:
            FRAMES.inc(done - run.frames)
        if start or run.frames is None or done > run.frames:
            run.frames = done


def job_ended(job_id: int) -> None:
    """The job left this process (done, failed, stopped): its last stage is timed, its fps drops out."""
    with _lock:
        run = _jobs.pop(job_id, None)
    if run is not None:
        STAGE_SECONDS.labels(run.stage).observe(time.monotonic() - run.since)


@contextlib.contextmanager
def timing(job_id: int) -> Iterator[None]:
    """The block that runs a job: :func:`job_ended` on every way out."""
    try:
        yield
    finally:
        job_ended(job_id)


class JobsCollector(Collector):
    """``vp_jobs{state}`` from the queue at scrape time (so it is right even for jobs of other workers)."""

    def __init__(self, db_path: str | Path | None = None) -> None:
        from .queue import JobQueue

        self.queue = JobQueue(db_path)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.queue.counts()  # one GROUP BY: a scrape must not load every job
        family = GaugeMetricFamily("vp_jobs", "Jobs in the studio database by state", labels=["state"])
        for state, n in counts.items():
            family.add_metric([state], n)
        yield family

    def describe(self) -> list[Any]:
        return []  # collected lazily: registering must not query the database


class GpuCollector(Collector):
    """NVML's utilisation and memory per GPU. Build it with :func:`gpu_collector` (None without a GPU)."""

    def __init__(self, nvml: Any, count: int) -> None:
        self.nvml, self.count = nvml, count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        util = GaugeMetricFamily("vp_gpu_utilization_percent", "GPU utilisation (NVML)", labels=["gpu"])
        used = GaugeMetricFamily("vp_gpu_memory_used_bytes", "GPU memory in use (NVML)", labels=["gpu"])
        total = GaugeMetricFamily("vp_gpu_memory_total_bytes", "GPU memory (NVML)", labels=["gpu"])
        for i in range(self.count):
            try:
                handle = self.nvml.nvmlDeviceGetHandleByIndex(i)
                rates = self.nvml.nvmlDeviceGetUtilizationRates(handle)
                mem = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception as exc:  # a GPU that fell off the bus must not break the scrape
                log.debug("NVML: GPU %d unreadable (%s)", i, exc)
                continue
            util.add_metric([str(i)], rates.gpu)
            used.add_metric([str(i)], mem.used)
            total.add_metric([str(i)], mem.total)
        yield from (util, used, total)

    def describe(self) -> list[Any]:
        return []


def gpu_collector() -> GpuCollector | None:
    """A :class:`GpuCollector` when pynvml imports and NVML sees at least one GPU, else None."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:  # no pynvml, no driver, no GPU: the GPU gauges are simply absent
        return None
    return GpuCollector(pynvml, count) if count > 0 else None


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint; :meth:`close` stops it and unregisters its collectors."""

    port: int
    _server: Any
    _thread: threading.Thread
    _collectors: tuple[Collector, ...]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        for c in self._collectors:
            REGISTRY.unregister(c)


def serve(port: int, db_path: str | Path | None = None) -> MetricsServer:
    """Serve :data:`REGISTRY` plus the jobs-by-state and GPU collectors at ``http://127.0.0.1:port/metrics``
    (``port`` 0: any free port; read :attr:`MetricsServer.port`). ConfigError for a port outside
    0..65535, OutputError when it cannot be bound (in use)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"metrics port must be an integer in 0..65535, got {port!r}")
    collectors = tuple(c for c in (JobsCollector(db_path), gpu_collector()) if c is not None)
    for c in collectors:
        REGISTRY.register(c)
    try:
        server, thread = start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    except OSError as exc:
        for c in collectors:
            REGISTRY.unregister(c)
        raise OutputError(f"metrics: cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})") from None
    actual = server.server_address[1]
    log.info("metrics at http://127.0.0.1:%d/metrics", actual)
    return MetricsServer(actual, server, thread, collectors)


@contextlib.contextmanager
def serving(port: int | None, db_path: str | Path | None = None) -> Iterator[MetricsServer | None]:
    """:func:`serve` for the length of a block; ``port`` None: no endpoint (yields None)."""
    server = serve(port, db_path) if port is not None else None
    try:
        yield server
    finally:
        if server is not None:
            server.close()
