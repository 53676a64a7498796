"""Where chunks run: the local process pool (the default) or an existing Dask cluster.

``make_executor("dask://HOST:PORT")`` connects to a running Dask scheduler and hands :func:`core.pipeline.render`
the client's ``concurrent.futures`` executor. The one requirement of a cluster: every worker sees the input,
the studio's work folder (``$VP_HOME/work``) and any LUT or model file the style reads at the same paths as
the machine that starts the render (a shared path), and can import this repository (same version). Chunks are
pure functions of their task, written atomically and recorded by the render process, so a chunk whose worker
died is simply run again elsewhere (Dask's scheduler reschedules it, up to ``distributed.scheduler.
allowed-failures`` times) and the output is the same as a local render, bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from urllib.parse import urlsplit

from .errors import ConfigError, StudioError

#: Seconds to wait for the scheduler to answer, and then for at least one worker to join it.
CONNECT_TIMEOUT = 10.0
#: Extra tries for a chunk that raised (a transient error on shared storage); a chunk whose worker died is
#: rescheduled by Dask itself, without spending these.
TASK_RETRIES = 2

ExecutorContext = AbstractContextManager[tuple[Executor | None, int | None]]


class ClusterUnreachableError(StudioError, ConnectionError):
    """A cluster address that does not answer, or a cluster with no workers; the message names the address."""


@contextlib.contextmanager
def _local(url: str, timeout: float) -> Iterator[tuple[Executor | None, int | None]]:
    """The pipeline's own LocalPool: no executor, no worker count (the caller's ``workers`` decides)."""
    yield None, None


def _dask(url: str, timeout: float) -> ExecutorContext:
    """A ``distributed.Client`` executor on the scheduler at ``url``; the URL is checked now, not on entry."""
    return _dask_client(_dask_address(url), url, timeout)


@contextlib.contextmanager
def _dask_client(address: str, url: str, timeout: float) -> Iterator[tuple[Executor | None, int | None]]:
    """Connect, wait for a worker, yield the executor and the cluster's total worker threads; close on exit."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(f"--executor {url}: needs the `distributed` package (pip install distributed)") from None
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnreachableError(f"cannot connect to the Dask scheduler at {address} "
                                      f"within {timeout:g} s ({type(exc).__name__})") from None
    executor = None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            raise ClusterUnreachableError(f"the Dask scheduler at {address} has no workers "
                                          f"(none joined within {timeout:g} s)") from None
        from .dask_worker import StudioWorkerSetup

        client.register_plugin(StudioWorkerSetup(), name=StudioWorkerSetup.name)  # also for restarted workers
        workers = sum(client.nthreads().values())
        executor = client.get_executor(pure=False, retries=TASK_RETRIES)
        yield executor, workers
    finally:
        if executor is not None:
            executor.shutdown(wait=False)  # cancels what a failed render left queued on the cluster
        client.close()


def _dask_address(url: str) -> str:
    """``dask://HOST:PORT`` -> ``tcp://HOST:PORT``; a ConfigError naming the URL otherwise."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"--executor {url!r}: expected dask://HOST:PORT (e.g. dask://127.0.0.1:8786)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"tcp://{host}:{port}"


#: URL scheme -> opener; ``None`` and ``"local"`` mean the local process pool.
EXECUTORS: dict[str, Callable[[str, float], ExecutorContext]] = {"local": _local, "dask": _dask}


def check_url(url: str | None, what: str = "--executor") -> None:
    """Refuse (ConfigError naming ``what``) a URL :func:`make_executor` would refuse, without connecting."""
    if url is None or url == "local":
        return
    if urlsplit(url).scheme != "dask":
        raise ConfigError(f"{what} {url!r}: expected 'local' or dask://HOST:PORT")
    try:
        _dask_address(url)
    except ConfigError:
        raise ConfigError(f"{what} {url!r}: expected dask://HOST:PORT (e.g. dask://127.0.0.1:8786)") from None


def make_executor(url: str | None, timeout: float = CONNECT_TIMEOUT) -> ExecutorContext:
    """A context manager yielding ``(executor, workers)`` for :func:`core.pipeline.render`.

    ``url``: None or ``"local"`` -> ``(None, None)``, the pipeline's local process pool;
    ``"dask://HOST:PORT"`` -> a Dask client's executor (``pure=False``, ``retries=TASK_RETRIES``) and the
    cluster's total worker threads, closed on exit. Raises ConfigError for a URL of another form and
    ClusterUnreachableError (naming the address) when the scheduler does not answer or has no workers.
    """
    if url is None or url == "local":
        return _local("local", timeout)
    scheme = urlsplit(url).scheme
    opener = EXECUTORS.get(scheme) if scheme != "local" else None
    if opener is None:
        raise ConfigError(f"--executor {url!r}: expected 'local' or dask://HOST:PORT")
    return opener(url, timeout)
