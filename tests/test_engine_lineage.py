"""Column lineage: `models lineage` traces a model column back to the source columns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine_fixtures import dyn_sql, engine_sql  # noqa: F401 (fixtures; engine_sql is autouse)
from engine_fixtures import DYN
from model_fixtures import (
    REPO_SQL,
    cli,
    contract_model,
    copy_sql,
)
from warehouse import models
from warehouse.models import ModelError, load_project


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
    # the CTEs it passes through, nearest first, each at the line that opens it
    text = (REPO_SQL / "models" / "geometry_dynamics.sql").read_text().splitlines()
    line = {name: 1 + next(i for i, t in enumerate(text) if t.strip() in (f"{name} AS (", f"WITH {name} AS ("))
            for name in ("drift", "velocities", "history", "captures", "series_scales")}
    at = {name: f"{name} (geometry_dynamics.sql:{n})" for name, n in line.items()}
    assert r.stdout.splitlines()[1] == (f"  computed in: {at['drift']} <- {at['velocities']} <- {at['history']}"
                                        f" <- {at['captures']}, {at['series_scales']}")


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
