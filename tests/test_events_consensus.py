"""events (consensus@2) against an independent python reading of its rule, and its BI view.

consensus@2: the candidates of a cohort grouped by layer, metric and direction of change
(the sign of metric_size), clustered by gaps in normalised time t with a tolerance taken
from the group itself: the widest range of t among the runs' k-th candidates, at most
max_tolerance and half the smallest spacing of a run's own successive candidates, at least
min_tolerance. A lake holding a consensus@1.1 analysis still reads it (the last tests).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model_fixtures import only_models_sql
from warehouse import build_catalog, connect, models, writer
from warehouse.contracts import EVENTS_CANDIDATES
from warehouse.demo import write_demo
from warehouse.hashing import canonical_json, config_hash
from warehouse.lake import init_lake

CANDIDATES = "cpd-hand"  # the analysis of events_candidates the tests write
CAPTURE = "capture-v1"
COMPOSITE = "__composite__"
SLACK = 1e-12  # design reading: a gap equal to the tolerance up to rounding stays inside
V1_MODEL = Path(__file__).parent / "data" / "models" / "events_consensus1_1.sql"  # the released consensus@1.1


# -- inputs ------------------------------------------------------------------------------


def run_row(run_id: str, cohort: str, seed: int) -> dict[str, Any]:
    config = {"cohort": cohort, "lr": 1e-3, "seed": seed}
    return {
        "run_id": run_id, "seed": seed, "run_mode": "train_full", "model_id": "tiny",
        "config_json": canonical_json(config), "config_hash": config_hash(config), "status": "completed",
        "started_at_utc": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    }


def cohort_hash(cohort: str) -> str:
    return config_hash({"cohort": cohort, "lr": 1e-3})


def geometry_rows(
    run_id: str, steps: Iterable[int], *, layers=(0, 1), modules=("resid_post", "mlp_out"),
    sample_set: str = "eval", sample_id: str | None = None,
) -> list[dict[str, Any]]:
    """Pooled rows of one run: only their steps matter to consensus events."""
    return [
        {
            "run_id": run_id, "analysis_id": CAPTURE, "step": step, "seed": 0, "sample_set": sample_set,
            "sample_id": sample_id, "layer": layer, "module": module, "n_samples": 8, "dim": 4,
            "eff_rank": 2.0, "sv_entropy": 0.5, "sparsity": 0.1, "principal_angle_prev": None,
            "principal_angle_init": 0.0, "act_norm": 1.0,
        }
        for step in sorted(set(steps)) for layer in layers for module in modules
    ]


UP = 1.0  # metric_size of a rise (only its sign matters)


def candidate(
    run_id: str, event_id: str, layer: int, metric: str, step: int, score: float, size: float | None = UP,
) -> dict[str, Any]:
    """A candidate as cpd@1 writes one: a composite event carries no metric_size (its z is a
    root mean square, without a sign)."""
    return {
        "run_id": run_id, "analysis_id": CANDIDATES, "event_id": event_id, "layer": layer, "metric": metric,
        "step": step, "start_step": step, "end_step": step, "score": score,
        "event_type": "change_point_composite" if metric == COMPOSITE else "change_point",
        "metric_size": None if metric == COMPOSITE else size,
    }


def sql_without_other_models(tmp_path: Path) -> Path:
    """The repository's sql/ with only this model: events_candidates is read as producer data."""
    return only_models_sql(tmp_path / "sql", "events")


def build(
    tmp_path: Path, runs: list[dict], geometry: list[dict], candidates: list[dict], params: dict | None = None,
) -> tuple[Path, Path]:
    lake = init_lake(tmp_path / "lake")
    writer.write("runs", runs, lake=lake)
    writer.write("geometry_state", geometry, lake=lake)
    if candidates:
        writer.write("events_candidates", candidates, lake=lake)
    sql = sql_without_other_models(tmp_path)
    run_models(lake, sql, params)
    return lake, sql


def run_models(lake: Path, sql: Path, params: dict | None = None) -> None:
    models.run(lake=lake, sql_dir=sql, params={"events": params or {}}, report=lambda _: None)


def built(lake: Path) -> list[dict[str, Any]]:
    """Every events row of the lake, with its analysis_id (folder names read as strings)."""
    with duckdb.connect() as con:
        return dicts(con.execute(
            f"SELECT * FROM read_parquet('{lake}/events/*/*.parquet', hive_partitioning = true,"
            " hive_types = {'analysis_id': 'VARCHAR'}) ORDER BY cohort_id, layer, metric, t_median"
        ))


def dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def analyses(lake: Path) -> list[str]:
    return sorted(p.name.split("=", 1)[1] for p in (lake / "events").iterdir())


# -- the reference ------------------------------------------------------------------------


def median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def round_half_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def f32(x: float) -> float:
    return float(np.float32(x))


def finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def direction(size: float | None) -> int:
    """+1 for a rise, -1 for a fall, 0 without a usable sign (NULL, NaN, 0)."""
    size = finite(size)
    return 0 if not size else (1 if size > 0 else -1)


def placed(runs: list[dict], geometry: list[dict], candidates: list[dict], sample_set: str = "") -> list[dict]:
    """The candidates that can be placed (a cohort and a pooled series), with cohort, t,
    score (NaN as NULL, float32 as stored) and direction."""
    cohort_of = {r["run_id"]: r["config_hash"] for r in runs}
    pooled = [g for g in geometry if g["sample_id"] is None]
    analysed = {}
    for g in pooled:
        if sample_set in ("", g["sample_set"]):
            analysed[g["run_id"]] = min(analysed.get(g["run_id"], g["sample_set"]), g["sample_set"])
    steps: dict[tuple, list[int]] = {}
    for g in pooled:
        if analysed.get(g["run_id"]) == g["sample_set"]:
            steps.setdefault((g["run_id"], g["layer"], g["module"]), []).append(g["step"])
            steps.setdefault((g["run_id"], g["layer"], COMPOSITE), []).append(g["step"])
    out = []
    for c in candidates:
        module = COMPOSITE if c["metric"] == COMPOSITE else c["metric"].split(".")[0]
        grid = steps.get((c["run_id"], c["layer"], module))
        if c["run_id"] not in cohort_of or grid is None:
            continue
        first, last = min(grid), max(grid)
        t = 0.0 if last == first else (c["step"] - first) / (last - first)
        score = finite(c["score"])
        out.append(dict(
            c, cohort=cohort_of[c["run_id"]], t=t, score=None if score is None else f32(score),
            direction=direction(c.get("metric_size")),
        ))
    return out


