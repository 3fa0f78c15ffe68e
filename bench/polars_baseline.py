"""The polars baseline: dyn@1 and cpd@1 of design.md written as lazy polars queries.

The peer of ``bench/pandas_baseline.py``: what a researcher fluent in polars would write
without the warehouse. It scans the lake's geometry_state (``pl.scan_parquet`` with hive
partitioning), computes the two tables (geometry_dynamics and events_candidates) with window
expressions over the series keys (shift, rolling_std, rolling_median, rolling_mean with
``.over(...)``), joins and group-bys, and writes them as zstd Parquet. polars has no
rolling MAD: the window's absolute deviations from its rolling median are w shifted
columns, and their median is a list median. It computes the natural keys and values of
both tables, with the columns and float32 values the pandas baseline writes, not their ids
or engine columns. It reads every analysis of geometry_state in the lake: point it at a lake
holding one (a scale lake does).

Each table is one lazy query collected once on the streaming engine (faster than the
in-memory one here; at 10 million rows of 64-capture series cpd@1 finishes on neither on a
24 GiB machine: the streaming engine runs past 7 minutes with its threads idle, the
in-memory one is killed out of memory at 22 GB), so reading happens inside the computations:
the ``read`` phase only sets up the scan (about 0 s), and ``geometry_dynamics`` and
``events_candidates`` each include scanning the Parquet files. ``write`` writes the two
collected frames. Each phase's time is printed as ``polars <phase>: <seconds> s``.
``--only TABLE`` computes and writes one of the two (``bench/shapes.py`` times each alone).
``bench/agreement.py`` checks it against the models as it checks the pandas baseline:

    python bench/polars_baseline.py --lake LAKE --out FOLDER [--only TABLE]
    python bench/agreement.py --lake LAKE --pandas FOLDER
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from measure import Laps, peer_arguments
from warehouse import contracts

DESCRIPTORS = list(contracts.DESCRIPTORS)
DRIFT_DESCRIPTORS = ["eff_rank", "sv_entropy", "sparsity", "act_norm"]
SERIES = ["run_id", "sample_set", "sample_id", "layer", "module"]
METRIC_SERIES = ["run_id", "layer", "metric"]
DIAGNOSTICS = ["metric_size", "metric_z", "baseline_median", "baseline_mad",
               "volatility_event", "volatility_baseline", "volatility_ratio"]
JSON_NAMES = {d: ("metric_sizes_json" if d == "metric_size" else f"{d}_json") for d in DIAGNOSTICS}
NUMBERS = ["score", "magnitude", "structure_modifier", "magnitude_eff", "coherence", "novelty",
           *DIAGNOSTICS, "volatility_ratio_agg"]
W = 5  # dyn@1's volatility window, and cpd@1's w
Z_MIN = 4.0
TOLERANCE = 2
ENGINE = "streaming"


def load(lake: Path) -> pl.LazyFrame:
    """geometry_state, lazily, with the descriptors as Float64 and NaN and infinity as null."""
    return pl.scan_parquet(lake / "geometry_state", hive_partitioning=True).with_columns(
        pl.when(pl.col(d).is_finite()).then(pl.col(d).cast(pl.Float64)).alias(d) for d in DESCRIPTORS
    )


def _sum(terms: list[pl.Expr]) -> pl.Expr:
    """The sum of ``terms``, null when any is null (``pl.sum_horizontal`` would skip it)."""
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


# -- geometry_dynamics (dyn@1) ------------------------------------------------------------


def geometry_dynamics(gs: pl.LazyFrame, w: int = W) -> pl.LazyFrame:
    def prev(name: str) -> pl.Expr:
        return pl.col(name).shift(1).over(SERIES)

    dt = pl.col("_dt")
    return (
        gs.sort(SERIES + ["step"])
        .with_columns(
            (pl.col("step") - prev("step")).alias("_dt"),
            *[(pl.col(d) - prev(d)).alias(f"{d}_delta") for d in DESCRIPTORS],
        )
        .with_columns((pl.col(f"{d}_delta") / dt).alias(f"{d}_velocity") for d in DESCRIPTORS)
        .with_columns(
            *[((pl.col(f"{d}_velocity") - prev(f"{d}_velocity")) / dt).alias(f"{d}_accel") for d in DESCRIPTORS],
            # sample std of the non-null velocities of the w captures ending here (clipped at the start)
            *[pl.col(f"{d}_velocity").rolling_std(w, min_samples=2).over(SERIES).alias(f"{d}_volatility")
              for d in DESCRIPTORS],
            # the robust scale of each drift descriptor over its whole series, and its first value
            *[pl.max_horizontal(1.4826 * (pl.col(d) - pl.col(d).median()).abs().median(),
                                1e-9 + 1e-3 * pl.col(d).median().abs()).over(SERIES).alias(f"_{d}_scale")
              for d in DRIFT_DESCRIPTORS],
            *[pl.col(d).first().over(SERIES).alias(f"_{d}_init") for d in DRIFT_DESCRIPTORS],
        )
        .with_columns(
            _sum([(pl.col(f"{d}_velocity") / pl.col(f"_{d}_scale")) ** 2 for d in DRIFT_DESCRIPTORS]).sqrt()
            .alias("drift_velocity"),
            _sum([((pl.col(d) - pl.col(f"_{d}_init")) / pl.col(f"_{d}_scale")) ** 2 for d in DRIFT_DESCRIPTORS]).sqrt()
            .alias("drift_from_init"),
            (pl.col("principal_angle_prev") / dt).alias("alignment_velocity"),
        )
        .with_columns(((pl.col("drift_velocity") - prev("drift_velocity")) / dt).alias("drift_accel"))
        .select(
            *SERIES, "step", "seed",
            *[pl.col(f"{d}_{part}").cast(pl.Float32)
              for d in DESCRIPTORS for part in ("delta", "velocity", "accel", "volatility")],
            *[pl.col(c).cast(pl.Float32) for c in ("drift_velocity", "drift_accel", "drift_from_init", "alignment_velocity")],
            pl.lit(w, dtype=pl.Int16).alias("volatility_window"),
        )
    )


# -- events_candidates (cpd@1) ------------------------------------------------------------


def analysed_series(gs: pl.LazyFrame) -> pl.LazyFrame:
    """Per run its pooled rows of the alphabetically first sample set that has any; a run with
    only per-sample rows: the median over its samples per capture, in its first sample set."""
    rows = gs.with_columns(
        pl.col("sample_set").filter(pl.col("sample_id").is_null()).min().over("run_id").alias("_chosen"),
        pl.col("sample_set").min().over("run_id").alias("_first"),
    )
    keys = ["run_id", "layer", "module", "step"]
    pooled = rows.filter(pl.col("sample_id").is_null() & (pl.col("sample_set") == pl.col("_chosen")))
    medians = (
        rows.filter(pl.col("_chosen").is_null() & (pl.col("sample_set") == pl.col("_first")))
        .group_by(keys)
        .agg(pl.col(DESCRIPTORS).median())
    )
    return pl.concat([pooled.select(keys + DESCRIPTORS), medians.select(keys + DESCRIPTORS)])


def window_statistics(series: pl.LazyFrame, w: int = W) -> pl.LazyFrame:
    """One row per (run, layer, metric, capture): baseline and post window statistics at i."""
    x, over = pl.col("x"), METRIC_SERIES

    def baseline(name: str) -> pl.Expr:  # the window of w captures ending at i - 1
        return pl.col(name).shift(1).over(over)

    def post(name: str) -> pl.Expr:  # the window of w captures ending at i + w - 1
        return pl.col(name).shift(-(w - 1)).over(over)

    return (
        series.unpivot(index=["run_id", "layer", "module", "step"], on=DESCRIPTORS,
                       variable_name="descriptor", value_name="x")
        .with_columns(pl.format("{}.{}", "module", "descriptor").alias("metric"))
        .sort(over + ["step"])
        .with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).over(over).alias("i"),
            pl.len().cast(pl.Int64).over(over).alias("n"),
            (x - x.shift(1)).over(over).alias("diff"),
            x.is_not_null().any().over(over).alias("has_values"),
            # statistics of the w captures ending at each capture; nulls inside are skipped
            x.rolling_median(w, min_samples=1).over(over).alias("median"),
            x.rolling_mean(w, min_samples=1).over(over).alias("mean"),
            *[x.shift(k).over(over).alias(f"_x{k}") for k in range(w)],
        )
        .with_columns(
            (1.4826 * pl.col("diff").abs().median() / math.sqrt(2)).over(over).alias("sigma"),
            pl.col("diff").rolling_std(w - 1, min_samples=1, ddof=0).over(over).alias("volatility"),
            # no rolling MAD in polars: the window's w values are the shifted columns
            pl.concat_list([(pl.col(f"_x{k}") - pl.col("median")).abs() for k in range(w)]).list.median().alias("mad"),
        )
        .with_columns(
            baseline("median").alias("baseline_median"),
            baseline("mad").alias("baseline_mad"),
            (post("mean") - baseline("mean")).abs().alias("mean_contrast"),
            baseline("volatility").alias("volatility_baseline"),
            post("volatility").alias("volatility_event"),
            post("median").alias("post_median"),
        )
        .with_columns((pl.col("post_median") - pl.col("baseline_median")).alias("metric_size"))
        .drop([f"_x{k}" for k in range(w)] + ["diff", "median", "mean", "mad", "volatility", "post_median"])
    )


def score_windows(long: pl.LazyFrame, w: int = W) -> pl.LazyFrame:
    """metric_z and volatility_ratio where both windows lie inside the series; a null term of
    a floor gives null (``pl.max_horizontal`` alone would skip it)."""
    floor = pl.when(pl.col("baseline_mad").is_not_null() & pl.col("sigma").is_not_null()).then(
        pl.max_horizontal(pl.col("baseline_mad"), pl.col("sigma") / 1.4826,
                          1e-6 * pl.col("baseline_median").abs(), pl.lit(1e-12)))
    return long.filter(pl.col("i").is_between(w, pl.col("n") - w)).with_columns(
        (pl.col("metric_size").abs() / (1.4826 * floor)).alias("metric_z"),
        (pl.col("volatility_event") / pl.col("volatility_baseline").clip(lower_bound=1e-12)).alias("volatility_ratio"),
    )


def stretch_peaks(candidates: pl.LazyFrame, keys: list[str], peak_by: str) -> pl.LazyFrame:
    """One row per stretch of consecutive candidate indices: its largest ``peak_by`` (earliest
    on ties), with the steps of the stretch's first and last index."""
    return (
        candidates.sort(keys + ["i"])
        .with_columns((pl.col("i") - pl.int_range(pl.len(), dtype=pl.Int64).over(keys)).alias("stretch"))
        .group_by(keys + ["stretch"])
        .agg(
            pl.all().get(pl.col(peak_by).arg_max()),  # arg_max: the first of equal maxima
            pl.col("step").min().alias("start_step"),
            pl.col("step").max().alias("end_step"),
        )
        .drop("stretch")
    )


