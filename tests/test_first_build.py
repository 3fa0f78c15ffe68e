"""A researcher's first builds on their own lake: nothing crashes, no run drops out unsaid,
and the catalog shows the current analysis of each model.

Every build here is the real ``warehouse`` command in a subprocess on a real lake.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pytest

from model_fixtures import CAPTURE, cli, geometry_rows
from warehouse import writer
from warehouse.catalog import connect
from warehouse.check import check_lake
from warehouse.lake import init_lake

STEPS = range(0, 200, 10)
ROWS_PER_RUN = len(STEPS) * 2 * 2  # steps x layers (0, 1) x (pooled, one sample)
OTHER_CAPTURE = "my-capture-v2"


def run_row(run_id: str, seed: int = 0, cohort: str = "c1") -> dict:
    return {"run_id": run_id, "seed": seed, "run_mode": "train_full", "model_id": "m", "config_json": "{}",
            "config_hash": cohort, "status": "completed", "started_at_utc": "2026-01-01T00:00:00Z"}


def capture(lake: Path, run: str, seed: int, analysis: str = CAPTURE) -> None:
    rows = [dict(r, analysis_id=analysis) for r in geometry_rows(run, STEPS, seed=seed)]
    writer.write("geometry_state", rows, lake=lake)


def build(lake: Path, *args: str, db: Path | None = None) -> str:
    done = cli("models", "run", "--lake", str(lake), *(["--db", str(db)] if db else []), *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def dynamics_by_run(con: duckdb.DuckDBPyConnection, view: str = "geometry_dynamics") -> dict[str, int]:
    return dict(con.execute(f"SELECT run_id, count(*) FROM {view} GROUP BY run_id").fetchall())


# -- 1. the first build --------------------------------------------------------------------


@pytest.mark.parametrize("contents", ["empty", "runs only"])
def test_a_lake_without_geometry_builds_to_nothing_to_do(tmp_path: Path, contents: str) -> None:
    lake = init_lake(tmp_path / "lake")
    if contents == "runs only":
        writer.write("runs", [run_row("r1")], lake=lake)
    out = build(lake, db=tmp_path / "w.duckdb")
    lines = [line for line in out.splitlines() if " -> " in line]
    assert len(lines) == 7 and all("nothing to do" in line for line in lines), out
    assert not (lake / "_meta" / "analyses").exists() or not any((lake / "_meta" / "analyses").iterdir())
    # and the next build, once geometry arrives, is a first build like any other
    capture(lake, "r1", 0)
    assert "1 run (first build)" in build(lake)


def test_a_second_build_after_nothing_to_do_does_not_crash(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    build(lake)
    out = build(lake)
    assert "nothing to do" in out


# -- 2. no run left out without a word -------------------------------------------------------


def test_runs_of_every_capture_analysis_are_analysed(tmp_path: Path) -> None:
    lake, db = init_lake(tmp_path / "lake"), tmp_path / "w.duckdb"
    writer.write("runs", [run_row("r1", 0), run_row("r2", 1), run_row("r3", 2)], lake=lake)
    capture(lake, "r1", 0)
    capture(lake, "r2", 1)
    capture(lake, "r3", 2, OTHER_CAPTURE)
    out = build(lake, db=db)
    assert "geometry_dynamics dyn@1" in out and "3 runs (first build)" in out, out
    # training runs only: the probe model says why it has nothing to read
    assert "nothing to do (no run satisfies its runs condition: family_id IS NOT NULL" in out, out
    with connect(db) as con:
        assert dynamics_by_run(con) == {"r1": ROWS_PER_RUN, "r2": ROWS_PER_RUN, "r3": ROWS_PER_RUN}
        sources = con.execute(
            "SELECT input_sources_json FROM warehouse_analyses WHERE model = 'geometry_dynamics'").fetchone()[0]
        r3 = con.execute("SELECT * EXCLUDE (analysis_id, created_at_utc) FROM geometry_dynamics"
                         " WHERE run_id = 'r3' ORDER BY ALL").fetchall()
    assert sources == '{"geometry_state": {"capture-v1": 2, "my-capture-v2": 1}}'
    # the same captures under the other analysis id give the same dynamics
    alone, alone_db = init_lake(tmp_path / "alone"), tmp_path / "alone.duckdb"
    writer.write("runs", [run_row("r3", 2)], lake=alone)
    capture(alone, "r3", 2)
    build(alone, "--select", "geometry_dynamics", db=alone_db)
    with connect(alone_db) as con:
        assert con.execute("SELECT * EXCLUDE (analysis_id, created_at_utc) FROM geometry_dynamics"
                           " ORDER BY ALL").fetchall() == r3


def test_each_run_is_read_from_its_newest_capture_analysis(tmp_path: Path) -> None:
    lake, db = init_lake(tmp_path / "lake"), tmp_path / "w.duckdb"
    writer.write("runs", [run_row("r1", 0), run_row("r2", 1)], lake=lake)
    capture(lake, "r1", 0)
    capture(lake, "r2", 1)
    # r1 captured again later under another analysis, with one capture fewer
    rows = [dict(r, analysis_id=OTHER_CAPTURE) for r in geometry_rows("r1", STEPS[:-1], seed=0)]
    writer.write("geometry_state", rows, lake=lake)
    old = lake / "geometry_state" / f"analysis_id={CAPTURE}" / "run_id=r1"
    for f in old.glob("*.parquet"):  # make the order of the two captures unambiguous
        os.utime(f, (1_000_000_000, 1_000_000_000))
    out = build(lake, db=db)
    # said once, though several models read geometry_state
    assert out.count(f"left out: geometry_state/analysis_id={CAPTURE}/run_id=r1: an older capture of run r1: "
                     f"the models read each run's newest analysis ({OTHER_CAPTURE})") == 1, out
    with connect(db) as con:
        assert dynamics_by_run(con) == {"r1": ROWS_PER_RUN - 4, "r2": ROWS_PER_RUN}
        shown = dict(con.execute("SELECT run_id, list(DISTINCT analysis_id) FROM geometry_state GROUP BY ALL").fetchall())
        every = con.execute("SELECT count(*) FROM geometry_state_all").fetchone()[0]
    assert shown == {"r1": [OTHER_CAPTURE], "r2": [CAPTURE]}
    assert every == 3 * ROWS_PER_RUN - 4


def test_a_run_without_a_runs_row_is_listed_by_the_build_and_by_check(tmp_path: Path) -> None:
    lake, db = init_lake(tmp_path / "lake"), tmp_path / "w.duckdb"
    writer.write("runs", [run_row("r1", 0)], lake=lake)
    capture(lake, "r1", 0)
    capture(lake, "r2", 1)
    out = build(lake, db=db)
    assert "left out: geometry_state/analysis_id=capture-v1/run_id=r2: run r2 has geometry but no runs row" in out
    problems = check_lake(lake)
    assert [(p.path, p.kind) for p in problems] == [("geometry_state/analysis_id=capture-v1/run_id=r2", "missing_run")]
    checked = cli("check", "--lake", str(lake))
    assert checked.returncode == 1 and "missing_run" in checked.stdout
    with connect(db) as con:
        overview = dict(con.execute("SELECT run_id, status FROM run_overview").fetchall())
        timeline = {r for (r,) in con.execute("SELECT DISTINCT run_id FROM event_timeline").fetchall()}
    assert overview == {"r1": "completed", "r2": None}  # still shown, without metadata
    assert "r2" in timeline


def test_folders_in_another_partition_order_are_listed_not_built_silently(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    writer.write("runs", [run_row("r1")], lake=lake)
    capture(lake, "r1", 0)
    right = lake / "geometry_state" / f"analysis_id={CAPTURE}" / "run_id=r1"
    wrong = lake / "geometry_state" / "run_id=r1" / f"analysis_id={CAPTURE}"
    wrong.parent.mkdir()
    shutil.move(right, wrong)
    shutil.rmtree(right.parent)
    out = build(lake)
    assert ("left out: geometry_state/run_id=r1: not in the layout of geometry_state "
            "(geometry_state/analysis_id=*/run_id=*/*.parquet)") in out, out
    assert "nothing to do" in out
    assert {p.kind for p in check_lake(lake)} == {"bad_partition"}


def test_a_pinned_capture_analysis_lists_the_runs_it_leaves_out(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    writer.write("runs", [run_row("r1", 0), run_row("r2", 1)], lake=lake)
    capture(lake, "r1", 0)
    capture(lake, "r2", 1, OTHER_CAPTURE)
    out = build(lake, "--select", "geometry_dynamics", "--input", f"geometry_dynamics.geometry_state={CAPTURE}")
    assert (f"left out: geometry_state/analysis_id={OTHER_CAPTURE}/run_id=r2: model geometry_dynamics reads "
            f"only geometry_state analysis {CAPTURE} (--input), which does not hold run r2") in out
    assert "1 run (first build)" in out


def test_a_model_outside_the_build_must_have_built_its_current_analysis(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    writer.write("runs", [run_row("r1")], lake=lake)
    capture(lake, "r1", 0)
    done = cli("models", "run", "--lake", str(lake), "--select", "signatures")
    assert done.returncode == 2
    assert "reads events_candidates analysis cpd2_2-" in done.stderr and "which is not built" in done.stderr
    plan = cli("models", "plan", "--lake", str(lake), "--select", "signatures")
    assert plan.returncode == 0 and "waits for events_candidates analysis cpd2_2-" in plan.stdout


# -- 3. the views show the current analysis ------------------------------------------------------


def test_a_parameter_experiment_does_not_take_over_the_views(tmp_path: Path) -> None:
    lake, db = init_lake(tmp_path / "lake"), tmp_path / "w.duckdb"
    writer.write("runs", [run_row("r1", 0), run_row("r2", 1)], lake=lake)
    capture(lake, "r1", 0)
    capture(lake, "r2", 1)
    build(lake, db=db)
    with connect(db) as con:
        default = con.execute(
            "SELECT analysis_id FROM warehouse_current_analyses WHERE model = 'geometry_dynamics'").fetchone()[0]
    build(lake, "--param", "geometry_dynamics.volatility_window=3", db=db)
    readme_query = """
        SELECT run_id, layer, module, step, drift_velocity
        FROM geometry_dynamics
        WHERE sample_id IS NULL AND module = 'resid_post'
        ORDER BY drift_velocity DESC
        LIMIT 3"""
    with connect(db) as con:
        current = con.execute(
            "SELECT analysis_id, built FROM warehouse_current_analyses WHERE model = 'geometry_dynamics'").fetchone()
        shown = {a for (a,) in con.execute("SELECT DISTINCT analysis_id FROM geometry_dynamics").fetchall()}
        every = {a for (a,) in con.execute("SELECT DISTINCT analysis_id FROM geometry_dynamics_all").fetchall()}
        keys = con.execute(f"SELECT run_id, layer, module, step FROM ({readme_query})").fetchall()
        windows = {w for (w,) in con.execute("SELECT DISTINCT volatility_window FROM geometry_dynamics").fetchall()}
        rows = con.execute("SELECT count(*) FROM geometry_dynamics").fetchone()[0]
    assert current == (default, True) and shown == {default} and len(every) == 2
    assert len(keys) == len(set(keys)) == 3  # each row once
    assert windows == {5} and rows == 2 * ROWS_PER_RUN
    # back to the defaults: nothing to rebuild, and the views still show the default analysis
    out = build(lake, db=db)
    assert "geometry_dynamics dyn@1 -> " + default + ": up to date (2 runs)" in out