def in_t_order(members: list[dict]) -> list[dict]:
    return sorted(members, key=lambda c: (c["t"], c["run_id"], c["step"], c["event_id"]))


def gap_clusters(members: list[dict], tolerance: float) -> list[list[dict]]:
    """Neighbours in t order more than the tolerance (and the slack) apart start a new cluster."""
    members = in_t_order(members)
    clusters = [[members[0]]]
    for prev, c in zip(members, members[1:]):
        if c["t"] - prev["t"] > tolerance + SLACK:
            clusters.append([])
        clusters[-1].append(c)
    return clusters


def group_tolerance(members: list[dict], min_tolerance: float, max_tolerance: float) -> float:
    """consensus@2's tolerance of one (cohort, layer, metric, direction)."""
    by_run: dict[str, list[dict]] = {}
    for c in members:
        by_run.setdefault(c["run_id"], []).append(c)
    orders = [sorted(cs, key=lambda c: (c["t"], c["step"], c["event_id"])) for cs in by_run.values()]
    spreads = []
    for k in range(max(map(len, orders))):
        kth = [order[k]["t"] for order in orders if len(order) > k]
        if len(kth) >= 2:
            spreads.append(max(kth) - min(kth))
    spacings = [b["t"] - a["t"] for order in orders for a, b in zip(order, order[1:])]
    spread = max(spreads) if spreads else 0.0
    half_spacing = min(spacings) / 2 if spacings else max_tolerance
    return max(min_tolerance, min(spread, max_tolerance, half_spacing))


def event_row(analysis_id: str, cohort: str, layer: int, metric: str, cluster: list[dict], total: int) -> dict:
    supporting = sorted({c["run_id"] for c in cluster})
    scores = [c["score"] for c in cluster if c["score"] is not None]
    return {
        "event_id": event_id(analysis_id, cohort, layer, metric, cluster[0]["event_id"]),
        "analysis_id": analysis_id, "cohort_id": cohort, "layer": layer, "metric": metric,
        "event_type": "consensus",
        "step_median": round_half_away(median([c["step"] for c in cluster])),
        "step_min": min(c["step"] for c in cluster), "step_max": max(c["step"] for c in cluster),
        "t_median": median([c["t"] for c in cluster]),
        "n_runs_supporting": len(supporting), "n_runs_total": total, "support": len(supporting) / total,
        "strength": sum(scores) / len(scores) if scores else None,
        "source_event_ids": [c["event_id"] for c in cluster], "source_run_ids": supporting,
    }


def supported_events(
    groups: dict[tuple, list[dict]], tolerance_of, runs: list[dict], analysis_id: str,
) -> list[dict[str, Any]]:
    """Every cluster of every group that at least half of its cohort's runs support."""
    cohort_size = Counter(r["config_hash"] for r in runs)
    events = []
    for key, members in groups.items():
        cohort, layer, metric = key[:3]
        for cluster in gap_clusters(members, tolerance_of(members)):
            if 2 * len({c["run_id"] for c in cluster}) >= cohort_size[cohort]:
                events.append(event_row(analysis_id, cohort, layer, metric, cluster, cohort_size[cohort]))
    return events


def reference(
    runs: list[dict], geometry: list[dict], candidates: list[dict], analysis_id: str,
    min_tolerance: float = 0.05, max_tolerance: float = 0.25, sample_set: str = "",
) -> list[dict[str, Any]]:
    """consensus@2 in plain python."""
    groups: dict[tuple, list[dict]] = {}
    for c in placed(runs, geometry, candidates, sample_set):
        groups.setdefault((c["cohort"], c["layer"], c["metric"], c["direction"]), []).append(c)
    return supported_events(groups, lambda m: group_tolerance(m, min_tolerance, max_tolerance), runs, analysis_id)


def reference_v1(
    runs: list[dict], geometry: list[dict], candidates: list[dict], analysis_id: str,
    tolerance: float = 0.05, sample_set: str = "",
) -> list[dict[str, Any]]:
    """design.md's consensus@1 with its exact readings: one fixed tolerance, no direction."""
    groups: dict[tuple, list[dict]] = {}
    for c in placed(runs, geometry, candidates, sample_set):
        groups.setdefault((c["cohort"], c["layer"], c["metric"]), []).append(c)
    return supported_events(groups, lambda _: tolerance, runs, analysis_id)


def event_id(analysis_id: str, cohort: str, layer: int, metric: str, first_source: str) -> str:
    return hashlib.sha256(f"{analysis_id}|{cohort}|{layer}|{metric}|{first_source}".encode()).hexdigest()[:32]


def natural_key(row: dict) -> tuple:
    return (row["cohort_id"], row["layer"], row["metric"], tuple(row["source_event_ids"]))


def assert_matches(got: list[dict], want: list[dict]) -> None:
    got_by = {natural_key(r): r for r in got}
    want_by = {natural_key(r): r for r in want}
    assert len(got_by) == len(got)
    assert got_by.keys() == want_by.keys()
    for key, w in want_by.items():
        g = got_by[key]
        for col, value in w.items():
            if col in ("t_median", "support", "strength"):
                assert g[col] == pytest.approx(value, rel=2e-5, abs=1e-7), (key, col)
            else:
                assert g[col] == value, (key, col)


def check_rows(tmp_path: Path, runs, geometry, candidates, params: dict | None = None) -> list[dict]:
    """Build, compare with the reference, and return the rows."""
    lake, _ = build(tmp_path, runs, geometry, candidates, params)
    [analysis] = analyses(lake)
    got = built(lake)
    assert_matches(got, reference(runs, geometry, candidates, analysis, **(params or {})))
    return got


def check(tmp_path: Path, runs, geometry, candidates, params: dict | None = None) -> dict[tuple, dict]:
    """check_rows, by (cohort, layer, metric, first step): one event per key."""
    got = check_rows(tmp_path, runs, geometry, candidates, params)
    by_key = {(r["cohort_id"], r["layer"], r["metric"], r["step_min"]): r for r in got}
    assert len(by_key) == len(got)
    return by_key


