"""The report's cost benchmark (bench/report_cost.py): a tiny run measures the demo lake's report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import report_cost  # noqa: E402  (bench/ is a folder of scripts)


def test_a_tiny_run_measures_the_demo_report(tmp_path: Path) -> None:
    out = tmp_path / "report_cost"
    report_cost.main(["--rows", "0", "--repeat", "2", "--work", str(tmp_path / "work"), "--out", str(out)])
    (size,) = json.loads(out.with_suffix(".json").read_text())["sizes"]
    files = list((tmp_path / "work" / "report_cost" / "lake-0" / "geometry_state").rglob("*.parquet"))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)  # counted from the files themselves
    assert (size["rows"], size["runs"], size["cohorts"]) == (rows, 27, 9)  # 3 cohorts x 3 seeds, 6 families x 3
    assert size["figures"] == 68 and 0 < size["bytes"] < 10_000_000
    assert len(size["seconds_all"]) == 2 and size["seconds"] > 0 and size["peak_rss_mib"] > 0
    assert f"| {rows:,} | 27 | 9 | 68 |" in out.with_suffix(".md").read_text()
