"""Queries that print or rank rows order them totally: rows that tie on the ordering a reader
sees (equal scores, equal strengths, no time) come out in one order, whatever order the
rows are stored in (``make example`` printed two equal-score events in either order)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import duckdb
import pytest

from warehouse import scorecard

REPO = Path(__file__).resolve().parent.parent


def example_sql(name: str) -> str:
    """A query constant of examples/modular_addition.py, read without importing it (it needs torch)."""
    tree = ast.parse((REPO / "examples" / "modular_addition.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name} in the example")


def tables(con: duckdb.DuckDBPyConnection, rows: dict[str, tuple[str, list[tuple]]], reverse: bool) -> None:
    """Create each table from (column definitions, rows), storing the rows forwards or reversed."""
    for name, (columns, values) in rows.items():
        con.execute(f"CREATE TABLE {name} ({columns})")
        for row in reversed(values) if reverse else values:
            con.execute(f"INSERT INTO {name} VALUES ({', '.join('?' * len(row))})", list(row))


def both_orders(rows: dict[str, tuple[str, list[tuple]]], query: str, setup: str = "", params: list | None = None) -> list[list[tuple]]:
    """The query's result over the rows stored in one order and in the other."""
    out = []
    for reverse in (False, True):
        con = duckdb.connect()
        con.execute("SET threads = 1")
        tables(con, rows, reverse)
        if setup:
            con.execute(setup)
        out.append(con.execute(query, params or []).fetchall())
        con.close()
    return out


def test_example_prints_tied_events_in_step_order() -> None:
    candidates = ("run_id VARCHAR, layer SMALLINT, metric VARCHAR, step BIGINT, score FLOAT, event_id VARCHAR, analysis_id VARCHAR", [
        ("r1", 1, "resid_post.eff_rank", 900, 5.0, "e9", "a1"),
        ("r1", 0, "mlp_out.sparsity", 300, 5.0, "e3", "a1"),
        ("r1", 1, "attn_out.eff_rank", 300, 5.0, "e4", "a1"),
        ("r1", 0, "resid_pre.act_norm", 600, 7.5, "e6", "a1"),
        ("r1", 0, "attn_out.eff_rank", 300, 5.0, "e2", "a1"),
    ])
    results = both_orders({"events_candidates": candidates}, example_sql("EVENTS_SQL"))
    # by hand: the highest score first, then the ties by step, layer, metric
    expected = [
        ("r1", 0, "resid_pre.act_norm", 600, 7.5),
        ("r1", 0, "attn_out.eff_rank", 300, 5.0),
        ("r1", 0, "mlp_out.sparsity", 300, 5.0),
        ("r1", 1, "attn_out.eff_rank", 300, 5.0),
        ("r1", 1, "resid_post.eff_rank", 900, 5.0),
    ]
    assert results == [expected, expected]


def test_example_prints_tied_consensus_events_in_one_order() -> None:
    columns = ("cohort_id VARCHAR, layer SMALLINT, metric VARCHAR, step_median BIGINT, step_min BIGINT, step_max BIGINT, "
               "n_runs_supporting INTEGER, n_runs_total INTEGER, strength FLOAT, event_id VARCHAR, analysis_id VARCHAR")
    events = (columns, [
        ("c1", 1, "__composite__", 800, 700, 900, 2, 3, 6.0, "x4", "e1"),
        ("c1", 0, "mlp_out.sparsity", 800, 700, 900, 3, 3, 6.0, "x3", "e1"),
        ("c1", 0, "attn_out.eff_rank", 400, 300, 500, 3, 3, 6.0, "x2", "e1"),
        ("c1", 0, "resid_post.eff_rank", 100, 100, 100, 3, 3, 9.0, "x1", "e1"),
    ])
    results = both_orders({"events": events}, example_sql("CONSENSUS_SQL"), params=[3])
    expected = [  # the strongest, then the ties by median step and layer; LIMIT 3 leaves out the last of them
        (0, "resid_post.eff_rank", 100, 100, 100, 3, 3, 9.0),
        (0, "attn_out.eff_rank", 400, 300, 500, 3, 3, 6.0),
        (0, "mlp_out.sparsity", 800, 700, 900, 3, 3, 6.0),
    ]
    assert results == [expected, expected]


def test_scorecard_rankings_are_total_across_analyses(tmp_path: Path) -> None:
    ranking = ("analysis_id VARCHAR, probe_name VARCHAR, family_id VARCHAR, family_rank BIGINT, mean_dis DOUBLE", [
        ("p2", "probe", "alpha", 1, 2.0), ("p1", "probe", "beta", 1, 3.0), ("p1", "probe", "alpha", 2, 1.0),
    ])
    truth = tmp_path / "planted_families.parquet"
    duckdb.execute(f"COPY (SELECT * FROM (VALUES ('alpha', 2), ('beta', 1)) AS t(family_id, expected_rank)) TO '{truth}'")
    query = scorecard._FAMILY_RANKING.format(truth=f"'{truth}'")
    results = both_orders({"family_ranking": ranking}, query)
    expected = [(1, "beta", 3.0, 1), (1, "alpha", 2.0, 2), (2, "alpha", 1.0, 2)]
    assert results == [expected, expected]

    matches = ("run_id_a VARCHAR, run_id_b VARCHAR, score FLOAT, same_cohort BOOLEAN, rank_a INTEGER, kind VARCHAR, "
               "scope VARCHAR, run_mode_a VARCHAR, analysis_id VARCHAR, signature_id_a VARCHAR", [
        ("r1", "r3", 0.5, False, 1, "trajectory", "run", "train_full", "m2", "s2"),
        ("r1", "r2", 0.75, True, 1, "trajectory", "run", "train_full", "m1", "s1"),
    ])
    results = both_orders({"best_matches": matches}, scorecard._BEST_MATCHES)
    expected = [("r1", "r2", 0.75, True), ("r1", "r3", 0.5, False)]
    assert results == [expected, expected]