# -- hand-checkable cases -----------------------------------------------------------------

RP = "resid_post.eff_rank"
DOWN = -0.5


def test_seeds_reaching_a_transition_at_different_times_make_one_event(tmp_path: Path) -> None:
    """Three seeds of about 3,000 steps reach the same rise at steps 1,675, 2,050 and 2,275
    (t 0.56 to 0.75): one event that every seed supports, with its spread; consensus@1's
    fixed tolerance of 0.05 in t would split it into three clusters of one run, none kept."""
    runs = [run_row(f"k{i}", "K", i) for i in range(3)]
    ends = {"k0": 3000, "k1": 2975, "k2": 3025}
    geometry = [g for run, end in ends.items() for g in geometry_rows(run, range(0, end + 1, 25))]
    # a run with no runs row: no cohort, so its late candidate neither counts nor widens the spread
    geometry += geometry_rows("orphan", range(0, 3001, 25))
    candidates = [
        candidate("k0", "k0-grok", 0, RP, 1675, 3.0),
        candidate("k1", "k1-grok", 0, RP, 2050, 4.0),
        candidate("k2", "k2-grok", 0, RP, 2275, 5.0),
        candidate("orphan", "orphan-grok", 0, RP, 2975, 9.0),
    ]
    t = [1675 / 3000, 2050 / 2975, 2275 / 3025]
    assert t[1] - t[0] > 0.05 and t[2] - t[1] > 0.05  # apart under consensus@1
    assert reference_v1(runs, geometry, candidates, "v1") == []
    got = check(tmp_path, runs, geometry, candidates)
    [event] = got.values()
    assert event["source_event_ids"] == ["k0-grok", "k1-grok", "k2-grok"]
    assert (event["n_runs_supporting"], event["n_runs_total"], event["support"]) == (3, 3, 1.0)
    assert (event["step_min"], event["step_median"], event["step_max"]) == (1675, 2050, 2275)
    assert event["t_median"] == pytest.approx(2050 / 2975)
    assert event["strength"] == 4.0
    assert event["source_run_ids"] == ["k0", "k1", "k2"]


def test_a_runs_successive_changes_stay_apart(tmp_path: Path) -> None:
    """Two rises of every seed, early and late: two events. And where the seeds' ranks do
    not line up (m2 lacks the early rise, so its late one is its first), the tolerance stays
    below half the spacing of a run's own rises, so m0's and m1's two rises are not joined."""
    runs = [run_row(f"l{i}", "L", i) for i in range(3)] + [run_row(f"m{i}", "M", i) for i in range(3)]
    geometry = [g for r in runs for g in geometry_rows(r["run_id"], range(0, 1001, 10))]
    candidates = [
        candidate("l0", "l0-early", 0, RP, 100, 1.0), candidate("l0", "l0-late", 0, RP, 800, 1.0),
        candidate("l1", "l1-early", 0, RP, 130, 1.0), candidate("l1", "l1-late", 0, RP, 850, 1.0),
        candidate("l2", "l2-early", 0, RP, 70, 1.0), candidate("l2", "l2-late", 0, RP, 760, 1.0),
        candidate("m0", "m0-a", 0, RP, 300, 1.0), candidate("m0", "m0-b", 0, RP, 450, 1.0),
        candidate("m1", "m1-a", 0, RP, 300, 1.0), candidate("m1", "m1-b", 0, RP, 450, 1.0),
        candidate("m2", "m2-b", 0, RP, 450, 1.0),
    ]
    got = check(tmp_path, runs, geometry, candidates)
    lc, mc = cohort_hash("L"), cohort_hash("M")
    assert set(got) == {(lc, 0, RP, 70), (lc, 0, RP, 760), (mc, 0, RP, 300), (mc, 0, RP, 450)}
    # L: rank spreads 0.06 and 0.09 (the widest), spacings 0.69 and more: tolerance 0.09
    assert got[(lc, 0, RP, 70)]["source_event_ids"] == ["l2-early", "l0-early", "l1-early"]
    assert got[(lc, 0, RP, 760)]["source_event_ids"] == ["l2-late", "l0-late", "l1-late"]
    # M: the first ranks spread 0.15 (0.30, 0.30, 0.45) but half the smallest spacing is 0.075
    assert got[(mc, 0, RP, 300)]["source_run_ids"] == ["m0", "m1"]
    assert got[(mc, 0, RP, 450)]["source_run_ids"] == ["m0", "m1", "m2"]
    assert (got[(mc, 0, RP, 300)]["support"], got[(mc, 0, RP, 450)]["support"]) == (pytest.approx(2 / 3), 1.0)


def test_opposite_directions_never_merge(tmp_path: Path) -> None:
    """A rise and a fall at the same moment are two events; so is a candidate without a sign
    (NULL metric_size), which joins neither."""
    runs = [run_row(f"n{i}", "N", i) for i in range(4)]
    geometry = [g for r in runs for g in geometry_rows(r["run_id"], range(0, 101, 5))]
    candidates = [
        candidate("n0", "n0-up", 0, RP, 50, 1.0, size=2.0),
        candidate("n1", "n1-up", 0, RP, 55, 2.0, size=0.1),
        candidate("n2", "n2-down", 0, RP, 50, 3.0, size=DOWN),
        candidate("n3", "n3-down", 0, RP, 50, 4.0, size=DOWN),
        candidate("n0", "n0-down", 0, RP, 50, 5.0, size=DOWN),  # n0 falls too: both events count it
        candidate("n1", "n1-unsigned", 0, RP, 50, 6.0, size=None),
        candidate("n2", "n2-unsigned", 0, RP, 55, 6.0, size=0.0),
    ]
    n = cohort_hash("N")
    events = sorted(check_rows(tmp_path, runs, geometry, candidates), key=lambda r: r["source_event_ids"])
    assert [(r["source_event_ids"], r["n_runs_supporting"]) for r in events] == [
        (["n0-down", "n2-down", "n3-down"], 3),
        (["n0-up", "n1-up"], 2),
        (["n1-unsigned", "n2-unsigned"], 2),
    ]
    assert {r["cohort_id"] for r in events} == {n} and all(r["n_runs_total"] == 4 for r in events)
    assert len({r["event_id"] for r in events}) == 3


