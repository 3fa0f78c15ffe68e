"""The ray executor (``make test-ray``): builds on a real Ray cluster started on this machine
equal a local build of the same lake, and bad input fails before anything is written.

Equal is what :mod:`engine_equality_golden` compares: the same analysis ids, row counts and
key tuples, text, integer and list values equal on the same rows, float values on the same
rows with sums within 1e-9 of their scale (a Ray task computes with one DuckDB thread, the
local build with two: a sum may add in another order).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine_equality_golden import differences, summarise_lake
from model_fixtures import REPO, only_models_sql
from ray_fixtures import NO_RAY, RAY_INSTALLED, cluster, lake_state, ray_env, scale_lake_module  # noqa: F401, F811 (cluster: a fixture)
from reliability_fixtures import copy_inputs
from warehouse import contracts, models, writer
from warehouse.demo import write_demo
from warehouse.lake import init_lake
from warehouse.models.state import load_analyses

if not RAY_INSTALLED:
    pytest.skip(NO_RAY, allow_module_level=True)
pytestmark = pytest.mark.ray
KEYS = {name: list(contract.primary_key) for name, contract in contracts.DATASETS.items()}


def build_both(source: Path, where: Path, address: str) -> tuple[Path, Path, list[str]]:
    """``source``'s inputs built by the local executor and by the ray executor; the ray
    build's lines."""
    local, ray = copy_inputs(source, where / "local"), copy_inputs(source, where / "ray")
    models.run(lake=local, report=lambda line: None)
    lines: list[str] = []
    models.run(lake=ray, report=lines.append, executor="ray", address=address)
    return local, ray, lines


def assert_equal_builds(local: Path, ray: Path, name: str) -> None:
    found = differences(summarise_lake(local, KEYS), summarise_lake(ray, KEYS), name)
    assert not found, f"{len(found)} differences of the ray build from the local one:\n" + "\n".join(found[:40])
    assert sorted(load_analyses(local)) == sorted(load_analyses(ray))
    assert {a: r.rows for a, r in load_analyses(local).items()} == {a: r.rows for a, r in load_analyses(ray).items()}


