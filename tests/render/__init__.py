"""core/render: one render end to end: plans, chunks, stages, temporal state, resume, determinism, Dask."""
