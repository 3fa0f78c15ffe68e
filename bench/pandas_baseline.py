"""The notebook baseline: dyn@1 and cpd@1 of design.md written plainly in pandas.

What a researcher would write without the warehouse: read the lake's geometry_state into
one DataFrame, then groupby, shift and rolling windows per series, and write the two tables
(geometry_dynamics and events_candidates) as zstd Parquet. Plain idiomatic pandas: rolling
median, mean and std where pandas has them, the window MAD from w lagged columns (pandas
has no rolling MAD), merges for the cross-layer parts. It computes the natural keys and values
of both tables, not their ids or engine columns. It reads every analysis of geometry_state
in the lake: point it at a lake holding one (a scale lake does).

``bench/run.py`` times it against the warehouse's build of the same two models, and
``bench/agreement.py`` checks that both give the same numbers. Each phase's time is printed
as ``pandas <phase>: <seconds> s``.

    python bench/pandas_baseline.py --lake LAKE --out FOLDER
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from measure import Laps, peer_arguments
from warehouse import contracts

DESCRIPTORS = list(contracts.DESCRIPTORS)
DRIFT_DESCRIPTORS = ["eff_rank", "sv_entropy", "sparsity", "act_norm"]
SERIES = ["run_id", "sample_set", "sample_id", "layer", "module"]
DIAGNOSTICS = ["metric_size", "metric_z", "baseline_median", "baseline_mad",
               "volatility_event", "volatility_baseline", "volatility_ratio"]
JSON_NAMES = {d: ("metric_sizes_json" if d == "metric_size" else f"{d}_json") for d in DIAGNOSTICS}
W = 5  # dyn@1's volatility window, and cpd@1's w
Z_MIN = 4.0
TOLERANCE = 2


def load(lake: Path) -> pd.DataFrame:
    """geometry_state with the descriptors as float64, NaN and infinity as NaN."""
    df = pd.read_parquet(lake / "geometry_state")
    df["run_id"] = df["run_id"].astype(str)  # a hive folder comes back as a categorical
    df[DESCRIPTORS] = df[DESCRIPTORS].astype("float64").replace([np.inf, -np.inf], np.nan)
    return df


# -- geometry_dynamics (dyn@1) ------------------------------------------------------------


def geometry_dynamics(gs: pd.DataFrame, w: int = W) -> pd.DataFrame:
    df = gs.sort_values(SERIES + ["step"]).reset_index(drop=True)
    series = df.groupby(SERIES, dropna=False, sort=False).ngroup()
    dt = df["step"] - df["step"].groupby(series).shift(1)
    out = df[SERIES + ["step", "seed"]].copy()
    for d in DESCRIPTORS:
        x = df[d]
        delta = x - x.groupby(series).shift(1)
        velocity = delta / dt
        out[f"{d}_delta"] = delta
        out[f"{d}_velocity"] = velocity
        out[f"{d}_accel"] = (velocity - velocity.groupby(series).shift(1)) / dt
        out[f"{d}_volatility"] = velocity.groupby(series).rolling(w, min_periods=2).std().droplevel(0)
    first_capture = series.groupby(series).cumcount() == 0
    velocity_terms, init_terms = 0.0, 0.0
    for d in DRIFT_DESCRIPTORS:
        x = df[d]
        median = x.groupby(series).transform("median")
        mad = (x - median).abs().groupby(series).transform("median")
        scale = np.maximum(1.4826 * mad, 1e-9 + 1e-3 * median.abs())
        velocity_terms = velocity_terms + (out[f"{d}_velocity"] / scale) ** 2
        # x_0 is the first capture's value, NaN if it is NaN (transform("first") would skip it)
        x0 = x.where(first_capture).groupby(series).transform("max")
        init_terms = init_terms + ((x - x0) / scale) ** 2
    out["drift_velocity"] = np.sqrt(velocity_terms)
    out["drift_accel"] = (out["drift_velocity"] - out["drift_velocity"].groupby(series).shift(1)) / dt
    out["drift_from_init"] = np.sqrt(init_terms)
    out["alignment_velocity"] = df["principal_angle_prev"] / dt
    values = [c for c in out.columns if c not in SERIES + ["step", "seed"]]
    out[values] = out[values].astype("float32")
    out["volatility_window"] = np.int16(w)
    return out


# -- events_candidates (cpd@1) ------------------------------------------------------------


def analysed_series(gs: pd.DataFrame) -> pd.DataFrame:
    """Per run its pooled rows of the alphabetically first sample set that has any; a run with
    only per-sample rows: the median over its samples per capture, in its first sample set."""
    pooled = gs[gs["sample_id"].isna()]
    first_set = pooled.groupby("run_id")["sample_set"].min().rename("chosen")
    pooled = pooled.join(first_set, on="run_id")
    pooled = pooled[pooled["sample_set"] == pooled["chosen"]]
    rest = gs[~gs["run_id"].isin(first_set.index)]
    rest = rest[rest["sample_set"] == rest.groupby("run_id")["sample_set"].transform("min")]
    medians = rest.groupby(["run_id", "layer", "module", "step"], as_index=False)[DESCRIPTORS].median()
    return pd.concat([pooled[["run_id", "layer", "module", "step"] + DESCRIPTORS], medians], ignore_index=True)


def window_statistics(series: pd.DataFrame, w: int = W) -> pd.DataFrame:
    """One row per (run, layer, metric, capture): baseline and post window statistics at i."""
    long = series.melt(id_vars=["run_id", "layer", "module", "step"], value_vars=DESCRIPTORS,
                       var_name="descriptor", value_name="x")
    long["metric"] = long["module"] + "." + long["descriptor"]
    long = long.sort_values(["run_id", "layer", "metric", "step"]).reset_index(drop=True)
    sid = long.groupby(["run_id", "layer", "metric"], sort=False).ngroup()
    x = long["x"]
    long["i"] = x.groupby(sid).cumcount()
    long["n"] = x.groupby(sid).transform("size")
    diff = x - x.groupby(sid).shift(1)
    long["sigma"] = 1.4826 * diff.abs().groupby(sid).transform("median") / np.sqrt(2)
    long["has_values"] = x.notna().groupby(sid).transform("any")

    # statistics of the w captures ending at each capture; then B ends at i - 1, P at i + w - 1
    window = x.groupby(sid).rolling(w, min_periods=1)
    median = window.median().droplevel(0)
    mean = window.mean().droplevel(0)
    # pandas has no rolling MAD: the window as w lagged columns, whose row medians skip NaN
    lagged = pd.concat([x.groupby(sid).shift(k) for k in range(w)], axis=1)
    mad = lagged.sub(median, axis=0).abs().median(axis=1)
    volatility = diff.groupby(sid).rolling(w - 1, min_periods=1).std(ddof=0).droplevel(0)

    def baseline(s: pd.Series) -> pd.Series:
        return s.groupby(sid).shift(1)

    def post(s: pd.Series) -> pd.Series:
        return s.groupby(sid).shift(-(w - 1))

    long["baseline_median"], long["baseline_mad"] = baseline(median), baseline(mad)
    long["metric_size"] = post(median) - long["baseline_median"]
    long["mean_contrast"] = (post(mean) - baseline(mean)).abs()
    long["volatility_baseline"], long["volatility_event"] = baseline(volatility), post(volatility)
    return long


def score_windows(long: pd.DataFrame, w: int = W) -> pd.DataFrame:
    """metric_z and volatility_ratio where both windows lie inside the series."""
    s = long[(long["i"] >= w) & (long["i"] <= long["n"] - w)].copy()
    m = np.maximum.reduce([s["baseline_mad"], s["sigma"] / 1.4826, 1e-6 * s["baseline_median"].abs(),
                           np.full(len(s), 1e-12)])
    s["metric_z"] = s["metric_size"].abs() / (1.4826 * m)
    s["volatility_ratio"] = s["volatility_event"] / np.maximum(s["volatility_baseline"], 1e-12)
    return s


def stretch_peaks(candidates: pd.DataFrame, keys: list[str], peak_by: str) -> pd.DataFrame:
    """One row per stretch of consecutive candidate indices: its largest ``peak_by`` (earliest
    on ties), with the steps of the stretch's first and last index."""
    c = candidates.sort_values(keys + ["i"]).copy()
    c["stretch"] = c["i"] - c.groupby(keys).cumcount()
    by = c.groupby(keys + ["stretch"])
    peaks = c.loc[by[peak_by].idxmax()].copy()
    spans = by["step"].agg(start_step="min", end_step="max").reset_index()
    return peaks.merge(spans, on=keys + ["stretch"])


