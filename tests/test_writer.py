"""The lake writer through its Python API (``warehouse.writer.write``).

Every expected value here is written out by hand (or computed from the generated input),
never read back from the code under test. ``tests/test_ingest.py`` runs the same refusal
cases through real CSV, JSON Lines and Parquet files and the ``warehouse ingest`` command.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse import writer
from warehouse.errors import ValidationError
from warehouse.lake import init_lake

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
TESTS_DIR = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------
# Rows of a few datasets, with only what each test cares about spelled out.


def ck(step: Any, run_id: str = "r2", **kw) -> dict:
    """A checkpoints row."""
    return {"run_id": run_id, "step": step, "train_loss": 0.5, **kw}


def geo(step: Any = 0, sample_id: str | None = None, layer: Any = 0, module: str = "resid_post",
        run_id: str = "r2", analysis_id: str = "a1", **kw) -> dict:
    """A geometry_state row (sample_id None: pooled over the sample set)."""
    row = {"run_id": run_id, "analysis_id": analysis_id, "step": step, "seed": 0, "sample_set": "fixed_v1",
           "sample_id": sample_id, "layer": layer, "module": module, "n_samples": 64, "dim": 128,
           "eff_rank": 3.5}
    row.update(kw)
    return row


def emb(step: int, vector: list, **kw) -> dict:
    """An embeddings row (vector is list<float32>)."""
    return {"run_id": "r2", "step": step, "sample_set": "fixed_v1", "sample_id": "s0", "layer": 0,
            "module": "resid_post", "method": "raw", "dim": len(vector), "vector": vector, **kw}


def sample(i: int, split: str = "train", sample_set: str = "fixed_v1") -> dict:
    return {"sample_set": sample_set, "sample_id": f"s{i}", "split": split}


def run(run_id: str = "r2", **kw) -> dict:
    return {"run_id": run_id, "seed": 0, "run_mode": "train_full", "model_id": "m", "family_id": "fam",
            "config_json": "{}", "config_hash": "h", "status": "completed",
            "started_at_utc": "2024-01-01T00:00:00Z", **kw}


# ---------------------------------------------------------------------------------------
# The lake every refusal test starts from: a few facts and one analysis already written.

SEED_WRITES = [
    ("checkpoints", [ck(1, "r1", train_loss=0.25), ck(2, "r1", train_loss=0.5), ck(3, "r1", train_loss=0.75)]),
    ("geometry_state", [geo(0, None, run_id="r1"), geo(0, "s0", run_id="r1", eff_rank=2.5)]),
    ("samples", [sample(0)]),
]


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory) -> Path:
    root = init_lake(tmp_path_factory.mktemp("seeded") / "lake")
    for dataset, rows in SEED_WRITES:
        writer.write(dataset, rows, lake=root, created_at=T0)
    return root


@pytest.fixture
def lake(seeded_template: Path, tmp_path: Path) -> Path:
    """A private copy of the seeded lake."""
    root = tmp_path / "lake"
    shutil.copytree(seeded_template, root)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file (hidden ones included) and folder under ``root``: path -> sha256 or 'dir'."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def data_snapshot(root: Path) -> dict[str, str]:
    """:func:`snapshot` without the writer's stamps (they hold the files' modification times)."""
    return {rel: h for rel, h in snapshot(root).items() if not rel.startswith("_meta/checked")}


def assert_nothing_written(root: Path, before: dict[str, str]) -> None:
    after = snapshot(root)
    assert after == before
    assert not (root / ".staging").exists()
    assert not [p for p in root.rglob(".tmp-*")]


# ---------------------------------------------------------------------------------------
# The refusals. Each names the column, the row (1 = first data row) and the value it must
# report. ``types`` fixes the Arrow type of a column where a table or Parquet file is built.


class Refusal(NamedTuple):
    id: str
    dataset: str
    rows: list[dict]
    column: str
    row: int | None
    value: Any
    text: str | None  # what the message must show of the value
    fragment: str  # what the message must say about the problem
    types: dict[str, pa.DataType] = {}


NAN, INF = float("nan"), float("inf")
L32 = pa.list_(pa.float32())

REFUSALS = [
    Refusal("unknown_column", "checkpoints", [ck(1), {"run_id": "r2", "step": 2, "train_los": 0.5}],
            "train_los", None, None, None, "unknown column"),
    Refusal("missing_required_column", "checkpoints", [{"run_id": "r2", "train_loss": 0.5}],
            "step", None, None, None, "required column is missing"),
    Refusal("text_into_int64", "checkpoints", [ck("1"), ck("2"), ck("abc")],
            "step", 3, "abc", "'abc'", "cannot be cast losslessly"),
    Refusal("70000_into_int16", "geometry_state", [geo(layer=0), geo(layer=1), geo(layer=70000)],
            "layer", 3, 70000, "70000", "cannot be cast losslessly"),
    Refusal("1.5_into_int64", "checkpoints", [ck(1), ck(2), ck(1.5)],
            "step", 3, 1.5, "1.5", "cannot be cast losslessly"),
    Refusal("1e300_into_float32", "checkpoints", [ck(1), ck(2, train_loss=1e300)],
            "train_loss", 2, 1e300, "1e+300", "does not fit in float32"),
    Refusal("null_in_int64", "checkpoints", [ck(1), ck(None), ck(3)],
            "step", 2, None, None, "NULL in a non-nullable column"),
    Refusal("null_in_string", "samples", [sample(1), sample(2, split=None)],
            "split", 2, None, None, "NULL in a non-nullable column"),
    Refusal("misspelled_module", "geometry_state", [geo(layer=0), geo(layer=1, module="resid_psot")],
            "module", 2, "resid_psot", "'resid_psot'", "not one of the allowed values"),
    Refusal("misspelled_split", "samples", [sample(1), sample(2, split="tran")],
            "split", 2, "tran", "'tran'", "not one of the allowed values"),
    Refusal("nan_in_float32", "checkpoints", [ck(1), ck(2, train_loss=NAN)],
            "train_loss", 2, NAN, "nan", "NaN or infinity"),
    Refusal("inf_in_float32", "checkpoints", [ck(1), ck(2), ck(3, train_loss=INF)],
            "train_loss", 3, INF, "inf", "NaN or infinity"),
    Refusal("minus_inf_in_float64", "checkpoints", [ck(1, wall_time_s=-INF)],
            "wall_time_s", 1, -INF, "-inf", "NaN or infinity"),
    Refusal("nan_in_list_float32", "embeddings", [emb(1, [0.5, 0.25]), emb(2, [0.5, NAN])],
            "vector", 2, NAN, "nan", "NaN or infinity", {"vector": L32}),
    Refusal("inf_in_list_float32", "embeddings", [emb(1, [0.5]), emb(2, [0.5]), emb(3, [INF, 1.0])],
            "vector", 3, INF, "inf", "NaN or infinity"),
    Refusal("minus_inf_in_list_float32", "embeddings", [emb(1, [1.0, 2.0, -INF])],
            "vector", 1, -INF, "-inf", "NaN or infinity", {"vector": L32}),
    *(
        Refusal(f"unsafe_run_id_{i}", "checkpoints", [ck(1), ck(2, run_id=bad)],
                "run_id", 2, bad, repr(bad), "unsafe identifier")
        for i, bad in enumerate(["../x", "a/b", "a=b", "", " x", "'; DROP TABLE runs; --"])
    ),
    Refusal("unsafe_analysis_id", "geometry_state", [geo(analysis_id="a=b")],
            "analysis_id", 1, "a=b", "'a=b'", "unsafe identifier"),
    Refusal("unsafe_sample_set", "samples", [sample(1), sample(2), sample(3, sample_set=" x")],
            "sample_set", 3, " x", "' x'", "unsafe identifier"),
    Refusal("unsafe_family_id", "runs", [run(family_id="../x")],
            "family_id", 1, "../x", "'../x'", "unsafe identifier"),
    Refusal("schema_version_next_major", "checkpoints",
            [ck(1, schema_version="checkpoints@2.0"), ck(2, schema_version="checkpoints@3.0")],
            "schema_version", 2, "checkpoints@3.0", "'checkpoints@3.0'", "schema_version must be checkpoints@2.x"),
    Refusal("schema_version_other_dataset", "checkpoints", [ck(1, schema_version="runs@2.0")],
            "schema_version", 1, "runs@2.0", "'runs@2.0'", "schema_version must be checkpoints@2.x"),
    Refusal("duplicate_key_in_batch", "checkpoints", [ck(1), ck(2), ck(3), ck(2, train_loss=0.25)],
            "run_id, step", 4, {"run_id": "r2", "step": 2}, "'step': 2", "rows 2 and 4 have the same key"),
    Refusal("duplicate_pooled_key_in_batch", "geometry_state",
            [geo(5, None), geo(5, "s1"), geo(5, None, eff_rank=1.0)],
            "run_id, analysis_id, step, sample_set, sample_id, layer, module", 3,
            {"run_id": "r2", "analysis_id": "a1", "step": 5, "sample_set": "fixed_v1", "sample_id": None,
             "layer": 0, "module": "resid_post"},
            "'sample_id': None", "rows 1 and 3 have the same key"),
    Refusal("key_in_lake_other_value", "checkpoints", [ck(4, "r1"), ck(2, "r1", train_loss=0.625)],
            "train_loss", 2, 0.625, "0.625", "already in the lake"),
    Refusal("key_in_lake_value_now_null", "checkpoints", [ck(3, "r1", train_loss=None)],
            "train_loss", 1, None, None, "already in the lake"),
    Refusal("pooled_key_in_lake_other_value", "geometry_state", [geo(1, None, run_id="r1"), geo(0, None, run_id="r1", eff_rank=4.0)],
            "eff_rank", 2, 4.0, "4.0", "already in the lake"),
]


def same_value(actual: Any, expected: Any) -> bool:
    """``actual`` is ``expected``; text from a CSV file counts as the number it spells."""
    if expected is None:
        return actual is None
    if isinstance(expected, float):
        a = float(actual)
        return (math.isnan(a) and math.isnan(expected)) or a == expected
    if isinstance(expected, int):
        return not isinstance(actual, float) and int(actual) == expected
    return actual == expected


def assert_refusal(exc: ValidationError, case: Refusal, source: str) -> None:
    assert exc.dataset == case.dataset
    assert exc.source == source
    assert exc.column == case.column
    assert exc.row == case.row
    assert same_value(exc.value, case.value), (exc.value, case.value)
    message = str(exc)
    assert_message(message, case, source)


def assert_message(message: str, case: Refusal, source: str) -> None:
    assert f"dataset {case.dataset}" in message
    assert f"input {source}" in message
    assert f"column {case.column}" in message
    if case.row is not None:
        assert f"row {case.row}," in message or f"row {case.row}:" in message
    if case.text is not None:
        assert "value " in message and case.text in message
    assert case.fragment in message


def table_of(rows: list[dict], types: dict[str, pa.DataType] | None = None) -> pa.Table:
    """An Arrow table of ``rows`` (union of their keys, in order of appearance)."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    types = types or {}
    return pa.table({n: pa.array([row.get(n) for row in rows], types.get(n)) for n in names})


