"""SIGKILL at random points of ``make models`` (``models run --full-refresh`` + ``catalog``).

Run by ``make test-faults`` (``pytest -m 'faults and not ray' -s``). A seeded random plan kills the
build at least 20 times: just before or after randomly chosen steps that change the lake
(an output file published, a partition folder exchanged, a record written or renamed, a
snapshot link, the catalog renamed into place), and at random moments inside a phase (a
model's SQL while DuckDB computes and writes Parquet, the catalog being written, any phase
weighted by its length), sent from outside a random delay after the phase begins.
After each kill:

- ``warehouse check`` finds no problem in the lake's data: its only findings are the
  killed build's own staging files (``stale_staging``), which the next build removes;
- the catalog opens, and each analysis in it holds exactly the rows its record says;
- the next build (``models run`` + ``catalog``) completes, its outputs equal a clean
  build's row for row, and ``warehouse check`` then finds nothing at all.

``make test-ray`` runs the same with the ray executor (the build's batches as tasks on a Ray
cluster started here, the killed process being the driver): 12 of the plan's trials, one of
each fault first, at least 10 kills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from catalog_reader import one_round
from model_fixtures import REPO
from reliability_fixtures import model_contents, recorded_units
from warehouse import build_catalog, check_lake, connect, contracts, models
from warehouse.demo import write_demo

pytestmark = pytest.mark.faults

CHILD = Path(__file__).resolve().parent / "fault_child.py"
SEED = 20260107
POINTS_PER_KIND = {"publish": 3, "swap": 3, "record": 3, "record-rename": 2, "snapshot": 2}
TIMED = {"model SQL": 4, "catalog write": 2, None: 3}  # None: any phase, weighted by its length
MIN_KILLS = 20
RAY_TRIALS = 12  # the ray executor's share of the plan: one of each fault, then as drawn
RAY_MIN_KILLS = 10


def quiet(_: str) -> None:
    pass


def run_child(lake: Path, db: Path, plan: dict, log: Path, at: tuple[str, int, float] | None = None,
              env: dict[str, str] | None = None) -> int:
    """Run the child build (with ``env`` added to its environment); with ``at`` = (phase,
    occurrence, delay), SIGKILL it from here ``delay`` seconds after that occurrence of the
    phase begins."""
    log.write_text("")
    proc = subprocess.Popen([sys.executable, str(CHILD), str(lake), str(db), json.dumps(plan), str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, **(env or {})})
    if at is not None:
        phase, occurrence, delay = at
        while proc.poll() is None and [p for p, _ in read_log(log)[0]].count(phase) < occurrence:
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode in (0, -signal.SIGKILL), err
    return proc.returncode


def read_log(log: Path) -> tuple[list[tuple[str, float]], list[tuple[str, int]], str]:
    """Phases with their start times, points passed, and the phase or point the log ends in."""
    phases, points, last = [], [], "start-up"
    for line in log.read_text().split("\n")[:-1]:  # complete lines only: the child may be writing one
        word, rest = line.split(" ", 1)
        if word == "phase":
            name, seconds = rest.rsplit(" ", 1)
            phases.append((name, float(seconds)))
            last = name
        else:
            kind, n = rest.rsplit(" ", 1)
            points.append((kind, int(n)))
            last = f"{kind} {n}"
    return phases, points, last


def plan_trials(points: list[tuple[str, int]], phases: list[tuple[str, float]], total: float) -> list[dict]:
    """The seeded random kills: before or after points of each kind, both sides of the catalog's
    rename (it happens once), and random moments inside phases."""
    rng = random.Random(SEED)
    trials = []
    for kind, k in POINTS_PER_KIND.items():
        ns = sorted({n for kd, n in points if kd == kind})
        sides = rng.sample(["before", "after"], 2)  # alternate, so that each kind is hit on both sides
        for i, n in enumerate(rng.sample(ns, min(k, len(ns)))):
            when = sides[i % 2]
            trials.append({"fault": f"SIGKILL {when} {kind}", "plan": {"point": [kind, n, when]}})
    for when in ("before", "after"):
        trials.append({"fault": f"SIGKILL {when} catalog-swap", "plan": {"point": ["catalog-swap", 1, when]}})
    spans = [(name, [p for p, _ in phases[: i + 1]].count(name), end - start)
             for i, ((name, start), (_, end)) in enumerate(zip(phases, phases[1:] + [("end", total)]))]
    for phase, count in TIMED.items():
        for _ in range(count):
            if phase is None:
                name, occurrence, length = rng.choices(spans, weights=[s[2] for s in spans])[0]
            else:
                name, occurrence, length = rng.choice([s for s in spans if s[0] == phase])
            label = f"SIGKILL at a random moment in {phase}" if phase else "SIGKILL at a random moment"
            trials.append({"fault": label, "at": (name, occurrence, rng.uniform(0, 0.8 * length))})
    rng.shuffle(trials)
    return trials


@pytest.fixture(scope="module", params=["local", pytest.param("ray", marks=pytest.mark.ray)])
def executor(request: pytest.FixtureRequest) -> Iterator[dict]:
    """The build's executor: local, or ray on a cluster started here (``make test-ray``); the
    child reads it from the environment as ``make models`` would."""
    if request.param == "local":
        yield {"name": "local", "env": {}, "run": {}}
        return
    from ray_fixtures import NO_RAY, RAY_INSTALLED, ray_cluster

    if not RAY_INSTALLED:
        pytest.skip(NO_RAY)

    with ray_cluster(cpus=2) as address:
        yield {"name": "ray", "env": {"SQUIGGLE_EXECUTOR": "ray", "SQUIGGLE_RAY_ADDRESS": address},
               "run": {"executor": "ray", "address": address}}


def ray_share(trials: list[dict]) -> list[dict]:
    """The first trial of each fault, then the others in the plan's order, RAY_TRIALS in all."""
    firsts = list({t["fault"]: t for t in reversed(trials)}.values())
    return (firsts + [t for t in trials if t not in firsts])[:RAY_TRIALS]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo lake built once, its catalog, and what a clean build gives (the reference)."""
    root = tmp_path_factory.mktemp("faults")
    lake, db = root / "lake", root / "w.duckdb"
    write_demo(lake=lake)
    models.run(lake=lake, report=quiet)
    build_catalog(lake, db)
    return {"root": root, "lake": lake, "db": db, "contents": model_contents(lake), "units": recorded_units(lake)}


def assert_catalog_opens_whole(db: Path) -> None:
    with connect(db) as con:
        for name in contracts.DATASETS:
            con.execute(f'SELECT count(*) FROM "{name}"').fetchall()
        problems, seen, _ = one_round(con)
    assert problems == [] and seen


def test_sigkill_at_random_points_of_make_models(demo: dict, executor: dict, tmp_path: Path) -> None:
    lake, db, env = demo["lake"], demo["db"], executor["env"]
    started = time.monotonic()
    trace = tmp_path / "trace.log"
    assert run_child(lake, db, {"trace": True}, trace, env=env) == 0
    total = time.monotonic() - started
    phases, points, _ = read_log(trace)
    assert {kind for kind, _ in points} == set(POINTS_PER_KIND) | {"catalog-swap"}

    table: Counter = Counter()
    leftovers: Counter = Counter()  # stale staging files check reported right after the kills
    landed: Counter = Counter()
    trials = plan_trials(points, phases, total)
    for i, trial in enumerate(ray_share(trials) if executor["name"] == "ray" else trials):
        log = tmp_path / f"trial-{i}.log"
        status = run_child(lake, db, trial.get("plan", {}), log, at=trial.get("at"), env=env)
        if status == 0:  # a timed kill that came after the build had ended: nothing to check
            continue
        if "at" in trial:
            landed[read_log(log)[2]] += 1

        findings = check_lake(lake)
        assert all(p.kind == "stale_staging" and p.path.startswith(".staging/build-") for p in findings), (
            trial, [str(p) for p in findings][:5])
        leftovers[trial["fault"]] += len(findings)
        assert_catalog_opens_whole(db)

        models.run(lake=lake, report=quiet, **executor["run"])
        build_catalog(lake, db)
        assert check_lake(lake) == []
        assert model_contents(lake) == demo["contents"], trial
        assert recorded_units(lake) == demo["units"], trial
        assert_catalog_opens_whole(db)
        assert not list(db.parent.glob(f"{db.name}.tmp-*"))
        table[trial["fault"]] += 1

    kills = sum(table.values())
    print(f"\n{kills} kills (seed {SEED}, {executor['name']} executor); where the timed ones landed: {dict(landed)}")
    print(f"{'fault':46} {'kills':>5} {'stale files':>11}  survived: no data problem, catalog whole, "
          "next build = clean, check then clean")
    for fault, n in sorted(table.items()):
        print(f"{fault:46} {n:>5} {leftovers[fault]:>11}  {n} of {n}")
    assert kills >= (RAY_MIN_KILLS if executor["name"] == "ray" else MIN_KILLS)
