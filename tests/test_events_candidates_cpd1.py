"""The released events_candidates cpd@1 (kept at tests/data/models/) against an independent numpy
reading of design.md's formulas: a lake that holds cpd@1 analyses still gets what they computed.

The reference reads geometry_state back from the lake (the float32 values the model reads),
so it sees exactly the model's input; every output column is compared on the natural key
(run_id, event_type, layer, metric, step).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from model_fixtures import only_models_sql
from warehouse import demo, models, writer
from warehouse.contracts import DESCRIPTORS, GEOMETRY_STATE
from warehouse.lake import init_lake

MODEL = "events_candidates"
W, Z_MIN, TOLERANCE = 5, 4.0, 2
SINGLE = "change_point"
COMPOSITE = "change_point_composite"
DIAGNOSTICS = (
    "metric_size", "metric_z", "baseline_median", "baseline_mad",
    "volatility_event", "volatility_baseline", "volatility_ratio",
)
FLOAT_COLUMNS = (
    "score", "magnitude", "structure_modifier", "magnitude_eff", "coherence", "novelty",
    *DIAGNOSTICS, "volatility_ratio_agg",
)
JSON_COLUMNS = {("metric_sizes" if d == "metric_size" else d) + "_json": d for d in DIAGNOSTICS}
KEY = ("run_id", "event_type", "layer", "metric", "step")


# -- the reference ------------------------------------------------------------------------


def read_geometry(lake: Path) -> list[dict]:
    """Every geometry_state row of the lake, with NaN for NULL descriptors."""
    hive = pa.schema([("analysis_id", pa.string()), ("run_id", pa.string())])
    table = pq.read_table(lake / "geometry_state", partitioning=ds.partitioning(hive, flavor="hive"))
    cols = {c: table.column(c).to_pylist() for c in ("run_id", "sample_set", "sample_id", "layer", "module", "step")}
    values = {d: table.column(d).to_numpy(zero_copy_only=False).astype(np.float64) for d in DESCRIPTORS}
    rows = []
    for k in range(table.num_rows):
        row = {c: cols[c][k] for c in cols}
        row.update({d: values[d][k] for d in DESCRIPTORS})  # NULL reads as NaN
        rows.append(row)
    return rows


def analysed_series(rows: list[dict], sample_set: str = "") -> dict[str, dict[tuple, tuple[np.ndarray, np.ndarray]]]:
    """Per run, its series (layer, module) -> (steps, values[capture, descriptor]).

    A run is analysed on the pooled rows of its chosen sample set (the parameter, else the
    alphabetically first with pooled rows); a run with only per-sample rows there takes the
    median across samples of each step, on its alphabetically first sample set.
    """
    by_run: dict[str, list[dict]] = {}
    for r in rows:
        if sample_set in ("", r["sample_set"]):
            by_run.setdefault(r["run_id"], []).append(r)
    out = {}
    for run, run_rows in by_run.items():
        pooled_sets = sorted({r["sample_set"] for r in run_rows if r["sample_id"] is None})
        chosen = pooled_sets[0] if pooled_sets else min(r["sample_set"] for r in run_rows)
        cells: dict[tuple, dict[int, list[np.ndarray]]] = {}
        for r in run_rows:
            if r["sample_set"] == chosen and (r["sample_id"] is None) == bool(pooled_sets):
                x = np.array([r[d] for d in DESCRIPTORS])
                cells.setdefault((r["layer"], r["module"]), {}).setdefault(r["step"], []).append(x)
        series = {}
        for key, by_step in cells.items():
            steps = np.array(sorted(by_step))
            values = np.array([
                by_step[s][0] if len(by_step[s]) == 1 else nan_median(np.array(by_step[s]).T) for s in steps
            ])
            series[key] = (steps, values)
        out[run] = series
    return out


def nan_median(a: np.ndarray) -> np.ndarray:
    """Median along the last axis skipping NaN (the mean of the middle two of an even
    count); NaN where there is no value."""
    a = np.sort(a, axis=-1)  # NaN sorts last
    n = np.sum(~np.isnan(a), axis=-1)
    lo = np.take_along_axis(a, np.maximum((n - 1) // 2, 0)[..., None], -1)[..., 0]
    hi = np.take_along_axis(a, np.minimum(n // 2, a.shape[-1] - 1)[..., None], -1)[..., 0]
    return np.where(n > 0, (lo + hi) / 2, np.nan)


def window_stats(x: np.ndarray, w: int) -> dict[str, np.ndarray]:
    """design.md's per-index statistics of one series (NaN = NULL), NaN outside w..n-w."""
    n = len(x)
    stats = {k: np.full(n, np.nan) for k in (*DIAGNOSTICS, "contrast")}
    if n < 2 * w:
        return stats
    idx = np.arange(w, n - w + 1)
    before = np.stack([x[i - w:i] for i in idx])
    after = np.stack([x[i:i + w] for i in idx])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as NULL
        sigma = 1.4826 * nan_median(np.abs(np.diff(x))) / math.sqrt(2)
        bm = nan_median(before)
        mad = nan_median(np.abs(before - bm[:, None]))
        size = nan_median(after) - bm
        # np.maximum propagates NaN: a NULL term leaves m NULL
        m = np.maximum(np.maximum(mad, sigma / 1.4826), np.maximum(1e-6 * np.abs(bm), 1e-12))
        vb = np.nanstd(np.diff(before, axis=1), axis=1)
        ve = np.nanstd(np.diff(after, axis=1), axis=1)
        stats["contrast"][idx] = np.abs(np.nanmean(after, axis=1) - np.nanmean(before, axis=1))
    stats["metric_size"][idx] = size
    stats["metric_z"][idx] = np.abs(size) / (1.4826 * m)
    stats["baseline_median"][idx] = bm
    stats["baseline_mad"][idx] = mad
    stats["volatility_baseline"][idx] = vb
    stats["volatility_event"][idx] = ve
    stats["volatility_ratio"][idx] = ve / np.maximum(vb, 1e-12)
    return stats


