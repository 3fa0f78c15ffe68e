"""warehouse.plots: every figure carries the catalog's rows, checked against plain queries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

import warehouse
from picture_fixtures import built_demo
from warehouse import plots
from warehouse.errors import WarehouseError
from warehouse.plots import data


@pytest.fixture(scope="module")
def con(tmp_path_factory) -> duckdb.DuckDBPyConnection:
    _, db = built_demo(tmp_path_factory.mktemp("plots"))
    connection = warehouse.connect(db)
    yield connection
    connection.close()


def traces(fig, name_part: str = "", mode: str | None = None) -> list:
    return [t for t in fig.data if name_part in (t.name or "") and (mode is None or t.mode == mode)]


def pooled(con, run: str, module: str, descriptor: str, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """The run's pooled series straight from geometry_state (the demo has one sample set)."""
    rows = con.execute(
        f"SELECT step, {descriptor} FROM geometry_state WHERE run_id = ? AND module = ? AND layer = ? "
        "AND sample_id IS NULL ORDER BY step", [run, module, layer]).fetchall()
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows], dtype=float)


def test_trajectory_draws_each_layer_and_its_change_points(con) -> None:
    fig = plots.trajectory("c1-s0", "resid_post.sv_entropy", layers=[3, 4], con=con)
    lines = traces(fig, "c1-s0", "lines")
    assert len(lines) == 2
    for line, layer in zip(lines, (3, 4)):
        steps, values = pooled(con, "c1-s0", "resid_post", "sv_entropy", layer)
        np.testing.assert_array_equal(np.asarray(line.x), steps)
        np.testing.assert_allclose(np.asarray(line.y), values, rtol=1e-6)
    marks = traces(fig, "change points", "markers")
    expected = con.execute(
        "SELECT layer, step FROM events_candidates WHERE run_id = 'c1-s0' AND metric = 'resid_post.sv_entropy' "
        "AND layer IN (3, 4) ORDER BY layer, step").fetchall()
    drawn = sorted((layer_of(m), int(x)) for m in marks for x in m.x)
    assert drawn == [tuple(r) for r in expected] and expected
    for m in marks:  # each mark sits on its line
        steps, values = pooled(con, "c1-s0", "resid_post", "sv_entropy", layer_of(m))
        np.testing.assert_allclose(np.asarray(m.y), values[np.searchsorted(steps, np.asarray(m.x))], rtol=1e-6)


def layer_of(trace) -> int:
    """The layer a trace's hover names (``<extra>layer N</extra>``)."""
    return int(trace.hovertemplate.rsplit("layer ", 1)[1].split("<")[0])


def test_cohort_overlays_the_seeds_and_marks_the_consensus_events(con) -> None:
    cohort_id = con.execute("SELECT config_hash FROM runs WHERE run_id = 'c1-s0'").fetchone()[0]
    fig = plots.cohort(cohort_id, "resid_post.sv_entropy", con=con)
    seed_lines = [t for t in fig.data if t.mode == "lines" and "(seed" in (t.name or "")]
    assert {t.legendgroup for t in seed_lines} == {"c1-s0", "c1-s1", "c1-s2"}
    assert len(seed_lines) == 3 * 6  # every seed in every layer
    consensus = [t for t in fig.data if t.name == "consensus event"]
    expected = con.execute(
        "SELECT step_median, step_min, step_max FROM events WHERE cohort_id = ? AND metric = 'resid_post.sv_entropy' "
        "ORDER BY layer, step_median", [cohort_id]).fetchall()
    assert expected, "the demo plants sv_entropy shifts that every seed shares"
    assert sorted(int(x) for t in consensus for x in t.x) == sorted(r[0] for r in expected)
    spans = [t for t in fig.data if t.name == "consensus span"]
    bands = sorted((x[i], x[i + 2]) for t in spans for x in [list(t.x)] for i in range(0, len(x), 6))
    assert bands == sorted((lo, max(hi, lo + 1)) for _, lo, hi in expected)


def test_events_heat_map_counts_every_candidate_once(con) -> None:
    fig = plots.events("c2-s1", con=con)
    (heat,) = fig.data
    per_layer = dict(con.execute(
        "SELECT layer, count(*) FROM events_candidates WHERE run_id = 'c2-s1' AND metric <> '__composite__' "
        "GROUP BY layer").fetchall())
    z = np.asarray(heat.z)
    assert z.sum() == sum(per_layer.values()) > 0
    for row, layer in zip(z, heat.y):
        assert row.sum() == per_layer.get(int(layer), 0)


def test_family_ranking_bars_are_the_mean_dis_and_points_each_seed(con) -> None:
    fig = plots.family_ranking(con=con)
    bars = next(t for t in fig.data if t.type == "bar")
    points = next(t for t in fig.data if t.type == "scatter")
    rows = con.execute("SELECT family_id, mean_dis, seed_dis FROM family_ranking ORDER BY family_rank DESC").fetchall()
    assert list(bars.y) == [r[0] for r in rows]
    np.testing.assert_allclose(bars.x, [r[1] for r in rows])
    np.testing.assert_allclose(points.x, [v for r in rows for v in r[2]])
    for family, _, seeds in rows:  # the bar is the mean of its points
        assert np.mean([x for x, y in zip(points.x, points.y) if y == family]) == pytest.approx(np.mean(seeds))


