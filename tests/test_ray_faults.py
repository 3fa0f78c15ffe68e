"""Ray workers killed (SIGKILL) in the middle of a task (``make test-ray``).

A lake of about 100,000 rows is built with the ray executor, each run a batch of its own
(``SQUIGGLE_BATCH_BYTES=1``), so that every model runs many short tasks. In each of at least
12 seeded trials a full build starts as ``warehouse models run``; from here, after the k-th
task is seen to start (k and a delay drawn from the seed), a worker process computing a task
(its title ``ray::run_batch``) is sent SIGKILL. Ray runs the task again on another worker:
the build completes, ``warehouse check`` finds nothing (no partial output was published, the
dead attempt's folder went with the build's staging), and every model's rows and records
equal a clean build's. At least 10 kills must land while the task runs.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model_fixtures import REPO
from ray_fixtures import NO_RAY, RAY_INSTALLED, cluster, ray_env, scale_lake_module  # noqa: F401, F811 (cluster: a fixture)
from reliability_fixtures import model_contents, recorded_units
from warehouse import check_lake

if not RAY_INSTALLED:
    pytest.skip(NO_RAY, allow_module_level=True)
pytestmark = pytest.mark.ray

SEED = 20261205
TRIALS = 12
MIN_MID_TASK = 10
CLI = Path(sys.executable).with_name("warehouse")
TITLE = b"ray::run_batch"


def build(lake: Path, address: str) -> subprocess.Popen:
    env = {**ray_env(), "SQUIGGLE_BATCH_BYTES": "1"}
    return subprocess.Popen([str(CLI), "models", "run", "--lake", str(lake), "--full-refresh", "--executor", "ray",
                             "--address", address], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def batch_workers() -> set[int]:
    """The processes computing a batch now (Ray titles a worker after its task)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(TITLE):
                    pids.add(int(proc.name))
            except OSError:  # gone meanwhile
                pass
    return pids


def kill_a_task(proc: subprocess.Popen, starts: int, delay: float, rng: random.Random) -> bool:
    """After ``starts`` task starts and ``delay`` s, SIGKILL a worker computing one; whether
    the kill landed while the task ran."""
    seen, running = 0, set()
    while proc.poll() is None and seen < starts:
        now = batch_workers()
        seen += len(now - running)
        running = now
        time.sleep(0.005)
    time.sleep(delay)
    while proc.poll() is None:
        now = sorted(batch_workers())
        if now:
            pid = rng.choice(now)
            try:
                mid_task = Path(f"/proc/{pid}/cmdline").read_bytes().startswith(TITLE)
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
            return mid_task
        time.sleep(0.005)
    return False


def test_workers_killed_mid_task_leave_the_lake_as_a_clean_build(cluster: str, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    scale_lake_module().write_lake(lake, rows=100_000)
    clean = build(lake, cluster)
    out, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err
    contents, units = model_contents(lake), recorded_units(lake)
    tasks = sum(int(line.rsplit(", ", 1)[1].split()[0]) for line in out.splitlines() if line.endswith("Ray tasks"))
    rng = random.Random(SEED)
    landed = 0
    for trial in range(TRIALS):
        proc = build(lake, cluster)
        mid_task = kill_a_task(proc, rng.randint(1, tasks // 2), rng.uniform(0, 0.1), rng)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, (trial, err[-2000:])
        assert check_lake(lake) == [], trial
        assert model_contents(lake) == contents, trial
        assert recorded_units(lake) == units, trial
        landed += mid_task
    print(f"\n{TRIALS} builds (seed {SEED}, {tasks} tasks each), {landed} workers killed mid-task: "
          "each build completed, its lake equal to a clean build's, check clean")
    assert landed >= MIN_MID_TASK