def test_gap_above_tolerance_splits_gap_at_tolerance_joins(tmp_path: Path) -> None:
    """The seeds spread by 0.05 and a0 and a1 are 0.05 apart: the tolerance is min_tolerance,
    and a gap equal to it joins, one above it splits."""
    runs = [run_row("a0", "A", 0), run_row("a1", "A", 1)]
    geometry = geometry_rows("a0", range(0, 101, 5)) + geometry_rows("a1", range(0, 1001, 50))
    candidates = [
        candidate("a0", "e-a0-15", 0, RP, 15, 2.0),  # t 0.15
        # t 0.20: 0.05 after 0.15 on paper, 0.05000000000000002 in binary: stays together
        candidate("a1", "e-a1-200", 0, RP, 200, 4.0),
        candidate("a1", "e-a1-251", 0, RP, 251, 3.0),  # t 0.251: 0.051 after, a new cluster
    ]
    assert 200 / 1000 - 15 / 100 > 0.05  # the rounding the model must not split on
    got = check(tmp_path, runs, geometry, candidates)
    a = cohort_hash("A")
    assert set(got) == {(a, 0, RP, 15), (a, 0, RP, 251)}
    first, second = got[(a, 0, RP, 15)], got[(a, 0, RP, 251)]
    assert first["source_event_ids"] == ["e-a0-15", "e-a1-200"]
    assert first["source_run_ids"] == ["a0", "a1"]
    assert (first["step_median"], first["step_min"], first["step_max"]) == (108, 15, 200)  # 107.5 -> 108
    assert first["t_median"] == pytest.approx(0.175)
    assert (first["n_runs_supporting"], first["n_runs_total"], first["support"]) == (2, 2, 1.0)
    assert first["strength"] == 3.0
    # one run of two is exactly half: kept
    assert (second["n_runs_supporting"], second["support"], second["step_median"]) == (1, 0.5, 251)
    assert second["t_median"] == pytest.approx(0.251)
    assert first["event_type"] == "consensus" and first["event_id"] != second["event_id"]


def test_support_threshold_and_a_run_with_several_candidates(tmp_path: Path) -> None:
    # four runs; b3 has neither geometry nor candidates and still counts in the cohort's size
    runs = [run_row(f"b{i}", "B", i) for i in range(4)]
    geometry = [g for i in range(3) for g in geometry_rows(f"b{i}", range(0, 101))]
    candidates = [
        # b0 three times and b1 once: 2 runs of 4 support the cluster (exactly half: kept);
        # b0's candidates 0.02 and 0.03 apart keep the tolerance at min_tolerance, within
        # which a run's candidates are one change found twice
        candidate("b0", "x1", 1, RP, 10, 1.0),
        candidate("b0", "x2", 1, RP, 12, 2.0),
        candidate("b1", "x3", 1, RP, 13, 3.0),
        candidate("b0", "x4", 1, RP, 15, 6.0),
        # b2 alone, later: 1 run of 4 is below half: dropped
        candidate("b2", "y1", 1, RP, 60, 9.0),
        candidate("b2", "y2", 1, RP, 62, 9.0),
    ]
    got = check(tmp_path, runs, geometry, candidates)
    b = cohort_hash("B")
    assert list(got) == [(b, 1, RP, 10)]
    event = got[(b, 1, RP, 10)]
    assert event["source_event_ids"] == ["x1", "x2", "x3", "x4"]  # all of b0's, in t order
    assert event["source_run_ids"] == ["b0", "b1"]
    assert (event["n_runs_supporting"], event["n_runs_total"], event["support"]) == (2, 4, 0.5)
    assert event["strength"] == 3.0  # (1 + 2 + 3 + 6) / 4: every candidate counts
    # median of 10, 12, 13, 15 is 12.5: half away from zero gives 13 (half to even: 12)
    assert (event["step_median"], event["step_min"], event["step_max"]) == (13, 10, 15)
    assert event["t_median"] == pytest.approx(0.125)


def test_two_cohorts_cluster_apart(tmp_path: Path) -> None:
    runs = [run_row("c0", "C", 0), run_row("c1", "C", 1), run_row("d0", "D", 0), run_row("d1", "D", 1),
            run_row("d2", "D", 2)]
    geometry = [g for r in runs for g in geometry_rows(r["run_id"], range(0, 101, 5))]
    candidates = [
        candidate("c0", "c0-e", 0, RP, 40, 1.0),
        candidate("d0", "d0-e", 0, RP, 40, 2.0),  # same t as c0, another cohort: apart
        candidate("d1", "d1-e", 0, RP, 45, 4.0),
        candidate("c1", "c1-other-layer", 1, RP, 40, 1.0),  # another layer: apart
    ]
    got = check(tmp_path, runs, geometry, candidates)
    c, d = cohort_hash("C"), cohort_hash("D")
    assert set(got) == {(c, 0, RP, 40), (d, 0, RP, 40), (c, 1, RP, 40)}
    assert got[(c, 0, RP, 40)]["source_run_ids"] == ["c0"] and got[(c, 0, RP, 40)]["n_runs_total"] == 2
    assert got[(d, 0, RP, 40)]["source_run_ids"] == ["d0", "d1"] and got[(d, 0, RP, 40)]["n_runs_total"] == 3
    assert got[(d, 0, RP, 40)]["support"] == pytest.approx(2 / 3)
    assert got[(d, 0, RP, 40)]["step_median"] == 43  # 42.5, half away from zero


