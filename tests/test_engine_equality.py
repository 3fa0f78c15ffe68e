"""Every model output of the demo lake and of a 1M-row scale lake, and every analysis id,
equal to those the engine at commit f9664df built: the engine before the v2 split (runner.py
split by job, model kinds in place of the header flags). ``tests/data/engine_equality.json``
holds that engine's summaries.

Equal means (see :mod:`engine_equality_golden` for the summary): the same analysis ids, row
counts, key tuples and column types; text, integer, boolean and list values equal exactly
and on the same rows; float values on the same rows too, their sums within 1e-9 of their
scale, as DuckDB may add them in another order. (Builds at f9664df and after the split were
bit-identical when this was written, and so were their summaries; the test allows for less.)

A model version that changes its output on purpose changes its analysis id here. Write the
golden file again with the engine of that commit, from a pristine checkout as
:mod:`engine_equality_golden` says, and name the commit in this docstring. A new model version
that keeps the engine may instead be patched onto f9664df's model file, so the engine stays
the one compared with. Done so for events_candidates cpd@2.2 (its analysis id, and so those of
every model downstream, changed; every row count, float sum, min and max stayed the same).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import duckdb
import pytest

from engine_equality_golden import TARGETS, build_demo, build_scale, differences, summarise_lake

GOLDEN = json.loads((Path(__file__).resolve().parent / "data" / "engine_equality.json").read_text())
KEYS: dict[str, list[str]] = GOLDEN["primary_keys"]  # as f9664df's contracts declared them


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("equality") / "demo")


@pytest.fixture(scope="module")
def scale_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_scale(tmp_path_factory.mktemp("equality") / "scale")


def assert_equal_to_golden(lake: str, root: Path) -> None:
    found = differences(GOLDEN["lakes"][lake], summarise_lake(root, KEYS), lake)
    assert not found, f"{len(found)} differences from the outputs of f9664df:\n" + "\n".join(found[:40])


@pytest.mark.slow
def test_demo_lake_outputs_equal_f9664df(demo_lake: Path) -> None:
    assert_equal_to_golden("demo", demo_lake)


@pytest.mark.slow
def test_scale_lake_outputs_equal_f9664df(scale_lake: Path) -> None:
    assert_equal_to_golden("scale", scale_lake)


def test_the_golden_file_covers_every_model_with_rows() -> None:
    """An empty or partial golden file would let a missing output pass."""
    for lake, summary in GOLDEN["lakes"].items():
        assert sorted(summary) == sorted(TARGETS), lake
        for dataset, analyses in summary.items():
            assert analyses and all(a["rows"] > 0 for a in analyses.values()), (lake, dataset)


# -- the comparison itself ----------------------------------------------------------------


def summary(sum_: float, **column: object) -> dict:
    x = {"type": "FLOAT", "finite": 3, "sum": sum_, "sum_abs": 10.0, "min": -4.0, "max": 4.0} | column
    return {"events": {"a1": {"rows": 3, "keys": "12", "columns": {"x": x}}}}


def test_last_bits_of_a_sum_pass_and_a_real_difference_is_named() -> None:
    a_few_ulps = 1.0 + 8 * math.ulp(10.0)  # DuckDB adding in another order
    assert differences(summary(1.0), summary(a_few_ulps), "demo") == []
    assert differences(summary(1.0), summary(1.0 + 1e-7), "demo") == [
        "demo / events / a1 / x: sum 1.0000001, expected 1.0 (tolerance 1e-09 of 10.0)"]
    one_float32_ulp = 4.0 + 2.0 ** -21  # a stored FLOAT's last bit: a changed output
    assert differences(summary(1.0), summary(1.0, max=one_float32_ulp), "demo") == [
        "demo / events / a1 / x: max 4.000000476837158, expected 4.0 (tolerance 1e-09 of 4.0)"]
    assert differences(summary(1.0), summary(1.0, finite=2), "demo") == ["demo / events / a1 / x: finite 2, expected 3"]
    assert differences({"events": {"a1": {}}}, {"events": {"a2": {}}}, "scale") == [
        "scale / events: analysis ids ['a2'], expected ['a1']"]


TINY = """SELECT * FROM (VALUES
    ('s1', 1.5::FLOAT, [10, 20]::BIGINT[], [0.25, -1.0]::FLOAT[], '{"a":1.0,"b":null}'),
    ('s2', 2.5::FLOAT, [30]::BIGINT[], [3.0]::FLOAT[], NULL),
    ('s3', NULL::FLOAT, []::BIGINT[], [0.5, 0.75, 1.0]::FLOAT[], '{"a":2.0}')
) AS t(signature_id, norm, event_steps, vector, metric_z_json)"""


@pytest.mark.parametrize("change, found", [
    ("SELECT * FROM tiny ORDER BY signature_id DESC", set()),  # order is not output
    ("SELECT * REPLACE (CASE signature_id WHEN 's1' THEN 1.5000001 ELSE norm END::FLOAT AS norm) FROM tiny",
     {"norm.sum", "norm.sum_abs", "norm.sum_sq", "norm.min", "norm.weighted"}),  # one float32 ulp
    ("SELECT * REPLACE (CASE signature_id WHEN 's1' THEN 2.5 WHEN 's2' THEN 1.5 END::FLOAT AS norm) FROM tiny",
     {"norm.weighted"}),  # two rows' values swap: every sum, min and max the same
    ("SELECT * REPLACE (CASE signature_id WHEN 's2' THEN NULL WHEN 's3' THEN 2.5 ELSE norm END::FLOAT AS norm)"
     " FROM tiny", {"norm.shape", "norm.weighted"}),  # a NULL moves to another row
    ("SELECT * REPLACE (list_reverse(event_steps) AS event_steps) FROM tiny", {"event_steps.digest"}),
    ("SELECT * REPLACE (list_reverse(vector) AS vector) FROM tiny", {"vector.weighted"}),
    ("SELECT * REPLACE (replace(metric_z_json, '\"b\"', '\"c\"') AS metric_z_json) FROM tiny", {"metric_z_json.shape"}),
    ("SELECT * REPLACE (CASE signature_id WHEN 's3' THEN 's4' ELSE signature_id END AS signature_id) FROM tiny",
     {"keys", "signature_id.digest", "norm.shape", "event_steps.digest", "vector.lengths", "vector.shape",
      "vector.weighted", "metric_z_json.present", "metric_z_json.shape", "metric_z_json.weighted"}),  # a new key
])
def test_a_changed_output_is_found_and_named(tmp_path: Path, change: str, found: set[str]) -> None:
    before, after = tiny_lake(tmp_path / "before", "SELECT * FROM tiny"), tiny_lake(tmp_path / "after", change)
    keys = {"signatures": ["analysis_id", "signature_id"]} | {t: [] for t in TARGETS if t != "signatures"}
    messages = differences(summarise_lake(before, keys), summarise_lake(after, keys), "tiny")
    named = {".".join(filter(None, re.match(r"tiny / signatures / a1(?: / (\w+))?: (\w+) ", m).groups()))
             for m in messages}
    assert named == found, messages


def tiny_lake(root: Path, select: str) -> Path:
    """A lake of one signatures analysis: :data:`TINY` changed by ``select`` (from ``tiny``)."""
    folder = root / "signatures" / "analysis_id=a1"
    folder.mkdir(parents=True)
    with duckdb.connect() as con:
        con.execute(f"CREATE VIEW tiny AS {TINY}")
        con.execute(f"COPY ({select}) TO '{folder / 'part-0.parquet'}' (FORMAT parquet)")
    return root