def single_metric_events(scored: pl.LazyFrame, z_min: float = Z_MIN) -> pl.LazyFrame:
    peaks = stretch_peaks(scored.filter(pl.col("metric_z") >= z_min), METRIC_SERIES, "mean_contrast")
    at = ["run_id", "metric", "i"]
    across_layers = (
        scored.join(peaks.select(at).unique(), on=at, how="semi")
        .group_by(at)
        .agg(pl.col("volatility_ratio").median().alias("volatility_ratio_agg"))
    )
    return peaks.join(across_layers, on=at, how="left").with_columns(
        pl.lit("change_point").alias("event_type"),
        pl.col("metric_z").alias("magnitude"),
        pl.col("volatility_ratio").alias("structure_ratio"),
    )


def composite_events(scored: pl.LazyFrame, long: pl.LazyFrame, z_min: float = Z_MIN) -> pl.LazyFrame:
    composite = scored.group_by(["run_id", "layer", "i"]).agg(
        pl.col("step").min(),
        (pl.col("metric_z") ** 2).mean().sqrt().alias("composite_z"),
        pl.col("volatility_ratio").median().alias("structure_ratio"),
    )
    peaks = stretch_peaks(composite.filter(pl.col("composite_z") >= z_min), ["run_id", "layer"], "composite_z")
    return peaks.with_columns(
        pl.lit("__composite__").alias("metric"),
        pl.lit("change_point_composite").alias("event_type"),
        pl.col("composite_z").alias("magnitude"),
    ).join(_composite_json(peaks, scored, long), on=["run_id", "layer", "i"], how="left")


