"""``python -m scripts.probe IN``: the same JSON as ``python -m scripts.cli probe IN``."""

from __future__ import annotations

import sys

from scripts.cli import main

if __name__ == "__main__":
    sys.exit(main(["probe", *sys.argv[1:]]))
