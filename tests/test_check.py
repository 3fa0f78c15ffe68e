"""warehouse check: every problem kind on hand-built lakes, read-only, and the CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse import contracts
from warehouse.check import KINDS, Problem, check_lake
from warehouse.errors import WarehouseError

PARTITION_VALUES = {"run_id": "r1", "analysis_id": "a1", "sample_set": "s1"}
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _value(col: contracts.Column, i: int):
    """A valid value of ``col`` for row ``i``; rows differ in every int column (unique keys)."""
    t = col.type
    if col.enum:
        return col.enum[0]
    if pa.types.is_string(t):
        return f"{col.name}-{i}" if col.name in contracts.IDENTIFIER_COLUMNS else f"text {i}"
    if pa.types.is_integer(t):
        return i
    if pa.types.is_floating(t):
        return 0.5 + i
    if pa.types.is_timestamp(t):
        return T0
    if pa.types.is_list(t):
        return [_value(contracts.Column("item", t.value_type), i)]
    raise AssertionError(f"no test value for {t}")


def valid_table(name: str, n: int = 3, **overrides: list) -> pa.Table:
    """A table of ``n`` valid rows of dataset ``name``, as stored in a file (no partition columns)."""
    ds = contracts.get(name)
    cols = {c.name: overrides.get(c.name, [_value(c, i) for i in range(n)]) for c in ds.file_columns}
    # Declared nullability as in the contract, unless a test plants NULLs (as other tools do).
    nulls = any(v is None for values in overrides.values() for v in values)
    fields = [pa.field(c.name, c.type) if nulls else c.field for c in ds.file_columns]
    return pa.table(cols, schema=pa.schema(fields))


def write(lake: Path, name: str, table: pa.Table, part: str = "part-a.parquet", **partition: str) -> Path:
    """Write ``table`` as ``<lake>/<name>/<key>=<value>/.../<part>``; returns the path."""
    folder = lake / name
    for key in contracts.get(name).partition_by:
        folder = folder / f"{key}={partition.get(key, PARTITION_VALUES[key])}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / part, compression="zstd")
    return folder / part


def rel(path: Path, lake: Path) -> str:
    return path.relative_to(lake).as_posix()


def only(problems: list[Problem], kind: str) -> Problem:
    found = [p for p in problems if p.kind == kind]
    assert len(found) == 1, problems
    return found[0]


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    root.mkdir()
    return root


# ---------------------------------------------------------------------------------------
# Clean lakes and the root.


def test_clean_lake_has_no_problems(lake: Path) -> None:
    write(lake, "checkpoints", valid_table("checkpoints"))
    write(lake, "checkpoints", valid_table("checkpoints"), run_id="r2")
    write(lake, "geometry_state", valid_table("geometry_state", 5))
    write(lake, "families", valid_table("families"))
    write(lake, "runs", valid_table("runs", 1))
    (lake / "captures" / "r1").mkdir(parents=True)
    (lake / "captures" / "r1" / "x.npy").write_bytes(b"raw")
    (lake / "_meta").mkdir()
    (lake / "_meta" / "truth.json").write_text("{}")
    (lake / ".staging").mkdir()
    assert check_lake(lake) == []


def test_empty_lake_is_clean(lake: Path) -> None:
    assert check_lake(lake) == []


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="nowhere"):
        check_lake(tmp_path / "nowhere")


def test_lake_from_environment(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (lake / "notes.txt").write_text("hi")
    monkeypatch.setenv("SQUIGGLE_LAKE", str(lake))
    assert [p.path for p in check_lake()] == ["notes.txt"]


def test_file_written_by_duckdb_is_clean(lake: Path) -> None:
    rows = valid_table("geometry_state")  # noqa: F841 (read by DuckDB below)
    folder = lake / "geometry_state" / "analysis_id=a1" / "run_id=r1"
    folder.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT * FROM rows) TO '{folder / 'other.parquet'}' (FORMAT parquet)")
    # its run has no runs row: the only finding, and not about the file
    assert [(p.path, p.kind) for p in check_lake(lake)] == [(folder.relative_to(lake).as_posix(), "missing_run")]


def test_problem_str_and_dict() -> None:
    p = Problem("checkpoints", "checkpoints/x", "stray_file", "not a Parquet data file")
    assert str(p) == "checkpoints/x: stray_file: not a Parquet data file"
    assert p.as_dict() == {"dataset": "checkpoints", "path": "checkpoints/x", "kind": "stray_file",
                           "message": "not a Parquet data file"}


# ---------------------------------------------------------------------------------------
# unreadable


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), "magic"),
        (lambda p: p.write_bytes(b"NOPE" + p.read_bytes()[4:-4] + b"NOPE"), "magic"),
        (lambda p: p.write_bytes(b""), "0 bytes"),
    ],
    ids=["truncated", "wrong-magic", "empty"],
)
def test_unreadable_file(lake: Path, damage, words: str) -> None:
    good = write(lake, "checkpoints", valid_table("checkpoints"))
    bad = write(lake, "checkpoints", valid_table("checkpoints", 4), part="part-b.parquet", run_id="r2")
    damage(bad)
    p = only(check_lake(lake), "unreadable")
    assert (p.dataset, p.path) == ("checkpoints", rel(bad, lake))
    assert words in p.message and "Parquet" in p.message
    assert good.exists()


def test_folder_named_parquet_is_unreadable(lake: Path) -> None:
    folder = lake / "checkpoints" / "run_id=r1" / "part-x.parquet"
    folder.mkdir(parents=True)
    p = only(check_lake(lake), "unreadable")
    assert p.path == "checkpoints/run_id=r1/part-x.parquet" and "folder" in p.message


def test_corrupt_data_page_is_unreadable(lake: Path) -> None:
    bad = write(lake, "checkpoints", valid_table("checkpoints", 2000), part="part-b.parquet")
    write(lake, "checkpoints", valid_table("checkpoints"), run_id="r2")
    chunk = pq.ParquetFile(bad).metadata.row_group(0).column(2)
    assert chunk.path_in_schema == "train_loss"  # a column the value scan reads
    start = chunk.dictionary_page_offset
    data = bytearray(bad.read_bytes())
    data[start:start + 8] = b"\xff" * 8  # a page header; the footer stays readable
    bad.write_bytes(bytes(data))
    problems = check_lake(lake)
    assert [(p.kind, p.path) for p in problems] == [("unreadable", rel(bad, lake))], problems
    assert "DuckDB could not read it" in problems[0].message


# ---------------------------------------------------------------------------------------
# Schema drift: missing_column, extra_column, type_mismatch, partition_mismatch


def test_missing_columns(lake: Path) -> None:
    path = write(lake, "checkpoints", valid_table("checkpoints").drop_columns(["step", "val_loss"]))
    problems = check_lake(lake)
    assert {p.kind for p in problems} == {"missing_column"}, problems
    messages = {p.message for p in problems}
    assert messages == {"column step (int64, not nullable) is missing",
                        "column val_loss (float, nullable) is missing"}
    assert {p.path for p in problems} == {rel(path, lake)}


def test_extra_column(lake: Path) -> None:
    table = valid_table("checkpoints").append_column("lr", pa.array([0.1, 0.2, 0.3]))
    path = write(lake, "checkpoints", table)
    p = only(check_lake(lake), "extra_column")
    assert p.path == rel(path, lake) and "lr" in p.message and "double" in p.message and "contract" in p.message


def test_repeated_column(lake: Path) -> None:
    table = valid_table("checkpoints")
    table = pa.Table.from_arrays(table.columns + [table.column("step")], names=table.column_names + ["step"])
    path = write(lake, "checkpoints", table)
    p = only(check_lake(lake), "extra_column")
    assert p.path == rel(path, lake) and p.message == "column step appears 2 times"


def test_type_mismatch(lake: Path) -> None:
    table = valid_table("checkpoints")
    table = table.set_column(table.schema.get_field_index("step"), "step", pa.array([1, 2, 3], pa.int32()))
    path = write(lake, "checkpoints", table)
    # A second file with the right types keeps its checks: the bad file stays out of the scans.
    write(lake, "checkpoints", valid_table("checkpoints", train_loss=[float("nan"), 1.0, 2.0]), run_id="r2")
    problems = check_lake(lake)
    p = only(problems, "type_mismatch")
    assert p.path == rel(path, lake) and p.message == "column step: expected int64, found int32"
    assert only(problems, "invalid_value").path.startswith("checkpoints/run_id=r2/")


def test_equivalent_encodings_are_not_type_mismatches(lake: Path) -> None:
    table = valid_table("signatures")
    fields = [pa.field(f.name, pa.large_string()) if f.type == pa.string() else f for f in table.schema]
    write(lake, "signatures", table.cast(pa.schema(fields)))
    assert check_lake(lake) == []


def test_partition_column_in_file(lake: Path) -> None:
    same = valid_table("checkpoints").append_column("run_id", pa.array(["r1"] * 3))
    write(lake, "checkpoints", same)
    differ = valid_table("checkpoints").append_column("run_id", pa.array(["r2", "r2", None]))
    path = write(lake, "checkpoints", differ, part="part-b.parquet", run_id="r2x")
    p = only(check_lake(lake), "partition_mismatch")
    assert p.path == rel(path, lake)
    assert "run_id=r2x" in p.message and "'r2'" in p.message and "3 value(s)" in p.message


# ---------------------------------------------------------------------------------------
# Partition folders: bad_partition, unsafe_partition


@pytest.mark.parametrize("folder", ["foo", "step=1", "runid=r1"])
def test_bad_partition_folder(lake: Path, folder: str) -> None:
    (lake / "checkpoints" / folder).mkdir(parents=True)
    pq.write_table(valid_table("checkpoints"), lake / "checkpoints" / folder / "part-a.parquet")
    p = only(check_lake(lake), "bad_partition")
    assert p.path == f"checkpoints/{folder}" and "run_id=<value>" in p.message


def test_partition_keys_out_of_order(lake: Path) -> None:
    folder = lake / "geometry_state" / "run_id=r1" / "analysis_id=a1"
    folder.mkdir(parents=True)
    pq.write_table(valid_table("geometry_state"), folder / "part-a.parquet")
    p = only(check_lake(lake), "bad_partition")
    assert p.path == "geometry_state/run_id=r1" and "analysis_id, run_id" in p.message


@pytest.mark.parametrize("value", ["..", "a b", "", "a=b", "-x"])
def test_unsafe_partition_value(lake: Path, value: str) -> None:
    folder = lake / "checkpoints" / f"run_id={value}"
    folder.mkdir(parents=True)
    pq.write_table(valid_table("checkpoints"), folder / "part-a.parquet")
    p = only(check_lake(lake), "unsafe_partition")
    assert p.path == f"checkpoints/run_id={value}" and repr(value) in p.message and "identifier" in p.message


# ---------------------------------------------------------------------------------------
# duplicate_key


def test_duplicate_key_across_files(lake: Path) -> None:
    a = write(lake, "checkpoints", valid_table("checkpoints", 3))
    b = write(lake, "checkpoints", valid_table("checkpoints", 1), part="part-b.parquet")
    write(lake, "checkpoints", valid_table("checkpoints", 3), run_id="r2")  # same steps, other run
    p = only(check_lake(lake), "duplicate_key")
    assert p.path == rel(a, lake)
    assert p.message == (f"key (run_id='r1', step=0) occurs 2 times, in {rel(a, lake)}, {rel(b, lake)}")


def test_duplicate_key_within_a_file_with_nulls(lake: Path) -> None:
    # sample_id NULL (pooled) twice at the same key: NULLs compare equal in a key.
    table = valid_table("geometry_state", 3, step=[5, 5, 6], layer=[1, 1, 1], sample_id=[None, None, None],
                        sample_set=["s"] * 3)
    path = write(lake, "geometry_state", table)
    p = only(check_lake(lake), "duplicate_key")
    assert p.path == rel(path, lake)
    assert "step=5" in p.message and "sample_id=None" in p.message and "occurs 2 times" in p.message


def test_many_duplicate_keys_are_counted(lake: Path) -> None:
    write(lake, "checkpoints", valid_table("checkpoints", 25))
    write(lake, "checkpoints", valid_table("checkpoints", 25), part="part-b.parquet")
    problems = [p for p in check_lake(lake) if p.kind == "duplicate_key"]
    assert len(problems) == 21
    assert problems[0].path == "checkpoints" and "5 more duplicated key(s)" in problems[0].message


def test_same_key_in_two_analyses_is_not_a_duplicate(lake: Path) -> None:
    write(lake, "probe_summaries", valid_table("probe_summaries"), analysis_id="a1")
    write(lake, "probe_summaries", valid_table("probe_summaries"), analysis_id="a2")
    assert check_lake(lake) == []


# ---------------------------------------------------------------------------------------
# invalid_value


@pytest.mark.parametrize(
    "column, values, words",
    [
        ("step", [0, None, None], ["column step", "2 NULL", "row 1"]),
        ("module", ["resid_post", "resid_post", "bogus"], ["column module", "allowed values", "'bogus'", "row 2"]),
        ("eff_rank", [1.0, float("inf"), float("nan")], ["column eff_rank", "2 NaN or infinite", "'inf'", "row 1"]),
        # Parquet statistics leave NaN out (min 1, max 2 here): the check must not trust them.
        ("act_norm", [1.0, float("nan"), 2.0], ["column act_norm", "1 NaN or infinite", "'nan'", "row 1"]),
        ("sample_set", ["ok", "a b", "ok"], ["column sample_set", "unsafe identifier", "'a b'", "row 1"]),
    ],
    ids=["null", "enum", "inf", "nan", "identifier"],
)
def test_invalid_value(lake: Path, column: str, values: list, words: list[str]) -> None:
    write(lake, "geometry_state", valid_table("geometry_state"))  # a clean file scanned alongside
    table = valid_table("geometry_state", 3, **{column: values})
    path = write(lake, "geometry_state", table, run_id="r2")
    p = only(check_lake(lake), "invalid_value")
    assert (p.dataset, p.path) == ("geometry_state", rel(path, lake))
    for word in words:
        assert word in p.message, p.message


def test_nan_inside_a_vector(lake: Path) -> None:
    vectors = [[0.0] * 100, [1.0] * 50 + [float("nan")] * 50, [2.0]]
    path = write(lake, "signatures", valid_table("signatures", 3, vector=vectors))
    p = only(check_lake(lake), "invalid_value")
    assert p.path == rel(path, lake)
    assert "column vector: 1 list(s) holding NaN or infinite values" in p.message and "row 1" in p.message
    assert "..." in p.message and len(p.message) < 200  # a long vector is clipped


def test_missing_column_is_not_also_reported_as_null(lake: Path) -> None:
    write(lake, "checkpoints", valid_table("checkpoints"))
    write(lake, "checkpoints", valid_table("checkpoints").drop_columns(["schema_version"]), run_id="r2")
    assert [p.kind for p in check_lake(lake)] == ["missing_column"]


# ---------------------------------------------------------------------------------------
# stray_file, unknown_dataset, stale_staging


def test_stray_files(lake: Path) -> None:
    write(lake, "checkpoints", valid_table("checkpoints"))
    folder = lake / "checkpoints" / "run_id=r1"
    (folder / "notes.txt").write_text("remember")
    (folder / ".tmp-0123abcd.parquet.partial").write_bytes(b"half")
    (folder / "sub").mkdir()
    pq.write_table(valid_table("checkpoints"), lake / "checkpoints" / "loose.parquet")
    (lake / "notes.md").write_text("root")
    problems = check_lake(lake)
    assert {p.kind for p in problems} == {"stray_file"}
    by_path = {p.path: p.message for p in problems}
    assert by_path["checkpoints/run_id=r1/.tmp-0123abcd.parquet.partial"] == (
        "leftover temporary file of an interrupted write")
    assert "not a Parquet data file" in by_path["checkpoints/run_id=r1/notes.txt"]
    assert "folder" in by_path["checkpoints/run_id=r1/sub"]
    assert "outside the partition folders" in by_path["checkpoints/loose.parquet"]
    assert "lake root" in by_path["notes.md"]


def test_unknown_dataset(lake: Path) -> None:
    (lake / "checkpoint").mkdir()
    p = only(check_lake(lake), "unknown_dataset")
    assert (p.dataset, p.path) == (None, "checkpoint") and "'checkpoint'" in p.message


def test_stale_staging(lake: Path) -> None:
    (lake / ".staging" / "w1").mkdir(parents=True)
    (lake / ".staging" / "w1" / "batch.parquet").write_bytes(b"x")
    p = only(check_lake(lake), "stale_staging")
    assert p.path == ".staging/w1/batch.parquet" and "interrupted write" in p.message


# ---------------------------------------------------------------------------------------
# The check changes nothing; the CLI.


def _broken_lake(lake: Path) -> None:
    write(lake, "checkpoints", valid_table("checkpoints"))
    write(lake, "checkpoints", valid_table("checkpoints"), part="part-b.parquet")
    write(lake, "checkpoints", valid_table("checkpoints", 3, step=[None, 1, 2]), run_id="r2")
    bad = write(lake, "geometry_state", valid_table("geometry_state"))
    bad.write_bytes(bad.read_bytes()[:50])
    (lake / "checkpoints" / "run_id=r1" / ".tmp-1.parquet.partial").write_bytes(b"half")
    (lake / "checkpoints" / "run_id=..").mkdir()
    (lake / ".staging").mkdir()
    (lake / ".staging" / "x").write_bytes(b"x")
    (lake / "mystery").mkdir()


def _snapshot(root: Path) -> dict[str, str]:
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            state[os.path.join(dirpath, d)] = "dir"
        for f in filenames:
            path = os.path.join(dirpath, f)
            state[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest() + str(os.stat(path).st_mtime_ns)
    return state


def test_check_changes_nothing(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _broken_lake(lake)
    monkeypatch.chdir(lake)  # run from inside the lake: no scratch files in the working folder
    before = _snapshot(lake.parent)  # the parent too: nothing appears beside the lake
    problems = check_lake(lake)
    assert {p.kind for p in problems} == {"duplicate_key", "invalid_value", "unreadable", "stray_file",
                                          "unsafe_partition", "stale_staging", "unknown_dataset", "missing_run"}
    assert set(KINDS) >= {p.kind for p in problems}
    assert _snapshot(lake.parent) == before


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warehouse.cli", "check", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_cli_reports_problems(lake: Path) -> None:
    _broken_lake(lake)
    text = _cli("--lake", str(lake), cwd=lake.parent)
    assert text.returncode == 1, text.stderr
    assert "checkpoints/run_id=r1/.tmp-1.parquet.partial: stray_file: leftover" in text.stdout
    as_json = _cli("--lake", str(lake), "--json", cwd=lake.parent)
    assert as_json.returncode == 1
    rows = json.loads(as_json.stdout)
    assert {"dataset", "path", "kind", "message"} == set(rows[0])
    assert len(rows) == len(check_lake(lake))


def test_cli_clean_and_missing_lake(lake: Path) -> None:
    write(lake, "checkpoints", valid_table("checkpoints"))
    clean = _cli("--lake", str(lake), cwd=lake.parent)
    assert clean.returncode == 0 and "lake is clean" in clean.stdout
    missing = _cli("--lake", str(lake / "nope"), cwd=lake.parent)
    assert missing.returncode == 2 and "nope" in missing.stderr
