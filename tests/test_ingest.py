"""``warehouse ingest`` on real CSV, JSON Lines and Parquet files.

The refusal cases are those of ``tests/test_writer.py`` (imported from it), written here as
files and ingested both through ``writer.ingest_files`` (the Python API behind the command)
and through the command itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse import cli, writer
from warehouse.errors import ValidationError
from warehouse.lake import init_lake

# Shared with the Python API tests (pytest puts tests/ on sys.path). The fixtures are
# imported so that pytest finds them here too.
from test_writer import (  # noqa: F401
    REFUSALS,
    T0,
    Refusal,
    assert_message,
    assert_nothing_written,
    assert_refusal,
    big_checkpoints,
    ck,
    data_snapshot,
    lake,
    published,
    read_dataset,
    seeded_template,
    snapshot,
    table_of,
)

# ---------------------------------------------------------------------------------------
# Input files written by hand.


def csv_cell(value) -> str:
    """A CSV field: empty for NULL, otherwise quoted text (a quoted empty string stays '')."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        text = json.dumps(value)  # lists are JSON arrays; NaN and Infinity as JSON spells them
    elif isinstance(value, float):
        text = repr(value)  # nan, inf, -inf, 1e+300
    elif hasattr(value, "isoformat"):
        text = value.isoformat()
    else:
        text = str(value)
    return '"' + text.replace('"', '""') + '"'


def write_csv(path: Path, rows: list[dict]) -> Path:
    names = list(dict.fromkeys(k for row in rows for k in row))
    lines = [",".join(names)] + [",".join(csv_cell(row.get(n)) for n in names) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, default=str) + "\n" for row in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict], types: dict | None = None) -> Path:
    pq.write_table(table_of(rows, types), path)
    return path


def write_input(folder: Path, fmt: str, rows: list[dict], types: dict | None = None, name: str = "input") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.{fmt}"
    if fmt == "csv":
        return write_csv(path, rows)
    if fmt == "jsonl":
        return write_jsonl(path, rows)
    return write_parquet(path, rows, types)


FORMATS = ["csv", "jsonl", "parquet"]


# ---------------------------------------------------------------------------------------
# Every refusal, through every file format, through the API and the command.


@pytest.mark.parametrize("case", REFUSALS, ids=[c.id for c in REFUSALS])
@pytest.mark.parametrize("fmt", FORMATS)
def test_ingest_refuses_and_writes_nothing(lake: Path, tmp_path: Path, case: Refusal, fmt: str, capsys) -> None:
    path = write_input(tmp_path / "in", fmt, case.rows, case.types)
    before = snapshot(lake)

    with pytest.raises(ValidationError) as info:
        writer.ingest_files(case.dataset, [str(path)], lake=lake)
    assert_refusal(info.value, case, str(path))
    assert_nothing_written(lake, before)

    status = cli.main(["ingest", case.dataset, str(path), "--lake", str(lake)])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.startswith("warehouse ingest: error: ") and err.count("\n") == 1
    assert_message(err, case, str(path))
    assert_nothing_written(lake, before)


@pytest.mark.parametrize("fmt", FORMATS)
def test_ingest_writes_a_good_file(tmp_path: Path, fmt: str) -> None:
    root = init_lake(tmp_path / "lake")
    rows = [ck(1, train_loss=0.25, created_at_utc="2024-05-06T07:08:09Z"),
            ck(2, train_loss=2, val_loss=None, tokens_seen=4096, created_at_utc="2024-05-06T07:08:09"),
            ck(3, "r3", checkpoint_path='s3://b/"x",y', created_at_utc="2024-05-06T09:08:09+02:00")]
    path = write_input(tmp_path / "in", fmt, rows)
    (result,) = writer.ingest_files("checkpoints", [path], lake=root)
    assert (result.rows_written, result.rows_skipped, len(result.files)) == (3, 0, 2)
    got = sorted(read_dataset(root, "checkpoints").to_pylist(), key=lambda r: r["step"])
    base = {"checkpoint_path": None, "val_loss": None, "tokens_seen": None, "wall_time_s": None,
            "schema_version": "checkpoints@2.0", "created_at_utc": T0}
    assert got == [
        {**base, "run_id": "r2", "step": 1, "train_loss": 0.25},
        {**base, "run_id": "r2", "step": 2, "train_loss": 2.0, "tokens_seen": 4096},
        {**base, "run_id": "r3", "step": 3, "train_loss": 0.5, "checkpoint_path": 's3://b/"x",y'},
    ]
    again = writer.ingest_files("checkpoints", [path], lake=root)[0]
    assert (again.rows_written, again.rows_skipped, again.files) == (0, 3, [])