def single_metric_events(scored: pd.DataFrame, z_min: float = Z_MIN) -> pd.DataFrame:
    peaks = stretch_peaks(scored[scored["metric_z"] >= z_min], ["run_id", "layer", "metric"], "mean_contrast")
    across_layers = scored.groupby(["run_id", "metric", "i"])["volatility_ratio"].median().rename("volatility_ratio_agg")
    peaks = peaks.join(across_layers, on=["run_id", "metric", "i"])
    peaks["event_type"] = "change_point"
    peaks["magnitude"] = peaks["metric_z"]
    peaks["structure_ratio"] = peaks["volatility_ratio"]
    return peaks


def composite_events(scored: pd.DataFrame, long: pd.DataFrame, z_min: float = Z_MIN) -> pd.DataFrame:
    scored = scored.assign(z2=scored["metric_z"] ** 2)
    by = scored.groupby(["run_id", "layer", "i"])
    composite = pd.DataFrame({
        "step": by["step"].min(),
        "composite_z": np.sqrt(by["z2"].mean()),
        "structure_ratio": by["volatility_ratio"].median(),
    }).reset_index()
    peaks = stretch_peaks(composite[composite["composite_z"] >= z_min], ["run_id", "layer"], "composite_z")
    peaks["metric"], peaks["event_type"] = "__composite__", "change_point_composite"
    peaks["magnitude"] = peaks["composite_z"]
    return peaks.merge(_composite_json(peaks, scored, long), on=["run_id", "layer", "i"], how="left")