def test_composite_and_module_spans(tmp_path: Path) -> None:
    runs = [run_row("e0", "E", 0), run_row("e1", "E", 1)]
    geometry = (
        geometry_rows("e0", range(0, 201, 10), layers=(0,))
        + geometry_rows("e1", range(0, 101, 10), layers=(0,))
        # e0 layer 1: mlp_out spans 0..400 while resid_post spans 0..200 (the module before
        # the dot picks the series); the composite takes the layer's whole span
        + geometry_rows("e0", range(0, 201, 10), layers=(1,), modules=("resid_post",))
        + geometry_rows("e0", range(0, 401, 20), layers=(1,), modules=("mlp_out",))
    )
    candidates = [
        candidate("e0", "e0-comp", 0, COMPOSITE, 100, 5.0),  # t 0.5 of 0..200
        candidate("e1", "e1-comp", 0, COMPOSITE, 50, 7.0),  # t 0.5 of 0..100
        candidate("e1", "e1-rp", 0, RP, 50, 1.0),  # same t, another metric: its own cluster
        candidate("e0", "e0-mlp", 1, "mlp_out.sparsity", 200, 1.0),  # t 0.5 of 0..400
        candidate("e0", "e0-rp", 1, RP, 200, 1.0),  # t 1.0 of 0..200
        candidate("e0", "e0-none", 1, COMPOSITE, 20, 1.0),
    ]
    got = check(tmp_path, runs, geometry, candidates)
    e = cohort_hash("E")
    comp = got[(e, 0, COMPOSITE, 50)]
    assert comp["source_event_ids"] == ["e0-comp", "e1-comp"]  # same t: run_id breaks the tie
    assert (comp["t_median"], comp["step_median"], comp["strength"]) == (0.5, 75, 6.0)
    assert got[(e, 0, RP, 50)]["source_event_ids"] == ["e1-rp"]
    assert got[(e, 1, "mlp_out.sparsity", 200)]["t_median"] == 0.5
    assert got[(e, 1, RP, 200)]["t_median"] == 1.0
    assert got[(e, 1, COMPOSITE, 20)]["t_median"] == pytest.approx(0.05)  # 20 of 0..400


def test_different_step_grids_meet_in_t(tmp_path: Path) -> None:
    runs = [run_row("f0", "F", 0), run_row("f1", "F", 1), run_row("f2", "F", 2)]
    geometry = (
        geometry_rows("f0", range(0, 101, 10))
        + geometry_rows("f1", range(0, 1001, 40))
        + geometry_rows("f2", [1000, 1010, 1020, 1030])  # a resumed run: t from its own first step
    )
    candidates = [
        candidate("f0", "f0-e", 0, RP, 50, 1.0),  # t 0.5
        candidate("f1", "f1-e", 0, RP, 520, 2.0),  # t 0.52
        # t 0.6666...: the seeds spread by 1/6, so f2 joins (consensus@1 left it alone)
        candidate("f2", "f2-e", 0, RP, 1020, 3.0),
        candidate("f2", "f2-far", 0, RP, 1030, 3.0, size=DOWN),  # t 1.0, a fall: alone, 1 of 3
    ]
    got = check(tmp_path, runs, geometry, candidates)
    f = cohort_hash("F")
    event = got[(f, 0, RP, 50)]
    assert set(got) == {(f, 0, RP, 50)}
    assert event["source_run_ids"] == ["f0", "f1", "f2"]
    assert (event["step_median"], event["step_min"], event["step_max"]) == (520, 50, 1020)
    assert event["t_median"] == pytest.approx(0.52)


def test_sample_set_and_tolerance_parameters(tmp_path: Path) -> None:
    runs = [run_row("g0", "G", 0), run_row("g1", "G", 1)]
    geometry = (
        geometry_rows("g0", range(0, 101, 5), sample_set="a_set")
        + geometry_rows("g0", range(0, 201, 5), sample_set="b_set")
        + geometry_rows("g0", range(0, 401, 5), sample_set="0_per_sample", sample_id="s1")  # not pooled
        + geometry_rows("g1", range(0, 101, 5), sample_set="a_set")
        + geometry_rows("g1", range(0, 201, 5), sample_set="b_set")
    )
    candidates = [candidate("g0", "g0-e", 0, RP, 40, 1.0), candidate("g1", "g1-e", 0, RP, 45, 1.0)]
    lake, sql = build(tmp_path, runs, geometry, candidates)
    [default] = analyses(lake)
    got = built(lake)
    assert_matches(got, reference(runs, geometry, candidates, default))
    # the alphabetically first pooled sample set: t 0.4 and 0.45 of 0..100
    assert [(r["source_event_ids"], r["t_median"]) for r in got] == [(["g0-e", "g1-e"], pytest.approx(0.425))]
    by_params = {}
    fixed = {"min_tolerance": 0.01, "max_tolerance": 0.01}
    for params in ({"sample_set": "b_set"}, {"sample_set": "b_set", "min_tolerance": 0.0}, {"sample_set": "b_set", **fixed}):
        before = set(analyses(lake))
        run_models(lake, sql, params)
        [new] = set(analyses(lake)) - before
        by_params[tuple(params.values())] = rows = [r for r in built(lake) if r["analysis_id"] == new]
        assert_matches(rows, reference(runs, geometry, candidates, new, **params))
    # b_set: t 0.2 and 0.225 of 0..200, together; without a floor the tolerance is their
    # spread, 0.025, which still joins them; a fixed tolerance of 0.01 splits them
    for key in (("b_set",), ("b_set", 0.0)):
        assert [(r["source_event_ids"], r["t_median"]) for r in by_params[key]] == [
            (["g0-e", "g1-e"], pytest.approx(0.2125))
        ]
    assert [r["source_event_ids"] for r in by_params[("b_set", 0.01, 0.01)]] == [["g0-e"], ["g1-e"]]
    assert len(analyses(lake)) == 4


def test_max_tolerance_bounds_the_spread_and_min_tolerance_wins_where_they_cross(tmp_path: Path) -> None:
    runs = [run_row(f"k{i}", "K", i) for i in range(3)]
    geometry = [g for r in runs for g in geometry_rows(r["run_id"], range(0, 3001, 25))]
    candidates = [candidate(f"k{i}", f"k{i}-grok", 0, RP, step, 1.0) for i, step in enumerate([1675, 2050, 2275])]
    lake, sql = build(tmp_path, runs, geometry, candidates, {"max_tolerance": 0.1})
    [first] = analyses(lake)
    # the seeds spread 0.2 in t; at most 0.1: the gap of 0.125 after 1,675 splits, 0.075 joins
    rows = built(lake)
    assert_matches(rows, reference(runs, geometry, candidates, first, max_tolerance=0.1))
    assert [r["source_event_ids"] for r in rows] == [["k1-grok", "k2-grok"]]  # k0 alone: 1 of 3
    crossed = {"min_tolerance": 0.13, "max_tolerance": 0.1}
    run_models(lake, sql, crossed)
    [second] = set(analyses(lake)) - {first}
    rows = [r for r in built(lake) if r["analysis_id"] == second]
    assert_matches(rows, reference(runs, geometry, candidates, second, **crossed))
    assert [r["source_event_ids"] for r in rows] == [["k0-grok", "k1-grok", "k2-grok"]]  # a fixed 0.13


