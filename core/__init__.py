"""The studio's engine, in packages by purpose; the modules at this level are the base all of them share.

Packages, lowest first (each may import only its own package and those below; ``tests/test_layers.py``
holds this, and the README's Layout section draws it):

==================  ======================================================================================
the base (here)     ``errors``, ``paths`` (imports nothing of ours), ``atomic`` writes, strict ``config``,
                    ``presets`` (data the styles read), ``assets``, ``fingerprint``, ``disk``, ``db`` (the one
                    SQLite database and its migrations), ``hardware``, ``logging_config``
``video``           a file in and out: probe, reader, writer, frames, cuts, flow, stitch, stills, synthetic clips
``color``, ``ml``,  LUTs through OpenColorIO; ONNX Runtime sessions and the model registry; per-frame
``quality``         metrics and shot analysis (three independent packages: none imports another)
``stylizers``       (top-level) the styles, built on the three above
``render``          one render: job spec, plan, chunks, stages, temporal, checkpoint, pool, executors, cost
``learn``           the learning loop: worst-frame sampling, feedback store, preference model, auto-tuner
``studio``          the studio around renders: job queue, worker, watch folders, storage, telemetry, repair
==================  ======================================================================================

``trainer/`` (the only torch) sits beside ``learn``; ``app/`` and ``scripts/`` are shells on top. Nothing in
``core`` imports ``app``, ``scripts``, ``streamlit`` or ``torch``.
"""