def _composite_json(peaks: pd.DataFrame, scored: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    """Every metric of the layer at each composite peak, as JSON objects keyed by metric."""
    metrics = long[["run_id", "layer", "metric"]].drop_duplicates()
    at_peak = peaks[["run_id", "layer", "i"]].merge(metrics, on=["run_id", "layer"])
    at_peak = at_peak.merge(scored[["run_id", "layer", "metric", "i"] + DIAGNOSTICS],
                            on=["run_id", "layer", "metric", "i"], how="left").sort_values("metric")
    rows = []
    for (run, layer, i), group in at_peak.groupby(["run_id", "layer", "i"]):
        row = {"run_id": run, "layer": layer, "i": i}
        for d in DIAGNOSTICS:
            values = [None if pd.isna(v) else float(np.float32(v)) for v in group[d]]
            row[JSON_NAMES[d]] = json.dumps(dict(zip(group["metric"], values)), separators=(",", ":"))
        rows.append(row)
    return pd.DataFrame(rows, columns=["run_id", "layer", "i"] + list(JSON_NAMES.values()))


def coherence(events: pd.DataFrame, long: pd.DataFrame, tolerance: int = TOLERANCE) -> pd.Series:
    """Share of the run's other layers with a series of the metric that have an event of it
    whose peak index is within the tolerance (1 when there is no other layer)."""
    with_values = long[long["has_values"]]
    layers = pd.concat([
        with_values.groupby(["run_id", "metric"])["layer"].nunique(),
        with_values.groupby("run_id")["layer"].nunique().to_frame().assign(metric="__composite__")
        .set_index("metric", append=True)["layer"],
    ]).rename("n_layers")
    pairs = events[["run_id", "layer", "metric", "i"]].reset_index().merge(
        events[["run_id", "layer", "metric", "i"]], on=["run_id", "metric"], suffixes=("", "_other"))
    near = pairs[(pairs["layer_other"] != pairs["layer"]) & ((pairs["i_other"] - pairs["i"]).abs() <= tolerance)]
    nearby = near.groupby("index")["layer_other"].nunique().reindex(events.index, fill_value=0)
    others = events.join(layers, on=["run_id", "metric"])["n_layers"] - 1
    return pd.Series(np.where(others > 0, nearby / others.where(others > 0, 1), 1.0), index=events.index)


def events_candidates(gs: pd.DataFrame, w: int = W, z_min: float = Z_MIN, tolerance: int = TOLERANCE) -> pd.DataFrame:
    long = window_statistics(analysed_series(gs), w)
    scored = score_windows(long, w)
    events = pd.concat([single_metric_events(scored, z_min), composite_events(scored, long, z_min)], ignore_index=True)
    events["structure_modifier"] = 1.0 / (1.0 + np.maximum(0.0, np.log2(events["structure_ratio"]).fillna(0.0)))
    events["coherence"] = coherence(events, long, tolerance)
    events["novelty"] = 1.0 / events.groupby(["run_id", "layer", "metric"])["step"].rank(method="min")
    events["magnitude_eff"] = events["magnitude"] * events["structure_modifier"]
    events["score"] = events["magnitude_eff"] * events["coherence"] * events["novelty"]
    numbers = ["score", "magnitude", "structure_modifier", "magnitude_eff", "coherence", "novelty",
               *DIAGNOSTICS, "volatility_ratio_agg"]
    composite = events["event_type"] == "change_point_composite"
    events.loc[composite, DIAGNOSTICS + ["volatility_ratio_agg"]] = np.nan
    events[numbers] = events[numbers].astype("float32")
    columns = ["run_id", "layer", "metric", "step", "start_step", "end_step", "event_type", *numbers,
               *JSON_NAMES.values()]
    return events[columns]


# -- the notebook, as a script ------------------------------------------------------------


def main() -> None:
    args = peer_arguments(__doc__.splitlines()[0]).parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lap = Laps("pandas")
    gs = load(args.lake)
    lap("read")
    dynamics = geometry_dynamics(gs)
    lap("geometry_dynamics")
    events = events_candidates(gs)
    lap("events_candidates")
    dynamics.to_parquet(args.out / "geometry_dynamics.parquet", compression="zstd", index=False)
    events.to_parquet(args.out / "events_candidates.parquet", compression="zstd", index=False)
    lap("write")


if __name__ == "__main__":
    main()
