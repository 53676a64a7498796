"""Distributed rendering: chunks on a Dask LocalCluster give the local render's bytes, even when a worker dies."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError
from core.executors import ClusterUnreachableError, make_executor
from core.job import JobSpec, build_job
from core.pipeline import render
from core.samples import ClipSpec, make_clip
from stylizers import STYLIZERS, Styled, Stylizer

distributed = pytest.importorskip("distributed", reason="distributed (Dask) is not installed")


@dataclass(frozen=True)
class KillOnceParams:
    """``marker``: a file; the first worker to claim it at frame ``at`` SIGKILLs itself. Empty: never."""

    marker: str = ""
    at: int = 60


class KillOnce(Stylizer):
    """Test-only style: inverted frames, and one worker death on demand. Dask workers learn of it by
    unpickling ``KillOnceParams``, which imports this module and so runs the registration below."""

    name = "test_kill_once"
    description = "test only: invert, and SIGKILL the worker once"
    Params = KillOnceParams
    stabilise = False

    def stylize(self, rgb: np.ndarray, index: int) -> Styled:
        if self.params.marker and index == self.params.at:
            try:
                os.rename(self.params.marker, self.params.marker + ".taken")  # atomic: one claimant only
            except FileNotFoundError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return Styled(base=255 - rgb)


STYLIZERS.setdefault(KillOnce.name, KillOnce)


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("dask") / "clip.mp4", ClipSpec(frames=96, width=160, height=96,
                                                                            audio=True, seed=7))


def _url(cluster: distributed.LocalCluster) -> str:
    return cluster.scheduler_address.replace("tcp://", "dask://")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _render_on(cluster: distributed.LocalCluster, spec: JobSpec) -> None:
    with make_executor(_url(cluster)) as (executor, workers):
        assert workers == 2
        res = render(spec, executor=executor, workers=workers)
    assert res.reused_chunks == () and res.chunks >= 4


def test_smoke_local_is_the_default() -> None:
    with make_executor(None) as (ex, n), make_executor("local") as (ex2, n2):
        assert (ex, n, ex2, n2) == (None, None, None, None)


@pytest.mark.parametrize("url", ["dask://", "dask://host", "dask://host:port", "tcp://127.0.0.1:8786", "spark://a:1"])
def test_exception_bad_url(url: str) -> None:
    with pytest.raises(ConfigError, match="expected"):
        make_executor(url)


def test_exception_unreachable() -> None:
    with pytest.raises(ClusterUnreachableError, match=r"127\.0\.0\.1:9"), make_executor("dask://127.0.0.1:9",
                                                                                        timeout=1):
        pass


def test_dask_equals_local(cluster: distributed.LocalCluster, clip: Path, tmp_path: Path) -> None:
    """Same job, local pool vs two Dask worker processes: the same bytes (libx264 + audio, mp4)."""
    local, remote = tmp_path / "local.mp4", tmp_path / "dask.mp4"
    render(build_job(clip, local, "cartoon", "balanced", chunk_seconds=1), workers=2)
    _render_on(cluster, build_job(clip, remote, "cartoon", "balanced", chunk_seconds=1))
    assert _sha(remote) == _sha(local)


def test_killed_worker_is_retried(cluster: distributed.LocalCluster, clip: Path, tmp_path: Path) -> None:
    """A worker SIGKILLed mid-chunk: its chunk runs again elsewhere and the output has the local render's bytes.

    (libx264 in mp4 is byte-deterministic here; Matroska is not: its muxer writes a random segment UID.)"""
    base = build_job(clip, tmp_path / "local.mp4", "none", "balanced", chunk_seconds=1)
    marker = tmp_path / "kill-once"
    local = dataclasses.replace(base, style=KillOnce.name, params=KillOnceParams())
    killed = dataclasses.replace(local, output=str(tmp_path / "dask.mp4"), params=KillOnceParams(str(marker)))
    render(local, workers=2)
    marker.touch()
    pids = {w.pid for w in cluster.workers.values()}
    _render_on(cluster, killed)
    assert not marker.exists() and marker.with_name("kill-once.taken").exists(), "no worker was killed"
    assert _sha(Path(killed.output)) == _sha(Path(local.output))
    cluster.wait_for_workers(2)  # the nanny restarted the dead one, for the next test
    assert {w.pid for w in cluster.workers.values()} != pids


def test_cli_executor(cluster: distributed.LocalCluster, clip: Path, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    from scripts.cli import EXIT_USER, main

    local, remote = tmp_path / "local.mp4", tmp_path / "cli.mp4"
    render(build_job(clip, local, "pencil", "speed", chunk_seconds=1), workers=2)
    args = ["render", str(clip), "-o", str(remote), "--style", "pencil", "--preset", "speed", "--chunk-seconds", "1",
            "-q"]
    assert main([*args, "--executor", _url(cluster)]) == 0
    assert _sha(remote) == _sha(local)
    assert main([*args, "--executor", "dask://nowhere"]) == EXIT_USER
    assert "expected dask://HOST:PORT" in capsys.readouterr().err


def test_queue_worker_renders_on_the_cluster_from_settings(cluster: distributed.LocalCluster, clip: Path,
                                                           tmp_path: Path) -> None:
    """The studio setting: with ``executor`` saved as the cluster's URL, a queued render's chunks run there
    and the output is the local render's bytes."""
    from core import storage
    from core.jobs import JobQueue
    from core.worker import run_worker

    local, remote = tmp_path / "local.mp4", tmp_path / "queued.mp4"
    render(build_job(clip, local, "pencil", "speed", chunk_seconds=1), workers=2)
    storage.save_settings(dataclasses.replace(storage.load_settings(), executor=_url(cluster)))
    assert storage.load_settings().executor == _url(cluster)
    queue = JobQueue()
    job_id = queue.add("render", {"input": str(clip), "output": str(remote), "style": "pencil", "preset": "speed",
                                  "chunk_seconds": 1.0})
    assert run_worker(once=True, poll_s=0.05) == 1
    job = queue.get(job_id)
    assert job.state == "done", job.error
    assert _sha(remote) == _sha(local)
    assert job.result["executor"] == _url(cluster)


def test_settings_refuse_a_bad_cluster_url(tmp_path: Path) -> None:
    from core import storage

    with pytest.raises(ConfigError, match="executor 'spark://a:1': expected 'local' or dask://HOST:PORT"):
        storage.save_settings(dataclasses.replace(storage.load_settings(), executor="spark://a:1"))
    storage.settings_path().parent.mkdir(parents=True, exist_ok=True)
    storage.settings_path().write_text("executor: dask://nohost\n")
    with pytest.raises(ConfigError, match="expected dask://HOST:PORT"):
        storage.load_settings()
