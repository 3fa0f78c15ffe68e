"""The benchmark harness: scale lakes, the measurement of a child process, and the check that
compares the pandas baseline with the models (the baseline itself only where pandas is
installed: it is a benchmark dependency, not a test one)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from warehouse import demo, models
from warehouse.hashing import config_hash

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import agreement  # noqa: E402  (bench/ is a folder of scripts, not a package)
import frozen_cpd1  # noqa: E402
import report  # noqa: E402
import scale_lake  # noqa: E402
from measure import CommandFailed, measure  # noqa: E402
from models import MODEL_LINE, Recorder, Settings, SpillWatch, cpd1_build, fresh_copy, memory_limit  # noqa: E402


SMALL = 2 * 3 * 13_824  # nearest to this: two cohorts, of 3 and 4 training runs (7 runs, not 3)
SMALL_ROWS = 7 * 13_824 + 3 * 576  # and of the probe family's three runs (24 captures x 24 series)


@pytest.fixture(scope="module")
def built_lake(tmp_path_factory) -> Path:
    """A small scale lake (two cohorts, one probe family) with every model built; the second
    cohort's plants give composite events too."""
    root = tmp_path_factory.mktemp("scale") / "lake"
    scale_lake.write_lake(root, rows=SMALL)
    models.run(lake=root, report=lambda line: None)
    return root


def _count(glob: Path, where: str = "true") -> int:
    return duckdb.execute(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true) WHERE {where}").fetchone()[0]


def test_layout_of_a_million_rows() -> None:
    layout = scale_lake.Layout.for_rows(1_000_000)
    # 1,000,000 / 13,824 rows = 72.3 training runs; cohorts of 3, 4, 5, 4 seeds in turn: 16
    # cohorts hold 64 runs, 17 hold 67, 18 hold 71 (the nearest), 19 hold 76; one family per 4 cohorts
    assert (layout.cohorts, layout.families, layout.training_runs) == (18, 5, 71)
    assert layout.rows == 71 * 13_824 + 15 * 576 == 990_144


def test_ten_million_rows_make_cohorts_of_their_own() -> None:
    layout = scale_lake.Layout.for_rows(10_000_000)
    assert (layout.cohorts, layout.training_runs) == (181, 723)  # 45 cycles of 16 runs, and 3
    assert [len(scale_lake.seeds(k)) for k in range(6)] == [3, 4, 5, 4, 3, 4]
    # every cohort is a configuration of its own: config_hash tells the cohorts apart
    hashes = {config_hash(scale_lake.training_config(scale_lake.cohort(k), 0)) for k in range(layout.cohorts)}
    assert len(hashes) == layout.cohorts
    # and the seeds of a cohort share it
    c = scale_lake.cohort(7)
    assert len({config_hash(scale_lake.training_config(c, s)) for s in scale_lake.seeds(7)}) == 1


def test_scale_lake_rows_and_runs(built_lake: Path) -> None:
    geometry = built_lake / "geometry_state" / "**" / "*.parquet"
    assert _count(geometry) == SMALL_ROWS
    # a training run: 64 captures x 6 layers x 4 modules x (pooled + 8 samples)
    assert _count(geometry, "run_id = 'b00000-s1'") == 64 * 6 * 4 * 9
    assert _count(geometry, "run_id = 'b00000-s1' AND sample_id IS NULL") == 64 * 6 * 4
    assert _count(built_lake / "runs" / "**" / "*.parquet") == 10
    assert _count(built_lake / "runs" / "**" / "*.parquet", "run_id = 'b00001-s3'") == 1
    assert _count(built_lake / "runs" / "**" / "*.parquet", "family_id = 'fam-0000' AND probe_name IS NOT NULL") == 3


def test_same_size_gives_the_same_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        scale_lake.write_lake(root, rows=1)

    def files(root: Path) -> dict[str, bytes]:
        """Every file but the writer's stamps (they hold the files' modification times)."""
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.relative_to(root).parts[:2] != ("_meta", "checked")}

    assert files(a) == files(b)
    assert not (tmp_path / "a.partial").exists()