def test_nan_score_counts_as_null_and_unplaceable_candidates_are_left_out(tmp_path: Path) -> None:
    runs = [run_row("h0", "H", 0), run_row("h1", "H", 1)]
    geometry = geometry_rows("h0", range(0, 101, 5)) + geometry_rows("h1", range(0, 101, 5))
    lake = init_lake(tmp_path / "lake")
    writer.write("runs", runs, lake=lake)
    writer.write("geometry_state", geometry, lake=lake)
    candidates = [
        candidate("h0", "h0-e", 0, RP, 30, 4.0),
        candidate("h1", "h1-nan", 0, RP, 30, float("nan")),  # another producer's NaN
        candidate("h1", "h1-e", 0, RP, 35, 2.0),
        candidate("zz", "zz-e", 0, RP, 30, 1.0),  # a run missing from runs: no cohort
        candidate("h0", "h0-layer9", 9, RP, 30, 1.0),  # no series at layer 9: no t
        candidate("h0", "h0-nan-size", 0, RP, 30, 1.0, size=float("nan")),  # no sign: not with the rises
    ]
    # the writer refuses NaN, so write the file as another tool would
    fields = [c.field for c in EVENTS_CANDIDATES.file_columns]
    trailer = {"schema_version": "events_candidates@2.0",
               "created_at_utc": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}
    for run in ("h0", "h1", "zz"):
        folder = lake / "events_candidates" / f"analysis_id={CANDIDATES}" / f"run_id={run}"
        folder.mkdir(parents=True)
        rows = [{f.name: c.get(f.name) for f in fields} | trailer for c in candidates if c["run_id"] == run]
        pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(fields)), folder / "part-other-tool.parquet")
    run_models(lake, sql_without_other_models(tmp_path))
    [analysis] = analyses(lake)
    got = built(lake)
    assert_matches(got, reference(runs, geometry, candidates, analysis))
    [event, unsigned] = sorted(got, key=lambda r: len(r["source_event_ids"]), reverse=True)
    assert unsigned["source_event_ids"] == ["h0-nan-size"] and unsigned["support"] == 0.5
    assert event["source_event_ids"] == ["h0-e", "h1-nan", "h1-e"]
    assert event["strength"] == 3.0  # the NaN score is skipped, the candidate still counts
    assert (event["step_median"], event["n_runs_supporting"]) == (30, 2)


def test_event_ids_are_stable_and_name_the_analysis(tmp_path: Path) -> None:
    runs = [run_row("a0", "A", 0)]
    geometry = geometry_rows("a0", range(0, 101, 10))
    candidates = [candidate("a0", "first", 0, RP, 20, 1.0), candidate("a0", "second", 0, RP, 20, 1.0)]
    lake, sql = build(tmp_path, runs, geometry, candidates)
    [analysis] = analyses(lake)
    [event] = built(lake)
    a = cohort_hash("A")
    # the first source event opens the cluster: ties in t, run and step go by event_id
    assert event["event_id"] == hashlib.sha256(f"{analysis}|{a}|0|{RP}|first".encode()).hexdigest()[:32]
    assert analysis.startswith("consensus2-")
    # a rebuild with nothing new does no work and keeps the ids
    [result] = models.run(lake=lake, sql_dir=sql, report=lambda _: None)
    assert not result.plan.build and [r["event_id"] for r in built(lake)] == [event["event_id"]]
    # another analysis of the same cluster: another id
    run_models(lake, sql, {"max_tolerance": 0.1})
    [other] = set(analyses(lake)) - {analysis}
    assert {r["event_id"] for r in built(lake)} == {event["event_id"], event_id(other, a, 0, RP, "first")}


# -- random cohorts against the reference -------------------------------------------------


def random_case(rng: np.random.Generator) -> tuple[list, list, list]:
    runs, geometry, candidates = [], [], []
    metrics = [RP, "mlp_out.sparsity", COMPOSITE]
    for k, cohort in enumerate("PQR"):
        for seed in range(int(rng.integers(2, 6))):
            run_id = f"{cohort}{seed}"
            runs.append(run_row(run_id, cohort, seed))
            if rng.random() < 0.15:
                continue  # a run without geometry or candidates
            start, every = int(rng.integers(0, 3)) * 100, int(rng.integers(5, 40))
            grid = list(range(start, start + every * int(rng.integers(10, 60)) + 1, every))
            geometry += geometry_rows(run_id, grid)
            lag = float(rng.uniform(-0.08, 0.08))  # this seed reaches every moment early or late
            for n in range(int(rng.integers(4, 25))):
                # a few shared moments per cohort, jittered: clusters form, some gaps straddle
                # the tolerances; mostly rises, some falls, a few without a sign
                t = [0.2, 0.5, 0.8][n % 3] + k * 0.03 + lag + float(rng.normal(0, 0.03))
                step = grid[int(np.clip(round(t * (len(grid) - 1)), 0, len(grid) - 1))]
                size = [UP, UP, DOWN, None][int(rng.integers(0, 4))]
                candidates.append(candidate(
                    run_id, f"{run_id}-{n}", int(rng.integers(0, 2)), metrics[int(rng.integers(0, 3))], step,
                    float(rng.gamma(2.0, 1.5)), size,
                ))
    return runs, geometry, candidates


@pytest.mark.parametrize("seed", [3, 11])
def test_random_cohorts_match_the_reference(tmp_path: Path, seed: int) -> None:
    runs, geometry, candidates = random_case(np.random.default_rng(seed))
    lake, sql = build(tmp_path, runs, geometry, candidates)
    [first] = analyses(lake)
    got = built(lake)
    assert len(got) >= 5  # enough events to compare (the random case has 37 groups)
    assert_matches(got, reference(runs, geometry, candidates, first))
    params = {"min_tolerance": 0.02, "max_tolerance": 0.1}
    run_models(lake, sql, params)
    [second] = set(analyses(lake)) - {first}
    rows = [r for r in built(lake) if r["analysis_id"] == second]
    assert_matches(rows, reference(runs, geometry, candidates, second, **params))


