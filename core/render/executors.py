"""Where chunks run: the local process pool (the default) or an existing Dask cluster.

``make_executor("dask://HOST:PORT")`` connects to a running Dask scheduler and hands :func:`core.render.pipeline.render`
the client's ``concurrent.futures`` executor. The one requirement of a cluster: every worker sees the input,
the studio's work folder (``$VP_HOME/work``) and any LUT or model file the style reads at the same paths as
the machine that starts the render (a shared path), and can import this repository (same version). Chunks are
pure functions of their task, written atomically and recorded by the render process, so a chunk whose worker
died is simply run again elsewhere (Dask's scheduler reschedules it, up to ``distributed.scheduler.
allowed-failures`` times) and the output is the same as a local render, bit for bit.

Faults are one line naming the address: a scheduler that does not answer (or answers, but not as Dask:
:func:`_probe` asks for its identity before a ``Client`` exists, since a failed ``Client`` blocks in its
finaliser and prints tracebacks), a cluster with no workers (:class:`ClusterUnreachableError`), and workers
that run other code than ours (:class:`~core.errors.ClusterMismatchError`): before anything is submitted,
:func:`_check_workers` runs a small self-contained probe on every worker (pickled by value, so it runs even
where the project does not import) and compares Python, the packages that decide the output's bytes and a
hash of the project's own sources with ours. A task graph a worker cannot deserialize anyway is caught too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

from core.errors import ClusterMismatchError, ConfigError, StudioError

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
    _probe(address, timeout)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:
        raise ClusterUnreachableError(f"cannot connect to the Dask scheduler at {address} "
                                      f"within {timeout:g} s ({type(exc).__name__})") from None
    executor = None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            raise ClusterUnreachableError(f"the Dask scheduler at {address} has no workers "
                                          f"(none joined within {timeout:g} s)") from None
        _check_workers(client, address)
        from .dask_setup import StudioWorkerSetup

        client.register_plugin(StudioWorkerSetup(), name=StudioWorkerSetup.name)  # also for restarted workers
        workers = sum(client.nthreads().values())
        executor = client.get_executor(pure=False, retries=TASK_RETRIES)
        try:
            yield executor, workers
        except Exception as exc:
            if "deserializ" in str(exc).lower():  # a worker joined since the check, running other code
                raise ClusterMismatchError(f"the Dask cluster at {address}: a worker cannot load our tasks "
                                           f"({str(exc).splitlines()[0][:160]}); {_SAME_CODE}") from None
            raise
    finally:
        if executor is not None:
            executor.shutdown(wait=False)  # cancels what a failed render left queued on the cluster
        client.close()


def _probe(address: str, timeout: float) -> None:
    """Ask ``address`` for its identity with Dask's own protocol, before a ``Client`` is made: one line naming
    the address when nothing answers, or something that is not a Dask scheduler does."""
    from distributed.comm import connect

    async def identity() -> Any:
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            await comm.close()

    try:
        reply = asyncio.run(asyncio.wait_for(identity(), timeout))
    except (OSError, TimeoutError) as exc:
        raise ClusterUnreachableError(f"cannot connect to the Dask scheduler at {address} "
                                      f"within {timeout:g} s ({type(exc).__name__})") from None
    except Exception as exc:
        raise ClusterUnreachableError(f"{address} answered, but not as a Dask scheduler "
                                      f"({type(exc).__name__})") from None
    if not isinstance(reply, Mapping) or reply.get("type") != "Scheduler":
        kind = reply.get("type") if isinstance(reply, Mapping) else type(reply).__name__
        raise ClusterUnreachableError(f"{address} answered, but not as a Dask scheduler (it is a {kind})")


_SAME_CODE = ("start the scheduler and workers from this project's folder at the same version (or with it on "
              "PYTHONPATH)")

#: what :func:`_check_workers` compares: the packages whose versions decide a chunk's bytes
PACKAGES = ("numpy", "av", "cv2", "onnxruntime")

#: Run on every worker by value (compiled outside any importable module, so cloudpickle ships its code and the
#: worker needs nothing of ours to run it). Returns Python's version, each package's, and a hash of the
#: sources of the packages a chunk runs (core, stylizers) as the worker would import them.
_PROBE_SOURCE = """
def studio_probe(packages):
    import hashlib, importlib, platform
    from pathlib import Path
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = str(getattr(importlib.import_module(name), "__version__", "?"))
        except Exception:
            out[name] = "missing"
    try:
        import core
    except Exception as exc:
        out["error"] = f"cannot import the project ({type(exc).__name__}: {exc})"
        return out
    root = Path(core.__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in ("core", "stylizers"):
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode() + b"|" + f.read_bytes())
    out["project"] = h.hexdigest()[:12]
    return out
"""


def _probe_function() -> Callable[[tuple[str, ...]], dict[str, str]]:
    namespace: dict[str, Any] = {"__name__": "studio_cluster_probe"}  # not in sys.modules: pickled by value
    exec(compile(_PROBE_SOURCE, "<studio_cluster_probe>", "exec"), namespace)
    return namespace["studio_probe"]


def versions_here() -> dict[str, str]:
    """What :func:`_check_workers` compares, for this process."""
    return _probe_function()(PACKAGES)


def differences(ours: Mapping[str, str], theirs: Mapping[str, str]) -> list[str]:
    """``["python 3.10.12 (here 3.11.7)", ...]``: what a worker's probe shows that differs from ours (Python by
    major.minor; a package we do not have ourselves is not compared)."""
    if "error" in theirs:
        return [theirs["error"]]
    out = []
    for key, here in ours.items():
        there = theirs.get(key, "missing")
        same = (here.split(".")[:2] == there.split(".")[:2]) if key == "python" else here == there
        if not same and not (key in PACKAGES and here == "missing"):
            out.append(f"{'project sources' if key == 'project' else key} {there} (here {here})")
    return out


def _check_workers(client: Any, address: str) -> None:
    """ClusterMismatchError naming the address, the scheduler or a worker, and what differs, when any of them runs
    other code than ours (the scheduler unpickles our task graph, the workers run it)."""
    probe = _probe_function()
    try:  # the scheduler unpickles the task graph too: it must import the project as well
        reports = {"the scheduler": client.run_on_scheduler(probe, PACKAGES)}
        reports.update((f"worker {w}", r) for w, r in sorted(client.run(probe, PACKAGES).items()))
    except Exception as exc:
        raise ClusterMismatchError(f"the Dask cluster at {address}: its workers could not run a version check "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); "
                                   f"{_SAME_CODE}") from None
    ours = versions_here()
    for who, theirs in reports.items():
        diff = differences(ours, theirs)
        if diff:
            raise ClusterMismatchError(f"the Dask cluster at {address}: {who} differs from this machine: "
                                       f"{'; '.join(diff[:3])}; {_SAME_CODE}")


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
    """A context manager yielding ``(executor, workers)`` for :func:`core.render.pipeline.render`.

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
