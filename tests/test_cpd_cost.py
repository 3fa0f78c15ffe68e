"""The change-point cost benchmark (bench/cpd_cost.py): its shapes hold the same rows, its rows
are whole series of every descriptor with the planted shifts, and a tiny run measures both
model versions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import cpd_cost  # noqa: E402  (bench/ is a folder of scripts)
import shape_lake  # noqa: E402

from warehouse.contracts import DESCRIPTORS  # noqa: E402


def test_the_shapes_of_ten_million_rows_differ_by_less_than_a_ten_thousandth() -> None:
    shapes = [shape_lake.Shape.for_rows(10_000_000, c, 8) for c in (64, 1000, 5000)]
    # 10^7 / (64 * 8) = 19,531.25 runs -> 19,531; 10^7 / 8,000 = 1,250; 10^7 / 40,000 = 250
    assert [s.runs for s in shapes] == [19_531, 1_250, 250]
    assert [s.rows for s in shapes] == [9_999_872, 10_000_000, 10_000_000]


def test_a_chunk_holds_whole_series_with_their_level_shifts() -> None:
    shape = shape_lake.Shape(captures=400, layers=3, runs=5)
    table = shape_lake.geometry_chunk(shape, range(2, 4), np.random.default_rng(0))
    assert table.num_rows == 2 * 3 * 400
    rows = table.to_pydict()
    assert sorted(set(rows["run_id"])) == ["shape-000002", "shape-000003"]
    assert rows["step"][:3] == [0, 10, 20] and rows["step"][399] == 3990 and rows["step"][400] == 0
    assert rows["layer"][399] == 0 and rows["layer"][400] == 1 and rows["layer"][-1] == 2
    assert all(rows["sample_id"][k] is None for k in range(0, table.num_rows, 97))
    for d in DESCRIPTORS:
        assert table.column(d).null_count == 0
    # the two shifts of 1 to 3 units stand out of a walk of steps 0.05 and noise 0.2: the
    # largest jump of a 20-capture moving average in each series is at least about 1
    values = np.asarray(rows["eff_rank"]).reshape(6, 400)
    smooth = np.array([np.convolve(v, np.ones(20) / 20, mode="valid") for v in values])
    assert (np.abs(smooth[:, 20:] - smooth[:, :-20]).max(axis=1) > 0.8).all()


def test_a_tiny_run_measures_both_versions(tmp_path: Path) -> None:
    out = tmp_path / "cpd_cost"
    cpd_cost.main(["--rows", "1024", "--captures", "64", "128", "--layers", "2", "--repeat", "1",
                   "--batch-bytes", "default", "--work", str(tmp_path / "work"), "--out", str(out)])
    report = json.loads(out.with_suffix(".json").read_text())
    (config,) = report["configs"]
    assert config["batch_bytes"] is None
    assert [(s["shape"]["captures"], s["shape"]["runs"], s["rows"]) for s in config["shapes"]] == [(64, 8, 1024), (128, 4, 1024)]
    for shape in config["shapes"]:
        assert list(shape["versions"]) == ["cpd@2", "cpd@1"]
        for result in shape["versions"].values():
            assert result["output_rows"] > 0 and result["rows_per_second"] > 0 and result["max_peak_rss_mib"] > 0
    text = out.with_suffix(".md").read_text()
    assert "## The engine's default batches" in text and "cpd@2 / cpd@1 time: " in text
