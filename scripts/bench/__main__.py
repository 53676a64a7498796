"""``python -m scripts.bench``: the benchmark's command (:func:`scripts.bench.run.main`)."""

from __future__ import annotations

import sys

from scripts.bench.run import main

sys.exit(main())