def view_sql(name: str) -> str:
    return (REPO / "views" / f"{name}.sql").read_text()


def test_event_timeline_orders_candidates_without_a_time() -> None:
    # r1's layer 3 has no pooled series: its candidates have no t and tie on everything else
    candidates = ("run_id VARCHAR, layer SMALLINT, metric VARCHAR, event_type VARCHAR, step BIGINT, start_step BIGINT, "
                  "end_step BIGINT, score FLOAT, metric_z FLOAT, analysis_id VARCHAR", [
        ("r1", 3, "resid_post.eff_rank", "change_point", 700, 700, 700, 1.0, 4.0, "a1"),
        ("r1", 3, "resid_post.eff_rank", "change_point", 200, 200, 200, 1.0, 4.0, "a1"),
        ("r1", 3, "resid_post.eff_rank", "change_point", 500, 500, 500, 1.0, 4.0, "a1"),
    ])
    geometry = ("run_id VARCHAR, layer SMALLINT, module VARCHAR, step BIGINT, sample_set VARCHAR, sample_id VARCHAR",
                [("r1", 0, "resid_post", 0, "eval", None), ("r1", 0, "resid_post", 1000, "eval", None)])
    runs = ("run_id VARCHAR, config_hash VARCHAR, seed INTEGER, run_mode VARCHAR, family_id VARCHAR",
            [("r1", "c1", 0, "train_full", None)])
    current = ("model VARCHAR, params_json VARCHAR", [("events_candidates", '{"sample_set": ""}')])
    results = both_orders({"events_candidates": candidates, "geometry_state": geometry, "runs": runs,
                           "warehouse_current_analyses": current}, "SELECT step, t FROM event_timeline",
                          setup=view_sql("event_timeline"))
    assert results == [[(200, None), (500, None), (700, None)]] * 2


@pytest.mark.parametrize(("chosen", "expected"), [("", 0.5), ("train", 0.25)])
def test_event_timeline_normalises_over_the_analysed_sample_set(chosen: str, expected: float) -> None:
    # two sample sets span different steps: "eval" (first alphabetically) 0..400, "train" 0..800
    candidates = ("run_id VARCHAR, layer SMALLINT, metric VARCHAR, event_type VARCHAR, step BIGINT, start_step BIGINT, "
                  "end_step BIGINT, score FLOAT, metric_z FLOAT, analysis_id VARCHAR",
                  [("r1", 0, "resid_post.eff_rank", "change_point", 200, 200, 200, 1.0, 4.0, "a1")])
    geometry = ("run_id VARCHAR, layer SMALLINT, module VARCHAR, step BIGINT, sample_set VARCHAR, sample_id VARCHAR",
                [("r1", 0, "resid_post", step, sample_set, None)
                 for sample_set, last in (("eval", 400), ("train", 800)) for step in (0, last)])
    runs = ("run_id VARCHAR, config_hash VARCHAR, seed INTEGER, run_mode VARCHAR, family_id VARCHAR",
            [("r1", "c1", 0, "train_full", None)])
    current = ("model VARCHAR, params_json VARCHAR", [("events_candidates", json.dumps({"sample_set": chosen}))])
    results = both_orders({"events_candidates": candidates, "geometry_state": geometry, "runs": runs,
                           "warehouse_current_analyses": current}, "SELECT t FROM event_timeline",
                          setup=view_sql("event_timeline"))
    assert results == [[(expected,)]] * 2  # by hand: 200 / 400, or 200 / 800 when "train" was analysed


def test_family_ranking_lists_families_in_rank_order() -> None:
    summaries = ("analysis_id VARCHAR, probe_name VARCHAR, family_id VARCHAR, run_id VARCHAR, seed INTEGER, \"DIS\" FLOAT", [
        ("p1", "probe", "beta", "b0", 0, 1.0), ("p1", "probe", "alpha", "a0", 0, 2.0),
        ("p1", "probe", "gamma", "g0", 0, 1.0), ("p1", "probe", "delta", "d0", 0, 3.0),
    ])
    results = both_orders({"probe_summaries": summaries}, "SELECT family_rank, family_id FROM family_ranking",
                          setup=view_sql("family_ranking"))
    # by hand: DIS descending, equal DIS by family_id
    assert results == [[(1, "delta"), (2, "alpha"), (3, "beta"), (4, "gamma")]] * 2


@pytest.mark.parametrize("view", sorted(p.stem for p in (REPO / "views").glob("*.sql")))
def test_every_view_ends_with_an_order(view: str) -> None:
    body = "\n".join(line for line in view_sql(view).splitlines() if not line.lstrip().startswith("--"))
    assert "ORDER BY" in body.rsplit("FROM", 1)[1], f"views/{view}.sql lists its rows in no order"