def test_plants_keep_cpd_windows_inside_the_series() -> None:
    for k in range(200):
        indices = [p.index for p in scale_lake.cohort(k).plants]
        assert 2 <= len(indices) <= 5
        # the demo adds 0 or 1 capture of jitter; both windows of w = 5 must fit
        assert all(demo.WINDOW <= i and i + 1 <= demo.N_CAPTURES - demo.WINDOW for i in indices)
        assert all(b - a > demo.WINDOW for a, b in zip(indices, indices[1:]))


def test_planted_shifts_are_detected(built_lake: Path) -> None:
    plants = scale_lake.cohort(0).plants + scale_lake.cohort(1).plants
    expected = sum(len(scale_lake.seeds(k)) * sum(len(p.layers) * len(p.metrics) for p in scale_lake.cohort(k).plants)
                   for k in (0, 1))
    assert len(plants) > 0
    truth = built_lake / "_meta" / "demo" / "planted_events.parquet"
    assert _count(truth) == expected
    missed = duckdb.execute(f"""
        WITH grid AS (
            SELECT run_id, step, dense_rank() OVER (PARTITION BY run_id ORDER BY step) - 1 AS i
            FROM (SELECT DISTINCT run_id, step FROM read_parquet('{built_lake}/geometry_state/**/*.parquet',
                  hive_partitioning = true))
        ),
        detected AS (
            SELECT e.run_id, e.layer, e.metric, g.i
            FROM read_parquet('{built_lake}/events_candidates/**/*.parquet', hive_partitioning = true) AS e
            JOIN grid AS g USING (run_id, step)
            WHERE e.event_type = 'change_point'
        )
        SELECT count(*) FROM read_parquet('{truth}') AS p
        WHERE NOT EXISTS (SELECT 1 FROM detected AS d WHERE d.run_id = p.run_id AND d.layer = p.layer
                          AND d.metric = p.metric AND abs(d.i - p.capture_index) <= 2)
    """).fetchone()[0]
    assert missed == 0


def test_each_cohort_has_its_consensus_events(built_lake: Path) -> None:
    runs = built_lake / "runs" / "**" / "*.parquet"
    cohorts = duckdb.execute(f"""
        SELECT config_hash, count(*) FROM read_parquet('{runs}', hive_partitioning = true)
        WHERE run_mode = 'train_full' GROUP BY config_hash ORDER BY 2
    """).fetchall()
    assert [n for _, n in cohorts] == [3, 4]  # cohorts b00000 and b00001
    events = duckdb.execute(f"""
        SELECT cohort_id, min(n_runs_total), max(n_runs_total), count(*)
        FROM read_parquet('{built_lake}/events/**/*.parquet', hive_partitioning = true)
        GROUP BY cohort_id
    """).fetchall()
    found = {cohort: (lo, hi, n) for cohort, lo, hi, n in events}
    for cohort, n_runs in cohorts:
        lo, hi, n = found[cohort]
        assert lo == hi == n_runs and n > 0
    # the truth names each run's cohort by the same hash
    truth = built_lake / "_meta" / "demo" / "planted_events.parquet"
    assert {c for (c,) in duckdb.execute(f"SELECT DISTINCT cohort_id FROM read_parquet('{truth}')").fetchall()} == {
        c for c, _ in cohorts}


def test_a_run_added_to_the_first_cohort_is_a_new_seed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="already has seed 2"):
        scale_lake.add_run(tmp_path, seed=2)


