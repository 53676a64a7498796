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
from core.render.executors import ClusterUnreachableError, make_executor
from core.render.pipeline import render
from core.render.spec import JobSpec, build_job
from core.video.synthetic import ClipSpec, make_clip
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
    """Same job, one local worker vs two Dask worker processes: the same bytes (libx264 + audio, mp4). The plan
    and its carried state do not depend on how many chunks run at once (a 2-core machine's default for
    cartoon is one; a plan made per worker count had differed from frame 134 on, at 44-55 dB)."""
    local, remote = tmp_path / "local.mp4", tmp_path / "dask.mp4"
    render(build_job(clip, local, "cartoon", "balanced", chunk_seconds=1), workers=1)
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
    from core.studio import storage
    from core.studio.queue import JobQueue
    from core.studio.worker import run_worker

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
    from core.studio import storage

    with pytest.raises(ConfigError, match="executor 'spark://a:1': expected 'local' or dask://HOST:PORT"):
        storage.save_settings(dataclasses.replace(storage.load_settings(), executor="spark://a:1"))
    storage.settings_path().parent.mkdir(parents=True, exist_ok=True)
    storage.settings_path().write_text("executor: dask://nohost\n")
    with pytest.raises(ConfigError, match="expected dask://HOST:PORT"):
        storage.load_settings()


# ---------------------------------------------------------------------------------------------- faults (issue 16)


def test_exception_not_a_scheduler(capsys: pytest.CaptureFixture[str]) -> None:
    """Something that answers with garbage (a web server, another service): one line naming it, at once."""
    import socket
    import threading

    from scripts.cli import EXIT_USER, main

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + bytes(range(256)) * 8)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with pytest.raises(ClusterUnreachableError, match=rf"tcp://127\.0\.0\.1:{port} answered, but not as a Dask"), \
            make_executor(f"dask://127.0.0.1:{port}", timeout=5):
        pass
    assert main(["render", "in.mp4", "-o", "out.mp4", "--executor", f"dask://127.0.0.1:{port}", "-q"]) in (EXIT_USER,)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    server.close()


def test_differences() -> None:
    from core.render.executors import differences, versions_here

    ours = versions_here()
    assert ours["project"] and ours["python"].startswith("3.") and "error" not in ours
    assert differences(ours, dict(ours)) == []
    patch = ".".join(ours["python"].split(".")[:2]) + ".99"
    assert differences(ours, {**ours, "python": patch}) == []  # Python is compared by major.minor
    assert differences(ours, {**ours, "python": "3.1.0", "project": "abc"}) == [
        f"python 3.1.0 (here {ours['python']})", f"project sources abc (here {ours['project']})"]
    assert differences(ours, {"python": ours["python"], "error": "cannot import the project (X)"}) == [
        "cannot import the project (X)"]


def test_exception_mismatched_workers(cluster: distributed.LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster whose project sources hash differently from ours (another checkout, another version): refused
    before anything is submitted, naming the address, who differs (the scheduler is asked first) and how."""
    from core.errors import ClusterMismatchError
    from core.render import executors

    real = executors.versions_here()
    monkeypatch.setattr(executors, "versions_here", lambda: {**real, "project": "0123456789ab"})
    with pytest.raises(ClusterMismatchError, match=rf"{cluster.scheduler_address}: the scheduler differs from "
                                                   rf"this machine: project sources {real['project']} "
                                                   r"\(here 0123456789ab\)"), make_executor(_url(cluster)):
        pass


def test_exception_scheduler_cannot_import_the_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A scheduler and worker started where the project does not import (issue 16: "Error during deserialization
    of the task graph" and a traceback): one line naming the address and what is missing, exit 2."""
    import subprocess
    import sys
    import time

    from scripts.cli import EXIT_USER, main

    dask = Path(sys.executable).parent / "dask"
    if not dask.is_file():
        pytest.skip(f"no dask command beside {sys.executable}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    info = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(info)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not info.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        import json

        address = json.loads(info.read_text())["address"]
        procs.append(subprocess.Popen([str(dask), "worker", address, "--nthreads", "1", "--no-dashboard"],
                                      cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url = address.replace("tcp://", "dask://")
        clip = make_clip(tmp_path / "in.mp4", ClipSpec(frames=8, width=64, height=48))
        code = main(["render", str(clip), "-o", str(tmp_path / "out.mp4"), "--executor", url, "-q"])
        err = capsys.readouterr().err.strip()
        assert code == EXIT_USER, err
        assert err.count("\n") == 0 and "Traceback" not in err, err
        assert f"the Dask cluster at {address}: the scheduler differs from this machine: cannot import the " \
               "project (ModuleNotFoundError" in err
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
