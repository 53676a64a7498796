"""core/studio: the job queue, its worker, watch folders, storage, telemetry."""