def stretches(score: np.ndarray, z_min: float) -> list[list[int]]:
    """Maximal runs of consecutive indices with score >= z_min (NaN is no candidate)."""
    runs: list[list[int]] = []
    for i in np.flatnonzero(np.nan_to_num(score, nan=-np.inf) >= z_min):
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(int(i))
        else:
            runs.append([int(i)])
    return runs


def peak(indices: list[int], by: np.ndarray) -> int:
    """The index with the largest value of ``by``, the earliest on ties."""
    best = indices[0]
    for i in indices[1:]:
        if by[i] > by[best]:
            best = i
    return best


def list_median(values: list[float]) -> float:
    vals = sorted(v for v in values if not math.isnan(v))
    if not vals:
        return math.nan
    n = len(vals)
    return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2


def structure_modifier(ratio: float) -> float:
    # a NULL ratio is read as no change of volatility (the model's documented choice)
    if math.isnan(ratio) or ratio <= 1:
        return 1.0
    return 1 / (1 + math.log2(ratio))


def reference(
    rows: list[dict], *, w: int = W, z_min: float = Z_MIN, tolerance: int = TOLERANCE, sample_set: str = ""
) -> dict[tuple, dict]:
    """design.md's cpd@1 over the lake's geometry rows: natural key -> expected columns."""
    events: list[dict] = []
    for run, series in analysed_series(rows, sample_set).items():
        stats: dict[tuple, dict[str, np.ndarray]] = {}  # (layer, module, descriptor) -> stats
        steps: dict[tuple, np.ndarray] = {}
        present: dict[str, set[int]] = {}  # metric -> layers with some value of it
        for (layer, module), (st, values) in series.items():
            steps[(layer, module)] = st
            for k, d in enumerate(DESCRIPTORS):
                stats[(layer, module, d)] = window_stats(values[:, k], w)
                if np.isfinite(values[:, k]).any():
                    present.setdefault(f"{module}.{d}", set()).add(layer)
                    present.setdefault("__composite__", set()).add(layer)
        run_events = []
        # single-metric events
        for (layer, module, d), s in stats.items():
            st = steps[(layer, module)]
            for stretch in stretches(s["metric_z"], z_min):
                p = peak(stretch, s["contrast"])
                ratios = [
                    stats[(other, m, d)]["volatility_ratio"][p]
                    for (other, m, dd) in stats
                    if m == module and dd == d and p < len(stats[(other, m, d)]["volatility_ratio"])
                ]
                ev = {
                    "run_id": run, "event_type": SINGLE, "layer": layer, "metric": f"{module}.{d}", "i": p,
                    "step": int(st[p]), "start_step": int(st[stretch[0]]), "end_step": int(st[stretch[-1]]),
                    "magnitude": s["metric_z"][p], "ratio": s["volatility_ratio"][p],
                    "volatility_ratio_agg": list_median(ratios),
                }
                ev.update({c: s[c][p] for c in DIAGNOSTICS})
                run_events.append(ev)
        # composite events, per layer over every metric of the layer aligned by capture index
        for layer in sorted({layer for layer, _ in series}):
            modules = sorted(m for la, m in series if la == layer)
            n = max(len(steps[(layer, m)]) for m in modules)
            zs = np.full((n, len(modules) * len(DESCRIPTORS)), np.nan)
            rs = np.full_like(zs, np.nan)
            for a, m in enumerate(modules):
                for b, d in enumerate(DESCRIPTORS):
                    s = stats[(layer, m, d)]
                    zs[: len(s["metric_z"]), a * len(DESCRIPTORS) + b] = s["metric_z"]
                    rs[: len(s["metric_z"]), a * len(DESCRIPTORS) + b] = s["volatility_ratio"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                cz = np.sqrt(np.nanmean(zs**2, axis=1))
            def step_at(i: int) -> int:  # the modules of a layer share steps
                return min(int(steps[(layer, m)][i]) for m in modules if i < len(steps[(layer, m)]))

            for stretch in stretches(cz, z_min):
                p = peak(stretch, cz)
                ev = {
                    "run_id": run, "event_type": COMPOSITE, "layer": layer, "metric": "__composite__", "i": p,
                    "step": step_at(p), "start_step": step_at(stretch[0]), "end_step": step_at(stretch[-1]),
                    "magnitude": cz[p], "ratio": list_median(list(rs[p])), "volatility_ratio_agg": math.nan,
                }
                ev.update({c: math.nan for c in DIAGNOSTICS})
                for json_col, c in JSON_COLUMNS.items():
                    ev[json_col] = {
                        f"{m}.{d}": _json_value(stats[(layer, m, d)][c], p) for m in modules for d in DESCRIPTORS
                    }
                run_events.append(ev)
        # scores: coherence across the run's layers, novelty within the series
        for ev in run_events:
            others = present[ev["metric"]] - {ev["layer"]}
            near = {
                o["layer"] for o in run_events
                if o["metric"] == ev["metric"] and o["layer"] != ev["layer"] and abs(o["i"] - ev["i"]) <= tolerance
            }
            ev["coherence"] = len(near) / len(others) if others else 1.0
            earlier = sum(
                1 for o in run_events
                if (o["layer"], o["metric"]) == (ev["layer"], ev["metric"]) and o["step"] < ev["step"]
            )
            ev["novelty"] = 1 / (1 + earlier)
            ev["structure_modifier"] = structure_modifier(ev["ratio"])
            ev["magnitude_eff"] = ev["magnitude"] * ev["structure_modifier"]
            ev["score"] = ev["magnitude_eff"] * ev["coherence"] * ev["novelty"]
        events += run_events
    out = {}
    for ev in events:
        for c in FLOAT_COLUMNS:
            ev[c] = None if math.isnan(ev[c]) else float(ev[c])
        for json_col in JSON_COLUMNS:
            ev.setdefault(json_col, None)
        out[tuple(ev[k] for k in KEY)] = ev
    return out


def _json_value(values: np.ndarray, i: int) -> float | None:
    return None if i >= len(values) or math.isnan(values[i]) else float(values[i])


# -- building and reading -----------------------------------------------------------------


V1_MODEL = Path(__file__).parent / "data" / "models" / "events_candidates_cpd1.sql"


def model_sql(tmp_path: Path) -> Path:
    """A copy of sql/ with the released cpd@1 model and the macros only: geometry_state is
    producer data."""
    target = only_models_sql(tmp_path / "sql", MODEL)
    shutil.copyfile(V1_MODEL, target / "models" / f"{MODEL}.sql")
    return target


def build(lake: Path, sql_dir: Path, **params: Any) -> str:
    """Run the model; return its analysis id."""
    [result] = models.run(lake=lake, sql_dir=sql_dir, params={MODEL: params} if params else None, report=lambda _: None)
    return result.plan.analysis_id


def built(lake: Path, analysis: str) -> dict[tuple, dict]:
    folder = lake / MODEL / f"analysis_id={analysis}"
    if not folder.exists():
        return {}
    with duckdb.connect() as con:
        rel = con.sql(
            f"SELECT * FROM read_parquet('{folder}/*/*.parquet', hive_partitioning = true,"
            " hive_types = {'run_id': VARCHAR})"
        )
        names = rel.columns
        rows = [dict(zip(names, r)) for r in rel.fetchall()]
    return {tuple(r[k] for k in KEY): r for r in rows}


def close(got: float | None, want: float | None) -> bool:
    if want is None or got is None:
        return got is None and want is None
    return got == pytest.approx(want, rel=2e-5, abs=1e-9)


def assert_matches(got: dict[tuple, dict], want: dict[tuple, dict], analysis: str) -> None:
    assert sorted(got) == sorted(want)
    for key, exp_row in want.items():
        row = got[key]
        assert (row["start_step"], row["end_step"]) == (exp_row["start_step"], exp_row["end_step"]), key
        for col in FLOAT_COLUMNS:
            assert close(row[col], exp_row[col]), (key, col, row[col], exp_row[col])
        for col in JSON_COLUMNS:
            if exp_row[col] is None:
                assert row[col] is None, (key, col)
                continue
            obj = json.loads(row[col])
            assert list(obj) == sorted(exp_row[col]), (key, col)
            for metric, value in exp_row[col].items():
                assert close(obj[metric], value), (key, col, metric, obj[metric], value)
        ident = "|".join(map(str, (key[0], analysis, key[2], key[3], key[4], key[1])))
        assert row["event_id"] == hashlib.sha256(ident.encode()).hexdigest()[:32]
        assert row["analysis_id"] == analysis and row["schema_version"] == "events_candidates@2.0"


# -- hand-made lakes ----------------------------------------------------------------------


def geometry(run: str, layer: int, module: str, values: dict[str, list[float | None]], *,
             sample_set: str = "fixed_v1", sample_id: str | None = None, steps: list[int] | None = None) -> list[dict]:
    """geometry_state rows of one series; descriptors not given are a flat 0.5."""
    n = len(next(iter(values.values())))
    steps = steps or [10 * i for i in range(n)]
    return [
        {
            "run_id": run, "analysis_id": "capture-v1", "step": steps[i], "seed": 0,
            "sample_set": sample_set, "sample_id": sample_id, "layer": layer, "module": module,
            "n_samples": 16, "dim": 32,
            **{d: values[d][i] if d in values else 0.5 for d in DESCRIPTORS},
        }
        for i in range(n)
    ]


def write_as_another_tool(lake: Path, rows: list[dict]) -> None:
    """geometry_state rows written straight with pyarrow: NaN stays NaN (our writer refuses it)."""
    [run] = {r["run_id"] for r in rows}
    folder = lake / "geometry_state" / "analysis_id=capture-v1" / f"run_id={run}"
    folder.mkdir(parents=True)
    fields = [c.field for c in GEOMETRY_STATE.file_columns]
    created = {"schema_version": GEOMETRY_STATE.schema_version, "created_at_utc": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in fields} | created for r in rows], schema=pa.schema(fields))
    pq.write_table(table, folder / "part-other-tool.parquet")


