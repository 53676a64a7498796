"""The studio's engine: video I/O, pipeline, checkpoints, temporal, presets. Never imports app/ or torch."""
