"""Reading the catalog cannot write, and no identifier or parameter reaches SQL but as a literal.

Every statement that would change the catalog fails through ``warehouse.connect()`` and
leaves the file byte for byte as it was. Hostile values go in through the command line
and the Python API (``--param``, ``--input``, ``--select``, lake and catalog paths, the
resource settings) and come out as the plain values they are, or as a clear refusal.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from model_fixtures import only_models_sql, read_rows, write_runs
from reliability_fixtures import sha256s
from warehouse import build_catalog, check_lake, cli, connect, models, write
from warehouse.catalog import CatalogElsewhereWarning
from warehouse.models.state import load_analyses
from warehouse.lake import init_lake

INJECTION = "'; DROP TABLE runs; --"
STEPS = range(0, 100, 10)
DYN = "geometry_dynamics"


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def a_run(run_id: str) -> dict:
    return {"run_id": run_id, "seed": 0, "run_mode": "train_full", "model_id": "m", "config_json": "{}",
            "config_hash": "c", "status": "completed", "started_at_utc": "2026-01-01T00:00:00Z"}


@pytest.fixture(scope="module")
def dyn_sql(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return only_models_sql(tmp_path_factory.mktemp("read-only") / "sql", DYN)


@pytest.fixture(scope="module")
def catalogued(tmp_path_factory: pytest.TempPathFactory, dyn_sql: Path) -> tuple[Path, Path]:
    """A lake with runs, geometry and built dynamics, and its catalog: (lake, catalog)."""
    root = tmp_path_factory.mktemp("read-only")
    lake = init_lake(root / "lake")
    write("runs", [a_run("r1")], lake=lake)
    write_runs(lake, {"r1": STEPS, "r2": STEPS})  # and a runs row for r2
    models.run(lake=lake, sql_dir=dyn_sql, report=lambda _: None)
    return lake, build_catalog(lake, root / "w.duckdb", sql_dir=dyn_sql)


READ_ONLY = 'Cannot execute statement of type "{}" on database "warehouse" which is attached in read-only mode'
WRITES = {
    "CREATE TABLE t (a INTEGER)": READ_ONLY.format("CREATE"),
    "CREATE VIEW v AS SELECT 1 AS a": READ_ONLY.format("CREATE"),
    "CREATE OR REPLACE VIEW runs AS SELECT 1 AS a": READ_ONLY.format("CREATE"),
    "CREATE MACRO m() AS 1": READ_ONLY.format("CREATE"),
    "CREATE SEQUENCE s": READ_ONLY.format("CREATE"),
    "INSERT INTO warehouse_analyses (analysis_id) VALUES ('x')": READ_ONLY.format("INSERT"),
    "UPDATE warehouse_datasets SET n_files = 0": READ_ONLY.format("UPDATE"),
    "DELETE FROM warehouse_analyses": READ_ONLY.format("DELETE"),
    "DROP VIEW runs": READ_ONLY.format("DROP"),
    "DROP TABLE warehouse_datasets": READ_ONLY.format("DROP"),
    "ALTER TABLE warehouse_datasets ADD COLUMN x INTEGER": READ_ONLY.format("ALTER"),
    "ALTER VIEW runs RENAME TO runs2": READ_ONLY.format("ALTER"),
    "COMMENT ON VIEW runs IS 'x'": READ_ONLY.format("ALTER"),
    "INSERT INTO runs (run_id) VALUES ('x')": "runs is not an table",  # a view takes no rows at all
}


def test_statements_that_would_write_the_catalog_fail_and_change_nothing(catalogued: tuple[Path, Path]) -> None:
    _, db = catalogued
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with connect(db) as con:
        for statement, message in WRITES.items():
            with pytest.raises(duckdb.Error) as info:
                con.execute(statement)
            assert message in str(info.value), (statement, str(info.value))
        con.execute("CHECKPOINT warehouse")  # allowed, and writes nothing to a read-only file
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (2,)
        assert con.execute("SELECT count(*) FROM warehouse_analyses").fetchone() == (1,)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["lake", "w.duckdb"]  # no WAL, no scratch


def test_writing_needs_an_explicit_read_write_connection(catalogued: tuple[Path, Path], tmp_path: Path) -> None:
    _, db = catalogued
    copy = Path(shutil.copy(db, tmp_path / "copy.duckdb"))
    with pytest.warns(CatalogElsewhereWarning), connect(copy, read_only=False) as con:  # a copy, as it says
        con.execute("CREATE TABLE notes (a INTEGER)")
    with pytest.warns(CatalogElsewhereWarning), connect(copy) as con:
        assert con.execute("SELECT count(*) FROM notes").fetchone() == (0,)
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("INSERT INTO notes VALUES (1)")


def test_views_read_the_lake_but_a_query_cannot_reach_the_files_through_them(catalogued: tuple[Path, Path]) -> None:
    lake, db = catalogued
    before = sha256s(lake)
    with connect(db) as con:
        with pytest.raises(duckdb.Error):
            con.execute("INSERT INTO geometry_state SELECT * FROM geometry_state")
        assert con.execute("SELECT count(*) FROM geometry_state").fetchone() == (80,)
    assert sha256s(lake) == before


# ---------------------------------------------------------------------------------------
# Hostile values through the command line and the API


def test_a_text_parameter_is_a_literal(tmp_path: Path, capsys) -> None:
    lake = init_lake(tmp_path / "lake")
    write("runs", [a_run("r1")], lake=lake)
    write_runs(lake, {"r1": STEPS})
    before = sha256s(lake / "runs")
    value = f"x'); {INJECTION}"
    status, out, err = run_cli(capsys, "models", "run", "--lake", str(lake), "--select", "events_candidates",
                               "--param", f"events_candidates.sample_set={value}")
    assert status == 0, err
    (record,) = load_analyses(lake).values()
    assert record.params["sample_set"] == value  # the very text, as a value
    assert record.rows == 0  # no sample set is called that
    assert sha256s(lake / "runs") == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--param", f"{DYN}.volatility_window=5; {INJECTION}"], "is not a valid int"),
        (["--param", f"{INJECTION}.key=1"], "--param names unknown model(s)"),
        (["--param", f"{DYN}.{INJECTION}=1"], "unknown parameter"),
        (["--input", f"{DYN}.geometry_state={INJECTION}"], "is not a safe identifier"),
        (["--input", f"{DYN}.geometry_state=../x"], "is not a safe identifier"),
        (["--select", INJECTION], "no model named"),
    ],
    ids=["param-value", "param-model", "param-name", "input-injection", "input-path", "select"],
)
def test_hostile_command_line_values_are_refused_before_touching_the_lake(
    catalogued: tuple[Path, Path], dyn_sql: Path, tmp_path: Path, monkeypatch, capsys, argv: list[str], message: str
) -> None:
    monkeypatch.setenv("SQUIGGLE_SQL", str(dyn_sql))
    lake = tmp_path / "lake"
    shutil.copytree(catalogued[0], lake)
    before = sha256s(lake)
    status, out, err = run_cli(capsys, "models", "run", "--lake", str(lake), *argv)
    assert status == 2 and out == ""
    assert message in err, err
    assert sha256s(lake) == before


def test_lake_and_catalog_paths_with_quotes_and_sql(tmp_path: Path, dyn_sql: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SQUIGGLE_SQL", str(dyn_sql))
    folder = tmp_path / f"it's a \"lake\" {INJECTION}"
    lake, db = init_lake(folder / "lake"), folder / f"o'brien {INJECTION}.duckdb"
    write("runs", [a_run("r1")], lake=lake)
    write_runs(lake, {"r1": STEPS, "r2": STEPS})  # and a runs row for r2
    assert run_cli(capsys, "models", "run", "--lake", str(lake))[0] == 0
    assert run_cli(capsys, "catalog", "--lake", str(lake), "--db", str(db))[0] == 0
    status, out, _ = run_cli(capsys, "check", "--lake", str(lake))
    assert (status, out.strip()) == (0, "lake is clean")
    assert check_lake(lake) == []
    with connect(db) as con:
        assert con.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall() == [("r1",), ("r2",)]
        assert con.execute(f"SELECT count(*) FROM {DYN}").fetchone() == (len(read_rows(lake, DYN)),)
        assert con.execute("SELECT count(*) FROM geometry_state").fetchone() == (80,)


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("SQUIGGLE_MEMORY_LIMIT", "1GB'; ATTACH 'attached.duckdb' AS a; --", "is not a memory size"),
        ("SQUIGGLE_THREADS", "2; SET threads = 1", "is not a number of threads"),
    ],
)
def test_hostile_resource_settings_are_refused_as_values(
    tmp_path: Path, monkeypatch, capsys, variable: str, value: str, message: str
) -> None:
    lake = init_lake(tmp_path / "lake")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"run_id": "r1", "step": 1}) + "\n")
    status, _, err = run_cli(capsys, "ingest", "checkpoints", str(rows), "--lake", str(lake))
    assert status == 2 and f"{variable}={value!r} {message}" in err
    assert not (tmp_path / "attached.duckdb").exists()
    assert not (lake / "checkpoints").exists()