def test_new_runs_recompute_only_their_cohorts(tmp_path: Path) -> None:
    """New runs (a seed of cohort P, the first run of cohort S) are merged in: P and S are
    recomputed, Q's and R's events are the last build's; the table is the reference's and a
    full build's."""
    runs, geometry, candidates = random_case(np.random.default_rng(3))
    lake, sql = build(tmp_path, runs, geometry, candidates)
    [analysis] = analyses(lake)
    before = {natural_key(r): r for r in built(lake)}
    grid = list(range(0, 501, 10))
    new_runs = [run_row("P9", "P", 9), run_row("S0", "S", 0)]
    new_geometry = geometry_rows("P9", grid) + geometry_rows("S0", grid)
    # P9 is late: its candidates widen P's spread, so P's tolerance changes with it
    new_candidates = [candidate("P9", f"P9-{n}", n % 2, RP, grid[int(t * 50)], 2.0) for n, t in enumerate([0.3, 0.6, 0.9])]
    new_candidates.append(candidate("S0", "S0-0", 0, RP, 250, 1.0))
    writer.write("runs", new_runs, lake=lake)
    writer.write("geometry_state", new_geometry, lake=lake)
    writer.write("events_candidates", new_candidates, lake=lake)
    [result] = models.run(lake=lake, sql_dir=sql, report=lambda _: None)
    assert result.plan.build == {"*": "2 new runs merged in"} and analyses(lake) == [analysis]
    merged = built(lake)
    assert_matches(merged, reference(runs + new_runs, geometry + new_geometry, candidates + new_candidates, analysis))
    p, s = cohort_hash("P"), cohort_hash("S")
    assert any(r["cohort_id"] == s for r in merged)  # one run, one candidate: its own event
    kept = {k: r for k, r in before.items() if k[0] not in (p, s)}
    assert kept and all({**r, "created_at_utc": None} == {**kept[natural_key(r)], "created_at_utc": None}
                        for r in merged if natural_key(r) in kept)
    models.run(lake=lake, sql_dir=sql, full_refresh=True, report=lambda _: None)
    full = {natural_key(r): {**r, "created_at_utc": None} for r in built(lake)}
    assert full == {natural_key(r): {**r, "created_at_utc": None} for r in merged}


# -- the demo lake: planted events recur across each cohort's seeds ------------------------


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = init_lake(tmp_path_factory.mktemp("demo") / "lake")
    write_demo(lake=lake)
    return lake


def test_planted_events_become_consensus_events(demo_lake: Path, tmp_path: Path) -> None:
    """Candidates at exactly the planted steps: one consensus event per planted shift, all seeds."""
    lake = tmp_path / "lake"
    shutil.copytree(demo_lake, lake)
    planted = pq.read_table(demo_lake / "_meta" / "demo" / "planted_events.parquet").to_pylist()
    candidates = [
        candidate(p["run_id"], f"planted-{i}", p["layer"], p["metric"], p["step"], abs(p["size"]), p["size"])
        for i, p in enumerate(planted)
    ]
    writer.write("events_candidates", candidates, lake=lake)
    run_models(lake, sql_without_other_models(tmp_path))
    got = built(lake)
    shifts = {(p["cohort_id"], p["layer"], p["metric"]) for p in planted}
    assert {(r["cohort_id"], r["layer"], r["metric"]) for r in got} == shifts
    assert len(got) == len(shifts)
    assert all(r["n_runs_supporting"] == r["n_runs_total"] == 3 and r["support"] == 1.0 for r in got)
    for r in got:
        steps = sorted(p["step"] for p in planted if (p["cohort_id"], p["layer"], p["metric"]) == natural_key(r)[:3])
        assert (r["step_min"], r["step_median"], r["step_max"]) == (steps[0], steps[1], steps[2])


# -- the BI view ---------------------------------------------------------------------------


def test_consensus_events_view(tmp_path: Path) -> None:
    runs = [run_row("b0", "B", 0), run_row("b1", "B", 1), run_row("a0", "A", 0), run_row("a1", "A", 1)]
    geometry = [g for r in runs for g in geometry_rows(r["run_id"], range(0, 101, 10))]
    candidates = [
        candidate("a0", "a-late", 0, RP, 80, 1.0),
        candidate("a1", "a-early", 1, RP, 20, 1.0),
        candidate("b0", "b-mid", 0, RP, 50, 1.0),
        candidate("b1", "b-early", 0, COMPOSITE, 10, 1.0),
    ]
    lake, sql = build(tmp_path, runs, geometry, candidates)
    [first] = analyses(lake)
    run_models(lake, sql, {"max_tolerance": 0.1})  # a parameter experiment, built last: not shown
    [second] = set(analyses(lake)) - {first}
    db = build_catalog(lake, tmp_path / "warehouse.duckdb", sql_dir=sql)
    con = connect(db)
    try:
        current = con.execute("SELECT analysis_id FROM warehouse_current_analyses WHERE target = 'events'").fetchone()[0]
        rows = dicts(con.execute("SELECT * FROM consensus_events"))
        every = {r for (r,) in con.execute("SELECT DISTINCT analysis_id FROM events_all").fetchall()}
        comments = dict(con.execute(
            "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'consensus_events'"
        ).fetchall())
        [view_comment] = con.execute(
            "SELECT comment FROM duckdb_views() WHERE view_name = 'consensus_events'"
        ).fetchone()
    finally:
        con.close()
    assert view_comment and all(comments.values()) and set(comments) == set(rows[0])
    # the view shows the analysis of the default parameters; events_all holds both
    assert current == first and {r["analysis_id"] for r in rows} == {first} and every == {first, second}
    a, b = cohort_hash("A"), cohort_hash("B")
    order = sorted([a, b])
    expected = {a: [("a-early", 0.2), ("a-late", 0.8)], b: [("b-early", 0.1), ("b-mid", 0.5)]}
    assert [(r["cohort_id"], r["source_event_ids"][0], r["t_median"]) for r in rows] == [
        (c, e, pytest.approx(t)) for c in order for e, t in expected[c]
    ]
    for r in rows:
        cohort = "A" if r["cohort_id"] == a else "B"
        # the configuration the cohort shares: without the seed, one per cohort
        assert r["cohort_config_json"] == canonical_json({"cohort": cohort, "lr": 1e-3})
        assert r["n_runs_total"] == 2


