"""What the pictures show, read from the catalog: plain rows and numpy arrays, no plotting.

Every reader takes an open catalog connection (``warehouse.connect()``) and reads the
views of the current analyses, so a picture shows what the catalog shows. Unknown runs,
cohorts, metrics and matches are refused naming what the catalog knows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import numpy as np

from .. import contracts
from ..errors import WarehouseError

# How many known values a refusal names.
KNOWN_SHOWN = 10


@dataclass(frozen=True)
class Analysis:
    """One current analysis: what produced a table, with which parameters, and when."""

    model: str
    version: str
    analysis_id: str
    params: dict
    built: bool
    updated_at: object


def analyses(con: duckdb.DuckDBPyConnection) -> dict[str, Analysis]:
    """The current analysis of each model, by model name."""
    rows = con.execute(
        "SELECT model, version, analysis_id, params_json, built, updated_at FROM warehouse_current_analyses ORDER BY model"
    ).fetchall()
    return {r[0]: Analysis(r[0], r[1], r[2], json.loads(r[3] or "{}"), bool(r[4]), r[5]) for r in rows}


def chosen_sample_set(con: duckdb.DuckDBPyConnection) -> str:
    """The sample set the current change-point analysis read ('' = each run's first with pooled rows)."""
    found = analyses(con).get("events_candidates")
    return str(found.params.get("sample_set", "")) if found else ""


def _refuse(kind: str, value: object, known: list[str]) -> WarehouseError:
    shown = ", ".join(known[:KNOWN_SHOWN])
    more = f" (and {len(known) - KNOWN_SHOWN} more)" if len(known) > KNOWN_SHOWN else ""
    return WarehouseError(f"unknown {kind} {value!r}; known: {shown or 'none'}{more}")


def run_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every run with geometry or a runs row, alphabetically."""
    rows = con.execute(
        "SELECT run_id FROM runs UNION SELECT DISTINCT run_id FROM geometry_state ORDER BY run_id"
    ).fetchall()
    return [r[0] for r in rows]


def require_run(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    known = run_ids(con)
    if run_id not in known:
        raise _refuse("run", run_id, known)
    return run_id


@dataclass(frozen=True)
class Cohort:
    """The runs sharing one runs.config_hash, with their seeds, in seed order."""

    cohort_id: str
    run_ids: tuple[str, ...]
    seeds: tuple[int | None, ...]
    run_mode: str
    family_id: str | None


# The group of runs that have geometry but no runs row (so no cohort), drawn together.
NO_RUNS_ROW = ""


def cohorts(con: duckdb.DuckDBPyConnection) -> list[Cohort]:
    """Every cohort with geometry, training cohorts first, then by cohort id.

    Runs with geometry but without a runs row come last, as one group whose cohort_id is
    NO_RUNS_ROW: they belong to no cohort, but are not left out.
    """
    rows = con.execute(
        """
        WITH geometry_runs AS (
            SELECT DISTINCT run_id, min(seed) OVER (PARTITION BY run_id) AS seed FROM geometry_state
        )
        SELECT
            coalesce(r.config_hash, '') AS cohort_id,
            list(g.run_id ORDER BY coalesce(r.seed, g.seed), g.run_id),
            list(coalesce(r.seed, g.seed) ORDER BY coalesce(r.seed, g.seed), g.run_id),
            min(r.run_mode),
            min(r.family_id)
        FROM geometry_runs AS g
        LEFT JOIN runs AS r ON g.run_id = r.run_id
        GROUP BY cohort_id
        ORDER BY cohort_id = '', min(r.run_mode) <> 'train_full', min(r.family_id) NULLS FIRST, cohort_id
        """
    ).fetchall()
    return [Cohort(r[0], tuple(r[1]), tuple(r[2]), r[3] or "", r[4]) for r in rows]


def require_cohort(con: duckdb.DuckDBPyConnection, cohort_id: str) -> Cohort:
    found = {c.cohort_id: c for c in cohorts(con) if c.cohort_id != NO_RUNS_ROW}
    if cohort_id not in found:
        raise _refuse("cohort (runs.config_hash)", cohort_id, sorted(found))
    return found[cohort_id]


def split_metric(metric: str) -> tuple[str, str]:
    """``<module>.<descriptor>`` as (module, descriptor); the descriptor must be a known one."""
    module, _, descriptor = metric.partition(".")
    if descriptor not in contracts.DESCRIPTORS:
        raise WarehouseError(
            f"metric {metric!r}: write <module>.<descriptor>, the descriptor one of {', '.join(contracts.DESCRIPTORS)}"
        )
    return module, descriptor


def require_module(con: duckdb.DuckDBPyConnection, metric: str) -> None:
    """Refuse a metric whose module has no geometry, naming the modules there are."""
    module, _ = split_metric(metric)
    modules = [r[0] for r in con.execute("SELECT DISTINCT module FROM geometry_state ORDER BY module").fetchall()]
    if module not in modules:
        raise _refuse(f"module of metric {metric!r}", module, modules)


def series(
    con: duckdb.DuckDBPyConnection,
    run_ids: list[str] | tuple[str, ...],
    metric: str,
    layers: list[int] | None = None,
    sample_set: str = "",
    max_points: int | None = None,
) -> dict[str, np.ndarray]:
    """The series the change-point model analyses: run_id, layer, step, value arrays.

    A run's pooled rows of its analysed sample set (``sample_set``, else its alphabetically
    first with pooled rows); a run with only per-sample rows there gives the median across
    its samples per step, as events_candidates reads it. NaN and infinity are dropped.
    With ``max_points``, a longer series keeps the lowest and highest value of each of
    max_points / 2 equal slices of its captures, so its extremes (and steps) survive.
    Values are float32, as geometry_state stores them.
    """
    module, descriptor = split_metric(metric)
    layer_filter = "" if layers is None else f"AND layer IN ({', '.join(str(int(x)) for x in layers)})"
    thinning = "" if max_points is None else f"""
        , numbered AS (
            SELECT *,
                row_number() OVER (PARTITION BY run_id, layer ORDER BY step) - 1 AS i,
                count(*) OVER (PARTITION BY run_id, layer) AS n
            FROM captures
        ), sliced AS (
            SELECT *, CASE WHEN n <= {int(max_points)} THEN i ELSE i * {int(max_points) // 2} // n END AS slice
            FROM numbered
        ), kept AS (
            SELECT run_id, layer, step, value FROM sliced
            QUALIFY n <= {int(max_points)}
                OR row_number() OVER (PARTITION BY run_id, layer, slice ORDER BY value, step) = 1
                OR row_number() OVER (PARTITION BY run_id, layer, slice ORDER BY value DESC, step) = 1
        )"""
    sql = f"""
        WITH analysed AS (
            SELECT g.run_id, coalesce(min(g.sample_set) FILTER (WHERE g.sample_id IS NULL), min(g.sample_set)) AS sample_set,
                   count(*) FILTER (WHERE g.sample_id IS NULL) > 0 AS pooled
            FROM geometry_state AS g
            WHERE list_contains($runs, g.run_id) AND ($sample_set = '' OR g.sample_set = $sample_set)
            GROUP BY g.run_id
        ), captures AS (
            SELECT g.run_id, g.layer, g.step,
                   CASE WHEN a.pooled THEN min(CASE WHEN isfinite(g.{descriptor}) THEN g.{descriptor} END)
                        ELSE median(CASE WHEN isfinite(g.{descriptor}) THEN g.{descriptor} END) END::DOUBLE AS value
            FROM geometry_state AS g
            JOIN analysed AS a ON g.run_id = a.run_id AND g.sample_set = a.sample_set
            WHERE g.module = $module AND (g.sample_id IS NULL) = a.pooled {layer_filter}
            GROUP BY g.run_id, g.layer, g.step, a.pooled
            HAVING value IS NOT NULL
        ){thinning}
        SELECT run_id, layer, step, value::FLOAT AS value FROM {"kept" if max_points else "captures"}
        ORDER BY run_id, layer, step
    """
    params = {"runs": list(run_ids), "sample_set": sample_set, "module": module}
    return con.execute(sql, params).fetchnumpy()


def candidates(
    con: duckdb.DuckDBPyConnection, run_ids: list[str] | tuple[str, ...], metric: str | None = None
) -> dict[str, np.ndarray]:
    """Change-point candidates of the runs (one metric's, or every single-metric one)."""
    sql = """
        SELECT run_id, layer, metric, step, start_step, end_step, score, metric_z
        FROM events_candidates
        WHERE list_contains($runs, run_id) AND metric <> '__composite__'
          AND ($metric IS NULL OR metric = $metric)
        ORDER BY run_id, layer, step, metric
    """
    return con.execute(sql, {"runs": list(run_ids), "metric": metric}).fetchnumpy()


def consensus(con: duckdb.DuckDBPyConnection, cohort_id: str, metric: str) -> dict[str, np.ndarray]:
    """The cohort's consensus events on one metric, with their step spread and support."""
    sql = """
        SELECT layer, step_min, step_median, step_max, n_runs_supporting, n_runs_total, support, strength
        FROM events
        WHERE cohort_id = $cohort AND metric = $metric
        ORDER BY layer, step_median
    """
    return con.execute(sql, {"cohort": cohort_id, "metric": metric}).fetchnumpy()


def busiest_metrics(con: duckdb.DuckDBPyConnection, cohort: Cohort, limit: int) -> list[str]:
    """The cohort's metrics with the most consensus events, then the most candidates.

    A cohort without any candidate shows its first module's effective rank.
    """
    rows = con.execute(
        """
        WITH counts AS (
            SELECT metric, 1 AS events, 0 AS candidates FROM events WHERE cohort_id = $cohort
            UNION ALL
            SELECT metric, 0, 1 FROM events_candidates WHERE list_contains($runs, run_id)
        )
        SELECT metric FROM counts
        WHERE metric <> '__composite__'
        GROUP BY metric
        ORDER BY sum(events) DESC, sum(candidates) DESC, metric
        LIMIT $limit
        """,
        {"cohort": cohort.cohort_id, "runs": list(cohort.run_ids), "limit": limit},
    ).fetchall()
    if rows:
        return [r[0] for r in rows]
    first = con.execute(
        "SELECT min(module) FROM geometry_state WHERE list_contains($runs, run_id)", {"runs": list(cohort.run_ids)}
    ).fetchone()[0]
    return [f"{first}.eff_rank"] if first else []


def probe_run_count(con: duckdb.DuckDBPyConnection) -> int:
    """Runs that probe_summaries reads: a runs row with a family_id and a probe_name."""
    return con.execute("SELECT count(*) FROM runs WHERE family_id IS NOT NULL AND probe_name IS NOT NULL").fetchone()[0]


def family_ranking(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The family_ranking view's rows: probe families by mean DIS, with each seed's DIS."""
    cur = con.execute(
        "SELECT probe_name, family_id, family_rank, mean_dis, n_seeds, seeds, seed_dis "
        "FROM family_ranking ORDER BY probe_name, family_rank"
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


@dataclass(frozen=True)
class Side:
    """One signature of a match, cut into its series of K bins on normalised time."""

    run_id: str
    series: tuple[str, ...]
    values: np.ndarray  # (series, K)
    event_t: tuple[float, ...]
    event_layers: tuple[int, ...]
    event_metrics: tuple[str, ...]


@dataclass(frozen=True)
class Match:
    """A matches row with both signatures."""

    match_id: str
    rank_a: int
    score: float | None
    vector_cosine: float | None
    event_f1: float | None
    event_precision: float | None
    event_recall: float | None
    kind: str
    scope: str
    a: Side
    b: Side


def match_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT match_id FROM matches ORDER BY match_id").fetchall()]


def best_match_ids(con: duckdb.DuckDBPyConnection, run_ids: list[str] | None = None) -> list[str]:
    """Each run's best partner of its run-scope signatures (rank 1), by run."""
    rows = con.execute(
        """
        SELECT m.match_id
        FROM matches AS m JOIN signatures AS s ON s.signature_id = m.signature_id_a
        WHERE m.rank_a = 1 AND s.scope = 'run' AND ($runs IS NULL OR list_contains($runs, m.run_id_a))
        ORDER BY s.kind DESC, m.run_id_a
        """,
        {"runs": run_ids},
    ).fetchall()
    return [r[0] for r in rows]


def matches(con: duckdb.DuckDBPyConnection, ids: list[str]) -> list[Match]:
    """The matches of ``ids`` with both signatures, in the order given; unknown ids are refused.

    One query for all: each reads the signatures' long vectors, so one scan serves every match.
    """
    rows = con.execute(
        """
        SELECT m.match_id, m.rank_a, m.score, m.vector_cosine, m.event_f1, m.event_precision, m.event_recall,
               sa.kind, sa.scope,
               sa.run_id, sa.vector_layout, sa.vector, sa.event_t, sa.event_layers, sa.event_metrics,
               sb.run_id, sb.vector_layout, sb.vector, sb.event_t, sb.event_layers, sb.event_metrics
        FROM matches AS m
        JOIN signatures AS sa ON sa.signature_id = m.signature_id_a
        JOIN signatures AS sb ON sb.signature_id = m.signature_id_b
        WHERE list_contains($ids, m.match_id)
        """,
        {"ids": list(ids)},
    ).fetchall()
    found = {r[0]: Match(*r[:9], a=_side(*r[9:15]), b=_side(*r[15:21])) for r in rows}
    for match_id in ids:
        if match_id not in found:
            raise _refuse("match", match_id, match_ids(con))
    return [found[i] for i in ids]


def match(con: duckdb.DuckDBPyConnection, match_id: str) -> Match:
    return matches(con, [match_id])[0]


def _side(run_id, layout, vector, event_t, event_layers, event_metrics) -> Side:
    names, bins = layout_series(layout)
    values = np.asarray(vector, dtype=float)
    if values.size != len(names) * bins:
        raise WarehouseError(f"signature of run {run_id!r}: {values.size} values do not fill layout {layout[:60]!r}")
    # a trajectory vector is series after series; a probe vector is layer after layer
    grid = values.reshape(len(names), bins) if layout.startswith("trajectory") else values.reshape(bins, len(names)).T
    return Side(run_id, names, grid, tuple(event_t or ()),
                tuple(event_layers or ()), tuple(event_metrics or ()))


def layout_series(layout: str) -> tuple[tuple[str, ...], int]:
    """A vector_layout's series names and bins per series.

    ``trajectory:K=16;series=0:m.d,...`` has K bins per series; ``probe:layers=...;features=...``
    has one value per (layer, feature), layer after layer, drawn as one series per feature
    over the layers.
    """
    kind, _, rest = layout.partition(":")
    fields = dict(part.partition("=")[::2] for part in rest.split(";"))
    if kind == "trajectory" and "K" in fields and "series" in fields:
        return tuple(fields["series"].split(",")), int(fields["K"])
    if kind == "probe" and "layers" in fields and "features" in fields:
        return tuple(fields["features"].split(",")), len(fields["layers"].split(","))
    raise WarehouseError(f"cannot draw a signature of layout {layout[:60]!r}")


@dataclass(frozen=True)
class Shape:
    """Where the runs' geometry lies: each run's layers, the step span, the longest series."""

    layers: dict[str, list[int]]
    span: tuple[int, int]
    longest: int


def shape(con: duckdb.DuckDBPyConnection, run_ids: list[str] | tuple[str, ...]) -> Shape:
    """The runs' layers (in run order), first and last step, and most captures of a series, in one scan."""
    rows = con.execute(
        """
        WITH series AS (
            SELECT run_id, layer, min(step) AS first, max(step) AS last, count(DISTINCT step) AS n
            FROM geometry_state WHERE list_contains($runs, run_id)
            GROUP BY run_id, layer, module
        )
        SELECT run_id, list(DISTINCT layer ORDER BY layer), min(first), max(last), max(n)
        FROM series GROUP BY run_id
        """,
        {"runs": list(run_ids)},
    ).fetchall()
    found = {r[0]: r for r in rows}
    layers = {r: found[r][1] for r in run_ids if r in found}
    if not rows:
        return Shape(layers, (0, 0), 0)
    return Shape(layers, (min(r[2] for r in rows), max(r[3] for r in rows)), max(r[4] for r in rows))


def only_metric(candidates: dict[str, np.ndarray], metric: str) -> dict[str, np.ndarray]:
    """The candidates of one metric, from those of every metric."""
    keep = candidates["metric"] == metric
    return {k: v[keep] for k, v in candidates.items()}
