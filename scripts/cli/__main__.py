"""``python -m scripts.cli COMMAND ...``: the package's entry point; everything it runs is :func:`scripts.cli.main`."""

import sys

from scripts.cli import main

sys.exit(main())
