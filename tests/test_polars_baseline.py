"""The polars baseline's formulas on a tiny hand-made geometry_state, against plain numpy:
dyn@1's delta, velocity and volatility of one series, and cpd@1's size and z at a level
shift (NaNs inside the windows are skipped)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pl = pytest.importorskip("polars")

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import polars_baseline  # noqa: E402  (bench/ is a folder of scripts, not a package)

W = polars_baseline.W
N = 24
SHIFT = 12  # the capture index at which layer 0's eff_rank steps up by 1
STEPS = np.cumsum([0, 3, 2, 5, 2, 8, 1, 4, 6, 2, 3, 5, 7, 1, 2, 4, 3, 6, 2, 5, 1, 3, 4, 2])


def _series(rng: np.random.Generator, shift: bool) -> dict[str, np.ndarray]:
    values = {d: 1.0 + k + 0.01 * rng.standard_normal(N) for k, d in enumerate(polars_baseline.DESCRIPTORS)}
    values["principal_angle_prev"][0] = np.nan
    if shift:
        values["eff_rank"][SHIFT:] += 1.0
        values["eff_rank"][[3, SHIFT + 2]] = np.nan  # one before the windows, one in the post window
    return values


def _rows(run: str, sample_set: str, sample_id: str | None, layer: int, values: dict) -> pl.DataFrame:
    return pl.DataFrame({
        "step": STEPS, "seed": np.full(N, 7, dtype=np.int32), "sample_set": [sample_set] * N,
        "sample_id": pl.Series([sample_id] * N, dtype=pl.String), "layer": np.full(N, layer, dtype=np.int16),
        "module": ["resid_post"] * N, **{d: values[d].astype(np.float32) for d in polars_baseline.DESCRIPTORS},
    }).with_columns(pl.lit(run).alias("run_id"))


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> tuple[Path, dict]:
    """Run r0: pooled layers 0 (eff_rank shifted, with NaNs) and 1, and a per-sample series of
    layer 0; run r1: per-sample rows only (two samples)."""
    rng = np.random.default_rng(3)
    shifted = _series(rng, shift=True)
    frame = pl.concat([
        _rows("r0", "a", None, 0, shifted),
        _rows("r0", "a", None, 1, _series(rng, shift=False)),
        _rows("r0", "a", "s0", 0, _series(rng, shift=False)),
        _rows("r1", "b", "s0", 0, _series(rng, shift=False)),
        _rows("r1", "b", "s1", 0, _series(rng, shift=False)),
    ])
    root = tmp_path_factory.mktemp("polars") / "lake"
    for (run,), rows in frame.partition_by("run_id", as_dict=True).items():
        folder = root / "geometry_state" / "analysis_id=capture-t" / f"run_id={run}"
        folder.mkdir(parents=True)
        rows.drop("run_id").write_parquet(folder / "part-0.parquet")
    return root, shifted


def _window_std(v: np.ndarray, i: int, ddof: int, width: int) -> float:
    window = v[max(0, i - width + 1):i + 1]
    window = window[~np.isnan(window)]
    return float(np.std(window, ddof=ddof)) if len(window) > ddof else np.nan


def test_dynamics_of_a_series_with_nans(lake) -> None:
    root, shifted = lake
    dynamics = polars_baseline.geometry_dynamics(polars_baseline.load(root)).collect()
    assert dynamics.height == 5 * N
    one = dynamics.filter((pl.col("run_id") == "r0") & pl.col("sample_id").is_null() & (pl.col("layer") == 0)).sort("step")
    x = shifted["eff_rank"].astype(np.float32).astype(np.float64)
    delta = np.concatenate([[np.nan], np.diff(x)])
    velocity = delta / np.concatenate([[np.nan], np.diff(STEPS)])
    volatility = [_window_std(velocity, i, 1, W) for i in range(N)]
    np.testing.assert_allclose(one["eff_rank_delta"].to_numpy(), delta, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(one["eff_rank_velocity"].to_numpy(), velocity, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(one["eff_rank_volatility"].to_numpy(), volatility, rtol=1e-5, equal_nan=True)
    assert np.isnan(volatility[:2]).all() and one["eff_rank_volatility"][:2].is_null().all()
    assert one["drift_from_init"][0] == 0.0 and one["drift_velocity"][0] is None
    assert one["volatility_window"].dtype == pl.Int16 and one["eff_rank_delta"].dtype == pl.Float32


def test_per_sample_runs_are_analysed_on_their_median() -> None:
    rows = pl.LazyFrame({
        "run_id": ["r1"] * 4, "sample_set": ["b", "b", "c", "b"], "sample_id": ["s0", "s1", "s0", "s2"],
        "layer": [0] * 4, "module": ["resid_post"] * 4, "step": [0, 0, 0, 1],
        **{d: [1.0, 2.0, 9.0, 5.0] for d in polars_baseline.DESCRIPTORS},
    })
    series = polars_baseline.analysed_series(rows).sort("step").collect()
    assert series["eff_rank"].to_list() == [1.5, 5.0]  # sample set b only; an even count averages


def test_change_point_at_the_level_shift(lake) -> None:
    root, shifted = lake
    events = polars_baseline.events_candidates(polars_baseline.load(root)).collect()
    single = events.filter((pl.col("run_id") == "r0") & (pl.col("layer") == 0) & (pl.col("metric") == "resid_post.eff_rank"))
    assert single.height == 1
    event = single.row(0, named=True)
    assert event["step"] == STEPS[SHIFT] and event["start_step"] <= STEPS[SHIFT] <= event["end_step"]

    x = shifted["eff_rank"].astype(np.float32).astype(np.float64)
    baseline, post = x[SHIFT - W:SHIFT], x[SHIFT:SHIFT + W]
    sigma = 1.4826 * np.nanmedian(np.abs(np.diff(x))) / np.sqrt(2)
    size = np.nanmedian(post) - np.nanmedian(baseline)
    mad = np.nanmedian(np.abs(baseline - np.nanmedian(baseline)))
    z = abs(size) / (1.4826 * max(mad, sigma / 1.4826, 1e-6 * abs(np.nanmedian(baseline)), 1e-12))
    assert event["metric_size"] == pytest.approx(size, rel=1e-6)
    assert event["baseline_mad"] == pytest.approx(mad, rel=1e-6)
    assert event["metric_z"] == pytest.approx(z, rel=1e-6) and event["magnitude"] == event["metric_z"]
    assert (event["novelty"], event["coherence"]) == (1.0, 0.0)  # layer 1 has no such event

    composite = events.filter((pl.col("layer") == 0) & (pl.col("metric") == "__composite__")).row(0, named=True)
    assert composite["step"] == STEPS[SHIFT] and composite["metric_z"] is None
    z_by_metric = json.loads(composite["metric_z_json"])
    assert sorted(z_by_metric) == sorted(f"resid_post.{d}" for d in polars_baseline.DESCRIPTORS)
    assert z_by_metric["resid_post.eff_rank"] == pytest.approx(event["metric_z"], rel=1e-6)
