"""The studio around renders: the job queue and its worker, watch folders, storage, telemetry.

``queue`` (render, train and autotune jobs in SQLite with leases), ``kinds`` (what each kind's spec
must say, checked when queued), ``worker`` (claims jobs and runs them:
renders, fine-tunes through ``trainer/``, auto-tuning), ``watch`` (a clip dropped in a folder is queued
once), ``storage`` (where files live, how long they stay, the disk guard before a job), ``telemetry``
(Prometheus metrics), ``repair`` (a damaged database moved aside, its rows kept).

May import: everything in ``core`` below it, ``stylizers`` and ``trainer``. The top of ``core``: only the
shells (``app/``, ``scripts/``) import it.
"""
