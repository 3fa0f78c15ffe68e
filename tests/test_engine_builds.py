"""Incremental builds: what a build computes, records and rebuilds, batches included."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import duckdb
import pytest

from engine_fixtures import built, dyn_sql, engine_sql, lake  # noqa: F401 (fixtures; engine_sql is autouse)
from engine_fixtures import DYN, ROWS_PER_RUN, STEPS, build, only
from model_fixtures import (
    CAPTURE,
    REPO_SQL,
    changed,
    cli,
    contract_model,
    copy_sql,
    edit_model,
    geometry_rows,
    model_path,
    output_runs,
    read_rows,
    row_columns,
    snapshot,
    visible_files,
    write_runs,
)
from warehouse import models, writer
from warehouse.models import ModelError
from warehouse.models import compute
from warehouse.models.state import analyses_dir, load_analyses


def test_first_build_builds_every_run_and_records_the_analysis(lake: Path) -> None:
    result = only(build(lake))
    analysis = result.plan.analysis_id
    assert result.plan.build == {"r1": "first build", "r2": "first build"}
    assert re.fullmatch(r"dyn1-[0-9a-f]{12}", analysis)
    assert result.rows == 2 * ROWS_PER_RUN and result.partitions == 2
    outputs = output_runs(lake, DYN, analysis)
    assert sorted(outputs) == ["r1", "r2"] and all(len(files) == 1 for files in outputs.values())

    record = json.loads((analyses_dir(lake) / f"{analysis}.json").read_text())
    assert record["analysis_id"] == analysis and record["model"] == DYN and record["version"] == "dyn@1"
    assert record["params"] == {"volatility_window": 5}
    assert record["inputs"] == {"geometry_state": "newest per run"}
    assert record["input_sources"] == {"geometry_state": {CAPTURE: 2}}
    assert record["rows"] == 2 * ROWS_PER_RUN
    assert {u: v["rows"] for u, v in record["units"].items()} == {"r1": ROWS_PER_RUN, "r2": ROWS_PER_RUN}
    assert all(re.fullmatch(r"[0-9a-f]{16}", v["digest"]) for v in record["units"].values())
    assert record["logic_fingerprint"] == json.loads((REPO_SQL / "models.lock").read_text())[DYN]["fingerprint"]

    rows = read_rows(lake, DYN, analysis)
    assert len(rows) == 2 * ROWS_PER_RUN
    assert not (lake / ".staging").exists()


def test_second_build_does_no_model_work(built: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    lake, analysis = built
    before = snapshot(lake)

    def no_work(*args, **kw):
        raise AssertionError("model work in a build with nothing new")

    monkeypatch.setattr(compute, "compute", no_work)
    monkeypatch.setattr(compute, "work_connection", no_work)
    result = only(build(lake))
    assert result.plan.build == {} and result.plan.drop == () and result.rows == 0
    assert result.describe() == f"geometry_dynamics dyn@1 -> {analysis}: up to date (2 runs)"
    planned = only(build(lake, dry_run=True))
    assert "up to date" in planned.plan.describe()
    assert snapshot(lake) == before


def test_cli_plan_says_up_to_date(built: tuple[Path, str]) -> None:
    lake, analysis = built
    before = snapshot(lake)
    r = cli("models", "plan", "--lake", str(lake))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"geometry_dynamics dyn@1 -> {analysis}: up to date (2 runs)"
    r = cli("models", "run", "--lake", str(lake))
    assert r.returncode == 0 and "up to date" in r.stdout
    assert snapshot(lake) == before


def test_adding_a_run_computes_only_that_run(built: tuple[Path, str]) -> None:
    lake, analysis = built
    write_runs(lake, {"r3": STEPS})
    before = snapshot(lake)
    planned = only(build(lake, dry_run=True))
    assert planned.plan.build == {"r3": "new run"}
    assert "1 run (new run)" in planned.plan.describe()
    assert snapshot(lake) == before  # planning writes nothing

    result = only(build(lake))
    assert result.plan.build == {"r3": "new run"} and result.rows == ROWS_PER_RUN
    after = snapshot(lake)
    diff = changed(before, after)
    assert diff == {str(output_runs(lake, DYN, analysis)["r3"][0].relative_to(lake)),
                    f"_meta/analyses/{analysis}.json"}
    record = load_analyses(lake)[analysis]
    assert sorted(record.units) == ["r1", "r2", "r3"] and record.rows == 3 * ROWS_PER_RUN
    assert record.last_build_units == 1


def test_new_parameter_writes_a_new_analysis_beside_the_old(built: tuple[Path, str]) -> None:
    lake, old = built
    old_files = snapshot(lake / DYN / f"analysis_id={old}", content=True)
    result = only(build(lake, params={DYN: {"volatility_window": 7}}))
    new = result.plan.analysis_id
    assert new != old and result.plan.build == {"r1": "new parameters", "r2": "new parameters"}
    assert snapshot(lake / DYN / f"analysis_id={old}", content=True) == old_files

    columns = row_columns(DYN)
    window, vol = columns.index("volatility_window"), columns.index("eff_rank_volatility")
    old_rows, new_rows = read_rows(lake, DYN, old), read_rows(lake, DYN, new)
    assert len(old_rows) == len(new_rows) == 2 * ROWS_PER_RUN
    assert {r[window] for r in old_rows} == {5} and {r[window] for r in new_rows} == {7}
    assert [r[vol] for r in old_rows] != [r[vol] for r in new_rows]
    assert len(read_rows(lake, DYN)) == 4 * ROWS_PER_RUN  # both analyses readable together
    records = load_analyses(lake)
    assert records[old].params == {"volatility_window": 5} and records[new].params == {"volatility_window": 7}

    # back at the defaults: the old analysis is still current
    before = snapshot(lake)
    assert only(build(lake)).plan.build == {}
    assert only(build(lake, params={DYN: {"volatility_window": "7"}})).plan.build == {}
    assert snapshot(lake) == before


def test_full_refresh_recomputes_every_run(built: tuple[Path, str]) -> None:
    lake, analysis = built
    rows = read_rows(lake, DYN, analysis)
    before = snapshot(lake)
    time.sleep(0.01)
    result = only(build(lake, full_refresh=True))
    assert result.plan.build == {"r1": "full refresh", "r2": "full refresh"}
    assert result.rows == 2 * ROWS_PER_RUN
    outputs = output_runs(lake, DYN, analysis)
    assert all(len(files) == 1 for files in outputs.values())
    assert all(str(f.relative_to(lake)) in changed(before, snapshot(lake)) for files in outputs.values() for f in files)
    assert read_rows(lake, DYN, analysis) == rows
    assert only(build(lake)).plan.build == {}


def test_selection_with_downstream_models(lake: Path, tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    contract_model(sql, "downstream", "events_candidates", DYN,
                   {"metric": "'drift'", "step": "step", "magnitude": "drift_velocity"},
                   where="WHERE sample_id IS NULL")
    names = lambda rs: [r.plan.name for r in rs]  # noqa: E731
    assert names(build(lake, sql_dir=sql, selected=[DYN], dry_run=True)) == [DYN]
    assert names(build(lake, sql_dir=sql, selected=["downstream"], dry_run=True)) == ["downstream"]
    results = build(lake, sql_dir=sql, selected=[f"{DYN}+"])
    assert names(results) == [DYN, "downstream"]
    assert all(r.plan.build == {"r1": "first build", "r2": "first build"} for r in results)
    # the downstream model read the analysis its upstream model just wrote
    assert results[1].plan.inputs[DYN].analysis == results[0].plan.analysis_id
    assert load_analyses(lake)[results[1].plan.analysis_id].inputs == {DYN: results[0].plan.analysis_id}

    # an input change of one run flows downstream for that run only
    writer.write("geometry_state", geometry_rows("r2", range(100, 150, 10), seed=1), lake=lake)
    results = build(lake, sql_dir=sql, selected=[f"{DYN}+"])
    assert [r.plan.build for r in results] == [{"r2": "changed input"}, {"r2": "upstream changed"}]
    # the default repo project selects only geometry_dynamics with NAME+
    assert names(build(lake, selected=[f"{DYN}+"], dry_run=True)) == [DYN]


def test_changed_input_of_one_run_recomputes_only_that_run(built: tuple[Path, str]) -> None:
    lake, analysis = built
    r1_output = output_runs(lake, DYN, analysis)["r1"]
    old_digest = load_analyses(lake)[analysis].units["r2"].digest
    result = writer.write("geometry_state", geometry_rows("r2", range(100, 150, 10), seed=1), lake=lake)
    assert result.rows_written == 20 and len(visible_files(lake, "geometry_state", CAPTURE)) == 3
    before = snapshot(lake)

    result = only(build(lake))
    assert result.plan.build == {"r2": "changed input"}
    assert result.rows == ROWS_PER_RUN + 20
    outputs = output_runs(lake, DYN, analysis)
    assert outputs["r1"] == r1_output and len(outputs["r2"]) == 1
    assert {k for k in changed(before, snapshot(lake)) if "run_id=r1" in k} == set()
    record = load_analyses(lake)[analysis]
    assert record.units["r2"].rows == ROWS_PER_RUN + 20 and record.units["r2"].digest != old_digest
    assert len(read_rows(lake, DYN, analysis)) == 2 * ROWS_PER_RUN + 20
    assert only(build(lake)).plan.build == {}


def test_deleted_output_partition_is_rebuilt(built: tuple[Path, str]) -> None:
    lake, analysis = built
    rows = read_rows(lake, DYN, analysis)
    shutil.rmtree(lake / DYN / f"analysis_id={analysis}" / "run_id=r1")
    planned = only(build(lake, dry_run=True))
    assert planned.plan.build == {"r1": "missing output"}
    assert "1 run (missing output)" in planned.plan.describe()
    assert only(build(lake)).plan.build == {"r1": "missing output"}
    assert read_rows(lake, DYN, analysis) == rows


def test_deleted_output_files_are_rebuilt(built: tuple[Path, str]) -> None:
    lake, analysis = built
    rows = read_rows(lake, DYN, analysis)
    for f in output_runs(lake, DYN, analysis)["r2"]:
        f.unlink()  # the folder stays, empty
    assert only(build(lake)).plan.build == {"r2": "missing output"}
    assert read_rows(lake, DYN, analysis) == rows


def test_one_removed_output_file_is_rebuilt(built: tuple[Path, str]) -> None:
    """Every file a unit published must still be there, not only some file of its folder."""
    lake, analysis = built
    record = load_analyses(lake)[analysis]
    folder = lake / DYN / f"analysis_id={analysis}" / "run_id=r1"
    stray = folder / "data-0000.parquet"
    shutil.copyfile(lake / record.units["r1"].files[0], stray)  # the folder keeps a file, not its own
    (lake / record.units["r1"].files[0]).unlink()
    assert only(build(lake)).plan.build == {"r1": "missing output"}


def test_removed_input_run_removes_its_output(built: tuple[Path, str]) -> None:
    lake, analysis = built
    shutil.rmtree(lake / "geometry_state" / f"analysis_id={CAPTURE}" / "run_id=r2")
    result = only(build(lake))
    assert result.plan.build == {} and result.plan.drop == ("r2",)
    assert sorted(output_runs(lake, DYN, analysis)) == ["r1"]
    record = load_analyses(lake)[analysis]
    assert sorted(record.units) == ["r1"] and record.rows == ROWS_PER_RUN


def test_full_model_partitioned_by_run_records_its_rows(lake: Path, tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    edit_model(sql, DYN, "-- kind: per_run", "-- kind: table_by_run")
    result = only(build(lake, sql_dir=sql))
    analysis = result.plan.analysis_id
    assert result.plan.build == {"*": "first build"}
    assert result.rows == 2 * ROWS_PER_RUN and result.partitions == 2
    assert sorted(output_runs(lake, DYN, analysis)) == ["r1", "r2"]
    record = load_analyses(lake)[analysis]
    assert record.rows == 2 * ROWS_PER_RUN and record.units["*"].rows == 2 * ROWS_PER_RUN

    assert only(build(lake, sql_dir=sql)).plan.build == {}
    write_runs(lake, {"r3": STEPS})
    assert only(build(lake, sql_dir=sql)).plan.build == {"*": "changed input"}
    assert sorted(output_runs(lake, DYN, analysis)) == ["r1", "r2", "r3"]
    shutil.rmtree(lake / DYN / f"analysis_id={analysis}")
    assert only(build(lake, sql_dir=sql)).plan.build == {"*": "missing output"}
    assert len(read_rows(lake, DYN, analysis)) == 3 * ROWS_PER_RUN


def test_full_model_keeps_the_files_of_runs_whose_output_did_not_change(lake: Path, tmp_path: Path) -> None:
    """A full model partitioned by run recomputes its whole table, but a run whose rows come
    out the same keeps its files (same names, same inodes), so a run_id model reading it
    redoes only the runs that changed."""
    sql = copy_sql(tmp_path)
    edit_model(sql, DYN, "-- kind: per_run", "-- kind: table_by_run")
    contract_model(sql, "downstream", "events_candidates", DYN,
                   {"metric": "'drift'", "step": "step", "magnitude": "drift_velocity"},
                   where="WHERE sample_id IS NULL")
    first = build(lake, sql_dir=sql)
    analysis = first[0].plan.analysis_id
    files = output_runs(lake, DYN, analysis)
    inodes = {run: [f.stat().st_ino for f in fs] for run, fs in files.items()}
    rows = read_rows(lake, DYN, analysis)

    write_runs(lake, {"r3": STEPS})
    results = build(lake, sql_dir=sql)
    assert [r.plan.build for r in results] == [{"*": "changed input"}, {"r3": "new run"}]
    after = output_runs(lake, DYN, analysis)
    assert {run: after[run] for run in files} == files
    assert {run: [f.stat().st_ino for f in after[run]] for run in files} == inodes
    assert sorted((r for r in read_rows(lake, DYN, analysis) if r[0] != "r3"), key=repr) == sorted(rows, key=repr)

    # a changed run gets new files; the others keep theirs
    writer.write("geometry_state", geometry_rows("r2", range(100, 150, 10), seed=1), lake=lake)
    results = build(lake, sql_dir=sql)
    assert [r.plan.build for r in results] == [{"*": "changed input"}, {"r2": "upstream changed"}]
    again = output_runs(lake, DYN, analysis)
    assert again["r1"] == files["r1"] and again["r3"] == after["r3"] and again["r2"] != files["r2"]
    assert len(read_rows(lake, DYN, analysis)) == 3 * ROWS_PER_RUN + 20
    # a dry run cannot know which runs will come out the same: it names every run it sees
    write_runs(lake, {"r4": STEPS})
    planned = build(lake, sql_dir=sql, dry_run=True)
    assert planned[1].plan.build == {r: "upstream changed" for r in ("r1", "r2", "r3")}


def test_run_ids_with_special_characters(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_runs(lake, {"0007": STEPS, "seed:1+a.b": STEPS})
    result = only(build(lake))
    assert sorted(result.plan.build) == ["0007", "seed:1+a.b"]
    rows = read_rows(lake, DYN, result.plan.analysis_id)
    assert {r[0] for r in rows} == {"0007", "seed:1+a.b"}
    assert only(build(lake)).plan.build == {}


def test_view_model_becomes_a_catalog_view(lake: Path, tmp_path: Path) -> None:
    from warehouse.catalog import build_catalog, connect

    sql = copy_sql(tmp_path)
    model_path(sql, "pooled_steps").write_text(
        "-- name: pooled_steps\n-- version: pooled@1\n-- target: pooled_steps\n-- kind: view\n"
        "-- description: captures per run of the pooled series.\n"
        "SELECT run_id, count(*) AS captures FROM geometry_state WHERE sample_id IS NULL GROUP BY run_id\n"
    )
    lines: list[str] = []
    models.run(lake=lake, sql_dir=sql, report=lines.append)
    assert any("pooled_steps pooled@1: a view in the catalog" in line for line in lines)
    assert not (lake / "pooled_steps").exists()
    want = duckdb.sql(
        f"SELECT run_id, count(*) FROM read_parquet('{lake}/geometry_state/*/*/*.parquet', hive_partitioning = true,"
        " hive_types = {'run_id': 'VARCHAR', 'analysis_id': 'VARCHAR'}) WHERE sample_id IS NULL GROUP BY run_id ORDER BY run_id"
    ).fetchall()
    db = build_catalog(lake, tmp_path / "w.duckdb", sql_dir=sql, views_dir=tmp_path / "no-views")
    with connect(db) as con:
        assert con.execute("SELECT run_id, captures FROM pooled_steps ORDER BY run_id").fetchall() == want
        comment = con.execute("SELECT comment FROM duckdb_views() WHERE view_name = 'pooled_steps'").fetchone()[0]
        assert "captures per run" in comment and "pooled@1" in comment


def test_sql_reads_its_analysis_id_with_getvariable(lake: Path, tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    contract_model(
        sql, "own_id", "events_candidates", "geometry_state",
        {"event_id": "getvariable('analysis_id')", "layer": "layer", "step": "step"},
        where="WHERE sample_id IS NULL AND layer = 0 AND step = 0",
    )
    analysis = only(build(lake, sql_dir=sql, selected=["own_id"])).plan.analysis_id
    rows = read_rows(lake, "events_candidates", analysis)
    event_id = row_columns("events_candidates").index("event_id")
    assert rows and {r[event_id] for r in rows} == {analysis}


def test_started_is_called_before_each_model_with_work(lake: Path) -> None:
    seen: list[str] = []
    lines: list[str] = []
    models.run(lake=lake, report=lines.append, started=lambda plan: seen.append(f"{plan.name} {len(lines)}"))
    assert seen == [f"{DYN} 0"]  # before its own line was reported
    models.run(lake=lake, report=lines.append, started=lambda plan: seen.append(plan.name))
    assert seen == [f"{DYN} 0"]  # nothing to do: not started


# ======================================================================================
# Batches of runs
# ======================================================================================


def test_runs_computed_in_batches_equal_one_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a batch budget of one byte every run is a batch of its own: the output is the
    same rows as one batch of every run, each run in its own partition."""
    lakes = {}
    for budget in ("1", str(1 << 40)):
        lake = tmp_path / f"lake-{budget}"
        write_runs(lake, {"r1": STEPS, "r2": STEPS, "r3": STEPS[:5]})
        monkeypatch.setenv("SQUIGGLE_BATCH_BYTES", budget)
        result = only(build(lake))
        assert result.plan.build == {"r1": "first build", "r2": "first build", "r3": "first build"}
        lakes[budget] = lake
    folder = lakes["1"] / DYN / f"analysis_id={result.plan.analysis_id}"
    assert sorted(p.name for p in folder.iterdir()) == ["run_id=r1", "run_id=r2", "run_id=r3"]
    assert read_rows(lakes["1"], DYN) == read_rows(lakes[str(1 << 40)], DYN)


def test_batch_budget_setting_is_checked(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUIGGLE_BATCH_BYTES", "64MB")
    with pytest.raises(ModelError, match="SQUIGGLE_BATCH_BYTES='64MB'"):
        build(lake)
    assert not (lake / DYN).exists()


def test_batch_budget_follows_the_memory_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQUIGGLE_BATCH_BYTES", raising=False)
    con = duckdb.connect()
    try:
        con.execute("SET memory_limit = '2GB'")  # DuckDB shows it as 1.8 GiB
        assert compute.batch_bytes(con) == pytest.approx(2e9 / 32, rel=0.05)
    finally:
        con.close()