def test_consensus_events_view_without_build_history(tmp_path: Path) -> None:
    """Events a producer wrote (no engine build recorded) are not the current analysis of the
    events model: the BI view shows none of them, events_all shows every one."""
    lake = init_lake(tmp_path / "lake")
    writer.write("runs", [run_row("a0", "A", 0), run_row("a1", "A", 1)], lake=lake)
    event = {
        "event_id": "ev1", "cohort_id": cohort_hash("A"), "layer": 2, "metric": RP, "event_type": "consensus",
        "step_median": 50, "step_min": 40, "step_max": 60, "t_median": 0.5, "n_runs_supporting": 2,
        "n_runs_total": 2, "support": 1.0, "strength": 3.5, "source_event_ids": ["x", "y"],
        "source_run_ids": ["a0", "a1"],
    }
    writer.write("events", [dict(event, analysis_id="producer-a"), dict(event, analysis_id="producer-b")], lake=lake)
    db = build_catalog(lake, tmp_path / "warehouse.duckdb", sql_dir=sql_without_other_models(tmp_path))
    con = connect(db)
    try:
        shown = con.execute("SELECT count(*) FROM consensus_events").fetchone()[0]
        built = con.execute("SELECT built FROM warehouse_current_analyses WHERE target = 'events'").fetchone()[0]
        every = dicts(con.execute("SELECT analysis_id, layer FROM events_all"))
    finally:
        con.close()
    assert shown == 0 and built is False
    assert sorted(r["analysis_id"] for r in every) == ["producer-a", "producer-b"]
    assert all(r["layer"] == 2 for r in every)


# -- a lake holding a consensus@1.1 analysis ------------------------------------------------


def test_a_consensus1_1_analysis_still_reads_beside_consensus2(tmp_path: Path) -> None:
    """The released consensus@1.1 (a copy of its model file) builds a lake's events; then
    consensus@2 writes its analysis beside it. events_all holds both, the older rows are
    consensus@1's (one fixed tolerance, rises and falls together), and the BI view shows
    consensus@2's."""
    runs, geometry, candidates = random_case(np.random.default_rng(11))
    runs += [run_row(f"k{i}", "K", i) for i in range(3)]
    geometry += [g for i in range(3) for g in geometry_rows(f"k{i}", range(0, 3001, 25))]
    candidates += [candidate(f"k{i}", f"k{i}-grok", 0, RP, step, 1.0) for i, step in enumerate([1675, 2050, 2275])]
    # a rise and a fall of one moment: one cluster in consensus@1, two events in consensus@2
    candidates += [
        candidate("k0", "k0-up", 1, RP, 500, 1.0), candidate("k1", "k1-up", 1, RP, 500, 1.0),
        candidate("k1", "k1-down", 1, RP, 500, 1.0, DOWN), candidate("k2", "k2-down", 1, RP, 500, 1.0, DOWN),
    ]
    lake = init_lake(tmp_path / "lake")
    writer.write("runs", runs, lake=lake)
    writer.write("geometry_state", geometry, lake=lake)
    writer.write("events_candidates", candidates, lake=lake)
    sql = sql_without_other_models(tmp_path)
    model = sql / "models" / "events.sql"
    consensus2 = model.read_text()
    model.write_text(V1_MODEL.read_text())
    run_models(lake, sql)
    [v1] = analyses(lake)
    model.write_text(consensus2)
    run_models(lake, sql)
    [v2] = set(analyses(lake)) - {v1}
    assert v1.startswith("consensus1_1-") and v2.startswith("consensus2-")
    rows = built(lake)
    old, new = ([r for r in rows if r["analysis_id"] == a] for a in (v1, v2))
    assert_matches(old, reference_v1(runs, geometry, candidates, v1))
    assert_matches(new, reference(runs, geometry, candidates, v2))
    k = cohort_hash("K")
    assert not any(r["cohort_id"] == k and r["layer"] == 0 for r in old)  # the spread transition: none
    assert [r["n_runs_supporting"] for r in new if r["cohort_id"] == k and r["layer"] == 0] == [3]
    assert [r["source_event_ids"] for r in old if r["cohort_id"] == k and r["layer"] == 1] == [
        ["k0-up", "k1-down", "k1-up", "k2-down"]
    ]
    assert sorted(r["source_event_ids"] for r in new if r["cohort_id"] == k and r["layer"] == 1) == [
        ["k0-up", "k1-up"], ["k1-down", "k2-down"]
    ]
    db = build_catalog(lake, tmp_path / "warehouse.duckdb", sql_dir=sql)
    con = connect(db)
    try:
        every = dict(con.execute("SELECT analysis_id, count(*) FROM events_all GROUP BY analysis_id").fetchall())
        shown = {a for (a,) in con.execute("SELECT DISTINCT analysis_id FROM consensus_events").fetchall()}
    finally:
        con.close()
    assert every == {v1: len(old), v2: len(new)} and shown == {v2}


def test_cohorts_computed_one_batch_each_give_the_same_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """events groups by cohort (runs.config_hash): below the batch budget each cohort is a
    batch of its own, reading only its runs' candidates and geometry, written into a file of
    its own; the rows equal one batch of every cohort."""
    from model_fixtures import read_rows

    lakes = {}
    for budget in ("1", str(1 << 40)):
        lake = tmp_path / f"lake-{budget}"
        write_demo(lake=lake, seed=0)
        monkeypatch.setenv("SQUIGGLE_BATCH_BYTES", budget)
        models.run(lake=lake, report=lambda _: None)
        lakes[budget] = lake
    with duckdb.connect() as con:
        cohorts = con.execute(f"SELECT count(DISTINCT config_hash) FROM read_parquet('{lakes['1']}/runs/**/*.parquet')"
                              " WHERE family_id IS NULL").fetchone()[0]
    per_cohort = [pq.read_metadata(f).num_rows for f in (lakes["1"] / "events").rglob("*.parquet")]
    assert len(per_cohort) == cohorts == 3 and all(per_cohort)
    assert len(list((lakes[str(1 << 40)] / "events").rglob("*.parquet"))) == 1
    assert read_rows(lakes["1"], "events") == read_rows(lakes[str(1 << 40)], "events")
