"""core.studio.telemetry: /metrics scrapes on 127.0.0.1, its counters move during a render run by the worker, resumed
frames are not counted twice, GPU gauges are absent without NVML, bad ports are refused."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.errors import ConfigError, OutputError
from core.studio import telemetry
from core.studio.queue import STATES, JobQueue
from core.studio.worker import run_worker
from core.video.synthetic import ClipSpec, make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("telemetry") / "in.mp4", ClipSpec(width=160, height=96, frames=12))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of one scrape."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _wait_for(cond, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_smoke_scrape() -> None:
    server = telemetry.serve(0)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        m = _scrape(server.url)
    finally:
        server.close()
    assert ("vp_frames_rendered_total", ()) in m and ("vp_fps", ()) in m
    assert {m[("vp_jobs", (("state", s),))] for s in STATES} == {0.0}
    with pytest.raises(urllib.error.URLError):  # closed means closed
        urllib.request.urlopen(server.url, timeout=2)
    assert "vp_jobs" not in {f.name for f in telemetry.REGISTRY.collect()}  # its collector is unregistered


def test_counters_move_during_a_worker_render(clip: Path, tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, kwargs={"metrics_port": port, "poll_s": 0.05, "stop": stop})
    thread.start()
    try:
        _wait_for(lambda: _reachable(url), timeout=30)
        before = _scrape(url)
        queue = JobQueue()
        job_id = queue.add("render", {"input": str(clip), "output": str(tmp_path / "out.mp4"), "style": "cartoon",
                                      "workers": 1})
        _wait_for(lambda: queue.get(job_id).state in ("done", "failed"))
        after = _scrape(url)
    finally:
        stop.set()
        thread.join()
    assert queue.get(job_id).state == "done"
    frames = ("vp_frames_rendered_total", ())
    assert after[frames] - before[frames] == 12
    assert before[("vp_jobs", (("state", "done"),))] == 0 and after[("vp_jobs", (("state", "done"),))] == 1
    assert after[("vp_jobs", (("state", "queued"),))] == 0
    for stage in ("analyse", "render"):
        key = ("vp_stage_seconds_count", (("stage", stage),))
        assert after[key] - before.get(key, 0.0) == 1
    assert after[("vp_fps", ())] == 0.0  # the job has ended: nothing renders now
    assert not _reachable(url)  # the worker took its endpoint down with it


def _reachable(url: str) -> bool:
    try:
        _scrape(url)
    except (urllib.error.URLError, ConnectionError):
        return False
    return True


def _sample(name: str) -> float:
    return telemetry.REGISTRY.get_sample_value(name)


def test_resumed_frames_are_not_counted_and_fps_sums_running_jobs() -> None:
    start = _sample("vp_frames_rendered_total")
    with telemetry.timing(-1), telemetry.timing(-2):
        telemetry.frames_done(-1, 30, start=True)  # 30 frames came from the checkpoint
        telemetry.frames_done(-1, 36)
        telemetry.frames_done(-1, 36)  # a repeated report adds nothing
        telemetry.job_progress(-1, "render", fps=10.0)
        telemetry.job_progress(-2, "train", fps=2.5)
        assert _sample("vp_frames_rendered_total") - start == 6
        assert _sample("vp_fps") == 12.5
    assert _sample("vp_fps") == 0.0


@pytest.mark.skipif(importlib.util.find_spec("pynvml") is not None, reason="pynvml installed: GPU gauges may exist")
def test_gpu_gauges_absent_without_nvml() -> None:
    assert telemetry.gpu_collector() is None
    with telemetry.serving(0) as server:
        assert not [k for k in _scrape(server.url) if k[0].startswith("vp_gpu_")]


def test_exception_bad_port() -> None:
    for bad in (-1, 70000, True, 1.5):
        with pytest.raises(ConfigError, match="metrics port"):
            telemetry.serve(bad)
    with telemetry.serving(0) as server, pytest.raises(OutputError, match=f"127.0.0.1:{server.port}"):
        telemetry.serve(server.port)
    with telemetry.serving(None) as none:
        assert none is None