# A small noise pattern, exact in binary, so sigma = 1.4826 * 0.25 / sqrt(2) and medians are
# hand-checkable: |first differences| are mostly 0.25.
NOISE = [0.0, 0.25, 0.0, -0.25]


def step_series(n: int, level: float, changes: dict[int, float], noise: float = 1.0) -> list[float]:
    """level + noise * NOISE pattern, plus changes[k] from capture k on."""
    out = []
    for i in range(n):
        x = level + noise * NOISE[i % 4] + sum(v for k, v in changes.items() if i >= k)
        out.append(x)
    return out


def test_clean_step_change_hand_values(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    rows = geometry("step", 0, "resid_post", {"eff_rank": step_series(20, 10.0, {10: 5.0})})
    writer.write("geometry_state", rows, lake=lake)
    analysis = build(lake, model_sql(tmp_path))
    got = built(lake, analysis)
    [event] = [r for r in got.values() if r["metric"] == "resid_post.eff_rank"]
    # The mean contrast peaks at the first capture of the new level: capture 10, step 100.
    assert (event["step"], event["layer"], event["event_type"]) == (100, 0, SINGLE)
    # baseline x5..x9 = 10.25, 10, 9.75, 10, 10.25 -> median 10, MAD 0.25; post median 15
    assert event["baseline_median"] == 10.0 and event["baseline_mad"] == 0.25
    assert event["metric_size"] == 5.0
    # m = max(MAD 0.25, sigma / 1.4826 = 0.25 / sqrt(2), ...) = 0.25
    assert event["metric_z"] == pytest.approx(5.0 / (1.4826 * 0.25), rel=1e-6)
    # the noise pattern is the same on both sides: equal volatility, no penalty
    assert event["volatility_ratio"] == pytest.approx(1.0) and event["structure_modifier"] == 1.0
    # one layer: coherence 1; the first event of its series: novelty 1
    assert event["coherence"] == 1.0 and event["novelty"] == 1.0
    assert event["score"] == pytest.approx(event["metric_z"])
    assert event["volatility_ratio_agg"] == pytest.approx(event["volatility_ratio"])
    # candidates from 8 (3 of 5 post captures new) to 12 (2 of 5 baseline captures new)
    assert (event["start_step"], event["end_step"]) == (80, 120)
    assert all(event[c] is None for c in JSON_COLUMNS)
    assert_matches(got, reference(read_geometry(lake)), analysis)


def test_two_changes_novelty_and_short_series(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    rows = geometry("two", 0, "resid_post", {
        "eff_rank": step_series(40, 10.0, {10: 5.0, 20: -8.0, 30: 4.0}),
        "sparsity": step_series(40, 3.0, {15: 2.0}, noise=0.5),
    })
    # 9 captures (< 2w) with a huge step: no index has a full baseline and post window
    rows += geometry("short", 0, "resid_post", {"eff_rank": step_series(9, 10.0, {5: 100.0})})
    # exactly 2w captures: only i = w can be scored
    rows += geometry("ten", 0, "resid_post", {"eff_rank": step_series(10, 10.0, {5: 100.0})})
    writer.write("geometry_state", rows, lake=lake)
    analysis = build(lake, model_sql(tmp_path))
    got = built(lake, analysis)
    assert not [k for k in got if k[0] == "short"]
    assert [(k[3], k[4]) for k in got if k[0] == "ten" and k[1] == SINGLE] == [("resid_post.eff_rank", 50)]
    series = sorted((k[4], r["novelty"]) for k, r in got.items() if k[0] == "two" and k[3] == "resid_post.eff_rank")
    assert series == [(100, 1.0), (200, 0.5), (300, pytest.approx(1 / 3))]
    assert got[("two", SINGLE, 0, "resid_post.sparsity", 150)]["novelty"] == 1.0
    assert_matches(got, reference(read_geometry(lake)), analysis)


def test_flat_series_and_the_sigma_floor(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    flat = [0.5] * 20
    stepped = [0.25] * 10 + [0.5] * 10  # MAD 0 and sigma 0 everywhere: the floor decides
    writer.write("geometry_state", geometry("flat", 0, "resid_post", {"sv_entropy": flat, "sparsity": stepped}), lake=lake)
    analysis = build(lake, model_sql(tmp_path))
    got = built(lake, analysis)
    assert not [k for k in got if k[3] == "resid_post.sv_entropy"]  # flat: z = 0 everywhere
    ev = got[("flat", SINGLE, 0, "resid_post.sparsity", 100)]
    # m = max(MAD 0, sigma 0, 1e-6 * |0.25|, 1e-12) = 2.5e-7
    assert ev["metric_z"] == pytest.approx(0.25 / (1.4826 * 2.5e-7), rel=1e-6)
    assert ev["baseline_mad"] == 0.0 and ev["volatility_baseline"] == 0.0 and ev["volatility_event"] == 0.0
    assert ev["volatility_ratio"] == 0.0 and ev["structure_modifier"] == 1.0
    assert_matches(got, reference(read_geometry(lake)), analysis)


def test_ties_in_metric_z_and_mean_contrast_earliest_wins(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    # 10 x10, 15, then 20: z ties at 9..12 and the mean contrast ties at 10 and 11 (9 each)
    ramp = [10.0] * 10 + [15.0] + [20.0] * 9
    writer.write("geometry_state", geometry("tie", 0, "resid_post", {"act_norm": ramp}), lake=lake)
    analysis = build(lake, model_sql(tmp_path))
    got = built(lake, analysis)
    [ev] = [r for k, r in got.items() if k[3] == "resid_post.act_norm"]
    # candidates 8..12: from 8 the post median is 15 or 20 over a baseline of 10 (MAD 0, sigma
    # 0: the floor 1e-6 * 10); at 13 the baseline 10, 10, 15, 20, 20 has median 15 and MAD 5
    assert (ev["step"], ev["start_step"], ev["end_step"]) == (100, 80, 120)
    assert ev["metric_size"] == 10.0
    # composite: the layer's other metrics are flat (z 0): composite z = z / sqrt(6)
    comp = got[("tie", COMPOSITE, 0, "__composite__", 90)]  # composite peak: the largest z, earliest of the tie
    assert comp["magnitude"] == pytest.approx(ev["metric_z"] / math.sqrt(6), rel=1e-6)
    assert_matches(got, reference(read_geometry(lake)), analysis)


def test_null_inside_a_window(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    angle = step_series(24, 2.0, {12: 3.0})
    angle[0] = None  # no previous capture
    angle[10] = None  # inside the baseline of 11..15 and the post window of 6..10
    angle[14] = float("nan")  # written as NaN: read as NULL as well
    rows = geometry("nul", 0, "resid_post", {"principal_angle_prev": angle})
    write_as_another_tool(lake, rows)
    analysis = build(lake, model_sql(tmp_path))
    got = built(lake, analysis)
    ev = got[("nul", SINGLE, 0, "resid_post.principal_angle_prev", 120)]
    # baseline x7..x11 = 1.75, 2, 2.25, NULL, 1.75: four values, the mean of the middle two;
    # post x12..x16 = 5, 5.25, NULL, 4.75, 5: median 5
    assert ev["baseline_median"] == 1.875 and ev["metric_size"] == 3.125
    assert ev["baseline_mad"] == 0.125  # |B - 1.875| = 0.125, 0.125, 0.375, 0.125
    assert_matches(got, reference(read_geometry(lake)), analysis)


def test_layers_coherence_and_volatility_ratio_agg(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    rows = []
    # eff_rank steps at 10 on layers 0 and 1, at 12 on layer 2 (within the tolerance of 2),
    # at 15 on layer 3 (outside it); layer 4 has none; layer 5 has no eff_rank at all.
    # Seeded noise (sd 0.2) makes the layers' volatility ratios differ.
    rng = np.random.default_rng(5)
    changes = {0: {10: 6.0}, 1: {10: 5.0}, 2: {12: 7.0}, 3: {15: 6.0}, 4: {}, 5: {}}
    for layer, change in changes.items():
        values = {"eff_rank": list(np.array(step_series(30, 10.0 + layer, change, noise=0.0)) + rng.normal(0, 0.2, 30))}
        if layer == 5:
            values["eff_rank"] = [None] * 30
        rows += geometry("multi", layer, "resid_post", values)
    writer.write("geometry_state", rows, lake=lake)
    analysis = build(lake, model_sql(tmp_path))
    got = built(lake, analysis)
    ev = {k[2]: r for k, r in got.items() if k[3] == "resid_post.eff_rank"}
    assert sorted(ev) == [0, 1, 2, 3]
    # five layers have an eff_rank series: four others each
    assert ev[0]["coherence"] == pytest.approx(2 / 4)  # layers 1 and 2 within 2 captures
    assert ev[2]["coherence"] == pytest.approx(2 / 4)  # layers 0 and 1
    assert ev[3]["coherence"] == 0.0
    assert ev[0]["score"] == pytest.approx(ev[0]["magnitude_eff"] * 0.5)
    # ratio_agg at layer 0's peak: the median of the ratios of all layers at index 10
    assert ev[0]["volatility_ratio_agg"] == ev[1]["volatility_ratio_agg"]
    assert ev[0]["volatility_ratio_agg"] != ev[0]["volatility_ratio"]
    assert_matches(got, reference(read_geometry(lake)), analysis)


def test_per_sample_only_runs_use_the_median_across_samples(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    rows = []
    for k, sample in enumerate(("s0", "s1", "s2", "s3")):
        # four samples: the median per step is the mean of the middle two
        values = step_series(20, 10.0 + k, {8 + k: 6.0})
        rows += geometry("samples", 1, "mlp_out", {"eff_rank": values}, sample_id=sample, sample_set="b_set")
    # a run with pooled rows in b_set and per-sample rows in a_set: analysed on b_set, pooled
    rows += geometry("mixed", 0, "resid_post", {"eff_rank": step_series(20, 5.0, {10: 4.0})}, sample_set="b_set")
    rows += geometry("mixed", 0, "resid_post", {"eff_rank": step_series(20, 5.0, {6: -4.0})}, sample_set="a_set", sample_id="s0")
    writer.write("geometry_state", rows, lake=lake)
    sql = model_sql(tmp_path)
    analysis = build(lake, sql)
    got = built(lake, analysis)
    # medians across s0..s3 (the noise pattern aside): 11.5 up to capture 7, then 12.5, 14.5,
    # 16.5, 17.5. The mean contrast peaks at 9 (16.7 - 11.7 = 5 against 17.3 - 12.35 at 10):
    # baseline x4..x8 = 11.5, 11.75, 11.5, 11.25, 12.5; post x9..x13 = 14.75, 16.5, 17.25, 17.5, 17.5
    ev = got[("samples", SINGLE, 1, "mlp_out.eff_rank", 90)]
    assert ev["baseline_median"] == 11.5 and ev["metric_size"] == 5.75
    assert [k[4] for k in got if k[0] == "mixed" and k[1] == SINGLE] == [100]
    assert_matches(got, reference(read_geometry(lake)), analysis)
    # the parameter chooses a_set: "mixed" has only per-sample rows there, "samples" none
    analysis_a = build(lake, sql, sample_set="a_set")
    got_a = built(lake, analysis_a)
    assert {k[0] for k in got_a} == {"mixed"}
    assert [k[4] for k in got_a if k[1] == SINGLE] == [60]
    assert_matches(got_a, reference(read_geometry(lake), sample_set="a_set"), analysis_a)


def test_composite_events_and_their_json(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    rows = []
    for layer in (0, 1):
        for module, shift in (("resid_post", 3.0), ("mlp_out", 2.0)):
            values = {
                d: step_series(24, 4.0 + k, {12: shift * (1 if k % 2 else -1)}, noise=0.5 + 0.1 * k)
                for k, d in enumerate(DESCRIPTORS)
            }
            if layer == 1:
                values["principal_angle_prev"] = [None] * 24  # a metric with no value: null in JSON
            rows += geometry("comp", layer, module, values)
    writer.write("geometry_state", rows, lake=lake)
    analysis = build(lake, model_sql(tmp_path))
    got = built(lake, analysis)
    comps = {k[2]: r for k, r in got.items() if k[1] == COMPOSITE}
    assert sorted(comps) == [0, 1]
    for layer, comp in comps.items():
        # the composite peaks at its largest z: one capture before the step here, where the
        # baseline's MAD is smaller (the medians do not pin a clean step down)
        assert comp["step"] == 110 and comp["metric"] == "__composite__"
        assert all(comp[c] is None for c in DIAGNOSTICS + ("volatility_ratio_agg",))
        z = json.loads(comp["metric_z_json"])
        assert len(z) == 12 and list(z) == sorted(z)
        finite = [v for v in z.values() if v is not None]
        assert comp["magnitude"] == pytest.approx(math.sqrt(sum(v * v for v in finite) / len(finite)), rel=1e-6)
        assert comp["coherence"] == 1.0  # the other layer peaks at the same index
    assert json.loads(comps[1]["metric_z_json"])["resid_post.principal_angle_prev"] is None
    single = got[("comp", SINGLE, 0, "resid_post.eff_rank", 120)]
    assert json.loads(comps[0]["metric_sizes_json"])["resid_post.eff_rank"] == np.float32(single["metric_size"])
    assert_matches(got, reference(read_geometry(lake)), analysis)


def test_random_series_match_numpy_at_other_parameters(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    rng = np.random.default_rng(11)
    rows = []
    for run in ("r0", "r1"):
        steps = [int(s) for s in np.cumsum(rng.integers(1, 40, 36))]
        for layer in range(3):
            for module in ("resid_pre", "attn_out"):
                x = rng.normal(size=(36, 6)) + np.where(np.arange(36)[:, None] >= rng.integers(8, 28, 6), 6.0, 0.0)
                x[rng.random(x.shape) < 0.04] = np.nan
                values = {d: [None if math.isnan(v) else float(v) for v in x[:, k]] for k, d in enumerate(DESCRIPTORS)}
                rows += geometry(run, layer, module, values, steps=steps)
    writer.write("geometry_state", rows, lake=lake)
    sql = model_sql(tmp_path)
    geo = read_geometry(lake)
    analysis = build(lake, sql)
    assert_matches(built(lake, analysis), reference(geo), analysis)
    other = build(lake, sql, w=3, z_min=3.0, tolerance=1)
    assert_matches(built(lake, other), reference(geo, w=3, z_min=3.0, tolerance=1), other)


# -- the demo lake ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("cpd-demo")
    lake = init_lake(root / "lake")
    demo.write_demo(lake=lake)
    return lake, build(lake, model_sql(root))


def test_demo_lake_matches_numpy_on_every_column(demo_build: tuple[Path, str]) -> None:
    lake, analysis = demo_build
    got = built(lake, analysis)
    assert got
    assert_matches(got, reference(read_geometry(lake)), analysis)


def test_demo_lake_recovers_the_planted_events(demo_build: tuple[Path, str]) -> None:
    lake, analysis = demo_build
    planted = pq.read_table(lake / "_meta" / "demo" / "planted_events.parquet").to_pylist()
    planted_runs = {p["run_id"] for p in planted}
    detected = [
        r for r in built(lake, analysis).values() if r["event_type"] == SINGLE and r["run_id"] in planted_runs
    ]
    steps_of = {}  # capture index of each step, per run (the tolerance is in captures)
    for row in read_geometry(lake):
        if row["sample_id"] is None:
            steps_of.setdefault(row["run_id"], set()).add(row["step"])
    index = {run: {s: i for i, s in enumerate(sorted(steps))} for run, steps in steps_of.items()}

    def near(a: dict, b: dict) -> bool:
        return (a["run_id"], a["layer"], a["metric"]) == (b["run_id"], b["layer"], b["metric"]) and abs(
            index[a["run_id"]][a["step"]] - index[b["run_id"]][b["step"]]
        ) <= TOLERANCE

    true_detections = sum(any(near(d, p) for p in planted) for d in detected)
    found = sum(any(near(p, d) for d in detected) for p in planted)
    precision, recall = true_detections / len(detected), found / len(planted)
    print(f"cpd@1 on the demo lake: {len(detected)} detected, {len(planted)} planted, "
          f"precision {precision:.4f}, recall {recall:.4f}")
    assert precision >= 0.9 and recall >= 0.9
