"""The hostile corpus of ``tests/data/bad/`` (written by ``tests/data/make_bad.py``).

For every case: ``warehouse check`` reports it precisely, ``warehouse ingest`` refuses it
and writes nothing, and ``warehouse models run`` fails naming the file, or with
``--skip-invalid`` builds without it and lists it. Every file of the lake is compared by
sha256 before and after. The expected kinds, columns, rows and values are written out by
hand from how each file was made.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import pyarrow.parquet as pq
import pytest

from model_fixtures import REPO, only_models_sql, read_rows
from warehouse import check_lake, cli, ingest_files, models, write
from warehouse.models.state import load_analyses
from warehouse.lake import init_lake

sys.path.insert(0, str(REPO / "tests" / "data"))
import make_bad  # noqa: E402  (the corpus generator, a script beside the corpus)

BAD = REPO / "tests" / "data" / "bad"
DYN = "geometry_dynamics"
R1 = "geometry_state/analysis_id=capture-v1/run_id=r1"


class Case(NamedTuple):
    check_kind: str
    check_words: tuple[str, ...]  # in the check message
    ingest_words: tuple[str, ...]  # in the ingest error


CASES = {
    "truncated": Case("unreadable", ("not a readable Parquet file",), ("not a readable Parquet file",)),
    "wrong_magic": Case("unreadable", ("magic bytes not found",), ("magic bytes not found",)),
    "empty": Case("unreadable", ("not a readable Parquet file", "0 bytes"), ("not a readable Parquet file",)),
    "zero_rows": Case("empty_file", ("holds no rows",), ("the input holds no rows",)),
    "missing_column": Case("missing_column", ("column module (string, not nullable) is missing",),
                           ("column module: required column is missing",)),
    "extra_column": Case("extra_column", ("column favourite_colour (string) is not in the geometry_state contract",),
                         ("column favourite_colour: unknown column",)),
    "changed_type": Case("type_mismatch", ("column step: expected int64, found string",),
                         ("column step, row 1, value 'step-5000': cannot be cast losslessly from string to int64",)),
    "duplicate_keys": Case("duplicate_key", ("occurs 2 times", "part-duplicate_keys.parquet"),
                           ("row 1", "primary key already in the lake with a different eff_rank")),
    # check counts rows from 0 (file_row_number), the writer from 1
    "nan": Case("invalid_value", ("column eff_rank: 1 NaN or infinite value(s), first 'nan' at row 2",),
                ("column eff_rank, row 3, value nan: NaN or infinity in a float column",)),
    "infinity": Case("invalid_value", ("column act_norm: 1 NaN or infinite value(s), first 'inf' at row 4",),
                     ("column act_norm, row 5, value inf: NaN or infinity in a float column",)),
    "misspelled_enum": Case("invalid_value", ("column module: 1 value(s) outside the allowed values", "'resid_psot' at row 1"),
                            ("column module, row 2, value 'resid_psot': not one of the allowed values",)),
    **{
        f"id_{name}": Case("invalid_value", ("column sample_set: 40 unsafe identifier(s)", f"first {value!r} at row 0"),
                           (f"column sample_set, row 1, value {value!r}: unsafe identifier",))
        for name, value in make_bad.HOSTILE_IDS.items()
    },
}
GEOMETRY_CASES = sorted(CASES)
FOLDER_IDS = ("a=b", "it's", 'a"b', "'; DROP TABLE runs; --", "..")  # the hostile ids a folder name can hold


def corpus_file(case: str) -> Path:
    return BAD / json.loads((BAD / "manifest.json").read_text())[case]["file"]


def sha256s(root: Path) -> dict[str, str]:
    """Every file under ``root``: lake-relative path -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def place(lake: Path, case: str) -> str:
    """Copy a corpus file into run r1's partition; its lake-relative path."""
    rel = f"{R1}/part-{case}.parquet"
    shutil.copyfile(corpus_file(case), lake / rel)
    return rel


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """``warehouse ARGV`` in this process: exit status, stdout, stderr."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def dyn_sql(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return only_models_sql(tmp_path_factory.mktemp("hostile") / "sql", DYN)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, dyn_sql: Path) -> Path:
    """The good runs r1 and r2, ingested with their runs rows, with geometry_dynamics built."""
    root = init_lake(tmp_path_factory.mktemp("hostile") / "lake")
    ingest_files("geometry_state", [corpus_file("good")], lake=root)
    run = pq.read_table(corpus_file("runs_injection"))
    for run_id in ("r1", "r2"):
        write("runs", run.set_column(0, "run_id", [[run_id]]), lake=root)
    models.run(lake=root, sql_dir=dyn_sql, report=lambda _: None)
    return root


@pytest.fixture
def lake(template: Path, tmp_path: Path, dyn_sql: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SQUIGGLE_SQL", str(dyn_sql))
    root = tmp_path / "lake"
    shutil.copytree(template, root)
    return root


def test_the_committed_corpus_is_what_the_generator_writes(tmp_path: Path) -> None:
    fresh = tmp_path / "bad"
    make_bad.write_corpus(fresh)
    assert sorted(p.name for p in fresh.iterdir()) == sorted(p.name for p in BAD.iterdir())
    assert (fresh / "manifest.json").read_text() == (BAD / "manifest.json").read_text()
    for path in sorted(BAD.glob("*.parquet")):
        try:
            committed = pq.read_table(path)
        except Exception:  # the broken ones: broken the same way, at the same size
            assert path.stat().st_size == (fresh / path.name).stat().st_size, path.name
            with pytest.raises(Exception):
                pq.read_table(fresh / path.name)
            continue
        fresh_table = pq.read_table(fresh / path.name)
        assert committed.schema == fresh_table.schema, path.name
        assert repr(committed.to_pylist()) == repr(fresh_table.to_pylist()), path.name  # repr: NaN equals NaN
    assert {c for c in json.loads((BAD / "manifest.json").read_text())} >= set(CASES)


# ---------------------------------------------------------------------------------------
# warehouse check


@pytest.mark.parametrize("case", GEOMETRY_CASES)
def test_check_reports_each_case_precisely(lake: Path, case: str) -> None:
    rel = place(lake, case)
    problems = check_lake(lake)
    expected = CASES[case]
    assert {p.kind for p in problems} == {expected.check_kind}, [str(p) for p in problems]
    mine = [p for p in problems if p.involves(rel)]
    assert mine, [str(p) for p in problems]
    for word in expected.check_words:
        assert any(word in p.message for p in mine), (word, [p.message for p in mine])
    if case == "duplicate_keys":
        # r1's 40 keys are all in two files: 20 listed, the rest counted, every file named
        assert len(problems) == 21 and "20 more duplicated key(s)" in problems[0].message
        assert all(len(p.files) == 2 for p in problems[1:])


def test_check_command_lists_every_case_with_kind_path_and_message(lake: Path, capsys) -> None:
    placed = {case: place(lake, case) for case in GEOMETRY_CASES if case != "duplicate_keys"}
    status, out, _ = run_cli(capsys, "check", "--lake", str(lake), "--json")
    assert status == 1
    found = json.loads(out)
    for case, rel in placed.items():
        ours = [p for p in found if p["path"] == rel]
        assert [p["kind"] for p in ours] == [CASES[case].check_kind], (case, ours)
        assert all(w in ours[0]["message"] for w in CASES[case].check_words), (case, ours)
    assert len(found) == len(placed)


def test_check_reports_hostile_folders_and_a_folder_where_a_file_belongs(lake: Path) -> None:
    for i, value in enumerate(FOLDER_IDS):
        folder = lake / "geometry_state" / "analysis_id=capture-v1" / f"run_id={value}"
        folder.mkdir()
        shutil.copyfile(corpus_file("r3"), folder / f"part-{i}.parquet")
    (lake / R1 / "part-folder.parquet").mkdir()
    (lake / R1 / "part-folder.parquet" / "inside.parquet").write_bytes(corpus_file("r3").read_bytes())
    by_path = {p.path: p for p in check_lake(lake)}
    assert by_path.pop(f"{R1}/part-folder.parquet").message == "a folder, not a Parquet file"
    for value in FOLDER_IDS:
        p = by_path.pop(f"geometry_state/analysis_id=capture-v1/run_id={value}")
        assert p.kind == "unsafe_partition" and f"run_id value {value!r} is not a safe identifier" in p.message
    assert by_path == {}


# ---------------------------------------------------------------------------------------
# warehouse ingest


@pytest.mark.parametrize("case", GEOMETRY_CASES)
def test_ingest_refuses_each_case_and_writes_nothing(lake: Path, case: str, capsys) -> None:
    before = sha256s(lake)
    path = corpus_file(case)
    status, out, err = run_cli(capsys, "ingest", "geometry_state", str(path), "--lake", str(lake))
    assert status == 2 and out == ""
    assert str(path) in err
    for word in CASES[case].ingest_words:
        assert word in err, (word, err)
    assert sha256s(lake) == before


def test_an_sql_injection_as_run_id_is_refused_and_runs_is_intact(lake: Path, capsys) -> None:
    injection = make_bad.HOSTILE_IDS["injection"]
    row = pq.read_table(corpus_file("runs_injection"))
    write("runs", row.set_column(0, "run_id", [["r1"]]), lake=lake)  # a run the injection would drop
    before = sha256s(lake)
    status, _, err = run_cli(capsys, "ingest", "runs", str(corpus_file("runs_injection")), "--lake", str(lake))
    assert status == 2 and f"column run_id, row 1, value {injection!r}: unsafe identifier" in err
    assert sha256s(lake) == before
    folder = lake / "runs" / f"run_id={injection}"
    folder.mkdir()
    shutil.copyfile(corpus_file("runs_injection"), folder / "part-x.parquet")
    (p,) = check_lake(lake)
    assert (p.path, p.kind) == (f"runs/run_id={injection}", "unsafe_partition")


def test_ingest_of_a_folder_says_so(lake: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "part-folder.parquet"
    folder.mkdir()
    before = sha256s(lake)
    status, _, err = run_cli(capsys, "ingest", "geometry_state", str(folder), "--lake", str(lake))
    assert status == 2 and f"input {folder}: is a folder, not a file" in err
    assert sha256s(lake) == before


def test_check_ingest_and_models_on_a_100_mb_string(lake: Path, tmp_path: Path, capsys) -> None:
    huge = make_bad.write_huge_string(tmp_path / "huge.parquet")
    before = sha256s(lake)
    status, _, err = run_cli(capsys, "ingest", "geometry_state", str(huge), "--lake", str(lake))
    assert status == 2 and "column sample_set, row 1, value 'xxxx" in err
    assert f"({make_bad.HUGE_CHARS:,} characters): unsafe identifier" in err and len(err) < 1000
    assert sha256s(lake) == before

    rel = f"{R1}/part-huge.parquet"
    shutil.copyfile(huge, lake / rel)
    (p,) = check_lake(lake)
    assert (p.path, p.kind) == (rel, "invalid_value") and "column sample_set: 1 unsafe identifier(s)" in p.message
    assert len(p.message) < 400
    before = sha256s(lake)
    status, _, err = run_cli(capsys, "models", "run", "--lake", str(lake))
    assert status == 2 and f"{rel}: invalid_value: column sample_set" in err and len(err) < 2000
    assert sha256s(lake) == before


# ---------------------------------------------------------------------------------------
# warehouse models run, and --skip-invalid


def dynamics_by_run(lake: Path) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for row in read_rows(lake, DYN):
        out.setdefault(row[0], []).append(row)
    return out


def assert_only_outputs_changed(before: dict[str, str], after: dict[str, str]) -> None:
    """Every input file is as it was: only model outputs and records may differ."""
    def inputs(state: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in state.items() if not k.startswith((f"{DYN}/", "_meta/analyses/"))}
    assert inputs(after) == inputs(before)


NON_FINITE = {"nan": ("eff_rank", 2), "infinity": ("act_norm", 4)}  # the column and row the corpus planted


@pytest.mark.parametrize("case", [c for c in GEOMETRY_CASES if c not in NON_FINITE])
def test_models_fail_naming_the_file_then_skip_it_on_request(lake: Path, case: str, capsys) -> None:
    baseline = dynamics_by_run(lake)
    rel = place(lake, case)
    before = sha256s(lake)
    kind = CASES[case].check_kind
    status, out, err = run_cli(capsys, "models", "run", "--lake", str(lake))
    assert status == 2
    assert f"model {DYN}" in err and "--skip-invalid" in err
    assert names(err, rel, kind), err
    assert sha256s(lake) == before

    status, out, err = run_cli(capsys, "models", "run", "--lake", str(lake), "--skip-invalid")
    assert status == 0, err
    assert names([line for line in out.splitlines() if "skipped invalid input" in line], rel, kind), out
    assert_only_outputs_changed(before, sha256s(lake))
    after = dynamics_by_run(lake)
    if case == "duplicate_keys":  # both files hold every key of r1: neither can be trusted, r1 has no input left
        assert after == {"r2": baseline["r2"]}
    else:
        assert after == baseline
    (record,) = load_analyses(lake).values()
    assert names(record.units["r1"].skipped, rel, kind)
    assert record.units["r2"].skipped == ()


def names(lines: str | list[str], rel: str, kind: str) -> bool:
    """Whether a line names the file ``rel`` with the problem ``kind`` (a duplicated key names
    both of its files, the first in path order ahead)."""
    lines = lines.splitlines() if isinstance(lines, str) else lines
    return any(rel in line and f": {kind}: " in line for line in lines)


@pytest.mark.parametrize("case", sorted(NON_FINITE))
def test_models_read_nan_and_infinity_as_null(lake: Path, tmp_path: Path, case: str) -> None:
    """Every model reads a non-finite value as NULL (the design's finite_or_null): a file with
    one builds, and gives what its twin with NULL there gives."""
    column, row = NON_FINITE[case]
    place(lake, case)
    models.run(lake=lake, report=lambda _: None)
    twin = tmp_path / "twin"
    shutil.copytree(lake, twin)
    table = pq.read_table(corpus_file(case))
    values = table.column(column).to_pylist()
    assert not math.isfinite(values[row])  # what the corpus planted
    values[row] = None
    (twin / R1 / f"part-{case}.parquet").unlink()
    null_twin = table.set_column(table.schema.get_field_index(column), column, [values])
    ingest_files("geometry_state", [_write(tmp_path / "null.parquet", null_twin)], lake=twin)
    models.run(lake=twin, report=lambda _: None)
    assert read_rows(lake, DYN) == read_rows(twin, DYN)
    assert len(dynamics_by_run(lake)["r1"]) == 80  # the file's 40 rows were built


def _write(path: Path, table) -> Path:
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("value", FOLDER_IDS)
def test_models_fail_on_a_hostile_run_folder_then_skip_it(lake: Path, value: str, capsys) -> None:
    rel = f"geometry_state/analysis_id=capture-v1/run_id={value}"
    (lake / rel).mkdir()
    shutil.copyfile(corpus_file("r3"), lake / rel / "part-r3.parquet")
    before = sha256s(lake)
    status, _, err = run_cli(capsys, "models", "run", "--lake", str(lake))
    assert status == 2 and f"{rel}: unsafe_partition:" in err
    assert sha256s(lake) == before
    status, out, err = run_cli(capsys, "models", "run", "--lake", str(lake), "--skip-invalid")
    assert status == 0, err
    assert f"skipped invalid input {rel}: unsafe_partition:" in out
    assert sha256s(lake) == before  # the run is left out, and nothing else was stale
    assert sorted(p.name for p in (lake / DYN).glob("*/*")) == ["run_id=r1", "run_id=r2"]
