"""core/video: probe, reader, writer, stitch, on synthetic clips in every container and on ../shared/media."""
