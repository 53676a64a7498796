"""scripts/: the CLI's one-line errors and exit codes, the benchmark report."""