def _composite_json(peaks: pl.LazyFrame, scored: pl.LazyFrame, long: pl.LazyFrame) -> pl.LazyFrame:
    """Every metric of the layer at each composite peak, as JSON objects keyed by metric (in
    metric order; a number is the float32 value's shortest text, null for null). A metric is
    <module>.<descriptor>, both plain identifiers of the contract: no escaping is needed."""
    at = ["run_id", "layer", "i"]
    metrics = long.select(["run_id", "layer", "metric"]).unique()
    at_peak = (
        peaks.select(at)
        .join(metrics, on=["run_id", "layer"])
        .join(scored.select(at + ["metric"] + DIAGNOSTICS), on=at + ["metric"], how="left")
    )

    def members(d: str) -> pl.Expr:
        value = pl.col(d).cast(pl.Float32).cast(pl.String).fill_null("null")
        return pl.format('"{}":{}', "metric", value).sort_by("metric").str.join(",")

    return at_peak.group_by(at).agg(pl.concat_str(pl.lit("{"), members(d), pl.lit("}")).alias(JSON_NAMES[d]) for d in DIAGNOSTICS)


def coherence(events: pl.LazyFrame, long: pl.LazyFrame, tolerance: int = TOLERANCE) -> pl.LazyFrame:
    """``events`` with the share of the run's other layers with a series of the metric that
    have an event of it whose peak index is within the tolerance (1 when there is no other
    layer)."""
    with_values = long.filter(pl.col("has_values"))
    layers = pl.concat([
        with_values.group_by(["run_id", "metric"]).agg(pl.col("layer").n_unique().alias("n_layers")),
        with_values.group_by("run_id").agg(pl.lit("__composite__").alias("metric"),
                                           pl.col("layer").n_unique().alias("n_layers")),
    ])
    event = ["run_id", "layer", "metric", "i"]  # an event's key (a lazy row index would not be stable)
    peaks = events.select(event)
    nearby = (
        peaks.join(peaks, on=["run_id", "metric"], suffix="_other")
        .filter((pl.col("layer_other") != pl.col("layer")) & ((pl.col("i_other") - pl.col("i")).abs() <= tolerance))
        .group_by(event)
        .agg(pl.col("layer_other").n_unique().alias("nearby"))
    )
    others = pl.col("n_layers") - 1
    return (
        events.join(nearby, on=event, how="left")
        .join(layers, on=["run_id", "metric"], how="left")
        .with_columns(pl.when(others > 0).then(pl.col("nearby").fill_null(0) / others).otherwise(1.0).alias("coherence"))
        .drop(["nearby", "n_layers"])
    )


