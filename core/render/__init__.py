"""One render: from a job spec to a published output, in chunks that survive a crash.

``spec`` (the job as a value; its hash names the work folder), ``pipeline`` (the numbered steps of a render),
``stages`` (a chunk's decode -> stylize -> temporal -> encode, overlapped in threads), ``temporal`` (the EMA /
flow stabiliser), ``checkpoint`` (finished chunks, as atomic JSON), ``pool`` (the local worker processes),
``executors`` (local pool or a Dask cluster), ``dask_setup`` (what a Dask worker runs once), ``cost`` (the render
history and the ETA it gives).

May import: the base, ``core.video``, ``core.color``, ``core.ml``, ``core.quality`` and ``stylizers``.
Never torch, never the learning loop or the studio.
"""
