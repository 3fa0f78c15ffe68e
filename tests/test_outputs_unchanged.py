"""Every model output of the demo lake and of a 1M-row scale lake, and every analysis id,
equal to what the engine at commit f9664df (before the engine was split by job and model
kinds replaced the header flags) built: ``tests/data/outputs_f9664df.json``.

The pinned summary was written by that engine (see :mod:`outputs_summary` for how). A
model version that changes its output on purpose changes an analysis id here: write the
summary again with the engine of that commit, and name the commit in this file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from outputs_summary import build_lakes, differences, summarise

REPO = Path(__file__).resolve().parents[1]
PINNED = json.loads((REPO / "tests" / "data" / "outputs_f9664df.json").read_text())


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_lakes(tmp_path_factory.mktemp("outputs"), REPO)


@pytest.mark.parametrize("name", ["demo", "scale"])
def test_outputs_and_analysis_ids_equal_the_pinned_engines(lakes: dict[str, Path], name: str) -> None:
    found = differences(PINNED[name], summarise(lakes[name]), name)
    assert not found, "\n".join(found[:20])


def test_a_changed_value_is_found(lakes: dict[str, Path], tmp_path: Path) -> None:
    """The largest metric_z of one run moved by a thousandth: the comparison names it."""
    lake = tmp_path / "lake"
    shutil.copytree(lakes["demo"] / "events_candidates", lake / "events_candidates")
    target = sorted((lake / "events_candidates").rglob("*.parquet"))[0]
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT * REPLACE (CASE WHEN metric_z = max(metric_z) OVER () THEN metric_z * 1.001 ELSE metric_z END"
            f" AS metric_z) FROM read_parquet('{target}')) TO '{target}.new' (FORMAT parquet)"
        )
    Path(f"{target}.new").replace(target)
    pinned = {"events_candidates": PINNED["demo"]["events_candidates"]}
    found = differences(pinned, {"events_candidates": summarise(lake)["events_candidates"]}, "demo")
    assert found and all(".columns.metric_z." in line for line in found), found


def test_last_bits_pass_and_real_differences_do_not() -> None:
    pinned = {"rows": 3, "columns": {"x": {"finite": 3, "sum": 1.0, "sum_abs": 10.0, "max": 4.0},
                                     "id": {"digest": "12"}}}

    def changed(**x) -> dict:
        return {"rows": 3, "columns": {"x": {"finite": 3, "sum": 1.0, "sum_abs": 10.0, "max": 4.0} | x,
                                       "id": {"digest": "12"}}}

    assert differences(pinned, changed(sum=1.0 + 1e-12, max=4.0 * (1 + 1e-9)), "t") == []
    assert differences(pinned, changed(sum=1.001), "t") == ["t.columns.x.sum: expected 1.0, got 1.001"]
    assert differences(pinned, changed(max=4.01), "t") == ["t.columns.x.max: expected 4.0, got 4.01"]
    assert differences(pinned, changed(finite=2), "t") == ["t.columns.x.finite: expected 3, got 2"]
    assert differences(pinned, {**changed(), "columns": {"x": changed()["columns"]["x"], "id": {"digest": "13"}}},
                       "t") == ["t.columns.id.digest: expected '12', got '13'"]
    assert differences({"a1": pinned}, {"a2": pinned}, "t") == ["t: a1 is missing", "t: a2 is new"]
