"""core/quality: per-frame metrics and shot analysis (and the render cost model they feed)."""
