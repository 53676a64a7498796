"""What a Dask worker runs once when a studio render first uses it: the local pool's process tuning.

Without it a Dask worker rendered at less than half the local pool's speed: Dask's nanny starts workers with
``MALLOC_TRIM_THRESHOLD_=65536``, so glibc handed every freed frame buffer back to the kernel and faulted it
in again on the next frame, and OpenCV used every core in each of several worker processes. Imported only
where ``distributed`` is (by :mod:`core.render.executors` and, through unpickling, by the workers).
"""

from __future__ import annotations

import os

from distributed import WorkerPlugin

from .pool import tune_process


class StudioWorkerSetup(WorkerPlugin):
    """Worker plugin: :func:`core.render.pool.tune_process` with the worker's share of its machine's cores."""

    idempotent = True  # registered by every render; a worker that has it keeps it
    name = "video-studio-setup"

    def setup(self, worker: object) -> None:
        nthreads = getattr(getattr(worker, "state", None), "nthreads", 1) or 1
        tune_process(max(1, (os.cpu_count() or 1) // nthreads))
