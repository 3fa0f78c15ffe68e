"""The model engine: checks before anything runs, literal parameters, fingerprints and the
lock, incremental builds, failure and crash safety, the build lock and column lineage."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from model_fixtures import (
    CAPTURE,
    CLI,
    REPO,
    REPO_SQL,
    changed,
    cli,
    contract_model,
    copy_sql,
    only_models_sql,
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
from warehouse import cli as warehouse_cli
from warehouse import contracts, lake as lk, models, writer
from warehouse.errors import LockBusy
from warehouse.models import ModelError, load_project, lock_problems, write_lock
from warehouse.models.project import default_sql_dir
from warehouse.models import runner
from warehouse.models.compile import canonical, sql_literal
from warehouse.models.state import analyses_dir, build_lock, load_analyses
from warehouse.scan import select_dataset

STEPS = range(0, 100, 10)  # ten captures per series
ROWS_PER_RUN = len(STEPS) * 2 * 2  # two layers, a pooled and a per-sample series each
DYN = "geometry_dynamics"


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="session")
def dyn_sql(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's sql/ with geometry_dynamics as its only model."""
    return only_models_sql(tmp_path_factory.mktemp("engine") / "sql", DYN)


@pytest.fixture(autouse=True)
def engine_sql(dyn_sql: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's behaviour is tested on one model, whatever else the repository holds."""
    monkeypatch.setenv("SQUIGGLE_SQL", str(dyn_sql))


def build(lake: Path, **kw) -> list[runner.ModelResult]:
    lines: list[str] = []
    results = models.run(lake=lake, report=lines.append, **kw)
    for r, line in zip(results, lines):
        assert line == (r.plan.describe() if kw.get("dry_run") else r.describe())
    return results


def only(results: list) -> runner.ModelResult:
    assert len(results) == 1, [r.plan.name for r in results]
    return results[0]


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """Two runs of geometry_state (analysis capture-v1), not yet built."""
    root = tmp_path / "lake"
    write_runs(root, {"r1": STEPS, "r2": STEPS})
    return root


@pytest.fixture
def built(lake: Path) -> tuple[Path, str]:
    """The two-run lake after a first build: (lake, geometry_dynamics analysis id)."""
    result = only(build(lake))
    return lake, result.plan.analysis_id


def in_process_cli(monkeypatch: pytest.MonkeyPatch, sql_dir: Path, *argv: str) -> int:
    """``warehouse ARGV`` in this process, with the engine's default sql/ folder at ``sql_dir``."""
    monkeypatch.setenv("SQUIGGLE_SQL", str(sql_dir))
    return warehouse_cli.main(list(argv))


def assert_names(message: str, model: str, path: Path) -> None:
    assert model in message, message
    assert str(path) in message, message


# ======================================================================================
# 1. Errors before anything runs
# ======================================================================================


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
        ("-- materialization: lake", "-- materialization: table", "materialization must be lake or view, not 'table'"),
        ("-- incremental: run_id", "-- incremental: by_run", "incremental must be run_id or full"),
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


BATCH_BY = "-- batch_by: signatures(kind, scope, vector_layout)"
PROBE, RUN_SCOPE = "probe_summaries", "-- runs: family_id IS NOT NULL AND probe_name IS NOT NULL"


@pytest.mark.parametrize(
    "model, old, new, expected",
    [
        ("matches", BATCH_BY, "-- batch_by: signatures[kind]", "cannot read batch_by 'signatures[kind]'"),
        ("matches", BATCH_BY, "-- batch_by: signature(kind)", "batch_by names unknown dataset 'signature'"),
        ("matches", BATCH_BY, "-- batch_by: signatures(kind, colour)", "columns signatures does not have: colour"),
        ("matches", BATCH_BY, "-- batch_by: runs(run_id)", "batch_by names runs, which the model does not read"),
        (DYN, "-- incremental: run_id", "-- incremental: run_id\n-- batch_by: geometry_state(layer)",
         "batch_by is for full lake models"),
        ("matches", "-- additions: signatures", "-- additions: families",
         "additions must name a dataset partitioned by run, not 'families'"),
        ("matches", "-- additions: signatures", "-- additions: runs", "additions names runs, which the model does not read"),
        (DYN, "-- incremental: run_id", "-- incremental: run_id\n-- additions: geometry_state",
         "additions is for full lake models"),
        ("matches", "AS timewarp_tolerance\n", "AS timewarp_tolerance{% if adding %}, 1 AS merged{% endif %}\n",
         "with `adding` true it must give the same columns"),
        (PROBE, RUN_SCOPE, "-- runs: family_id IS NOT NULL AND", "cannot read the runs condition"),
        (PROBE, RUN_SCOPE, "-- runs: colour = 'red'", "colour"),
        (PROBE, RUN_SCOPE, "-- runs: run_id IN (SELECT run_id FROM runs)", "must be one expression on runs' columns"),
        (PROBE, RUN_SCOPE, "-- runs: true GROUP BY run_id", "must be one expression on runs' columns"),
        (DYN, "-- incremental: run_id", "-- incremental: run_id\n-- runs: seed = 0", "a runs condition needs a model that reads runs"),
    ],
)
def test_bad_batch_by_additions_or_runs(tmp_path: Path, model: str, old: str, new: str, expected: str) -> None:
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


# ======================================================================================
# 2. Parameters reach the SQL only as literals
# ======================================================================================


INJECTIONS = [
    "' OR 1=1 --",
    "x'); DROP TABLE geometry_state; --",
    "5; DROP TABLE x",
    "a\\'b\\",
    "two\nlines; SELECT 1",
    "{{ 7 * 7 }} {% if true %}jinja{% endif %}",
    "$$ dollar $$ \"quoted\" /* c */",
]


@pytest.mark.parametrize("value", ["5; DROP TABLE x", "' OR 1=1 --", "5 OR 1=1", "5)", "5.0", "1e3", True])
def test_int_parameter_refuses_anything_but_an_int(lake: Path, value: object) -> None:
    with pytest.raises(ModelError, match="not a valid int") as err:
        models.run(lake=lake, params={DYN: {"volatility_window": value}}, report=quiet)
    assert "volatility_window" in str(err.value) and DYN in str(err.value)
    assert not (lake / DYN).exists()


def test_cli_int_parameter_injection_is_refused(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    r = cli("models", "run", "--lake", str(lake), "--param", "geometry_dynamics.volatility_window=5; DROP TABLE x")
    assert r.returncode == 2, r.stdout
    assert "'5; DROP TABLE x' is not a valid int" in r.stderr
    assert not lake.exists()


@pytest.fixture
def label_sql(tmp_path: Path) -> Path:
    """The repo's models plus ``label_probe``: one events_candidates row per run with a str parameter."""
    sql = copy_sql(tmp_path)
    contract_model(
        sql, "label_probe", "events_candidates", "geometry_state",
        {"metric": "{{ label }}", "event_id": "run_id", "layer": "layer", "step": "step"},
        params=["label: str = x | any text"],
        where="WHERE sample_id IS NULL AND layer = 0 AND step = 0",
    )
    return sql


def _without_value(tree: exp.Expression, value: str) -> exp.Expression:
    """``tree`` with the string literal ``value`` put back to the default 'x'."""
    tree = tree.copy()
    found = [n for n in tree.find_all(exp.Literal) if n.is_string and n.this == value]
    assert len(found) == 1, f"{value!r} is not exactly one string literal"
    found[0].replace(exp.Literal.string("x"))
    return tree


@pytest.mark.parametrize("value", INJECTIONS)
def test_str_parameter_is_a_quoted_literal(lake: Path, label_sql: Path, value: str) -> None:
    default = load_project(label_sql).models["label_probe"]
    model = load_project(label_sql, {"label_probe": {"label": value}}).models["label_probe"]
    assert sql_literal(value) in model.sql
    # the statement is the default one with another literal in the same place
    assert canonical(_without_value(model.tree, value)) == canonical(default.tree)
    assert model.dependencies == ("geometry_state",)
    assert model.logic_fingerprint == default.logic_fingerprint

    result = only(build(lake, sql_dir=label_sql, selected=["label_probe"], params={"label_probe": {"label": value}}))
    rows = read_rows(lake, "events_candidates", result.plan.analysis_id)
    metric = row_columns("events_candidates").index("metric")
    assert [r[metric] for r in rows] == [value, value]  # one row per run, the exact string
    assert len(visible_files(lake, "geometry_state")) == 2  # the inputs are untouched


def test_str_parameter_from_the_command_line(
    lake: Path, label_sql: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    value = "' OR 1=1 --"
    rc = in_process_cli(monkeypatch, label_sql, "models", "run", "--lake", str(lake), "--select", "label_probe",
                        "--param", f"label_probe.label={value}")
    assert rc == 0, capsys.readouterr().err
    rows = read_rows(lake, "events_candidates")
    metric = row_columns("events_candidates").index("metric")
    assert {r[metric] for r in rows} == {value}


@pytest.mark.parametrize(("default", "expected"), [("''", ""), ('""', ""), ("'fixed_v1'", "fixed_v1"), ("x", "x")])
def test_quoted_str_default_in_the_header_is_the_text_inside(tmp_path: Path, default: str, expected: str) -> None:
    sql = copy_sql(tmp_path)
    for other in (sql / "models").glob("*.sql"):  # this model alone
        other.unlink()
    contract_model(sql, "label_probe", "events_candidates", "geometry_state",
                   {"metric": "{{ label }}"}, params=[f"label: str = {default} | any text"])
    model = load_project(sql).models["label_probe"]
    assert model.params["label"] == expected
    assert f"{sql_literal(expected)} AS metric" in model.sql
    # a value given in Python (or on the command line) keeps its quotes
    given = load_project(sql, {"label_probe": {"label": "'q'"}}).models["label_probe"]
    assert given.params["label"] == "'q'"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", float("nan"), float("inf"), "1e999"])
def test_float_parameter_must_be_finite(tmp_path: Path, value: object) -> None:
    # nan and inf would otherwise render as the bare words nan / inf: column references
    sql = copy_sql(tmp_path)
    contract_model(sql, "scaled", "events_candidates", "geometry_state",
                   {"magnitude": "(eff_rank * {{ scale }})::FLOAT"}, params=["scale: float = 1.5"])
    assert "1.5" in load_project(sql).models["scaled"].sql
    assert "-2.0" in load_project(sql, {"scaled": {"scale": "-2"}}).models["scaled"].sql
    with pytest.raises(ModelError, match="not a valid float") as err:
        load_project(sql, {"scaled": {"scale": value}})
    assert "scaled" in str(err.value) and "scale" in str(err.value)


# ======================================================================================
# 3. Fingerprints and the lock file
# ======================================================================================


def _fingerprint(sql: Path) -> str:
    return load_project(sql).models[DYN].logic_fingerprint


def _split(text: str) -> tuple[str, str]:
    head, sep, body = text.partition("{% import")
    return head, sep + body


LAYOUT_EDITS = {
    "sql comments": lambda t: t.replace("WITH captures AS (", "-- a new comment\nWITH captures AS ( -- trailing\n")
    .replace("FROM drift", "/* block\n comment */ FROM drift -- the end"),
    "jinja comment": lambda t: t.replace("WITH captures AS (", "{# a Jinja comment #}\nWITH captures AS ("),
    "indentation and blank lines": lambda t: _split(t)[0]
    + "\n\n".join("\t" + line.strip() for line in _split(t)[1].splitlines()) + "\n\n\n",
    "keyword case": lambda t: t.replace("FROM drift", "from drift").replace("WINDOW by_step AS", "window by_step as"),
    "description": lambda t: t.replace("-- description: Layer B dynamics", "-- description: The Layer B dynamics"),
}


@pytest.mark.parametrize("edit", sorted(LAYOUT_EDITS))
def test_fingerprint_ignores_comments_and_layout(tmp_path: Path, edit: str) -> None:
    sql = copy_sql(tmp_path)
    original = _fingerprint(sql)
    path = model_path(sql, DYN)
    edited = LAYOUT_EDITS[edit](path.read_text())
    assert edited != path.read_text()
    path.write_text(edited)
    assert _fingerprint(sql) == original
    assert lock_problems(sql) == []


@pytest.mark.parametrize(
    "where, old, new",
    [
        ("model", "1.4826 * mad", "1.5 * mad"),
        ("model", "stddev_samp(", "stddev_pop("),
        ("model", "-- param volatility_window: int = 5", "-- param volatility_window: int = 6"),
        ("model", "-- incremental: run_id", "-- incremental: full"),
        ("macro", "CASE WHEN isfinite({{ column }}) THEN {{ column }} END",
         "CASE WHEN isfinite({{ column }}) AND {{ column }} > 0 THEN {{ column }} END"),
    ],
)
def test_fingerprint_changes_with_logic(tmp_path: Path, where: str, old: str, new: str) -> None:
    sql = copy_sql(tmp_path)
    original = _fingerprint(sql)
    path = model_path(sql, DYN) if where == "model" else sql / "macros" / "series.sql"
    assert path.read_text().count(old) == 1
    path.write_text(path.read_text().replace(old, new))
    assert _fingerprint(sql) != original


def test_parameter_values_do_not_change_the_logic_fingerprint() -> None:
    default = load_project().models[DYN]
    seven = load_project(params={DYN: {"volatility_window": 7}}).models[DYN]
    assert seven.logic_fingerprint == default.logic_fingerprint
    assert seven.sql != default.sql


def test_repo_lock_is_current(tmp_path: Path) -> None:
    assert lock_problems(REPO_SQL) == []
    # writing the lock again gives the same file
    sql = tmp_path / "sql"
    shutil.copytree(REPO_SQL, sql)
    write_lock(sql)
    assert (sql / "models.lock").read_bytes() == (REPO_SQL / "models.lock").read_bytes()
    r = cli("models", "check", env={"SQUIGGLE_SQL": str(REPO_SQL)})
    assert r.returncode == 0 and "models match sql/models.lock" in r.stdout


def test_lock_catches_logic_change_without_version_bump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    sql = copy_sql(tmp_path)
    path = edit_model(sql, DYN, "1.4826 * mad", "1.5 * mad")
    problems = lock_problems(sql)
    assert len(problems) == 1
    assert_names(problems[0], DYN, path)
    assert "logic changed" in problems[0] and "dyn@1" in problems[0] and "bump the header's version" in problems[0]

    capsys.readouterr()
    assert in_process_cli(monkeypatch, sql, "models", "check") == 1
    out = capsys.readouterr()
    assert "bump the header's version" in out.err and "1 model(s) out of step" in out.out

    # the lock will not re-pin a recorded version to new logic, which would hide the change
    with pytest.raises(ModelError, match="bump the header's version") as info:
        write_lock(sql)
    assert_names(str(info.value), DYN, path)
    assert in_process_cli(monkeypatch, sql, "models", "lock") == 2
    write_lock(sql, force=True)  # only for a version that was never released
    assert lock_problems(sql) == []
    assert in_process_cli(monkeypatch, sql, "models", "check") == 0


def test_lock_after_version_bump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sql = copy_sql(tmp_path)
    edit_model(sql, DYN, "1.4826 * mad", "1.5 * mad")
    path = edit_model(sql, DYN, "-- version: dyn@1", "-- version: dyn@2")
    problems = lock_problems(sql)
    assert len(problems) == 1 and "version dyn@2 is not recorded" in problems[0]
    assert_names(problems[0], DYN, path)
    assert in_process_cli(monkeypatch, sql, "models", "lock") == 0
    assert json.loads((sql / "models.lock").read_text())[DYN]["version"] == "dyn@2"
    assert lock_problems(sql) == []


def test_lock_names_new_and_removed_models(tmp_path: Path, label_sql: Path) -> None:
    problems = lock_problems(label_sql)
    assert len(problems) == 1 and "label_probe" in problems[0] and "not in sql/models.lock" in problems[0]
    write_lock(label_sql)
    model_path(label_sql, "label_probe").unlink()
    problems = lock_problems(label_sql)
    assert len(problems) == 1 and "'label_probe', which no longer exists" in problems[0]


# ======================================================================================
# 4. Incremental builds
# ======================================================================================


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

    monkeypatch.setattr(runner, "_compute", no_work)
    monkeypatch.setattr(runner, "work_connection", no_work)
    result = only(build(lake))
    assert result.plan.build == {} and result.plan.drop == [] and result.rows == 0
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
    assert sorted(record["units"]) == ["r1", "r2", "r3"] and record["rows"] == 3 * ROWS_PER_RUN
    assert record["last_build_units"] == 1


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
    assert records[old]["params"] == {"volatility_window": 5} and records[new]["params"] == {"volatility_window": 7}

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
    assert load_analyses(lake)[results[1].plan.analysis_id]["inputs"] == {DYN: results[0].plan.analysis_id}

    # an input change of one run flows downstream for that run only
    writer.write("geometry_state", geometry_rows("r2", range(100, 150, 10), seed=1), lake=lake)
    results = build(lake, sql_dir=sql, selected=[f"{DYN}+"])
    assert [r.plan.build for r in results] == [{"r2": "changed input"}, {"r2": "upstream changed"}]
    # the default repo project selects only geometry_dynamics with NAME+
    assert names(build(lake, selected=[f"{DYN}+"], dry_run=True)) == [DYN]


def test_changed_input_of_one_run_recomputes_only_that_run(built: tuple[Path, str]) -> None:
    lake, analysis = built
    r1_output = output_runs(lake, DYN, analysis)["r1"]
    old_digest = load_analyses(lake)[analysis]["units"]["r2"]["digest"]
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
    assert record["units"]["r2"]["rows"] == ROWS_PER_RUN + 20 and record["units"]["r2"]["digest"] != old_digest
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


def test_removed_input_run_removes_its_output(built: tuple[Path, str]) -> None:
    lake, analysis = built
    shutil.rmtree(lake / "geometry_state" / f"analysis_id={CAPTURE}" / "run_id=r2")
    result = only(build(lake))
    assert result.plan.build == {} and result.plan.drop == ["r2"]
    assert sorted(output_runs(lake, DYN, analysis)) == ["r1"]
    record = load_analyses(lake)[analysis]
    assert sorted(record["units"]) == ["r1"] and record["rows"] == ROWS_PER_RUN


def test_full_model_partitioned_by_run_records_its_rows(lake: Path, tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    edit_model(sql, DYN, "-- incremental: run_id", "-- incremental: full")
    result = only(build(lake, sql_dir=sql))
    analysis = result.plan.analysis_id
    assert result.plan.build == {"*": "first build"}
    assert result.rows == 2 * ROWS_PER_RUN and result.partitions == 2
    assert sorted(output_runs(lake, DYN, analysis)) == ["r1", "r2"]
    record = load_analyses(lake)[analysis]
    assert record["rows"] == 2 * ROWS_PER_RUN and record["units"]["*"]["rows"] == 2 * ROWS_PER_RUN

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
    edit_model(sql, DYN, "-- incremental: run_id", "-- incremental: full")
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


# ======================================================================================
# 5. Failure safety
# ======================================================================================


FAILURES = {
    "error()": "CASE WHEN act_norm_0 > 1000 THEN error('boom: act_norm ' || act_norm_0) ELSE drift_velocity END",
    "integer division by zero": "drift_velocity + (step // CASE WHEN act_norm_0 > 1000 THEN 0 ELSE 1 END) * 0",
}


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_failing_model_leaves_the_lake_as_it_was(lake: Path, tmp_path: Path, kind: str) -> None:
    sql = copy_sql(tmp_path)
    path = edit_model(sql, DYN, "drift_velocity::FLOAT AS drift_velocity", f"({FAILURES[kind]})::FLOAT AS drift_velocity")
    first = only(build(lake, sql_dir=sql))
    analysis = first.plan.analysis_id
    # r2 gets captures that make the model fail; r3 is new and fine
    writer.write("geometry_state", geometry_rows("r2", range(100, 150, 10), seed=1, act_norm=5000.0), lake=lake)
    write_runs(lake, {"r3": STEPS})
    before = snapshot(lake, content=True)
    with pytest.raises(ModelError) as err:
        models.run(lake=lake, sql_dir=sql, report=quiet)
    message = str(err.value)
    assert_names(message, DYN, path)
    assert "the SQL failed" in message
    assert ("boom: act_norm 5000" in message) if kind == "error()" else ("Division by zero" in message)
    assert "--- rendered SQL ---" in message and "WITH captures AS" in message and "FROM drift" in message
    assert snapshot(lake, content=True) == before
    assert not (lake / ".staging").exists()
    assert load_analyses(lake)[analysis]["units"].keys() == {"r1", "r2"}
    # the plan is unchanged: the next build would try the same work again
    assert only(build(lake, sql_dir=sql, dry_run=True)).plan.build == {"r2": "changed input", "r3": "new run"}


def test_failing_downstream_model_keeps_its_outputs_and_record(lake: Path, tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    contract_model(sql, "downstream", "events_candidates", DYN,
                   {"metric": "'drift'", "step": "step",
                    "magnitude": "CASE WHEN run_id = 'r3' THEN error('no r3 here') ELSE drift_velocity END::FLOAT"},
                   where="WHERE sample_id IS NULL")
    results = build(lake, sql_dir=sql)
    down = results[1].plan.analysis_id
    write_runs(lake, {"r3": STEPS})
    before = snapshot(lake, content=True)
    with pytest.raises(ModelError, match="no r3 here") as err:
        models.run(lake=lake, sql_dir=sql, report=quiet)
    assert_names(str(err.value), "downstream", model_path(sql, "downstream"))
    after = snapshot(lake, content=True)
    # geometry_dynamics published r3 and updated its record; nothing else moved
    diff = changed(before, after)
    assert diff and all(k.startswith(f"{DYN}/") or k == f"_meta/analyses/{results[0].plan.analysis_id}.json"
                        for k in diff), diff
    assert all(k in after for k in before)
    assert load_analyses(lake)[down]["units"].keys() == {"r1", "r2"}
    assert not (lake / ".staging").exists()


def _big_lake(lake: Path, runs: int, steps: int, first_step: int = 0) -> None:
    """``runs`` runs x ``steps`` captures x 4 layers x 20 samples of geometry_state."""
    schema = pa.schema([c.field for c in contracts.get("geometry_state").all_columns
                        if c.name not in ("schema_version", "created_at_utc")])
    for i in range(runs):
        s, layer, sample = np.meshgrid(first_step + np.arange(steps) * 10, np.arange(4), np.arange(20), indexing="ij")
        n = s.size
        rng = np.random.default_rng([i, first_step])
        data = {
            "run_id": [f"big{i}"] * n, "analysis_id": [CAPTURE] * n, "step": s.ravel(),
            "seed": np.full(n, i, dtype="int32"), "sample_set": ["eval"] * n,
            "sample_id": [f"s{k}" for k in sample.ravel()], "layer": layer.ravel().astype("int16"),
            "module": ["resid_post"] * n, "n_samples": np.full(n, 16, dtype="int32"),
            "dim": np.full(n, 8, dtype="int32"),
        }
        for d in contracts.DESCRIPTORS:
            data[d] = rng.random(n).astype("float32")
        writer.write("geometry_state", pa.table(data, schema=schema), lake=lake, create=True)


def _check_readable(lake: Path, counts: dict[str, set[int]]) -> dict[str, int]:
    """Every visible output file reads, each run partition holds one complete build, no key
    is there twice; the rows of each visible run partition."""
    files = visible_files(lake, DYN)
    by_run: dict[str, int] = {}
    for f in files:
        run = f.parent.name.split("=", 1)[1]
        by_run[run] = by_run.get(run, 0) + pq.read_table(f).num_rows
    for run, n in by_run.items():
        assert n in counts[run], (run, n, counts[run])
    if files:
        keys = ", ".join(contracts.get(DYN).primary_key)
        with duckdb.connect() as con:
            dup = con.execute(
                f"SELECT {keys}, count(*) FROM ({select_dataset(contracts.get(DYN), files)}) "
                "GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
            ).fetchall()
        assert dup == []
    for p in analyses_dir(lake).glob("*.json"):
        json.loads(p.read_text())
    return by_run


def _kill_when(cmd: list[str], lake: Path, phase: str, delay: float) -> tuple[int | None, bool]:
    """Start ``cmd``, SIGKILL it ``delay`` seconds after ``phase`` of the build is seen.

    Returns the exit status and whether the build was inside the model (its staging folder
    existed) when killed.
    """
    staging = lake / ".staging"
    earlier = set(staging.glob("*"))  # left by builds killed before this one

    def found(pattern: str) -> bool:
        # the build removes the staging area when it leaves it empty, maybe mid-listing
        try:
            return any(p for p in staging.glob(pattern) if staging / p.relative_to(staging).parts[0] not in earlier)
        except FileNotFoundError:
            return False

    seen = {
        "start": lambda: True,
        "model": lambda: found("*/out") or found("*/spill"),
        "copy": lambda: found("*/out/run_id=*/*.parquet"),
        "publish": lambda: found("*/publish"),
        "swap": lambda: found("*/trash/*"),
    }[phase]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.monotonic() + 60
    while proc.poll() is None and not seen() and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(delay)
    inside = found("*/out")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return proc.returncode, inside and proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_mid_build_keeps_outputs_and_the_next_build_completes(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    runs, steps, extra = 6, 1000, 100  # large enough that kills land inside the model
    _big_lake(lake, runs, steps)
    analysis = only(models.run(lake=lake, report=quiet)).plan.analysis_id
    before = {f"big{i}": steps * 80 for i in range(runs)}
    _big_lake(lake, runs, extra, first_step=steps * 10)  # every run gets new captures: all stale
    counts = {run: {n, n + extra * 80} for run, n in before.items()}

    # a full refresh rewrites every partition, so each attempt replaces outputs in place
    cmd = [str(CLI), "models", "run", "--lake", str(lake), "--full-refresh"]
    killed_inside = 0
    for phase, delay in [("start", 0.3), ("model", 0.0), ("model", 0.4), ("copy", 0.0),
                         ("publish", 0.0), ("swap", 0.0), ("swap", 0.002)]:
        status, inside = _kill_when(cmd, lake, phase, delay)
        killed_inside += inside
        _check_readable(lake, counts)
    assert killed_inside >= 3  # most builds really died inside the model

    r = cli("models", "run", "--lake", str(lake))
    assert r.returncode == 0, r.stderr
    assert _check_readable(lake, {run: {max(c)} for run, c in counts.items()}) == {
        run: max(c) for run, c in counts.items()}
    assert only(models.run(lake=lake, report=quiet, dry_run=True)).plan.build == {}

    clean = tmp_path / "clean"
    shutil.copytree(lake / "geometry_state", clean / "geometry_state")
    assert only(models.run(lake=clean, report=quiet)).plan.analysis_id == analysis
    assert read_rows(lake, DYN) == read_rows(clean, DYN)


# ======================================================================================
# 6. One build at a time
# ======================================================================================


def test_second_build_refuses_while_the_lock_is_held(built: tuple[Path, str]) -> None:
    lake, _ = built
    with build_lock(lake):
        r = cli("models", "run", "--lake", str(lake))
        with pytest.raises(LockBusy, match=f"pid {os.getpid()}"):
            models.run(lake=lake, report=quiet)
    assert r.returncode == 2
    assert "another build is running" in r.stderr and f"pid {os.getpid()}, started" in r.stderr
    assert "--wait" in r.stderr
    assert r.stdout == ""
    only(build(lake))  # released


def test_wait_queues_behind_the_running_build(lake: Path) -> None:
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with build_lock(lake):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    timer = threading.Timer(1.0, release.set)
    timer.start()
    started = time.perf_counter()
    result = only(build(lake, wait=True))
    waited = time.perf_counter() - started
    t.join()
    assert waited >= 0.9
    assert result.plan.build == {"r1": "first build", "r2": "first build"}


def test_cli_wait(lake: Path) -> None:
    with build_lock(lake):
        proc = subprocess.Popen([str(CLI), "models", "run", "--lake", str(lake), "--wait"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        time.sleep(1.5)
        assert proc.poll() is None  # still queued
        assert not (lake / DYN).exists()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "2 runs (first build)" in out


# ======================================================================================
# 7. Lineage
# ======================================================================================


def _lineage_sources(text: str) -> set[str]:
    return set(re.findall(r"^\s+(geometry_state\.\w+)", text, flags=re.M))


def test_cli_lineage_of_drift_velocity() -> None:
    r = cli("models", "lineage", "geometry_dynamics.drift_velocity")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("geometry_dynamics.drift_velocity")
    assert _lineage_sources(r.stdout) == {
        "geometry_state.eff_rank", "geometry_state.sv_entropy", "geometry_state.sparsity",
        "geometry_state.act_norm", "geometry_state.step",
    }


def test_lineage_through_models(tmp_path: Path) -> None:
    assert _lineage_sources(models.lineage(f"{DYN}.alignment_velocity")) == {
        "geometry_state.principal_angle_prev", "geometry_state.step"}
    sql = copy_sql(tmp_path)
    contract_model(sql, "downstream", "events_candidates", DYN, {"magnitude": "drift_accel"})
    text = models.lineage("downstream.magnitude", load_project(sql))
    lines = text.splitlines()
    assert lines[0].startswith("events_candidates.magnitude  (downstream")
    assert lines[1].strip().startswith("geometry_dynamics.drift_accel  (geometry_dynamics dyn@1)")
    assert _lineage_sources(text) == {
        "geometry_state.eff_rank", "geometry_state.sv_entropy", "geometry_state.sparsity",
        "geometry_state.act_norm", "geometry_state.step",
    }


def test_lineage_errors() -> None:
    with pytest.raises(ModelError, match="no output column 'drift'"):
        models.lineage(f"{DYN}.drift")
    with pytest.raises(ModelError, match="MODEL.COLUMN"):
        models.lineage("drift_velocity")
    r = cli("models", "lineage", "nope.x")
    assert r.returncode == 2 and "lineage takes MODEL.COLUMN" in r.stderr


def test_view_model_becomes_a_catalog_view(lake: Path, tmp_path: Path) -> None:
    from warehouse.catalog import build_catalog, connect

    sql = copy_sql(tmp_path)
    model_path(sql, "pooled_steps").write_text(
        "-- name: pooled_steps\n-- version: pooled@1\n-- target: pooled_steps\n-- materialization: view\n"
        "-- incremental: full\n-- description: captures per run of the pooled series.\n"
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
        assert runner.batch_bytes(con) == pytest.approx(2e9 / 32, rel=0.05)
    finally:
        con.close()
