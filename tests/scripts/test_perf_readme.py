"""The README's performance tables are generated from the committed benchmark report, never typed in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.bench import report as perf_report

ROOT = Path(__file__).resolve().parents[2]


def test_readme_tables_match_the_committed_report() -> None:
    report_path = ROOT / perf_report.REPORT_PATH
    if not report_path.is_file():
        pytest.skip(f"{perf_report.REPORT_PATH} is not committed yet (run python -m scripts.bench)")
    readme = (ROOT / "README.md").read_text()
    between = readme.split(perf_report.START, 1)[1].split(perf_report.END, 1)[0]
    assert between.strip() == perf_report.markdown(json.loads(report_path.read_text())).strip(), \
        "README's performance tables differ from docs/perf/benchmark.json: run python -m scripts.bench.report " \
        "docs/perf/benchmark.json --readme README.md"