def test_match_shows_both_signatures_series_that_make_the_cosine(con) -> None:
    match_id, a, b = con.execute(
        "SELECT match_id, signature_id_a, signature_id_b FROM best_matches "
        "WHERE kind = 'trajectory' AND scope = 'run' AND rank_a = 1 ORDER BY run_id_a").fetchone()
    fig = plots.match(match_id, con=con)
    (va, layout), (vb, _) = (con.execute(
        "SELECT vector, vector_layout FROM signatures WHERE signature_id = ?", [s]).fetchone() for s in (a, b))
    k = int(layout.split("K=")[1].split(";")[0])
    names = layout.split("series=")[1].split(",")
    grid_a, grid_b = np.reshape(va, (-1, k)), np.reshape(vb, (-1, k))
    top = np.argsort(-(grid_a * grid_b).sum(axis=1), kind="stable")[:6]
    assert [fig.layout.annotations[i].text for i in range(6)] == [names[j] for j in top]
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    for i, j in enumerate(top):
        np.testing.assert_allclose(lines[2 * i].y, grid_a[j], rtol=1e-6)
        np.testing.assert_allclose(lines[2 * i + 1].y, grid_b[j], rtol=1e-6)
        np.testing.assert_allclose(lines[2 * i].x, (np.arange(k) + 0.5) / k)
    score, cosine = con.execute("SELECT score, vector_cosine FROM matches WHERE match_id = ?", [match_id]).fetchone()
    assert f"score {score:.3f}" in fig.layout.title.text and f"cosine {cosine:.3f}" in fig.layout.title.text


def test_probe_match_reads_the_layer_major_vector(con) -> None:
    match_id, a = con.execute(
        "SELECT match_id, signature_id_a FROM best_matches WHERE kind = 'probe' AND rank_a = 1").fetchone()
    vector, layout = con.execute("SELECT vector, vector_layout FROM signatures WHERE signature_id = ?", [a]).fetchone()
    n_layers = len(layout.split("layers=")[1].split(";")[0].split(","))
    features = layout.split("features=")[1].split(",")
    fig = plots.match(match_id, con=con)
    first = [t for t in fig.data if t.mode == "lines+markers"][0]
    feature = features.index(fig.layout.annotations[0].text)
    np.testing.assert_allclose(first.y, [vector[layer * len(features) + feature] for layer in range(n_layers)], rtol=1e-6)


def test_long_series_keep_each_slice_extremes(con) -> None:
    thinned = data.series(con, ["c1-s0"], "resid_post.eff_rank", [2], max_points=10)
    steps, values = pooled(con, "c1-s0", "resid_post", "eff_rank", 2)
    slices = np.arange(steps.size) * 5 // steps.size
    keep = set()
    for s in range(5):  # numpy: each slice's lowest and highest capture
        idx = np.flatnonzero(slices == s)
        keep |= {steps[idx[np.argmin(values[idx])]], steps[idx[np.argmax(values[idx])]]}
    assert sorted(thinned["step"].tolist()) == sorted(keep)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: plots.trajectory("nope", "resid_post.eff_rank", con=c), "unknown run 'nope'; known: c1-s0, c1-s1"),
        (lambda c: plots.events("nope", con=c), "(and 17 more)"),
        (lambda c: plots.cohort("abc", "resid_post.eff_rank", con=c), "unknown cohort (runs.config_hash) 'abc'"),
        (lambda c: plots.trajectory("c1-s0", "resid_post.rank", con=c), "metric 'resid_post.rank'"),
        (lambda c: plots.trajectory("c1-s0", "logits.eff_rank", con=c), "unknown module of metric 'logits.eff_rank'"),
        (lambda c: plots.match("0" * 32, con=c), "unknown match"),
    ],
)
def test_unknown_names_are_refused_naming_the_known_ones(con, call, message) -> None:
    with pytest.raises(WarehouseError) as caught:
        call(con)
    assert message in str(caught.value)


def test_without_plotly_the_error_says_how_to_install_it(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['plotly'] = None\n"
            "from warehouse import plots\n"
            "try:\n    plots.events('x')\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert "WarehouseError" in out.stdout and "pip install 'squiggle-warehouse[plots]'" in out.stdout, out


def test_the_readme_examples_run_on_the_demo_catalog(con, tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Plot functions for notebooks", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    db = con.execute("SELECT catalog FROM warehouse_catalog").fetchone()[0]
    probe = code + ("\nprint(sum(t.mode == 'lines+markers' for t in plots.match(match_id).data),"
                    " len(plots.family_ranking().data))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "SQUIGGLE_DB": db})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["12", "2"]  # 6 series x 2 runs; bars and seed points
