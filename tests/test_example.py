"""examples/modular_addition.py end to end on a tiny configuration: it trains, captures
through a session, builds the models and the catalog, and its lake passes the check."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

if os.environ.get("SQUIGGLE_REQUIRE_TORCH"):
    importlib.import_module("torch")
else:
    pytest.importorskip("torch")

from warehouse import check_lake  # noqa: E402
from warehouse.hashing import config_hash  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "modular_addition.py"
P, STEPS, CAPTURES, LAYERS, PROBES = 7, 30, 12, 2, 20
TINY = ["--p", str(P), "--steps", str(STEPS), "--captures", str(CAPTURES), "--d-model", "16", "--n-heads", "2",
        "--n-layers", str(LAYERS), "--probe-size", str(PROBES), "--seeds", "0", "1"]


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("example")
    lake, db = root / "lake", root / "warehouse.duckdb"
    out = subprocess.run([sys.executable, str(EXAMPLE), "--lake", str(lake), "--db", str(db), *TINY],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return lake, db, out.stdout


def rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_the_lake_is_clean_and_the_output_says_so(example) -> None:
    lake, _, stdout = example
    assert check_lake(lake) == []
    assert "warehouse check: lake is clean" in stdout
    for seed in (0, 1):
        assert f"seed {seed}: {STEPS} steps, {CAPTURES} captures" in stdout
        assert f"modadd-p{P}-s{seed}: train accuracy reaches 99% at step" in stdout
    assert "Consensus events of the cohort" in stdout


def test_both_seeds_form_one_cohort(example) -> None:
    _, db, _ = example
    runs = rows(db, "SELECT run_id, seed, status, config_json, config_hash FROM runs ORDER BY run_id")
    assert [(r[0], r[1], r[2]) for r in runs] == [(f"modadd-p{P}-s0", 0, "completed"), (f"modadd-p{P}-s1", 1, "completed")]
    for run in runs:
        assert config_hash(json.loads(run[3])) == run[4]
    assert runs[0][4] == runs[1][4]


def test_every_capture_reached_the_lake_and_the_models(example) -> None:
    _, db, _ = example
    per_capture = LAYERS * 4 + 1  # four modules per block, and the logits
    # 12 evenly spaced steps from 0 to 30, rounded: 0, 3, 5, 8, ...
    expected_steps = sorted({round(i * STEPS / (CAPTURES - 1)) for i in range(CAPTURES)})
    (n, steps, logits_layer), = rows(db, "SELECT count(*), count(DISTINCT step), max(layer) FROM geometry_state")
    assert (n, steps, logits_layer) == (2 * CAPTURES * per_capture, CAPTURES, LAYERS)
    assert [r[0] for r in rows(db, "SELECT DISTINCT step FROM checkpoints ORDER BY step")] == expected_steps
    assert rows(db, "SELECT count(*) FROM geometry_dynamics") == [(2 * CAPTURES * per_capture,)]
    assert rows(db, "SELECT count(*) FROM probe_captures_index") == [(2 * CAPTURES,)]
    assert rows(db, "SELECT count(*), count(DISTINCT split) FROM samples") == [(PROBES, 1)]
    assert rows(db, "SELECT count(*) FROM metrics_scalar") == [(2 * CAPTURES * 4,)]  # loss, accuracy x train, val
    targets = {r[0] for r in rows(db, "SELECT DISTINCT target FROM warehouse_current_analyses WHERE built")}
    assert {"geometry_dynamics", "events_candidates", "events", "signatures", "matches"} <= targets
