"""The model engine refuses bad models, headers and outputs before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine_fixtures import dyn_sql, engine_sql, lake  # noqa: F401 (fixtures; engine_sql is autouse)
from engine_fixtures import DYN, assert_names, build, quiet
from model_fixtures import (
    cli,
    contract_model,
    copy_sql,
    only_models_sql,
    edit_model,
    model_path,
    snapshot,
)
from warehouse import lake as lk, models
from warehouse.models import ModelError, load_project
from warehouse.models.project import default_sql_dir
from warehouse.models.state import load_analyses


def test_cycle_between_two_lake_models_names_both_models_and_files(tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    a = contract_model(sql, "candidates_from_signatures", "events_candidates", "signatures")
    b = contract_model(sql, "signatures_from_candidates", "signatures", "events_candidates")
    with pytest.raises(ModelError) as err:
        load_project(sql)
    message = str(err.value)
    assert "cycle" in message
    assert_names(message, "candidates_from_signatures", a)
    assert_names(message, "signatures_from_candidates", b)
    lake = tmp_path / "lake"
    with pytest.raises(ModelError, match="cycle"):
        models.run(lake=lake, sql_dir=sql, report=quiet)
    assert not lake.exists()  # refused before the lake was touched


def test_model_reading_its_own_target_is_refused(tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    path = contract_model(sql, "self_reader", "events_candidates", "events_candidates")
    with pytest.raises(ModelError, match="cycle: self_reader -> self_reader") as err:
        load_project(sql)
    assert_names(str(err.value), "self_reader", path)


def test_two_models_writing_one_target_are_refused(tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    path = contract_model(sql, "second_dynamics", DYN, "geometry_state")
    with pytest.raises(ModelError, match="both write geometry_dynamics") as err:
        load_project(sql)
    assert_names(str(err.value), "second_dynamics", path)
    assert str(model_path(sql, DYN)) in str(err.value)


def test_unknown_table(tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    path = edit_model(sql, DYN, "FROM geometry_state", "FROM geometry_states")
    with pytest.raises(ModelError, match="reads unknown table 'geometry_states'") as err:
        load_project(sql)
    assert_names(str(err.value), DYN, path)


@pytest.mark.parametrize(
    "old, new, column",
    [
        # through CTEs and SELECT * to the geometry_state contract
        ("principal_angle_prev_0 / (step_0 - step_1) AS alignment_velocity",
         "principal_angle_previous_0 / (step_0 - step_1) AS alignment_velocity", "principal_angle_previous_0"),
        # a qualified reference to a CTE column that does not exist
        ("FROM drift\n", "FROM drift AS d WHERE d.stepp > 0\n", "stepp"),
    ],
)
def test_unknown_column(tmp_path: Path, old: str, new: str, column: str) -> None:
    sql = copy_sql(tmp_path)
    path = edit_model(sql, DYN, old, new)
    with pytest.raises(ModelError) as err:
        load_project(sql)
    assert column in str(err.value)
    assert_names(str(err.value), DYN, path)


def test_unknown_column_of_a_source_dataset(tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    path = contract_model(sql, "typo_model", "events_candidates", "geometry_state", {"metric": "modul"})
    with pytest.raises(ModelError, match="modul") as err:
        load_project(sql)
    assert_names(str(err.value), "typo_model", path)
    assert "geometry_state" in str(err.value)


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("    drift_from_init::FLOAT AS drift_from_init,\n", "", "missing: drift_from_init"),
        ("    drift_velocity::FLOAT AS drift_velocity,\n",
         "    drift_velocity::FLOAT AS drift_velocity,\n    1.0::FLOAT AS bonus,\n", "not in the contract: bonus"),
        # the engine adds analysis_id itself; a model must not produce it
        ("    drift_velocity::FLOAT AS drift_velocity,\n",
         "    drift_velocity::FLOAT AS drift_velocity,\n    'mine' AS analysis_id,\n", "not in the contract: analysis_id"),
    ],
)
def test_output_columns_must_match_the_target_contract(tmp_path: Path, old: str, new: str, expected: str) -> None:
    sql = copy_sql(tmp_path)
    path = edit_model(sql, DYN, old, new)
    with pytest.raises(ModelError, match="output columns differ from the geometry_dynamics contract") as err:
        load_project(sql)
    assert expected in str(err.value)
    assert_names(str(err.value), DYN, path)


def test_output_column_of_the_wrong_type_is_caught_before_writing(lake: Path, tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    path = edit_model(sql, DYN, "{{ volatility_window }}::SMALLINT AS volatility_window",
                      "{{ volatility_window }}::INTEGER AS volatility_window")
    load_project(sql)  # names and dependencies are fine: only running finds the type
    before = snapshot(lake, content=True)
    with pytest.raises(ModelError) as err:
        models.run(lake=lake, sql_dir=sql, report=quiet)
    message = str(err.value)
    assert "output column volatility_window is INTEGER" in message and "SMALLINT" in message
    assert_names(message, DYN, path)
    assert snapshot(lake, content=True) == before
    assert not (lake / DYN).exists()
    assert load_analyses(lake) == {}
    assert not (lake / ".staging").exists()


def test_output_breaking_the_contract_is_refused_before_publishing(lake: Path, tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    path = contract_model(
        sql, "bad_events", "events_candidates", "geometry_state",
        {"event_id": "run_id", "layer": "layer", "metric": "'m'", "step": "step",
         "event_type": "CASE WHEN layer = 0 THEN 'change_pont' ELSE 'change_point' END",
         "score": "CASE WHEN step = 0 THEN NULL ELSE 1.0 END::FLOAT"},
        where="WHERE sample_id IS NULL",
    )
    before = snapshot(lake, content=True)
    with pytest.raises(ModelError) as err:
        models.run(lake=lake, sql_dir=sql, selected=["bad_events"], report=quiet)
    message = str(err.value)
    assert_names(message, "bad_events", path)
    assert "event_type (" in message and "score (" in message and "nothing was written" in message
    assert snapshot(lake, content=True) == before
    assert not (lake / "events_candidates").exists()


def test_a_killed_builds_staging_is_removed_by_the_next_build(lake: Path) -> None:
    stale = lake / ".staging" / "build-0123456789abcdef" / "out"
    stale.mkdir(parents=True)
    (stale / "data_0.parquet").write_bytes(b"half a file")
    dead_writer = lake / ".staging" / "0123456789abcdef"  # a killed writer's: no process holds it
    dead_writer.mkdir()
    with lk.scratch_dir(lake) as live_writer:  # a running writer's staging: not the build's to remove
        (live_writer / "input.parquet").write_bytes(b"being written")
        build(lake)
        assert (live_writer / "input.parquet").read_bytes() == b"being written"
    assert not stale.parent.exists()
    assert not dead_writer.exists()


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("-- version: dyn@1\n", "", "header is missing version"),
        ("-- version: dyn@1", "-- version: dyn1", "version 'dyn1' must look like dyn@1"),
        ("-- kind: per_run", "-- kind: by_run", "unknown kind 'by_run'; the kinds are per_run, table, table_by_run, "
         "grouped, merging, view"),
        ("-- kind: per_run\n", "", "header is missing kind"),
        ("-- kind: per_run", "-- kind: table", "kind table is for a target not partitioned by run_id"),
        ("-- kind: per_run", "-- kind: view", "a view model's target must not be a dataset name ('geometry_dynamics')"),
        ("-- name: geometry_dynamics", "-- name: geometry_dynamic", "must equal the file name 'geometry_dynamics'"),
        ("-- target: geometry_dynamics", "-- target: runs", "must be an interpretation dataset, not 'runs'"),
        ("-- param volatility_window: int = 5", "-- param volatility_window: integer = 5", "cannot read parameter"),
        ("-- param volatility_window: int = 5", "-- param volatility_window = 5", "cannot read parameter"),
        ("-- param volatility_window: int = 5", "-- param volatility_window: int = five", "'five' is not a valid int"),
    ],
)
def test_bad_header(tmp_path: Path, old: str, new: str, expected: str) -> None:
    sql = copy_sql(tmp_path)
    path = edit_model(sql, DYN, old, new)
    with pytest.raises(ModelError) as err:
        load_project(sql)
    assert expected in str(err.value)
    assert_names(str(err.value), DYN, path)


MERGING = "-- kind: merging (runs = signatures, groups = signatures(kind, scope, vector_layout), pairwise = true)"


PROBE, RUN_SCOPE = "probe_summaries", "-- runs: family_id IS NOT NULL AND probe_name IS NOT NULL"


@pytest.mark.parametrize(
    "model, old, new, expected",
    [
        ("matches", MERGING, "-- kind: merging (runs = signatures, groups = signatures[kind])",
         "cannot read groups 'signatures[kind]' of kind merging"),
        ("matches", MERGING, "-- kind: merging (runs = signatures, groups = signature(kind))",
         "groups names unknown dataset 'signature'"),
        ("matches", MERGING, "-- kind: merging (runs = signatures, groups = signatures(kind, colour))",
         "columns signatures does not have: colour"),
        ("matches", MERGING, "-- kind: merging (runs = signatures, groups = runs(run_id))",
         "groups runs, which the model does not read"),
        (DYN, "-- kind: per_run", "-- kind: per_run (groups = geometry_state(layer))",
         "kind per_run has no option 'groups' (it takes no options)"),
        ("matches", MERGING, "-- kind: merging (runs = families, groups = signatures(kind, scope, vector_layout))",
         "runs must name a dataset partitioned by run, not 'families'"),
        ("matches", MERGING, "-- kind: merging (runs = runs, groups = signatures(kind, scope, vector_layout))",
         "merges new runs of runs, which the model does not read"),
        (DYN, "-- kind: per_run", "-- kind: per_run (runs = geometry_state)",
         "kind per_run has no option 'runs' (it takes no options)"),
        ("matches", "AS timewarp_tolerance\n", "AS timewarp_tolerance{% if adding %}, 1 AS merged{% endif %}\n",
         "with `adding` true it must give the same columns"),
        (PROBE, RUN_SCOPE, "-- runs: family_id IS NOT NULL AND", "cannot read the runs condition"),
        (PROBE, RUN_SCOPE, "-- runs: colour = 'red'", "colour"),
        (PROBE, RUN_SCOPE, "-- runs: run_id IN (SELECT run_id FROM runs)", "must be one expression on runs' columns"),
        (PROBE, RUN_SCOPE, "-- runs: true GROUP BY run_id", "must be one expression on runs' columns"),
        (DYN, "-- kind: per_run", "-- kind: per_run\n-- runs: seed = 0", "a runs condition needs a model that reads runs"),
    ],
)
def test_bad_kind_options_or_runs(tmp_path: Path, model: str, old: str, new: str, expected: str) -> None:
    sql = only_models_sql(tmp_path / "sql", model)
    path = edit_model(sql, model, old, new)
    with pytest.raises(ModelError) as err:
        load_project(sql)
    assert expected in str(err.value)
    assert_names(str(err.value), model, path)


def test_unknown_param_name(lake: Path) -> None:
    before = snapshot(lake, content=True)
    with pytest.raises(ModelError) as err:
        models.run(lake=lake, params={DYN: {"volatility_windw": 7}}, report=quiet)
    message = str(err.value)
    assert "unknown parameter 'volatility_windw'" in message and "parameters: volatility_window" in message
    assert_names(message, DYN, model_path(default_sql_dir(), DYN))
    with pytest.raises(ModelError, match="unknown model.*geometry_dynamic\\b"):
        models.run(lake=lake, params={"geometry_dynamic": {"volatility_window": 7}}, report=quiet)
    assert not (lake / DYN).exists() and not (lake / "_meta" / "build.lock").exists()
    assert snapshot(lake, content=True) == before


def test_cli_refuses_unknown_param_before_touching_the_lake(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    r = cli("models", "run", "--lake", str(lake), "--param", "geometry_dynamics.volatility_windw=7")
    assert r.returncode == 2
    assert "unknown parameter 'volatility_windw'" in r.stderr
    assert_names(r.stderr, DYN, model_path(default_sql_dir(), DYN))
    r = cli("models", "plan", "--lake", str(lake), "--param", "volatility_window=7")
    assert r.returncode == 2 and "write MODEL.KEY=VALUE" in r.stderr
    assert not lake.exists()


def test_unknown_selection(lake: Path) -> None:
    with pytest.raises(ModelError, match="no model named 'nope'"):
        models.run(lake=lake, selected=["nope+"], report=quiet)


def test_a_missing_models_folder_is_refused(lake: Path, tmp_path: Path) -> None:
    r = cli("models", "plan", "--lake", str(lake), "--sql", str(tmp_path / "nosuch"))
    assert r.returncode == 2 and f"no models folder {tmp_path / 'nosuch' / 'models'}" in r.stderr
