"""Model parameters: the range each header declares, and values outside it refused before
anything runs (from Python and from the command line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_fixtures import REPO_SQL, cli, contract_model, copy_sql, model_path, snapshot, write_runs
from warehouse import models
from warehouse.models import ModelError, load_project

# The range of every parameter of the repository's models, written down by hand from what
# each model's SQL needs: (values accepted, values refused). A parameter missing here (the
# sample_set texts) takes any value.
EXPECTED = {
    ("geometry_dynamics", "volatility_window"): ([2, 5, 100], [-3, 0, 1, 101]),
    ("events_candidates", "min_scale"): ([2, 4, 64], [-4, 0, 1, 65]),
    ("events_candidates", "max_scale"): ([4, 256, 4096], [-256, 0, 3, 4097]),
    ("events_candidates", "alpha"): ([0.0001, 0.01, 0.5], [0.0, -0.05, 0.6, 1.0]),
    ("events_candidates", "trend_scale"): ([2, 64, 4096], [0, 1, 4097]),
    ("events_candidates", "clip"): ([0.5, 3.0, 100.0], [0.0, -3.0, 0.4, 101.0]),
    ("events_candidates", "noise_window"): ([4, 64, 4096], [0, 3, 4097]),
    ("events_candidates", "tolerance"): ([0, 2, 40], [-1]),
    ("events", "min_tolerance"): ([0.0, 0.05, 1.0], [-0.01, 1.01]),
    ("events", "max_tolerance"): ([0.0, 0.25, 1.0], [-0.01, 1.01]),
    ("matches", "tolerance"): ([0.0, 0.05, 1.0], [-0.01, 1.5]),
    ("matches", "top_k"): ([1, 10, 500], [0, -2]),
    ("probe_events_candidates", "tolerance_captures"): ([0, 2, 1000], [-1, 1001]),
    ("probe_summaries", "module"): (["resid_pre", "attn_out", "mlp_out", "resid_post", "logits"], ["resid", "", "MLP_OUT"]),
    ("signatures", "bins"): ([2, 16, 64], [1, 0, -16]),
}
FREE_TEXT = {("events", "sample_set"), ("events_candidates", "sample_set"), ("probe_summaries", "sample_set"),
             ("signatures", "sample_set")}


def quiet(_: str) -> None:
    pass


def test_every_repository_parameter_has_its_range() -> None:
    declared = {(m, p) for m, model in load_project(REPO_SQL).models.items() for p in model.spec.params}
    assert declared == set(EXPECTED) | FREE_TEXT
    for model, param in FREE_TEXT:
        assert load_project(REPO_SQL).models[model].spec.params[param].allowed is None


@pytest.mark.parametrize(("model", "param"), sorted(EXPECTED))
def test_repository_ranges_accept_and_refuse(model: str, param: str) -> None:
    accepted, refused = EXPECTED[(model, param)]
    spec = load_project(REPO_SQL).models[model].spec
    for value in accepted:
        assert spec.params[param].parse(str(value), model) == value
    for value in refused:
        with pytest.raises(ModelError) as err:
            spec.params[param].parse(str(value), model)
        assert f"model {model}: parameter {param} = {value!r} is outside its range" in str(err.value)


def test_volatility_window_of_minus_three_is_refused_before_the_lake_is_touched(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_runs(lake, {"r1": range(0, 100, 10)})
    before = snapshot(lake, content=True)
    with pytest.raises(ModelError) as err:
        models.run(lake=lake, sql_dir=REPO_SQL, params={"geometry_dynamics": {"volatility_window": -3}}, report=quiet)
    assert str(err.value) == "model geometry_dynamics: parameter volatility_window = -3 is outside its range [2, 100]"
    assert snapshot(lake, content=True) == before

    r = cli("models", "run", "--lake", str(lake), "--param", "geometry_dynamics.volatility_window=-3",
            env={"SQUIGGLE_SQL": str(REPO_SQL)})
    assert r.returncode == 2
    assert "model geometry_dynamics: parameter volatility_window = -3 is outside its range [2, 100]" in r.stderr
    assert r.stdout == ""
    assert snapshot(lake, content=True) == before


def test_cli_names_the_choices_of_a_text_parameter(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    r = cli("models", "plan", "--lake", str(lake), "--param", "probe_summaries.module=resid",
            env={"SQUIGGLE_SQL": str(REPO_SQL)})
    assert r.returncode == 2
    assert ("model probe_summaries: parameter module = 'resid' is outside its range "
            "{resid_pre, attn_out, mlp_out, resid_post, logits}") in r.stderr
    assert not lake.exists()


# -- the header syntax, on a model of its own ---------------------------------------------------


def _model_with(tmp_path: Path, param: str) -> Path:
    """A ``sql/`` holding one model, ``probe``, with the parameter line ``param``."""
    sql = copy_sql(tmp_path)
    for other in (sql / "models").glob("*.sql"):
        other.unlink()
    (sql / "models.lock").write_text("{}\n")
    contract_model(sql, "probe", "events_candidates", "geometry_state", {"metric": "'m'"}, params=[param])
    return sql


@pytest.mark.parametrize(
    ("line", "shown", "inside", "outside"),
    [
        ("k: int = 3 in [1, 9] | a count", "[1, 9]", ["1", "9", "3"], ["0", "10", "-3"]),
        ("k: int = 3 in (1, 9) | a count", "(1, 9)", ["2", "8"], ["1", "9"]),
        ("x: float = 0.5 in (0, 1] | a share", "(0, 1]", ["1", "0.001", "1e-9"], ["0", "-0.5", "1.0001"]),
        ("x: float = 2.5 >= 2.5", ">= 2.5", ["2.5", "1e6"], ["2.4999"]),
        ("x: float = 1 > 0 | positive", "> 0", ["1e-300", "7"], ["0", "-1"]),
        ("k: int = -4 <= -1", "<= -1", ["-1", "-100"], ["0", "5"]),
        ("k: int = 0 < 1", "< 1", ["0", "-9"], ["1"]),
        ("s: str = 'a' in {a, 'b c', ''} | a choice", "{a, 'b c', ''}", ["a", "b c", ""], ["b", "A", "'a'"]),
        ("s: str = 'x in [1, 2]' | quoted text may hold anything", None, ["x in [1, 2]", "-1"], []),
    ],
)
def test_header_ranges(tmp_path: Path, line: str, shown: str | None, inside: list[str], outside: list[str]) -> None:
    param = next(iter(load_project(_model_with(tmp_path, line)).models["probe"].spec.params.values()))
    assert (str(param.allowed) if param.allowed else None) == shown
    for text in inside:
        param.parse(text, "probe")
    for text in outside:
        with pytest.raises(ModelError, match=f"model probe: parameter {param.name} = .* is outside its range"):
            param.parse(text, "probe")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("k: int = 0 in [1, 9] | a count", "parameter k: the default 0 is outside its range [1, 9]"),
        ("x: float = 0 > 0", "parameter x: the default 0.0 is outside its range > 0"),
        ("s: str = 'c' in {a, b}", "parameter s: the default 'c' is outside its range {a, b}"),
        ("k: int = 3 in [9, 1]", "parameter k: the range 'in [9, 1]' holds no value"),
        ("k: int = 3 in [3, 3)", "parameter k: the range 'in [3, 3)' holds no value"),
        ("k: int = 3 in [1 9]", "cannot read the range 'in [1 9]' of a int parameter"),
        ("k: int = 3 in [1, 9.5]", "'9.5' is not a valid int"),
        ("k: int = 3 in {1, 3}", "cannot read the range 'in {1, 3}' of a int parameter"),
        ("s: str = 'a' in [a, b]", "cannot read the range 'in [a, b]' of a str parameter"),
        ("s: str = 'a' in {a, , b}", "the choices 'in {a, , b}' must be distinct and not empty"),
        ("s: str = 'a' in {a, a}", "the choices 'in {a, a}' must be distinct and not empty"),
        ("b: bool = true in {true}", "a bool parameter takes no range"),
    ],
)
def test_bad_header_range_names_the_file_and_parameter(tmp_path: Path, line: str, message: str) -> None:
    sql = _model_with(tmp_path, line)
    with pytest.raises(ModelError) as err:
        load_project(sql)
    assert message in str(err.value)
    assert str(model_path(sql, "probe")) in str(err.value)


def test_range_text_does_not_change_the_fingerprint_or_the_analysis(tmp_path: Path) -> None:
    sql = _model_with(tmp_path, "k: int = 3 | a count")
    plain = load_project(sql).models["probe"]
    path = model_path(sql, "probe")
    path.write_text(path.read_text().replace("k: int = 3 | a count", "k: int = 3 in [1, 9] | a count"))
    ranged = load_project(sql).models["probe"]
    assert ranged.spec.params["k"].allowed is not None
    assert (ranged.logic_fingerprint, ranged.params, ranged.sql) == (plain.logic_fingerprint, plain.params, plain.sql)