@pytest.mark.parametrize("case", REFUSALS, ids=[c.id for c in REFUSALS])
@pytest.mark.parametrize("form", ["rows", "table"])
def test_write_refuses_and_writes_nothing(lake: Path, case: Refusal, form: str) -> None:
    data = case.rows if form == "rows" else table_of(case.rows, case.types)
    before = snapshot(lake)
    with pytest.raises(ValidationError) as info:
        writer.write(case.dataset, data, lake=lake, source="batch.x")
    assert_refusal(info.value, case, "batch.x")
    assert_nothing_written(lake, before)


def test_write_refuses_a_value_of_another_type_than_the_rows_before(lake: Path) -> None:
    before = snapshot(lake)
    with pytest.raises(ValidationError) as info:
        writer.write("checkpoints", [ck(1), ck(2), ck("abc")], lake=lake)
    e = info.value
    assert (e.dataset, e.source, e.column, e.row, e.value) == ("checkpoints", "<batch>", "step", 3, "abc")
    assert_nothing_written(lake, before)


def test_refusal_in_a_later_batch_of_a_stream_names_its_input_row(lake: Path) -> None:
    batches = [table_of([ck(1), ck(2)]).to_batches()[0], table_of([ck(3), ck(4), ck(5, train_loss=NAN)]).to_batches()[0]]
    before = snapshot(lake)
    with pytest.raises(ValidationError) as info:
        writer.write("checkpoints", iter(batches), lake=lake)
    assert (info.value.column, info.value.row) == ("train_loss", 5)
    assert_nothing_written(lake, before)


