"""Concurrent readers, builds and writers on the demo lake (every model has output there).

The guarantee tested for readers: every query of a catalog sees, for every model, exactly
the outputs of the builds completed when that catalog was made (each analysis holds the
rows its record in ``warehouse_analyses`` says, each partition the rows of one build),
with no error, while builds replace the outputs and catalogs are swapped. A reader holding
a connection keeps seeing its catalog; a reader that reconnects sees the newest one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from model_fixtures import CLI, REPO, geometry_rows, read_rows
from reliability_fixtures import copy_inputs, model_contents, recorded_units
from warehouse import build_catalog, check_lake, models, write
from warehouse.demo import write_demo

READER = Path(__file__).resolve().parent / "catalog_reader.py"
pytestmark = pytest.mark.slow


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo lake with every model built and its catalog, in ``<root>/lake`` and ``<root>/w.duckdb``."""
    root = tmp_path_factory.mktemp("concurrency")
    write_demo(lake=root / "lake")
    models.run(lake=root / "lake", report=quiet)
    build_catalog(root / "lake", root / "w.duckdb")
    return root


@pytest.fixture
def work(template: Path, tmp_path: Path) -> Path:
    """A private copy of the template: the catalog's views point into the copy's lake."""
    shutil.copytree(template / "lake", tmp_path / "lake", symlinks=True)
    build_catalog(tmp_path / "lake", tmp_path / "w.duckdb")
    return tmp_path


def warehouse_cmd(*args: str) -> list[str]:
    return [str(CLI), *args]


def run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(warehouse_cmd(*args), capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


def start_reader(db: Path, stop: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(READER), str(db), str(stop), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def analyses_with_rows(lake: Path) -> set[str]:
    """The recorded analyses a reader can see: those with rows (an analysis that wrote none
    has nothing in any view)."""
    return {a for a, r in recorded_units(lake).items() if r["rows"] > 0}


def test_readers_see_no_error_and_complete_states_through_builds_and_catalog_swaps(work: Path) -> None:
    lake, db, stop = work / "lake", work / "w.duckdb", work / "stop"
    readers = {mode: start_reader(db, stop, mode) for mode in ("hold", "reconnect")}
    time.sleep(1)  # both are querying
    old = analyses_with_rows(lake)
    run("models", "run", "--lake", str(lake), "--full-refresh")  # every output partition replaced
    run("catalog", "--lake", str(lake), "--db", str(db))
    run("models", "run", "--lake", str(lake), "--param", "geometry_dynamics.volatility_window=7")
    run("catalog", "--lake", str(lake), "--db", str(db))
    run("catalog", "--lake", str(lake), "--db", str(db))
    time.sleep(1)
    stop.touch()
    seen = {}
    for mode, proc in readers.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        seen[mode] = json.loads(out)
    new = analyses_with_rows(lake) - old
    assert len(new) >= 2  # the new dynamics analysis and what reads it downstream
    for mode, summary in seen.items():
        assert summary["errors"] == [], (mode, summary["errors"][:3])
        assert summary["inconsistent"] == [], (mode, summary["inconsistent"][:3])
        assert summary["rounds"] > 50, (mode, summary["rounds"])
    assert seen["hold"]["generations"] == 1 and set(seen["hold"]["analyses"]) == old
    assert seen["reconnect"]["generations"] >= 3 and set(seen["reconnect"]["analyses"]) == old | new


def test_two_builds_at_once_one_refuses_clearly_or_waits(work: Path) -> None:
    lake = work / "lake"
    reference = model_contents(lake)
    cmd = warehouse_cmd("models", "run", "--lake", str(lake), "--full-refresh")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for _ in range(2)]
    done = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    assert sorted(status for status, _, _ in done) == [0, 2]
    (_, out, err), = [d for d in done if d[0] == 2]
    assert out == "" and f"another build is running on {lake} (models run, pid" in err and "--wait" in err
    assert check_lake(lake) == [] and model_contents(lake) == reference

    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    while not list((lake / ".staging").glob("build-*")) and first.poll() is None:
        time.sleep(0.01)
    second = subprocess.run(warehouse_cmd("models", "run", "--lake", str(lake), "--wait"),
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert first.wait(timeout=600) == 0, first.communicate()[1]
    assert second.returncode == 0, second.stderr
    assert second.stdout.count(": up to date") == 7  # it waited until the first had recorded every model
    assert check_lake(lake) == [] and model_contents(lake) == reference


def later_captures(lake: Path) -> list[dict]:
    """One more capture of every series of the lake's first run, ten steps after its last."""
    glob = f"{lake}/geometry_state/*/*/*.parquet"
    with duckdb.connect() as con:
        result = con.execute(
            f"SELECT * EXCLUDE (schema_version, created_at_utc) REPLACE (step + 10 AS step) FROM read_parquet("
            f"'{glob}', hive_partitioning = true, hive_types = {{'analysis_id': 'VARCHAR', 'run_id': 'VARCHAR'}}) "
            f"WHERE run_id = (SELECT min(run_id) FROM read_parquet('{glob}', hive_partitioning = true)) "
            f"QUALIFY step = max(step) OVER ()"
        )
        names = [d[0] for d in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]


def test_a_writer_appending_while_a_build_runs_loses_nothing(work: Path, tmp_path: Path) -> None:
    lake = work / "lake"
    extra = later_captures(lake)
    analysis = extra[0]["analysis_id"]
    late = {run: [dict(r, analysis_id=analysis) for r in geometry_rows(run, range(0, 200, 10), seed=i)]
            for i, run in enumerate(("late-1", "late-2"))}
    before = read_rows(lake, "geometry_state")
    build = subprocess.Popen(warehouse_cmd("models", "run", "--lake", str(lake), "--full-refresh"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 120
    while not list((lake / ".staging").glob("build-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert build.poll() is None, "the build ended before the writer started"
    written = 0
    for i, (run, rows) in enumerate(late.items()):
        write("runs", [{"run_id": run, "seed": i, "run_mode": "train_full", "model_id": "m", "config_json": "{}",
                        "config_hash": "late", "status": "completed", "started_at_utc": "2026-01-01T00:00:00Z"}],
              lake=lake)
        written += write("geometry_state", rows, lake=lake).rows_written
    written += write("geometry_state", extra, lake=lake).rows_written
    writes_ended_while_building = build.poll() is None
    out, err = build.communicate(timeout=600)
    assert build.returncode == 0, err
    assert writes_ended_while_building
    assert written == len(late["late-1"]) + len(late["late-2"]) + len(extra)
    after = read_rows(lake, "geometry_state")
    assert len(after) == len(before) + written and set(before) <= set(after)  # nothing lost, nothing twice
    assert check_lake(lake) == []
    # the build listed its inputs before it began: no model of it saw the late runs
    assert not [u for r in recorded_units(lake).values() for u in r["units"] if u.startswith("late-")]

    (dynamics,) = [r for r in models.run(lake=lake, report=quiet) if r.plan.name == "geometry_dynamics"]
    assert dynamics.plan.build == {"late-1": "new run", "late-2": "new run", extra[0]["run_id"]: "changed input"}
    clean = copy_inputs(lake, tmp_path / "clean")
    models.run(lake=clean, report=quiet)
    assert model_contents(lake) == model_contents(clean)
    assert recorded_units(lake) == recorded_units(clean)
