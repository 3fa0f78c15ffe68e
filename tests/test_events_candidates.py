"""events_candidates (cpd@2) against an independent numpy reading of its definition
(``cpd2_reference``): every output column, on hand-made and random lakes, compared on the
natural key (run_id, event_type, layer, metric, step)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cpd2_reference as ref
from model_fixtures import only_models_sql
from test_events_candidates_cpd1 import (
    FLOAT_COLUMNS, JSON_COLUMNS, KEY, V1_MODEL, build, built, close, geometry, read_geometry, write_as_another_tool,
)
from warehouse import models, writer
from warehouse.catalog import build_catalog
from warehouse.contracts import DESCRIPTORS
from warehouse.lake import init_lake
from warehouse.models import ModelError

MODEL = "events_candidates"
SINGLE, COMPOSITE = "change_point", "change_point_composite"


def model_sql(tmp_path: Path) -> Path:
    return only_models_sql(tmp_path / "sql", MODEL)


def expected(lake: Path, **params: Any) -> dict[tuple, dict]:
    return ref.reference(read_geometry(lake), ref.Params(**{k: v for k, v in params.items() if k != "sample_set"}),
                         params.get("sample_set", ""))


def assert_matches(got: dict[tuple, dict], want: dict[tuple, dict], analysis: str) -> None:
    assert sorted(got) == sorted(want)
    for key, exp_row in want.items():
        row = got[key]
        assert (row["start_step"], row["end_step"]) == (exp_row["start_step"], exp_row["end_step"]), key
        for col in FLOAT_COLUMNS:
            want_value = exp_row.get(col)
            want_value = None if want_value is None or math.isnan(want_value) else float(want_value)
            assert close(row[col], want_value), (key, col, row[col], want_value)
        for json_col, col in JSON_COLUMNS.items():
            if exp_row["json"] is None:
                assert row[json_col] is None, (key, json_col)
                continue
            obj = json.loads(row[json_col])
            assert list(obj) == sorted(exp_row["json"][col]), (key, json_col)
            for metric, value in exp_row["json"][col].items():
                value = None if math.isnan(value) else value
                assert close(obj[metric], value), (key, json_col, metric, obj[metric], value)
        ident = "|".join(map(str, (key[0], analysis, key[2], key[3], key[4], key[1])))
        assert row["event_id"] == hashlib.sha256(ident.encode()).hexdigest()[:32]
        assert row["analysis_id"] == analysis and row["schema_version"] == "events_candidates@2.0"


def noisy(rng: np.random.Generator, n: int, sd: float = 0.1, level: float = 5.0) -> np.ndarray:
    return level + sd * rng.standard_normal(n)


def test_a_level_step_is_one_event_at_its_first_capture(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = noisy(rng, 80)
    x[40:] += 2.0  # 20 noise units
    lake = init_lake(tmp_path / "lake")
    writer.write("geometry_state", geometry("step", 0, "resid_post", {"eff_rank": list(x)}), lake=lake)
    analysis = build(lake, model_sql(tmp_path))
    got = built(lake, analysis)
    [event] = [r for r in got.values() if r["event_type"] == SINGLE]
    # the smallest scale (4) finds it; its windows are captures 36..39 and 40..43
    xs = np.asarray(np.float32(x), dtype=np.float64)  # what the lake holds
    assert (event["metric"], event["step"], event["start_step"], event["end_step"]) == ("resid_post.eff_rank", 400, 360, 430)
    assert event["baseline_median"] == pytest.approx(np.median(xs[36:40]), rel=1e-6)
    assert event["metric_size"] == pytest.approx(np.median(xs[40:44]) - np.median(xs[36:40]), rel=1e-6)
    # the five flat descriptors have z = 0: the composite is |z| / sqrt 6
    [composite] = [r for r in got.values() if r["event_type"] == COMPOSITE]
    assert composite["step"] == 400 and composite["magnitude"] == pytest.approx(event["magnitude"] / math.sqrt(6), rel=1e-5)
    sizes = json.loads(composite["metric_sizes_json"])
    assert sizes["resid_post.sparsity"] == 0.0 and sizes["resid_post.eff_rank"] == pytest.approx(event["metric_size"], rel=1e-6)
    assert_matches(got, expected(lake), analysis)


def random_lake(tmp_path: Path, seed: int) -> Path:
    """Runs of several layers and modules with planted level, slope and variance changes,
    irregular steps, NULL and NaN captures, a run with only per-sample rows."""
    rng = np.random.default_rng(seed)
    lake = init_lake(tmp_path / "lake")
    rows: list[dict] = []
    for r in range(3):
        n = int(rng.integers(40, 260))
        steps = list(np.cumsum(rng.integers(1, 6, size=n)) * 10)
        for layer in range(2):
            for module in ("resid_post", "mlp_out"):
                values: dict[str, list] = {}
                for d in DESCRIPTORS:
                    t = np.arange(n)
                    x = noisy(rng, n, sd=float(rng.uniform(0.05, 0.3)))
                    c = int(rng.integers(n // 4, 3 * n // 4))
                    kind = rng.integers(0, 4)
                    if kind == 0:
                        x[c:] += rng.choice([-1, 1]) * rng.uniform(0.5, 3)
                    elif kind == 1:
                        x += np.maximum(t - c, 0) * rng.uniform(0.01, 0.05)
                    elif kind == 2:
                        x[c:] = x[c:].mean() + (x[c:] - x[c:].mean()) * 4
                    vals: list = list(x)
                    for k in rng.choice(n, size=int(rng.integers(0, 4)), replace=False):
                        vals[k] = None
                    values[d] = vals
                rows += geometry(f"run{r}", layer, module, values, steps=steps)
    writer.write("geometry_state", rows, lake=lake)
    # per-sample rows only: the median across three samples per step
    per_sample = []
    for s in range(3):
        x = noisy(rng, 60)
        x[30:] += 1.5
        per_sample += geometry("samples", 0, "resid_post", {"eff_rank": list(x)}, sample_id=f"s{s}")
    writer.write("geometry_state", per_sample, lake=lake)
    # NaN captures, written by another tool (the writer refuses NaN)
    x = list(noisy(rng, 70))
    x[20] = x[50] = math.nan
    x = [v + (2.0 if k >= 35 else 0.0) for k, v in enumerate(x)]
    write_as_another_tool(lake, geometry("nan", 0, "resid_post", {"act_norm": x}))
    return lake


@pytest.mark.parametrize("seed", [1, 2])
def test_random_lakes_match_the_reference(tmp_path: Path, seed: int) -> None:
    lake = random_lake(tmp_path, seed)
    analysis = build(lake, model_sql(tmp_path))
    got = built(lake, analysis)
    assert len([k for k in got if k[1] == SINGLE]) >= 10  # the planted changes are found
    assert_matches(got, expected(lake), analysis)


def test_parameters_reach_the_formula(tmp_path: Path) -> None:
    lake = random_lake(tmp_path, 5)
    params = {"min_scale": 2, "max_scale": 32, "alpha": 0.2, "trend_scale": 8, "clip": 2.0, "noise_window": 16,
              "tolerance": 5}
    analysis = build(lake, model_sql(tmp_path), **params)
    assert_matches(built(lake, analysis), expected(lake, **params), analysis)


def test_series_shorter_than_four_scales_give_no_event_and_no_error(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    rows = []
    for n in (1, 2, 3, 8, 15):
        rows += geometry(f"short{n}", 0, "resid_post", {"eff_rank": [1.0] * (n // 2) + [100.0] * (n - n // 2)})
    writer.write("geometry_state", rows, lake=lake)
    analysis = build(lake, model_sql(tmp_path))
    assert built(lake, analysis) == {}
    # with the smallest scale 2, 8 captures are enough for the jump to be found
    analysis = build(lake, model_sql(tmp_path / "two"), min_scale=2)
    got = built(lake, analysis)
    assert {k[0] for k in got} <= {"short8", "short15"} and ("short15", SINGLE, 0, "resid_post.eff_rank", 70) in got
    assert_matches(got, expected(lake, min_scale=2), analysis)


def test_nuisance_without_a_change_stays_quiet(tmp_path: Path) -> None:
    """A trend, a curve, a season, AR(1) noise (rho 0.9), Student t (3 df) and spikes, 600
    captures each: at most 1 false change point per 1,000 captures (the calibration
    target), none on the smooth nuisances."""
    rng = np.random.default_rng(8)
    n = 600
    u = np.arange(n) / n
    e = rng.standard_normal(n)
    ar = np.zeros(n)
    for k in range(1, n):
        ar[k] = 0.9 * ar[k - 1] + e[k]
    spikes = 0.2 * rng.standard_normal(n)
    spikes[rng.choice(n, 6, replace=False)] += 2.0
    series = {
        "eff_rank": 3 * u + 0.2 * rng.standard_normal(n),
        "sv_entropy": 4 * (u - 0.5) ** 2 + 0.2 * rng.standard_normal(n),
        "sparsity": 2 * np.sin(2 * np.pi * np.arange(n) / 30) + 0.2 * rng.standard_normal(n),
        "principal_angle_prev": 0.2 * ar,
        "principal_angle_init": 0.2 * rng.standard_t(3, n),
        "act_norm": spikes,
    }
    lake = init_lake(tmp_path / "lake")
    writer.write("geometry_state", geometry("calm", 0, "resid_post", {d: list(v) for d, v in series.items()}), lake=lake)
    analysis = build(lake, model_sql(tmp_path))
    got = built(lake, analysis)
    false = [k[3] for k in got if k[1] == SINGLE]
    assert len(false) <= len(series) * n // 1000  # 3,600 captures: at most 3
    assert not {"resid_post.eff_rank", "resid_post.sv_entropy", "resid_post.sparsity"} & set(false)
    assert_matches(got, expected(lake), analysis)


@pytest.mark.parametrize(("params", "message"), [
    ({"min_scale": 1}, "parameter min_scale = 1 is outside its range [2, 64]"),
    ({"max_scale": -4}, "parameter max_scale = -4 is outside its range [4, 4096]"),
    ({"alpha": 0.0}, "parameter alpha = 0.0 is outside its range [0.0001, 0.5]"),
    ({"min_scale": 64, "max_scale": 32}, "parameter min_scale = 64 is above max_scale = 32: no scale is left"),
])
def test_bad_parameters_are_refused_before_anything_runs(tmp_path: Path, params: dict, message: str) -> None:
    lake = init_lake(tmp_path / "lake")
    writer.write("geometry_state", geometry("r", 0, "resid_post", {"eff_rank": [1.0] * 20}), lake=lake)
    with pytest.raises(ModelError) as err:
        models.run(lake=lake, sql_dir=model_sql(tmp_path), params={MODEL: params}, dry_run=True, report=lambda _: None)
    assert f"model {MODEL}: {message}" in str(err.value)
    assert not (lake / MODEL).exists()


def test_a_cpd1_analysis_still_reads_beside_cpd2(tmp_path: Path) -> None:
    lake = random_lake(tmp_path, 4)
    sql = model_sql(tmp_path)
    model = sql / "models" / f"{MODEL}.sql"
    cpd2 = model.read_text()
    shutil.copyfile(V1_MODEL, model)
    v1 = build(lake, sql)
    model.write_text(cpd2)
    v2 = build(lake, sql)
    assert v1.startswith("cpd1-") and v2.startswith("cpd2_2-")
    assert_matches(built(lake, v2), expected(lake), v2)
    old = built(lake, v1)
    db = build_catalog(lake, tmp_path / "warehouse.duckdb", sql_dir=sql)
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        every = dict(con.execute(f"SELECT analysis_id, count(*) FROM {MODEL}_all GROUP BY analysis_id").fetchall())
        shown = {a for (a,) in con.execute(f"SELECT DISTINCT analysis_id FROM {MODEL}").fetchall()}
    assert every == {v1: len(old), v2: len(built(lake, v2))} and shown == {v2}