def test_duplicate_key_across_batches_of_a_stream(lake: Path) -> None:
    batches = [table_of([ck(1), ck(2)]), table_of([ck(3), ck(1, train_loss=0.25)])]
    before = snapshot(lake)
    with pytest.raises(ValidationError) as info:
        writer.write("checkpoints", iter(batches), lake=lake)
    assert info.value.row == 4 and info.value.value == {"run_id": "r2", "step": 1}
    assert_nothing_written(lake, before)


# ---------------------------------------------------------------------------------------
# Lossless casts that must be accepted.


def read_dataset(root: Path, dataset: str) -> pa.Table:
    """Every published file of a dataset, with its partition values from the path, as read
    by pyarrow alone (the writer is not involved)."""
    tables = []
    for f in sorted((root / dataset).rglob("*.parquet")):
        if f.name.startswith("."):
            continue
        t = pq.read_table(f)
        for part in f.relative_to(root / dataset).parts[:-1]:
            key, value = part.split("=", 1)
            t = t.append_column(key, pa.array([value] * t.num_rows, pa.string()))
        tables.append(t)
    return pa.concat_tables(tables) if tables else pa.table({})


def rows_of(root: Path, dataset: str, order: tuple[str, ...]) -> list[dict]:
    return sorted(read_dataset(root, dataset).to_pylist(), key=lambda r: tuple(r[k] for k in order))


