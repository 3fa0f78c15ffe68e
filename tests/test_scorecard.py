"""The demo end to end: every model built, the catalog's BI views, and the scorecard's figures
recomputed here in plain Python from the lake's files."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from warehouse import models
from warehouse.catalog import build_catalog, connect
from warehouse.demo import write_demo
from warehouse.scorecard import scorecard


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("scorecard")
    lake = root / "lake"
    write_demo(lake=lake)
    models.run(lake=lake, report=lambda _: None)
    return lake, build_catalog(lake, root / "warehouse.duckdb")


def parquet(lake: Path, glob: str) -> list[dict]:
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{lake}/{glob}', hive_partitioning = true, hive_types_autocast = false)")
    return [dict(zip(rel.columns, row)) for row in rel.fetchall()]


def test_scorecard_figures_match_a_recount(demo: tuple[Path, Path]) -> None:
    lake, db = demo
    card = scorecard(db, lake)
    planted = parquet(lake, "_meta/demo/planted_events.parquet")
    steps: dict[str, list[int]] = {}
    for r in parquet(lake, "geometry_state/*/*/*.parquet"):
        if r["sample_id"] is None:
            steps.setdefault(r["run_id"], []).append(r["step"])
    index = {run: {s: i for i, s in enumerate(sorted(set(v)))} for run, v in steps.items()}
    runs = {p["run_id"] for p in planted}
    detected = [
        (e["run_id"], e["layer"], e["metric"], index[e["run_id"]][e["step"]])
        for e in parquet(lake, "events_candidates/*/*/*.parquet")
        if e["event_type"] == "change_point" and e["run_id"] in runs
    ]
    truth = [(p["run_id"], p["layer"], p["metric"], p["capture_index"]) for p in planted]

    def near(a, b) -> bool:
        return a[:3] == b[:3] and abs(a[3] - b[3]) <= 2

    precision = sum(any(near(d, p) for p in truth) for d in detected) / len(detected)
    recall = sum(any(near(p, d) for d in detected) for p in truth) / len(truth)
    assert (card.planted, card.detected) == (len(truth), len(detected))
    assert card.precision == pytest.approx(precision) and card.recall == pytest.approx(recall)
    assert precision >= 0.9 and recall >= 0.9


def test_families_rank_as_planted_and_best_matches_stay_in_cohort(demo: tuple[Path, Path]) -> None:
    lake, db = demo
    card = scorecard(db, lake)
    assert [rank for rank, *_ in card.families] == [expected for *_, expected in card.families]
    assert len(card.best_matches) == 9
    cohort = {r["run_id"]: r["config_hash"] for r in parquet(lake, "runs/*/*.parquet")}
    for run_a, run_b, _, same in card.best_matches:
        assert same and cohort[run_a] == cohort[run_b]
    assert "9 of 9 best matches" in str(card)


def test_every_bi_view_answers(demo: tuple[Path, Path]) -> None:
    _, db = demo
    with connect(db) as con:
        for view in ("run_overview", "event_timeline", "family_ranking", "best_matches", "consensus_events"):
            assert con.execute(f"SELECT count(*) FROM {view}").fetchone()[0] > 0, view
        comments = con.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE table_name IN ('run_overview', 'event_timeline',"
            " 'family_ranking', 'best_matches', 'consensus_events') AND comment IS NULL"
        ).fetchone()[0]
        assert comments == 0
        overview = dict(con.execute("SELECT run_id, captures FROM run_overview").fetchall())
        assert overview["c1-s0"] == 64
