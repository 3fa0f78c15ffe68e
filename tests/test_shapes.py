"""The shapes benchmark (bench/shapes.py) and its lakes (bench/shape_lake.py): shapes of the
same rows, runs in cohorts, a refusal when the disk is too small, and a tiny run that
measures every model and the polars peer."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import shape_lake  # noqa: E402  (bench/ is a folder of scripts)
import shapes  # noqa: E402


def test_runs_come_in_cohorts_of_four_seeds() -> None:
    rows = shape_lake.runs_rows(range(6))
    assert [r["seed"] for r in rows] == [0, 1, 2, 3, 0, 1]
    assert [r["config_hash"] for r in rows] == ["cohort-000000"] * 4 + ["cohort-000001"] * 2
    table = shape_lake.geometry_chunk(shape_lake.Shape(3, 2, 6), range(4, 6), np.random.default_rng(0))
    assert sorted(set(zip(table.column("run_id").to_pylist(), table.column("seed").to_pylist()))) == [
        ("shape-000004", 0), ("shape-000005", 1)]


def test_a_lake_larger_than_the_free_disk_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    rows = free // shape_lake.BYTES_PER_ROW + 1_000_000
    with pytest.raises(SystemExit, match=r"needs about [0-9.]+ GB of free disk under .*; [0-9.]+ GB are free"):
        shapes.main(["--rows", str(rows), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "work").exists() and not (tmp_path / "out.md").exists()


def test_a_tiny_run_measures_every_model_and_the_peer(tmp_path: Path) -> None:
    out = tmp_path / "shapes"
    shapes.main(["--rows", "2048", "--captures", "16", "64", "128", "--layers", "2", "--small-runs", "6",
                 "--small-captures", "24", "--repeat", "1", "--work", str(tmp_path / "work"), "--out", str(out)])
    report = json.loads(out.with_suffix(".json").read_text())
    assert [(s["shape"]["captures"], s["shape"]["runs"], s["many_small_runs"]) for s in report["shapes"]] == [
        (16, 64, False), (64, 16, False), (128, 8, False), (24, 6, True)]
    for s in report["shapes"]:
        assert s["failures"] == {}
        assert {"full build", "no-op build", "one new run", "dyn@1 build", "dyn@1 polars", "cpd@1 build",
                "cpd@1 polars", "dyn@1 output to a file per run", "dyn@1 output to one file"} <= set(s["samples"])
        assert {"geometry_dynamics", "events_candidates", "signatures", "matches"} <= set(s["models"])
        assert all(t["agrees"] for t in s["agreement"]), s["agreement"]
    text = out.with_suffix(".md").read_text()
    assert "| many small runs: full build < 5 s | 6 x 4 x 24 |" in text
    assert "| geometry_dynamics: time per row <= 1.5 x at 64 captures | 8 x 2 x 128 |" in text
    assert "| dyn@1: polars time / warehouse time >= 1.5 | 16 x 2 x 64 |" in text
    assert "| cpd@1 | 8 x 2 x 128 | " in text.split("## Where the time")[1]


def test_a_failed_peer_is_named_and_not_run_again_while_the_shape_goes_on(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    peer = tmp_path / "peer"
    peer.mkdir()
    (peer / "polars_baseline.py").write_text("import sys\nsys.exit('error: the peer gave up')\n")
    monkeypatch.setattr(shapes, "HERE", peer)
    out = tmp_path / "shapes"
    shapes.main(["--rows", "512", "--captures", "16", "--layers", "2", "--small-runs", "0", "--repeat", "2",
                 "--measure", "peers", "--work", str(tmp_path / "work"), "--out", str(out)])
    (shape,) = json.loads(out.with_suffix(".json").read_text())["shapes"]
    assert shape["failures"] == {"dyn@1 polars": "error: the peer gave up", "cpd@1 polars": "error: the peer gave up"}
    assert [len(shape["samples"][f"{f} build"]) for f in ("dyn@1", "cpd@1")] == [2, 2]  # both rounds went on
    assert not any("polars" in name for name in shape["samples"]) and shape["agreement"] is None
    text = out.with_suffix(".md").read_text()
    assert "| dyn@1: polars time / warehouse time >= 1.5 | 16 x 2 x 16 | polars failed (error: the peer gave up)" in text
    assert "- 16 x 2 x 16, cpd@1 polars: error: the peer gave up" in text


def test_a_failed_build_is_named_by_its_error_not_by_the_last_line_of_its_sql() -> None:
    from measure import CommandFailed

    stderr = ("warehouse models: error: model events_candidates (sql/models/events_candidates.sql): the SQL failed:"
              " Out of Memory Error: could not allocate block\n--- rendered SQL ---\nSELECT 1\nFROM scored_events\n")
    assert shapes._error_line(CommandFailed(["warehouse"], 2, "", stderr)).startswith(
        "warehouse models: error: model events_candidates")
    assert shapes._error_line(CommandFailed(["warehouse"], 1, "", "Killed\n")) == "Killed"


def test_the_build_profile_splits_a_noop_and_a_new_run_into_phases(tmp_path: Path) -> None:
    import build_profile  # noqa: E402

    out = tmp_path / "profile"
    build_profile.main(["--runs", "6", "--repeat", "1", "--work", str(tmp_path / "work"), "--out", str(out)])
    result = json.loads(out.with_suffix(".json").read_text())
    # 6 runs: geometry_state and runs files, and a file per run of each per-run model's output
    assert result["runs"] == 6 and result["files"] >= 6 * 4
    noop, new = result["phases"], result["new_run_phases"]
    assert list(noop) == list(new) == [p for p, _, _ in build_profile.PHASES]
    # a no-op plans but computes nothing; the new run's build computes and publishes it
    assert all(0 < s <= noop[build_profile.WHOLE] for p, s in noop.items() if p in PLANNING), noop
    assert noop["the models' SQL (DuckDB)"] == noop["publish the output"] == 0
    assert all(0 < s <= new[build_profile.WHOLE] for s in new.values()), new
    assert {"geometry_dynamics", "events_candidates", "signatures", "matches"} <= set(result["new_run_models"])
    assert result["noop_seconds"][0] > 0 and result["imports_seconds"][0] > 0 and result["new_run_seconds"] > 0
    assert "| list the inputs | " in out.with_suffix(".md").read_text()


PLANNING = ("load the project (compiled models cache)", "read the analysis records", "list the inputs",
            "say what is left out", "plan every model")
