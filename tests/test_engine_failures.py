"""Failure safety and one build at a time: a failing or killed build leaves the lake as it was."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine_fixtures import built, dyn_sql, engine_sql, lake  # noqa: F401 (fixtures; engine_sql is autouse)
from engine_fixtures import DYN, STEPS, assert_names, build, only, quiet
from model_fixtures import (
    CAPTURE,
    CLI,
    REPO,
    changed,
    cli,
    contract_model,
    copy_sql,
    edit_model,
    geometry_rows,
    model_path,
    read_rows,
    snapshot,
    visible_files,
    write_runs,
)
from warehouse import contracts, models, writer
from warehouse.errors import LockBusy
from warehouse.models import ModelError
from warehouse.models.state import analyses_dir, build_lock, load_analyses
from warehouse.scan import select_dataset


FAILURES = {
    "error()": "CASE WHEN act_norm_0 > 1000 THEN error('boom: act_norm ' || act_norm_0) ELSE drift_velocity END",
    "integer division by zero": "drift_velocity + (step // CASE WHEN act_norm_0 > 1000 THEN 0 ELSE 1 END) * 0",
}


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_failing_model_leaves_the_lake_as_it_was(lake: Path, tmp_path: Path, kind: str) -> None:
    sql = copy_sql(tmp_path)
    path = edit_model(sql, DYN, "drift_velocity::FLOAT AS drift_velocity", f"({FAILURES[kind]})::FLOAT AS drift_velocity")
    first = only(build(lake, sql_dir=sql))
    analysis = first.plan.analysis_id
    # r2 gets captures that make the model fail; r3 is new and fine
    writer.write("geometry_state", geometry_rows("r2", range(100, 150, 10), seed=1, act_norm=5000.0), lake=lake)
    write_runs(lake, {"r3": STEPS})
    before = snapshot(lake, content=True)
    with pytest.raises(ModelError) as err:
        models.run(lake=lake, sql_dir=sql, report=quiet)
    message = str(err.value)
    assert_names(message, DYN, path)
    assert "the SQL failed" in message
    assert ("boom: act_norm 5000" in message) if kind == "error()" else ("Division by zero" in message)
    assert "--- rendered SQL ---" in message and "WITH captures AS" in message and "FROM drift" in message
    assert snapshot(lake, content=True) == before
    assert not (lake / ".staging").exists()
    assert load_analyses(lake)[analysis].units.keys() == {"r1", "r2"}
    # the plan is unchanged: the next build would try the same work again
    assert only(build(lake, sql_dir=sql, dry_run=True)).plan.build == {"r2": "changed input", "r3": "new run"}


def test_failing_downstream_model_keeps_its_outputs_and_record(lake: Path, tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    contract_model(sql, "downstream", "events_candidates", DYN,
                   {"metric": "'drift'", "step": "step",
                    "magnitude": "CASE WHEN run_id = 'r3' THEN error('no r3 here') ELSE drift_velocity END::FLOAT"},
                   where="WHERE sample_id IS NULL")
    results = build(lake, sql_dir=sql)
    down = results[1].plan.analysis_id
    write_runs(lake, {"r3": STEPS})
    before = snapshot(lake, content=True)
    with pytest.raises(ModelError, match="no r3 here") as err:
        models.run(lake=lake, sql_dir=sql, report=quiet)
    assert_names(str(err.value), "downstream", model_path(sql, "downstream"))
    after = snapshot(lake, content=True)
    # geometry_dynamics published r3 and updated its record; nothing else moved
    diff = changed(before, after)
    assert diff and all(k.startswith(f"{DYN}/") or k == f"_meta/analyses/{results[0].plan.analysis_id}.json"
                        for k in diff), diff
    assert all(k in after for k in before)
    assert load_analyses(lake)[down].units.keys() == {"r1", "r2"}
    assert not (lake / ".staging").exists()


def _big_lake(lake: Path, runs: int, steps: int, first_step: int = 0) -> None:
    """``runs`` runs x ``steps`` captures x 4 layers x 20 samples of geometry_state."""
    schema = pa.schema([c.field for c in contracts.get("geometry_state").all_columns
                        if c.name not in ("schema_version", "created_at_utc")])
    for i in range(runs):
        s, layer, sample = np.meshgrid(first_step + np.arange(steps) * 10, np.arange(4), np.arange(20), indexing="ij")
        n = s.size
        rng = np.random.default_rng([i, first_step])
        data = {
            "run_id": [f"big{i}"] * n, "analysis_id": [CAPTURE] * n, "step": s.ravel(),
            "seed": np.full(n, i, dtype="int32"), "sample_set": ["eval"] * n,
            "sample_id": [f"s{k}" for k in sample.ravel()], "layer": layer.ravel().astype("int16"),
            "module": ["resid_post"] * n, "n_samples": np.full(n, 16, dtype="int32"),
            "dim": np.full(n, 8, dtype="int32"),
        }
        for d in contracts.DESCRIPTORS:
            data[d] = rng.random(n).astype("float32")
        writer.write("geometry_state", pa.table(data, schema=schema), lake=lake, create=True)


def _check_readable(lake: Path, counts: dict[str, set[int]]) -> dict[str, int]:
    """Every visible output file reads, each run partition holds one complete build, no key
    is there twice; the rows of each visible run partition."""
    files = visible_files(lake, DYN)
    by_run: dict[str, int] = {}
    for f in files:
        run = f.parent.name.split("=", 1)[1]
        by_run[run] = by_run.get(run, 0) + pq.read_table(f).num_rows
    for run, n in by_run.items():
        assert n in counts[run], (run, n, counts[run])
    if files:
        keys = ", ".join(contracts.get(DYN).primary_key)
        with duckdb.connect() as con:
            dup = con.execute(
                f"SELECT {keys}, count(*) FROM ({select_dataset(contracts.get(DYN), files)}) "
                "GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
            ).fetchall()
        assert dup == []
    for p in analyses_dir(lake).glob("*.json"):
        json.loads(p.read_text())
    return by_run


def _kill_when(cmd: list[str], lake: Path, phase: str, delay: float) -> tuple[int | None, bool]:
    """Start ``cmd``, SIGKILL it ``delay`` seconds after ``phase`` of the build is seen.

    Returns the exit status and whether the build was inside the model (its staging folder
    existed) when killed.
    """
    staging = lake / ".staging"
    earlier = set(staging.glob("*"))  # left by builds killed before this one

    def found(pattern: str) -> bool:
        # the build removes the staging area when it leaves it empty, maybe mid-listing
        try:
            return any(p for p in staging.glob(pattern) if staging / p.relative_to(staging).parts[0] not in earlier)
        except FileNotFoundError:
            return False

    seen = {
        "start": lambda: True,
        "model": lambda: found("*/out") or found("*/spill"),
        "copy": lambda: found("*/out/run_id=*/*.parquet"),
        "publish": lambda: found("*/publish"),
        "swap": lambda: found("*/trash/*"),
    }[phase]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.monotonic() + 60
    while proc.poll() is None and not seen() and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(delay)
    inside = found("*/out")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return proc.returncode, inside and proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_mid_build_keeps_outputs_and_the_next_build_completes(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    runs, steps, extra = 6, 1000, 100  # large enough that kills land inside the model
    _big_lake(lake, runs, steps)
    analysis = only(models.run(lake=lake, report=quiet)).plan.analysis_id
    before = {f"big{i}": steps * 80 for i in range(runs)}
    _big_lake(lake, runs, extra, first_step=steps * 10)  # every run gets new captures: all stale
    counts = {run: {n, n + extra * 80} for run, n in before.items()}

    # a full refresh rewrites every partition, so each attempt replaces outputs in place
    cmd = [str(CLI), "models", "run", "--lake", str(lake), "--full-refresh"]
    killed_inside = 0
    for phase, delay in [("start", 0.3), ("model", 0.0), ("model", 0.4), ("copy", 0.0),
                         ("publish", 0.0), ("swap", 0.0), ("swap", 0.002)]:
        status, inside = _kill_when(cmd, lake, phase, delay)
        killed_inside += inside
        _check_readable(lake, counts)
    assert killed_inside >= 3  # most builds really died inside the model

    r = cli("models", "run", "--lake", str(lake))
    assert r.returncode == 0, r.stderr
    assert _check_readable(lake, {run: {max(c)} for run, c in counts.items()}) == {
        run: max(c) for run, c in counts.items()}
    assert only(models.run(lake=lake, report=quiet, dry_run=True)).plan.build == {}

    clean = tmp_path / "clean"
    shutil.copytree(lake / "geometry_state", clean / "geometry_state")
    assert only(models.run(lake=clean, report=quiet)).plan.analysis_id == analysis
    assert read_rows(lake, DYN) == read_rows(clean, DYN)


def test_second_build_refuses_while_the_lock_is_held(built: tuple[Path, str]) -> None:
    lake, _ = built
    with build_lock(lake):
        r = cli("models", "run", "--lake", str(lake))
        with pytest.raises(LockBusy, match=f"pid {os.getpid()}"):
            models.run(lake=lake, report=quiet)
    assert r.returncode == 2
    assert "another build is running" in r.stderr and f"pid {os.getpid()}, started" in r.stderr
    assert "--wait" in r.stderr
    assert r.stdout == ""
    only(build(lake))  # released


def test_wait_queues_behind_the_running_build(lake: Path) -> None:
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with build_lock(lake):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    timer = threading.Timer(1.0, release.set)
    timer.start()
    started = time.perf_counter()
    result = only(build(lake, wait=True))
    waited = time.perf_counter() - started
    t.join()
    assert waited >= 0.9
    assert result.plan.build == {"r1": "first build", "r2": "first build"}


def test_cli_wait(lake: Path) -> None:
    with build_lock(lake):
        proc = subprocess.Popen([str(CLI), "models", "run", "--lake", str(lake), "--wait"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        time.sleep(1.5)
        assert proc.poll() is None  # still queued
        assert not (lake / DYN).exists()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "2 runs (first build)" in out