def events_candidates(gs: pl.LazyFrame, w: int = W, z_min: float = Z_MIN, tolerance: int = TOLERANCE) -> pl.LazyFrame:
    # the plan branches on these two (events, composite JSON, coherence); the optimiser's
    # subplan elimination misses branches whose projections differ, so they are cached
    long = window_statistics(analysed_series(gs), w).cache()
    scored = score_windows(long, w).cache()
    events = pl.concat([single_metric_events(scored, z_min), composite_events(scored, long, z_min)], how="diagonal")
    composite = pl.col("event_type") == "change_point_composite"
    return (
        coherence(events, long, tolerance)
        .with_columns(
            # a ratio below 1 does not raise the score; a null ratio reads as no change
            (1.0 / (1.0 + pl.col("structure_ratio").log(2).clip(lower_bound=0.0).fill_null(0.0))).alias("structure_modifier"),
            (1.0 / pl.col("step").rank("min").over(METRIC_SERIES)).alias("novelty"),
            *[pl.when(~composite).then(pl.col(d)).alias(d) for d in DIAGNOSTICS + ["volatility_ratio_agg"]],
        )
        .with_columns((pl.col("magnitude") * pl.col("structure_modifier")).alias("magnitude_eff"))
        .with_columns((pl.col("magnitude_eff") * pl.col("coherence") * pl.col("novelty")).alias("score"))
        .select(
            "run_id", "layer", "metric", "step", "start_step", "end_step", "event_type",
            *[pl.col(c).cast(pl.Float32) for c in NUMBERS],
            *JSON_NAMES.values(),
        )
    )


# -- the notebook, as a script ------------------------------------------------------------


TABLES = {"geometry_dynamics": geometry_dynamics, "events_candidates": events_candidates}


def main() -> None:
    parser = peer_arguments(__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(TABLES), help="compute and write this table alone")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lap = Laps("polars")
    gs = load(args.lake)  # lazy: each collect below reads the files
    lap("read")
    frames = {}
    for name in [args.only] if args.only else TABLES:
        frames[name] = TABLES[name](gs).collect(engine=ENGINE)
        lap(name)
    for name, frame in frames.items():
        frame.write_parquet(args.out / f"{name}.parquet", compression="zstd")
    lap("write")


if __name__ == "__main__":
    main()
