"""The cache of compiled models: a second load parses nothing, any change of input recompiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse.models import cache, compile as compile_mod, load_project
from warehouse.models.spec import ModelError

from model_fixtures import copy_sql, edit_model


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SQUIGGLE_CACHE", str(folder))
    return folder


def _count_compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    compiled: list[str] = []
    real = compile_mod.compile_model

    def counting(spec, params, env):
        compiled.append(spec.name)
        return real(spec, params, env)

    monkeypatch.setattr("warehouse.models.project.compile_model", counting)
    return compiled


def test_second_load_comes_from_the_cache_and_equals_the_first(tmp_path: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sql = copy_sql(tmp_path)
    compiled = _count_compiles(monkeypatch)
    first = load_project(sql)
    assert sorted(compiled) == sorted(first.models)
    compiled.clear()
    second = load_project(sql)
    assert compiled == []
    assert second.order == first.order
    for name, model in first.models.items():
        again = second.models[name]
        assert (again.sql, again.dependencies, again.logic_fingerprint, again.output_columns, again.params) == (
            model.sql, model.dependencies, model.logic_fingerprint, model.output_columns, model.params)
        # the tree is parsed again on demand, to the same canonical SQL
        assert compile_mod.canonical(again.tree) == compile_mod.canonical(model.tree)
    assert len(list((private_cache / "models").glob("*.json"))) == 1


@pytest.mark.parametrize("change", ["model", "macro", "params"])
def test_any_change_of_input_compiles_again(tmp_path: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    sql = copy_sql(tmp_path)
    load_project(sql)
    compiled = _count_compiles(monkeypatch)
    params = {}
    if change == "model":
        edit_model(sql, "geometry_dynamics", "-- description:", "-- description: (edited)")
    elif change == "macro":
        macro = sql / "macros" / "series.sql"
        macro.write_text(macro.read_text() + "\n{# an edit #}\n")
    else:
        params = {"geometry_dynamics": {"volatility_window": "3"}}
    project = load_project(sql, params)
    assert sorted(compiled) == sorted(project.models)


def test_a_broken_model_is_refused_even_after_a_good_load(tmp_path: Path, private_cache: Path) -> None:
    sql = copy_sql(tmp_path)
    load_project(sql)
    edit_model(sql, "geometry_dynamics", "FROM geometry_state", "FROM geometry_statez")
    with pytest.raises(ModelError, match="geometry_statez"):
        load_project(sql)


def test_an_unusable_cache_only_costs_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("SQUIGGLE_CACHE", str(blocker))
    sql = copy_sql(tmp_path)
    assert load_project(sql).order == load_project(sql).order
    assert blocker.read_text() == "a file where the cache folder would be"


def test_a_corrupt_entry_is_ignored(tmp_path: Path, private_cache: Path) -> None:
    sql = copy_sql(tmp_path)
    expected = load_project(sql)
    (entry,) = (private_cache / "models").glob("*.json")
    entry.write_text("{ not json")
    assert load_project(sql).order == expected.order
    assert cache.load(entry.stem) is not None  # written again, whole