def test_measured_memory_is_the_commands_own() -> None:
    held = np.ones(300 * 2**20 // 8)  # 300 MiB in this process, which forks nothing itself
    bare = measure([sys.executable, "-c", "pass"])
    grown = measure([sys.executable, "-c", "import numpy as np; a = np.ones(200 * 2**20 // 8); print(a.size)"])
    assert held.size and bare.peak_rss_mib < 100
    assert 200 <= grown.peak_rss_mib < 300
    assert grown.stdout.strip() == str(200 * 2**20 // 8)


def test_a_failing_command_stops_the_benchmark_with_its_error() -> None:
    with pytest.raises(SystemExit, match="exit status 3"):
        measure([sys.executable, "-c", "import sys; sys.exit(3)"])


def test_a_command_past_its_timeout_is_killed_and_named(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    began = time.perf_counter()
    with pytest.raises(CommandFailed, match=r"timed out after 1 s") as failed:
        measure(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"], timeout=1)
    assert time.perf_counter() - began < 10 and "timed out" in failed.value.stderr
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while running(pid):
        assert time.monotonic() < deadline, f"the timed-out command (pid {pid}) still runs"
        time.sleep(0.05)


def running(pid: int) -> bool:
    """Whether the process runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_failed_build_is_recorded_with_the_models_done_before_it() -> None:
    build = ("import sys; print('events_candidates cpd@1 -> cpd1-x: 3 runs (first build): 9 rows, 3 partitions, 1.50 s');"
             " sys.exit('model geometry_dynamics: Out of Memory Error\\nPossible solutions: ...')")
    recorder = Recorder(Settings(None, None, None))
    with pytest.raises(CommandFailed):
        recorder.run("full build", [sys.executable, "-c", build], MODEL_LINE)
    assert recorder.failure == {"measurement": "full build", "error": "model geometry_dynamics: Out of Memory Error",
                                "completed": {"events_candidates": 1.5}}
    assert "full build" not in recorder.samples


def test_spill_watch_sees_files_come_and_go(tmp_path: Path) -> None:
    with SpillWatch(tmp_path, every=0.01) as watch:
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "a.tmp").write_bytes(b"x" * 300_000)
        (tmp_path / "b.tmp").write_bytes(b"x" * 200_000)
        time.sleep(0.2)
        (tmp_path / "sub" / "a.tmp").unlink()
        time.sleep(0.2)
    assert watch.peak_bytes == 500_000


def test_fresh_copy_links_the_files(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "a" / "b").mkdir(parents=True)
    (source / "a" / "b" / "f.parquet").write_bytes(b"x")
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "left.over").write_bytes(b"y")
    copy = fresh_copy(source, tmp_path / "copy")
    assert [p.name for p in copy.rglob("*") if p.is_file()] == ["f.parquet"]
    assert (copy / "a" / "b" / "f.parquet").stat().st_ino == (source / "a" / "b" / "f.parquet").stat().st_ino


@pytest.mark.parametrize("limit, expected", [("2GB", 2 * 10**9), ("1.5GiB", 3 * 2**29), ("512MB", 512 * 10**6)])
def test_memory_limits_read_as_duckdb_reads_them(limit: str, expected: int) -> None:
    assert report.limit_bytes(limit) == expected


def test_the_benchmarks_memory_limit_names_the_warehouse_default_or_duckdbs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("warehouse.duck.available_memory", lambda: 8 * 2**30)
    assert memory_limit("default") == "2048MiB"  # a quarter of 8 GiB
    assert memory_limit("duckdb") == memory_limit("none") == "duckdb"
    assert memory_limit("3GB") == "3GB"
    with pytest.raises(ValueError, match="not a memory limit: '2 gigs'"):
        memory_limit("2 gigs")


def test_a_malformed_memory_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="not a memory limit: '2 gigs'"):
        report.limit_bytes("2 gigs")


def test_results_are_replaced_per_size_and_memory_limit(tmp_path: Path) -> None:
    def entry(rows: int, limit: str | None, tag: str) -> dict:
        return {"requested_rows": rows, "memory_limit": limit, "tag": tag}

    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"sizes": [entry(10, "2GB", "old"), entry(10, None, "old"), entry(20, "2GB", "old")]}))
    merged = report.merge([entry(10, "2GB", "new"), entry(5, "2GB", "new")], path)
    assert [(e["requested_rows"], e["memory_limit"], e["tag"]) for e in merged] == [
        (10, None, "old"), (5, "2GB", "new"), (10, "2GB", "new"), (20, "2GB", "old")]


def _model_copy(lake: Path, out: Path, changes: dict[str, str]) -> None:
    """The models' two tables as the pandas baseline writes them, with ``changes`` applied
    (table -> SQL over ``t`` giving the rows to write)."""
    out.mkdir()
    for table, select in changes.items():
        glob = agreement.model_files(lake, table)
        duckdb.execute(f"CREATE OR REPLACE TABLE t AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
        duckdb.execute(f"COPY ({select}) TO '{out / f'{table}.parquet'}' (FORMAT parquet)")


def test_agreement_of_identical_tables(built_lake: Path, tmp_path: Path) -> None:
    _model_copy(built_lake, tmp_path / "out", {"geometry_dynamics": "SELECT * FROM t",
                                               "events_candidates": "SELECT * FROM t"})
    dynamics, events = agreement.compare(built_lake, tmp_path / "out")
    assert dynamics.agrees and events.agrees
    assert dynamics.compared == SMALL_ROWS and dynamics.max_abs == 0.0
    assert events.compared == _count(built_lake / "events_candidates" / "**" / "*.parquet") > 0


def test_agreement_finds_a_changed_value_and_a_missing_event(built_lake: Path, tmp_path: Path) -> None:
    _model_copy(built_lake, tmp_path / "out", {
        # one drift_velocity raised by 0.25 (exact in float32 at these magnitudes)
        "geometry_dynamics": "SELECT * REPLACE (CASE WHEN run_id = 'b00000-s0' AND sample_id IS NULL AND layer = 2"
                             " AND module = 'mlp_out' AND step = (SELECT max(step) FROM t WHERE run_id = 'b00000-s0')"
                             " THEN drift_velocity + 0.25 ELSE drift_velocity END AS drift_velocity) FROM t",
        # the first change point by natural key left out
        "events_candidates": "SELECT * FROM t WHERE (run_id, layer, metric, step) <> (SELECT (run_id, layer, metric, step)"
                             " FROM t WHERE event_type = 'change_point' ORDER BY ALL LIMIT 1)",
    })
    dynamics, events = agreement.compare(built_lake, tmp_path / "out")
    drift = next(c for c in dynamics.columns if c.column == "drift_velocity")
    assert abs(drift.max_abs - 0.25) < 1e-6 and drift.beyond_tolerance == 1
    assert not dynamics.agrees
    assert (events.only_pandas, events.only_models, events.agrees) == (0, 1, False)


def test_pandas_baseline_gives_the_numbers_of_the_frozen_cpd1_build(built_lake: Path, tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    import pandas_baseline

    # the build `make bench` times the baseline against, on a copy of the lake the repository's
    # models (cpd@2.2) built: it adds a cpd@1 analysis of events_candidates beside cpd@2.2's
    lake = fresh_copy(built_lake, tmp_path / "lake")
    subprocess.run(cpd1_build(lake, frozen_cpd1.sql_dir(tmp_path / "sql")), check=True, capture_output=True)
    analyses = sorted(p.name.split("=", 1)[1].split("-")[0] for p in (lake / "events_candidates").iterdir())
    assert analyses == ["cpd1", "cpd2_2"]
    gs = pandas_baseline.load(lake)
    out = tmp_path / "pandas"
    out.mkdir()
    pandas_baseline.geometry_dynamics(gs).to_parquet(out / "geometry_dynamics.parquet", index=False)
    pandas_baseline.events_candidates(gs).to_parquet(out / "events_candidates.parquet", index=False)
    dynamics, events = agreement.compare(lake, out)
    assert dynamics.agrees and dynamics.compared == SMALL_ROWS
    cpd1_events = _count(lake / "events_candidates" / "analysis_id=cpd1-*" / "**" / "*.parquet")
    assert events.agrees and events.compared == cpd1_events > 0
    assert {"change_point", "change_point_composite"} <= set(
        duckdb.execute(f"SELECT DISTINCT event_type FROM '{out}/events_candidates.parquet'").fetchnumpy()["event_type"])