def test_lossless_numeric_casts_are_accepted(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    layers = pa.array([0, 32767, -32768], pa.int64())  # int64 in int16's range
    t = table_of([geo(i) for i in range(3)]).set_column(6, "layer", layers)
    t = t.set_column(t.column_names.index("eff_rank"), "eff_rank", pa.array([0.1, 2, 3.25], pa.float64()))
    t = t.set_column(t.column_names.index("n_samples"), "n_samples", pa.array([64, 64, 64], pa.int64()))
    writer.write("geometry_state", t, lake=root, created_at=T0)
    got = rows_of(root, "geometry_state", ("step",))
    assert [r["layer"] for r in got] == [0, 32767, -32768]
    assert [r["eff_rank"] for r in got] == [float(np.float32(0.1)), 2.0, 3.25]
    assert [r["n_samples"] for r in got] == [64, 64, 64]
    schema = pq.read_schema(next((root / "geometry_state").rglob("part-*.parquet")))
    assert schema.field("layer").type == pa.int16()
    assert schema.field("eff_rank").type == pa.float32()

    # Python ints into float32 and float64 columns, float64 into float32.
    writer.write("checkpoints", [ck(1, train_loss=2, wall_time_s=3), ck(2, train_loss=0.1, val_loss=-7)],
                 lake=root, created_at=T0)
    got = rows_of(root, "checkpoints", ("step",))
    assert [(r["train_loss"], r["val_loss"], r["wall_time_s"]) for r in got] == [
        (2.0, None, 3.0), (float(np.float32(0.1)), -7.0, None)]


def test_timestamps_with_and_without_zone_are_utc(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    texts = [
        "2024-05-06T07:08:09Z",
        "2024-05-06T07:08:09",  # no zone: UTC
        "2024-05-06T09:08:09+02:00",
        "2024-05-06 02:08:09.5-05:00",
        "2024-05-06 07:08:09.000123",
    ]
    expected = [T0, T0, T0, T0 + dt.timedelta(microseconds=500_000), T0 + dt.timedelta(microseconds=123)]
    # All in one column (mixed), then each kind alone.
    writer.write("checkpoints", [ck(i, created_at_utc=s) for i, s in enumerate(texts)], lake=root)
    assert [r["created_at_utc"] for r in rows_of(root, "checkpoints", ("step",))] == expected
    for i, s in enumerate(texts):
        writer.write("checkpoints", [ck(i, run_id=f"k{i}", created_at_utc=s)], lake=root)
        assert read_dataset(root / "checkpoints", f"run_id=k{i}").column("created_at_utc").to_pylist() == [expected[i]]
    # Python datetimes, naive (UTC) and aware, and a zone-less nanosecond column.
    naive = dt.datetime(2024, 5, 6, 7, 8, 9)
    aware = dt.datetime(2024, 5, 6, 9, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    writer.write("checkpoints", [ck(1, "n1", created_at_utc=naive)], lake=root)
    writer.write("checkpoints", [ck(1, "n2", created_at_utc=aware)], lake=root)
    ns = pa.array([1_714_979_289_000_001_000], pa.timestamp("ns"))  # 2024-05-06T07:08:09.000001
    writer.write("checkpoints", table_of([ck(1, "n3")]).append_column("created_at_utc", ns), lake=root)
    for run_id, want in [("n1", T0), ("n2", T0), ("n3", T0 + dt.timedelta(microseconds=1))]:
        assert read_dataset(root / "checkpoints", f"run_id={run_id}").column("created_at_utc").to_pylist() == [want]


def test_timestamp_finer_than_microseconds_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    root.mkdir()
    with pytest.raises(ValidationError) as info:
        writer.write("checkpoints", [ck(1, created_at_utc="2024-05-06T07:08:09Z"),
                                     ck(2, created_at_utc="2024-05-06T07:08:09.000000001Z")], lake=root)
    assert (info.value.column, info.value.row, info.value.value) == (
        "created_at_utc", 2, "2024-05-06T07:08:09.000000001Z")
    assert_nothing_written(root, {})


def test_missing_nullable_columns_and_trailer_are_filled(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    writer.write("checkpoints", [{"run_id": "r1", "step": 7}], lake=root, created_at=T0)
    (row,) = read_dataset(root, "checkpoints").to_pylist()
    assert row == {"step": 7, "checkpoint_path": None, "train_loss": None, "val_loss": None,
                   "tokens_seen": None, "wall_time_s": None, "schema_version": "checkpoints@2.0",
                   "created_at_utc": T0, "run_id": "r1"}
    # Without created_at: the time of the write.
    start = dt.datetime.now(UTC).replace(microsecond=0)
    writer.write("checkpoints", [{"run_id": "r2", "step": 7}], lake=root)
    end = dt.datetime.now(UTC)
    (stamp,) = read_dataset(root / "checkpoints", "run_id=r2").column("created_at_utc").to_pylist()
    assert start <= stamp <= end


def test_minor_schema_version_and_null_in_nullable_enum_are_accepted(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    writer.write("checkpoints", [ck(1, schema_version="checkpoints@2.1")], lake=root)
    assert read_dataset(root, "checkpoints").column("schema_version").to_pylist() == ["checkpoints@2.1"]
    writer.write("metrics_scalar", [
        {"run_id": "r1", "step": 1, "metric_name": "loss", "value": 1.0, "split": None, "sample_set": None},
        {"run_id": "r1", "step": 1, "metric_name": "loss", "value": 2.0, "split": "val", "sample_set": None},
    ], lake=root)
    got = rows_of(root, "metrics_scalar", ("value",))
    assert [(r["split"], r["value"]) for r in got] == [(None, 1.0), ("val", 2.0)]


# ---------------------------------------------------------------------------------------
# Idempotence, file names, partition folders, round trip.


def published(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))


def test_same_batch_twice_writes_nothing_the_second_time(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    rows = [ck(1), ck(2), ck(3, "r3")]
    first = writer.write("checkpoints", rows, lake=root)
    assert (first.rows_written, first.rows_skipped, len(first.files)) == (3, 0, 2)
    before = snapshot(root)
    second = writer.write("checkpoints", rows, lake=root)  # another created_at: still the same facts
    assert (second.rows_written, second.rows_skipped, second.files) == (0, 3, [])
    assert_nothing_written(root, before)


def test_superset_rewrite_writes_only_the_new_rows(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    writer.write("checkpoints", [ck(1), ck(2), ck(3)], lake=root, created_at=T0)
    old = set(published(root))
    result = writer.write("checkpoints", [ck(5), ck(1), ck(4), ck(2), ck(3)], lake=root, created_at=T0)
    assert (result.rows_written, result.rows_skipped) == (2, 3)
    (new,) = set(published(root)) - old
    assert result.files == [new]
    assert pq.read_table(new).column("step").to_pylist() == [4, 5]
    assert sorted(rows_of(root, "checkpoints", ("step",)), key=lambda r: r["step"]) == [
        {"step": s, "checkpoint_path": None, "train_loss": 0.5, "val_loss": None, "tokens_seen": None,
         "wall_time_s": None, "schema_version": "checkpoints@2.0", "created_at_utc": T0, "run_id": "r2"}
        for s in range(1, 6)]


def test_files_are_named_by_the_hash_of_their_bytes(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    writer.write("geometry_state", [geo(1, None, run_id="r1"), geo(1, None, run_id="r2"),
                                    geo(1, None, run_id="r1", analysis_id="a2")], lake=root)
    files = published(root)
    assert len(files) == 3
    for f in files:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        assert f.name.startswith("part-") and f.name.endswith(".parquet")
        prefix = f.name[len("part-"):-len(".parquet")]
        assert len(prefix) >= 16 and digest.startswith(prefix)


def test_partition_folders_follow_the_contract_and_partition_columns_are_not_stored(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    writer.write("geometry_state", [geo(1, None, run_id="r", analysis_id="a"), geo(1, "s0", run_id="r", analysis_id="a")],
                 lake=root)
    writer.write("checkpoints", [ck(1, "0007")], lake=root)
    writer.write("families", [{"family_id": "f1", "family_version": "1", "source": "gen", "tags": ["x"],
                               "created_at_utc": T0}], lake=root)
    writer.write("probe_summaries", [{"run_id": "r", "analysis_id": "a9", "family_id": "f1", "seed": 1,
                                      "probe_name": "p", "probe_config_hash": "c",
                                      "schema_version": "probe_summary@2.0", "created_at_utc": T0}], lake=root)
    rel = [str(p.relative_to(root).parent) for p in published(root)]
    assert rel == ["checkpoints/run_id=0007", "families", "geometry_state/analysis_id=a/run_id=r",
                   "probe_summaries/analysis_id=a9/run_id=r"]
    geometry_file = published(root / "geometry_state")[0]
    assert pq.read_schema(geometry_file).names == [
        "step", "seed", "sample_set", "sample_id", "layer", "module", "n_samples", "dim", "eff_rank",
        "sv_entropy", "sparsity", "principal_angle_prev", "principal_angle_init", "act_norm",
        "schema_version", "created_at_utc"]
    assert "run_id" not in pq.read_schema(published(root / "checkpoints")[0]).names
    assert "family_id" in pq.read_schema(published(root / "families")[0]).names
    names = pq.read_schema(published(root / "probe_summaries")[0]).names
    assert "analysis_id" not in names and "run_id" not in names
    # A run_id of digits stays a string when read with the contract's partition types.
    con = duckdb.connect()
    got = con.execute(f"SELECT run_id FROM read_parquet('{root}/checkpoints/**/*.parquet', hive_partitioning = true,"
                      " hive_types = {'run_id': 'VARCHAR'})").fetchall()
    assert got == [("0007",)]


SIGNATURE_ROWS = [
    {"signature_id": "sig-1", "analysis_id": "a1", "run_id": "r1", "kind": "trajectory", "scope": "run", "layer": None,
     "family_id": "fam", "seed": 3, "probe_name": None, "signature_version": "sig@1",
     "vector": [0.5, -1.25, 2.0**-20], "vector_layout": "K=16", "norm": 1.5, "event_t": [0.25, 1.0],
     "event_steps": [10, 2**40], "event_layers": [0, -32768], "event_metrics": ["resid_post.eff_rank", "__composite__"],
     "event_scores": [7.5, 0.0], "schema_version": "signatures@2.0",
     "created_at_utc": dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)},
    {"signature_id": "sig-2", "analysis_id": "a1", "run_id": "r1", "kind": "probe", "scope": "layer", "layer": 32767,
     "family_id": None, "seed": -1, "probe_name": "p", "signature_version": "sig@1",
     "vector": [], "vector_layout": "K=16", "norm": 0.0, "event_t": [], "event_steps": [], "event_layers": [],
     "event_metrics": [], "event_scores": [], "schema_version": "signatures@2.0",
     "created_at_utc": dt.datetime(1970, 1, 1, tzinfo=UTC)},
]


def test_round_trip_of_every_contract_type(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    writer.write("signatures", SIGNATURE_ROWS, lake=root)
    (f,) = published(root)
    assert str(f.parent.relative_to(root)) == "signatures/analysis_id=a1/run_id=r1"
    table = pq.read_table(f)
    types = {name: table.schema.field(name).type for name in table.column_names}
    assert types["layer"] == pa.int16() and types["seed"] == pa.int32() and types["norm"] == pa.float32()
    assert types["vector"] == pa.list_(pa.float32()) and types["event_t"] == pa.list_(pa.float32())
    assert types["event_steps"] == pa.list_(pa.int64()) and types["event_layers"] == pa.list_(pa.int16())
    assert types["event_metrics"] == pa.list_(pa.string())
    assert types["created_at_utc"] == pa.timestamp("us", tz="UTC")
    got = sorted(table.to_pylist(), key=lambda r: r["signature_id"])
    want = [{k: v for k, v in r.items() if k not in ("analysis_id", "run_id")} for r in SIGNATURE_ROWS]
    assert got == want  # every value above is exact in float32
    assert not table.schema.field("signature_id").nullable
    assert table.schema.field("layer").nullable


# ---------------------------------------------------------------------------------------
# Large inputs are streamed batch by batch.


def big_checkpoints(n: int) -> list[dict]:
    return [{"run_id": f"r{i % 5}", "step": i, "train_loss": (i % 97) / 8, "tokens_seen": i * 1000,
             "created_at_utc": "2024-05-06T07:08:09Z"} for i in range(n)]


def test_streamed_write_equals_one_batch_write(tmp_path: Path) -> None:
    rows = big_checkpoints(20_000)
    table = table_of(rows)
    whole = writer.write("checkpoints", table, lake=tmp_path / "a", create=True)
    streamed = writer.write("checkpoints", table.to_batches(max_chunksize=1000), lake=tmp_path / "b", create=True)
    assert whole.rows_written == streamed.rows_written == 20_000
    assert data_snapshot(tmp_path / "a") == data_snapshot(tmp_path / "b")
    per_run = {f"run_id=r{k}": 4000 for k in range(5)}
    assert {f.parent.name: pq.read_metadata(f).num_rows for f in published(tmp_path / "a")} == per_run


# ---------------------------------------------------------------------------------------
# A writer killed at any moment leaves no visible partial file.


def geometry_table(runs: int, steps: int, samples: int, *, analysis_id: str = "a1") -> pa.Table:
    """A deterministic geometry_state table: runs x steps x 4 layers x 4 modules x (pooled + samples)."""
    shape = (runs, steps, 4, 4, 1 + samples)
    r, st, la, mo, sa = (a.ravel() for a in np.indices(shape, dtype=np.int32))
    n = r.size
    noise = np.random.default_rng(7).standard_normal(n).astype(np.float32)
    run_ids = pa.array([f"r{i:02d}" for i in range(runs)]).take(pa.array(r))
    sample_ids = pa.array([f"s{i:03d}" for i in range(max(samples, 1))]).take(pa.array(sa - 1, mask=sa == 0))
    modules = pa.array(["resid_pre", "attn_out", "mlp_out", "resid_post"]).take(pa.array(mo))
    eff = (4.0 + la + 0.05 * st + 0.1 * noise).astype(np.float32)
    return pa.table({
        "run_id": run_ids,
        "analysis_id": pa.repeat(pa.scalar(analysis_id), n),
        "step": pa.array(st.astype(np.int64) * 100),
        "seed": pa.array(r),
        "sample_set": pa.repeat(pa.scalar("fixed_v1"), n),
        "sample_id": sample_ids,
        "layer": pa.array(la.astype(np.int16)),
        "module": modules,
        "n_samples": pa.array(np.where(sa == 0, samples, 1).astype(np.int32)),
        "dim": pa.repeat(pa.scalar(256, pa.int32()), n),
        "eff_rank": pa.array(eff),
        "sv_entropy": pa.array(np.clip(0.8 + 0.01 * noise, 0, 1).astype(np.float32)),
        "act_norm": pa.array((10 + st + noise).astype(np.float32)),
    })


KILL_RUNS, KILL_STEPS, KILL_SAMPLES = 8, 60, 259  # 8 * 60 * 16 * 260 = 1,996,800 rows, 8 partitions
KILL_ROWS = KILL_RUNS * KILL_STEPS * 16 * (1 + KILL_SAMPLES)

WRITER_SCRIPT = textwrap.dedent("""
    import datetime as dt, sys
    sys.path.insert(0, {tests!r})
    from test_writer import geometry_table
    from warehouse import writer
    table = geometry_table({runs}, {steps}, {samples})
    result = writer.write("geometry_state", table, lake={lake!r},
                          created_at=dt.datetime(2024, 5, 6, tzinfo=dt.timezone.utc))
    print(result.rows_written, result.rows_skipped, flush=True)
""")


def start_writer(root: Path) -> subprocess.Popen:
    script = WRITER_SCRIPT.format(tests=str(TESTS_DIR), runs=KILL_RUNS, steps=KILL_STEPS,
                                  samples=KILL_SAMPLES, lake=str(root))
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen, condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"writer ended before the moment to kill it: {proc.communicate()}"
        assert time.monotonic() < deadline, "the moment to kill the writer never came"
        time.sleep(0.002)


def temp_files(root: Path) -> list[Path]:
    """The partition files a writer is writing: in its staging folder until published."""
    return list(root.glob(".staging/*/.tmp-*"))


def assert_readers_see_only_complete_files(root: Path) -> int:
    """Every visible file reads completely and is named by its hash; DuckDB's glob reads
    exactly these files. Returns the visible row count."""
    rows = 0
    files = published(root / "geometry_state") if (root / "geometry_state").exists() else []
    for f in files:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        assert digest.startswith(f.name[len("part-"):-len(".parquet")])
        rows += pq.read_table(f).num_rows
    if files:
        glob = f"{root}/geometry_state/**/*.parquet"
        con = duckdb.connect()
        (count, nfiles), = con.execute(
            f"SELECT count(*), count(DISTINCT filename) FROM read_parquet('{glob}', filename = true,"
            " hive_partitioning = true, hive_types = {'analysis_id': 'VARCHAR', 'run_id': 'VARCHAR'})").fetchall()
        assert (count, nfiles) == (rows, len(files))
    return rows


@pytest.mark.slow
def test_killed_writer_leaves_no_visible_partial_file(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    # Each moment is checked against the leftovers of the writers killed before.
    moments = {
        # while the input is being conformed and staged
        "staging": lambda old: any(root.glob(".staging/*/input-*.parquet")),
        # as soon as the first partition's temporary file appears
        "publishing": lambda old: bool(set(temp_files(root)) - old),
        # after some partitions were published, while another one is being written
        "mid-publish": lambda old: len(published(root / "geometry_state")) >= 2 and bool(set(temp_files(root)) - old),
    }
    seen_partial_publish = False
    for name, moment in moments.items():
        old = set(temp_files(root))
        proc = start_writer(root)
        try:
            wait_for(proc, lambda: moment(old))
            if name == "staging":
                time.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        visible = assert_readers_see_only_complete_files(root)
        assert visible < KILL_ROWS, name
        seen_partial_publish |= 0 < visible
    assert seen_partial_publish  # the kills did interrupt a publish half way

    proc = start_writer(root)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    written, skipped = map(int, out.split())
    assert written + skipped == KILL_ROWS and skipped > 0
    assert assert_readers_see_only_complete_files(root) == KILL_ROWS

    # The lake holds exactly the generated rows: no duplicates, none missing, none changed.
    con = duckdb.connect()
    con.register("expected", geometry_table(KILL_RUNS, KILL_STEPS, KILL_SAMPLES))
    con.execute(f"CREATE VIEW lake AS SELECT * EXCLUDE (schema_version, created_at_utc, filename)"
                f" FROM read_parquet('{root}/geometry_state/**/*.parquet', filename = true, hive_partitioning = true,"
                " hive_types = {'analysis_id': 'VARCHAR', 'run_id': 'VARCHAR'})")
    cols = ", ".join(geometry_table(1, 1, 0).column_names)
    (n, keys), = con.execute("SELECT count(*), count(DISTINCT (run_id, analysis_id, step, sample_set, sample_id,"
                             " layer, module)) FROM lake").fetchall()
    assert n == keys == KILL_ROWS
    (missing,), = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM expected EXCEPT ALL SELECT {cols} FROM lake)").fetchall()
    assert missing == 0
