"""Shared pieces of the model engine's tests: a sql/ folder with one model, a two-run lake,
builds and helpers (pytest fixtures are imported by name into each test module)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_fixtures import (
    contract_model,
    copy_sql,
    only_models_sql,
    write_runs,
)
from warehouse import cli as warehouse_cli
from warehouse import models
from warehouse.models.build import ModelResult

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


def build(lake: Path, **kw) -> list[ModelResult]:
    lines: list[str] = []
    results = models.run(lake=lake, report=lines.append, **kw)
    for r, line in zip(results, lines):
        assert line == (r.plan.describe() if kw.get("dry_run") else r.describe())
    return results


def only(results: list) -> ModelResult:
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
