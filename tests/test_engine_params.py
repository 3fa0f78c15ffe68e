"""Model parameters reach the SQL only as literals: types, ranges and injections."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlglot import exp

from engine_fixtures import dyn_sql, engine_sql, label_sql, lake  # noqa: F401 (fixtures; engine_sql is autouse)
from engine_fixtures import DYN, build, in_process_cli, only, quiet
from model_fixtures import (
    cli,
    contract_model,
    copy_sql,
    read_rows,
    row_columns,
    visible_files,
)
from warehouse import models
from warehouse.models import ModelError, load_project
from warehouse.models.compile import canonical
from warehouse.sql import sql_literal


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