@pytest.mark.parametrize("fmt", FORMATS)
def test_list_columns_from_files(tmp_path: Path, fmt: str) -> None:
    root = init_lake(tmp_path / "lake")
    rows = [{"family_id": "f1", "family_version": "1", "source": "gen", "tags": ["a", "b,c"],
             "created_at_utc": "2024-05-06T07:08:09Z"},
            {"family_id": "f2", "family_version": "1", "source": "gen", "tags": [],
             "created_at_utc": "2024-05-06T07:08:09Z"}]
    writer.ingest_files("families", [write_input(tmp_path / "in", fmt, rows)], lake=root)
    got = sorted(read_dataset(root, "families").to_pylist(), key=lambda r: r["family_id"])
    assert [(r["family_id"], r["tags"]) for r in got] == [("f1", ["a", "b,c"]), ("f2", [])]


def test_csv_list_column_that_is_not_json(lake: Path, tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text('run_id,step,sample_set,sample_id,layer,module,method,dim,vector\n'
                    'r2,1,fixed_v1,s0,0,resid_post,raw,2,"[1, 2]"\n'
                    'r2,2,fixed_v1,s0,0,resid_post,raw,2,"1, 2"\n')
    before = snapshot(lake)
    with pytest.raises(ValidationError) as info:
        writer.ingest_files("embeddings", [path], lake=lake)
    e = info.value
    assert (e.dataset, e.source, e.column, e.row, e.value) == ("embeddings", str(path), "vector", 2, "1, 2")
    assert_nothing_written(lake, before)


def test_jsonl_line_that_is_not_an_object(lake: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"run_id": "r2", "step": 1}\n[1, 2]\n')
    before = snapshot(lake)
    with pytest.raises(ValidationError) as info:
        writer.ingest_files("checkpoints", [path], lake=lake)
    assert (info.value.source, info.value.row) == (str(path), 2)
    assert_nothing_written(lake, before)


# ---------------------------------------------------------------------------------------
# Large files are streamed.


@pytest.mark.parametrize("fmt", FORMATS)
def test_streamed_ingest_equals_one_batch_ingest(tmp_path: Path, fmt: str) -> None:
    path = write_input(tmp_path / "in", fmt, big_checkpoints(20_000))
    (small,) = writer.ingest_files("checkpoints", [path], lake=tmp_path / "a", batch_rows=1000, create=True)
    (whole,) = writer.ingest_files("checkpoints", [path], lake=tmp_path / "b", create=True)
    assert small.rows_written == whole.rows_written == 20_000
    assert data_snapshot(tmp_path / "a") == data_snapshot(tmp_path / "b")
    assert {f.parent.name: pq.read_metadata(f).num_rows for f in published(tmp_path / "a")} == {
        f"run_id=r{k}": 4000 for k in range(5)}
    got = read_dataset(tmp_path / "a", "checkpoints")
    assert sorted(got.column("step").to_pylist()) == list(range(20_000))
    assert sum(got.column("tokens_seen").to_pylist()) == 1000 * (20_000 * 19_999 // 2)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("problem", ["nan", "duplicate"])
def test_error_in_the_last_batch_writes_nothing(lake: Path, tmp_path: Path, fmt: str, problem: str) -> None:
    rows = big_checkpoints(20_000)
    if problem == "nan":
        rows[19_989]["train_loss"] = float("nan")  # row 19990
        column, value = "train_loss", float("nan")
    else:
        rows[19_989]["step"] = rows[2]["step"] = 19_999 + 5  # rows 3 and 19990 (both run r4)
        rows[19_989]["run_id"] = rows[2]["run_id"] = "r4"
        column, value = "run_id, step", {"run_id": "r4", "step": 20_004}
    path = write_input(tmp_path / "in", fmt, rows)
    before = snapshot(lake)
    with pytest.raises(ValidationError) as info:
        writer.ingest_files("checkpoints", [path], lake=lake, batch_rows=1000)
    e = info.value
    assert (e.source, e.column, e.row) == (str(path), column, 19_990)
    assert e.value == value if problem == "duplicate" else e.value != e.value  # NaN
    assert_nothing_written(lake, before)


def test_csv_larger_than_one_read_block_counts_rows_across_blocks(lake: Path, tmp_path: Path) -> None:
    # The CSV reader works in 16 MiB blocks: 100k rows of ~240 bytes make two of them.
    rows = [ck(i, checkpoint_path=f"/ckpt/{i:06d}/" + "x" * 200) for i in range(100_000)]
    rows[99_990]["step"] = "9.5"  # row 99991
    path = write_csv(tmp_path / "big.csv", rows)
    assert path.stat().st_size > 1 << 24
    before = snapshot(lake)
    with pytest.raises(ValidationError) as info:
        writer.ingest_files("checkpoints", [path], lake=lake, batch_rows=7_000)
    assert (info.value.column, info.value.row, info.value.value) == ("step", 99_991, "9.5")
    assert_nothing_written(lake, before)


# ---------------------------------------------------------------------------------------
# The command, as a user runs it.


def warehouse(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warehouse.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_command_ingests_a_csv_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "checkpoints.csv", [ck(1), ck(2), ck(3, "r3")])
    lake_dir = tmp_path / "lake"
    done = warehouse("ingest", "checkpoints", str(path), "--lake", str(lake_dir), "--create", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"{path}: 3 rows written, 0 already present, 2 files\n"
    assert sorted(read_dataset(lake_dir, "checkpoints").column("step").to_pylist()) == [1, 2, 3]
    again = warehouse("ingest", "checkpoints", str(path), "--lake", str(lake_dir), cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout == f"{path}: 0 rows written, 3 already present, 0 files\n"


def test_command_refuses_a_bad_file_with_status_2(tmp_path: Path) -> None:
    lake_dir = init_lake(tmp_path / "lake")
    good = write_csv(tmp_path / "good.csv", [ck(1)])
    bad = write_csv(tmp_path / "bad.csv", [ck(5), ck("abc")])
    # One bad file and the ingest writes nothing, not even the good file before it.
    done = warehouse("ingest", "checkpoints", str(good), str(bad), "--lake", str(lake_dir), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(
        f"warehouse ingest: error: dataset checkpoints, input {bad}, column step, row 2, value 'abc': ")
    assert not (lake_dir / "checkpoints").exists()
    assert not (lake_dir / ".staging").exists()


@pytest.mark.parametrize("args, message", [
    (["nosuch", "x.csv"], "unknown dataset 'nosuch'"),
    (["checkpoints", "missing.csv"], "missing.csv: no such file"),
    (["checkpoints", "notes.txt"], "unknown file type '.txt'"),
])
def test_command_reports_other_errors_with_status_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    done = warehouse("ingest", *args, "--lake", str(tmp_path / "lake"), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("warehouse ingest: error: ") and message in done.stderr
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("*.parquet"))


# ---------------------------------------------------------------------------------------
# Several files are one write: every file is validated before any is written.


def big_csv(path: Path, n: int, **changes: dict[int, dict]) -> Path:
    """``n`` checkpoints rows (steps 0..n-1 of runs r0..r4) as CSV; ``changes`` edit rows by index."""
    rows = big_checkpoints(n)
    for index, change in changes.get("rows", {}).items():
        rows[index].update(change)
    return write_csv(path, rows)


@pytest.mark.parametrize("order", ["bad_last", "bad_first"])
def test_one_bad_file_among_several_writes_none(lake: Path, tmp_path: Path, order: str) -> None:
    good = big_csv(tmp_path / "good.csv", 3000)
    other = write_csv(tmp_path / "other.csv", [ck(1, "r9"), ck(2, "r9")])
    # The bad row is in the third batch of 1000: the good files' batches were all staged by then.
    bad = big_csv(tmp_path / "bad.csv", 2500, rows={2400: {"run_id": "r7", "step": 99_999, "train_loss": "lots"}})
    files = [good, other, bad] if order == "bad_last" else [bad, good, other]
    before = snapshot(lake)
    done = warehouse("ingest", "checkpoints", *map(str, files), "--lake", str(lake), "--batch-rows", "1000", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"warehouse ingest: error: dataset checkpoints, input {bad}, column train_loss, row 2401, value 'lots': "
        "cannot be cast losslessly from string to double (Failed to parse string: 'lots' as a scalar of type double)\n")
    assert_nothing_written(lake, before)


def test_good_files_are_written_together_with_a_count_per_file(lake: Path, tmp_path: Path) -> None:
    first = write_csv(tmp_path / "first.csv", [ck(1, "r5"), ck(2, "r5"), ck(1, "r6")])
    second = write_jsonl(tmp_path / "second.jsonl", [ck(3, "r5"), ck(1, "r1", train_loss=0.25)])  # the latter: in the lake
    done = warehouse("ingest", "checkpoints", str(first), str(second), "--lake", str(lake), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    # first's rows go to r5 and r6; second's new row to r5 too: one new file in each folder.
    assert done.stdout == (f"{first}: 3 rows written, 0 already present, 2 files\n"
                           f"{second}: 1 rows written, 1 already present, 1 files\n")
    got = read_dataset(lake, "checkpoints").to_pylist()
    assert sorted((r["run_id"], r["step"]) for r in got if r["run_id"] in ("r5", "r6")) == [
        ("r5", 1), ("r5", 2), ("r5", 3), ("r6", 1)]
    assert len(published(lake / "checkpoints" / "run_id=r5")) == 1


def test_a_key_repeated_across_files_is_refused_naming_both(lake: Path, tmp_path: Path) -> None:
    first = write_csv(tmp_path / "first.csv", [ck(1, "r5"), ck(2, "r5")])
    second = write_csv(tmp_path / "second.csv", [ck(7, "r5"), ck(8, "r5"), ck(2, "r5", train_loss=9.0)])
    before = snapshot(lake)
    with pytest.raises(ValidationError) as info:
        writer.ingest_files("checkpoints", [first, second], lake=lake)
    assert (info.value.source, info.value.row, info.value.value) == (str(second), 3, {"run_id": "r5", "step": 2})
    assert f"row 2 of {first} and row 3 of {second} have the same key" in str(info.value)
    assert_nothing_written(lake, before)


def test_every_problem_of_every_file_is_reported_at_once(lake: Path, tmp_path: Path) -> None:
    # a.csv: both required columns missing and an unknown one; its values are checked all the same.
    a = tmp_path / "a.csv"
    a.write_text("tokens_seen,lossx\n5,1\nx,2\n")
    # b.csv, 2500 rows read in batches of 1000: bad values in three columns, in three batches;
    # train_loss breaks the same rule (finite) in three rows of two batches: one line, counted.
    b = big_csv(tmp_path / "b.csv", 2500, rows={
        10: {"train_loss": "nan"}, 1500: {"step": "1.5"}, 2100: {"train_loss": "inf"}, 2200: {"run_id": "a/b"},
        2300: {"train_loss": "nan"},
    })
    before = snapshot(lake)
    done = warehouse("ingest", "checkpoints", str(a), str(b), "--lake", str(lake), "--batch-rows", "1000", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    pattern = r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$"
    assert done.stderr.splitlines() == [
        "warehouse ingest: error: 7 problems found; nothing was written:",
        f"  dataset checkpoints, input {a}, column lossx: unknown column; the contract's columns are run_id, step, "
        "checkpoint_path, train_loss, val_loss, tokens_seen, wall_time_s, schema_version, created_at_utc",
        f"  dataset checkpoints, input {a}, column run_id: required column is missing",
        f"  dataset checkpoints, input {a}, column step: required column is missing",
        f"  dataset checkpoints, input {a}, column tokens_seen, row 2, value 'x': cannot be cast losslessly from "
        "string to int64 (Failed to parse string: 'x' as a scalar of type int64)",
        f"  dataset checkpoints, input {b}, column train_loss, row 11, value nan: NaN or infinity in a float column "
        "(write NULL for a missing value) (2 more rows like it)",
        f"  dataset checkpoints, input {b}, column step, row 1501, value '1.5': cannot be cast losslessly from "
        "string to int64 (Failed to parse string: '1.5' as a scalar of type int64)",
        f"  dataset checkpoints, input {b}, column run_id, row 2201, value 'a/b': unsafe identifier: it must match {pattern}",
    ]
    assert_nothing_written(lake, before)


def test_unknown_columns_are_one_problem(lake: Path, tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("run_id,stepp,train_loss,extra,notes\nr1,1,0.5,x,y\n")
    with pytest.raises(ValidationError) as info:
        writer.ingest_files("checkpoints", [path], lake=lake)
    assert str(info.value).splitlines() == [
        "2 problems found; nothing was written:",
        f"  dataset checkpoints, input {path}, column stepp, extra, notes: unknown columns; the contract's columns "
        "are run_id, step, checkpoint_path, train_loss, val_loss, tokens_seen, wall_time_s, schema_version, created_at_utc",
        f"  dataset checkpoints, input {path}, column step: required column is missing",
    ]


def test_a_long_list_of_problems_is_capped(lake: Path, tmp_path: Path) -> None:
    files = []
    for i in range(25):  # 25 files, each with one bad value
        files.append(write_csv(tmp_path / f"part{i:02d}.csv", [ck(1, f"r{i}"), ck(2, f"r{i}", train_loss="bad")]))
    before = snapshot(lake)
    with pytest.raises(ValidationError) as info:
        writer.ingest_files("checkpoints", files, lake=lake)
    lines = str(info.value).splitlines()
    assert lines[0] == "25 problems found; nothing was written:"
    assert len(lines) == 1 + 20 + 1 and lines[-1] == "  and 5 more"
    assert [line.split("input ")[1].split(",")[0] for line in lines[1:21]] == [str(f) for f in files[:20]]
    assert all(", column train_loss, row 2, value 'bad': cannot be cast" in line for line in lines[1:21])
    assert len(info.value.problems) == 25
    assert_nothing_written(lake, before)