def test_the_demo_lake_built_on_ray_equals_the_local_build(cluster: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    write_demo(lake=source, seed=0)
    local, ray, lines = build_both(source, tmp_path, cluster)
    assert_equal_builds(local, ray, "demo")
    tasks = {line.split()[0]: line for line in lines}
    # every model split into batches ran them as tasks; the one-batch model ran on the driver
    for model in ("geometry_dynamics", "events_candidates", "signatures", "events", "matches"):
        assert "Ray tasks" in tasks[model], tasks[model]
    assert tasks["probe_summaries"].endswith("on the driver (one batch)")


@pytest.mark.slow
def test_a_1m_row_scale_lake_built_on_ray_equals_the_local_build(cluster: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    scale_lake_module().write_lake(source, rows=1_000_000)
    local, ray, lines = build_both(source, tmp_path, cluster)
    assert_equal_builds(local, ray, "scale")
    assert sum("Ray tasks" in line for line in lines) >= 5, lines


def test_new_runs_built_on_ray_equal_the_local_build(cluster: str, tmp_path: Path) -> None:
    """Three runs added after a first build: the per-run models compute them as tasks, the
    merging models merge them on the driver; the lake then equals the local one's."""
    scale_lake = scale_lake_module()
    source = tmp_path / "source"
    scale_lake.write_lake(source, rows=150_000)
    local, ray, _ = build_both(source, tmp_path, cluster)
    lines: list[str] = []
    for lake in (local, ray):
        for seed in (97, 98, 99):
            scale_lake.add_run(lake, seed=seed)
    models.run(lake=local, report=lambda line: None)
    models.run(lake=ray, report=lines.append, executor="ray", address=cluster)
    assert_equal_builds(local, ray, "scale, three runs added")
    by_model = {line.split()[0]: line for line in lines}
    assert "3 runs (new run)" in by_model["geometry_dynamics"] and "Ray tasks" in by_model["geometry_dynamics"], lines
    assert by_model["events"].endswith("on the driver (one batch)"), lines


def signature_rows(runs: int, rng: np.random.Generator) -> list[dict]:
    """Per run a run-scope and a layer-scope signature (two groups of ``runs``), small integer
    vectors (ties of score) and events on a coarse grid of t."""
    rows = []
    for r in range(runs):
        for scope, layout in (("run", "K8;run"), ("layer", "K8;layer0")):
            t = [int(x) / 8 for x in rng.integers(0, 9, size=int(rng.integers(0, 4)))]
            rows.append({
                "signature_id": f"{scope}-r{r:03d}", "analysis_id": "sig-test", "run_id": f"r{r:03d}",
                "kind": "trajectory", "scope": scope, "layer": 0 if scope == "layer" else None, "family_id": None,
                "seed": r, "probe_name": None, "signature_version": "sig@1",
                "vector": rng.integers(-2, 3, size=8).astype(float).tolist(), "vector_layout": layout, "norm": 1.0,
                "event_t": t, "event_steps": [int(x * 100) for x in t], "event_layers": [0] * len(t),
                "event_metrics": ["resid_post.eff_rank"] * len(t), "event_scores": [1.0] * len(t),
            })
    return rows


def test_matches_in_blocks_of_pairs_on_ray_equal_the_local_build(cluster: str, tmp_path: Path) -> None:
    """Two groups of 40 signatures on two slots: each group has more than a quarter of the
    pairs, so each is computed in blocks of pairs as tasks and merged by one more task."""
    sql = only_models_sql(tmp_path / "sql", "matches")
    rows = signature_rows(40, np.random.default_rng(3))
    lakes = {}
    for executor in ("local", "ray"):
        lakes[executor] = init_lake(tmp_path / executor)
        writer.write("signatures", rows, lake=lakes[executor])
    models.run(lake=lakes["local"], sql_dir=sql, report=lambda line: None)
    lines: list[str] = []
    models.run(lake=lakes["ray"], sql_dir=sql, report=lines.append, executor="ray", address=cluster)
    assert_equal_builds(lakes["local"], lakes["ray"], "matches in blocks")
    # 780 pairs a group, above 1,560 / 4: two blocks each, and a merging task per group
    [line] = lines
    assert line.endswith(", 6 Ray tasks"), line


# -- bad input: nothing written ------------------------------------------------------------


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("bad-input") / "lake"
    write_demo(lake=lake, seed=0)
    return lake


def run_cli(*args: str, timeout: float = 120, prelude: str = "") -> tuple[subprocess.CompletedProcess, float]:
    code = "; ".join(filter(None, ["import sys", prelude, "from warehouse.cli import main", "sys.exit(main(sys.argv[1:]))"]))
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=ray_env(), cwd=REPO)
    return done, time.monotonic() - began


def test_without_ray_the_ray_executor_says_how_to_install_it(small_lake: Path) -> None:
    before = lake_state(small_lake)
    done, _ = run_cli("models", "run", "--lake", str(small_lake), "--executor", "ray", prelude="sys.modules['ray'] = None")
    assert done.returncode == 2, done.stderr
    assert "the ray executor needs Ray, which is not installed: pip install 'squiggle-warehouse[ray]'" in done.stderr
    assert lake_state(small_lake) == before


def test_a_refused_address_fails_at_once_naming_it(small_lake: Path) -> None:
    before = lake_state(small_lake)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done, seconds = run_cli("models", "run", "--lake", str(small_lake), "--executor", "ray",
                            "--address", f"127.0.0.1:{port}")
    assert done.returncode == 2 and f"the Ray cluster at 127.0.0.1:{port} does not answer" in done.stderr, done.stderr
    assert "nothing was written" in done.stderr
    assert seconds < 30
    assert lake_state(small_lake) == before


def test_an_address_that_never_answers_fails_within_30_s_naming_it(small_lake: Path) -> None:
    """A port that accepts connections and never says a word (a hung host, another service)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(server.accept()[0]) for _ in range(16)], daemon=True).start()
    before = lake_state(small_lake)
    try:
        done, seconds = run_cli("models", "run", "--lake", str(small_lake), "--executor", "ray",
                                "--address", f"127.0.0.1:{port}", timeout=90)
    finally:
        server.close()
    assert done.returncode == 2, done.stderr
    assert f"the Ray cluster at 127.0.0.1:{port} does not answer (no answer within 30 s)" in done.stderr
    assert seconds < 35  # 30 s, and the interpreter's start
    assert lake_state(small_lake) == before


def test_the_executor_comes_from_the_environment(small_lake: Path) -> None:
    done, _ = run_cli("models", "run", "--lake", str(small_lake), prelude="import os; os.environ['SQUIGGLE_EXECUTOR'] = 'dask'")
    assert done.returncode == 2 and "unknown executor 'dask': the executors are local, ray" in done.stderr
    done, _ = run_cli("models", "run", "--lake", str(small_lake), "--address", "10.0.0.5:6379")
    assert done.returncode == 2 and "--address 10.0.0.5:6379 is for the ray executor: add --executor ray" in done.stderr
