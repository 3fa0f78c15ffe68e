"""The ray executor against the local one on this machine, and a projection to a cluster.

On a shape lake (``shape_lake.py``: 10 million rows as 1,628 runs x 96 layers x 64 captures by
default), each measured model is built with ``--full-refresh`` in rounds, by:

- ``local``: the build's own process (DuckDB with a thread per core);
- ``ray, 1 worker``: a Ray cluster of this machine's cores, each task taking them all (one
  task at a time, as many DuckDB threads as local);
- ``ray, N workers``: the same cluster, a task per core (one DuckDB thread each).

The Ray times include joining the cluster and checking its nodes (once per build). The
tasks' own figures come from the executor's record of each task (:class:`TaskStat`): rows,
bytes sent (its pickled SQL and file lists) and written, the time from submission to its
start for tasks submitted while a worker was free (Ray's scheduling latency alone) and the
task's own time. From those the report projects a full build of these models at 1 billion
rows onto 8, 32 and 128 one-CPU workers; its assumptions are written beside it.

events_candidates (cpd@2.2) costs about 33 us per row: at 10 million rows a round takes
minutes, so ``--rows-cpd`` (default 1 million) measures it on a smaller lake of the same shape.
matches is measured alone on ``--signatures`` synthetic signatures (``matches.py``'s: three
vector layouts of ``--dim`` floats): with a worker per core its groups are computed in blocks
of pairs, merged by one more task per group.

    python bench/ray_overhead.py [--rows 10000000] [--rows-cpd 1000000] [--signatures 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import machine
from models import fresh_copy
from matches import group_sizes, model_only_sql, signatures_table
from report import save
from shape_lake import Shape, cached_lake

from warehouse import writer
from warehouse.models import Project, load_project
from warehouse.models.build import run_models
from warehouse.models.executors import RayExecutor, TaskStat

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RAY = Path(sys.executable).with_name("ray")
CAPTURES, LAYERS = 64, 96
WORKERS = (8, 32, 128)
SERIES_FLOATS = 16 * 24  # a layer's signature: K = 16 bins of its 24 module.descriptor series
BILLION = 1_000_000_000
TARGET = 1.15  # ray with one worker at most 15% slower than local


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rows-cpd", type=int, default=1_000_000)
    parser.add_argument("--signatures", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(".bench"))
    parser.add_argument("--out", type=Path, default=RESULTS / "ray")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    cases = [("geometry_dynamics", args.rows), ("events_candidates", args.rows_cpd)]
    address = start_cluster(cores)
    try:
        report = {"machine": machine.describe(), "cores": cores, "repeat": args.repeat,
                  "models": [measure(model, rows, args, address, cores) for model, rows in cases],
                  "matches": measure_matches(args, address, cores)}
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True)
    report["projection"] = projection(report["models"])
    report["matches_projection"] = matches_projection(report["matches"])
    save(args.out, markdown(report), report)


def start_cluster(cores: int) -> str:
    port = "6391"
    subprocess.run([str(RAY), "start", "--head", "--port", port, "--num-cpus", str(cores), "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    return f"127.0.0.1:{port}"


def measure(model: str, rows: int, args: argparse.Namespace, address: str, cores: int) -> dict:
    shape = Shape.for_rows(rows, CAPTURES, LAYERS)
    lake = fresh_copy(cached_lake(args.work / "shapes", shape), args.work / "ray" / shape.name)
    timed = time_builds(load_project(None), lake, model, shape.name, args, address, cores)
    return {"model": model, "shape": shape.name, "rows": shape.rows, "runs": shape.runs, "workers": cores, **timed}


def measure_matches(args: argparse.Namespace, address: str, cores: int) -> dict:
    """matches alone on synthetic signatures: its pairs are its work."""
    lake = args.work / "ray" / f"matches-{args.signatures}-{args.dim}"
    if not (lake / "signatures").exists():
        writer.write("signatures", signatures_table(args.signatures, args.dim), lake=lake, create=True)
    project = load_project(model_only_sql(args.work / "ray"))
    groups = group_sizes(lake)
    timed = time_builds(project, lake, "matches", f"{args.signatures:,} signatures", args, address, cores)
    return {"model": "matches", "signatures": args.signatures, "dim": args.dim, "groups": groups,
            "pairs": sum(n * (n - 1) // 2 for n in groups), "workers": cores, **timed}


def time_builds(project: Project, lake: Path, model: str, label: str, args: argparse.Namespace, address: str,
                cores: int) -> dict:
    """``model`` built with ``--full-refresh`` by each setup, in ``args.repeat`` rounds."""
    run_models(project, lake, selected=[model], report=lambda line: None)  # once, unmeasured: the file cache warm
    setups = {"local": None, "ray, 1 worker": cores, f"ray, {cores} workers": 1}
    rounds: dict[str, list[float]] = {name: [] for name in setups}
    connects: list[float] = []
    outside: dict[str, list[float]] = {name: [] for name in setups if setups[name] is not None}
    tasks: dict[str, list[TaskStat]] = {name: [] for name in setups}
    for r in range(args.repeat):
        for name, task_cpus in setups.items():
            began = time.perf_counter()
            if task_cpus is None:
                run_models(project, lake, selected=[model], full_refresh=True, report=lambda line: None)
            else:
                with RayExecutor(lake, address, task_cpus) as ray:
                    connects.append(time.perf_counter() - began)
                    run_models(project, lake, selected=[model], full_refresh=True, report=lambda line: None, executor=ray)
                tasks[name] = ray.stats
            rounds[name].append(time.perf_counter() - began)
            if task_cpus is not None:  # the driver's time: the build less joining Ray and the tasks' span
                outside[name].append(rounds[name][-1] - connects[-1] - span(ray.stats))
            print(f"{model} {label} round {r + 1}: {name} {rounds[name][-1]:.1f} s", flush=True)
    return {"seconds": {name: statistics.median(s) for name, s in rounds.items()}, "rounds": rounds,
            "connect_s": statistics.median(connects),
            "driver_s": {name: statistics.median(s) for name, s in outside.items()},
            "tasks": {name: summarise(stats) for name, stats in tasks.items() if stats}}


def summarise(stats: list[TaskStat]) -> dict:
    free = [s.waited for s in stats if s.ahead < 1] or [s.waited for s in stats]
    return {
        "tasks": len(stats),
        "output_rows_per_task": statistics.median(s.rows for s in stats),
        "sent_bytes_per_task": statistics.median(s.sent_bytes for s in stats),
        "written_bytes_per_task": statistics.median(s.written_bytes for s in stats),
        "latency_s": statistics.median(free),
        "task_seconds_median": statistics.median(s.seconds for s in stats),
        "task_seconds_total": sum(s.seconds for s in stats),
    }


def span(stats: list[TaskStat]) -> float:
    """From the first task's submission to the last one's end (0 without tasks)."""
    return max(s.started + s.seconds for s in stats) - min(s.started - s.waited for s in stats) if stats else 0.0


def projection(models: list[dict]) -> dict:
    """A full build of the measured models at 1 billion rows on W one-CPU workers: the
    one-thread task time per input row x rows / W, each task's latency spread over W workers,
    Ray's connection once, and the driver's time outside the tasks' span per run x runs. Tasks keep the measured input rows per task (the memory budget's batch),
    and there are at least 2 per worker."""
    out = {}
    for m in models:
        one_thread, one_worker = m["tasks"][f"ray, {m['workers']} workers"], m["tasks"].get("ray, 1 worker")
        per_row = one_thread["task_seconds_total"] / m["rows"]
        rows_per_task = m["rows"] / (one_worker or one_thread)["tasks"]
        per_run = max(0.0, m["driver_s"][f"ray, {m['workers']} workers"]) / m["runs"]
        runs = BILLION / (m["rows"] / m["runs"])
        out[m["model"]] = {
            "per_row_us": per_row * 1e6, "rows_per_task": rows_per_task, "driver_s_per_run": per_run, "runs": runs,
            "workers": {w: BILLION * per_row / w + max(BILLION / rows_per_task, 2 * w) * one_thread["latency_s"] / w
                        + m["connect_s"] + per_run * runs for w in WORKERS},
        }
    return out


def matches_projection(m: dict) -> dict:
    """A full build of matches over the signatures of a 1-billion-row lake of the measured
    shape (one run-scope signature of 16 x 24 x 96 floats per run, one of 16 x 24 floats per
    run and layer: 97 groups of a signature per run) on W one-CPU workers: the one-thread
    tasks' time per pair and float x pairs x floats / W (vectors are the cost; events as
    dense as the synthetic ones)."""
    per_pair_float = m["tasks"][f"ray, {m['workers']} workers"]["task_seconds_total"] / (m["pairs"] * m["dim"])
    runs = BILLION / (CAPTURES * LAYERS)
    pairs = runs * (runs - 1) / 2
    pair_floats = pairs * SERIES_FLOATS * LAYERS + LAYERS * pairs * SERIES_FLOATS
    return {"ns_per_pair_float": per_pair_float * 1e9, "runs": runs, "pairs": pairs * (LAYERS + 1),
            "pair_floats": pair_floats, "workers": {w: pair_floats * per_pair_float / w for w in WORKERS}}


def markdown(report: dict) -> str:
    lines = ["# The ray executor against local, and a 1-billion-row projection", "",
             f"Machine: {machine.one_line(report['machine'])}. Median of {report['repeat']} rounds; "
             "`python bench/ray_overhead.py` (`make bench-ray`).", "",
             "| model | lake | local | ray, 1 worker | vs local | ray, all cores | vs local |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for m in report["models"]:
        s = m["seconds"]
        many = f"ray, {m['workers']} workers"
        lines.append(f"| {m['model']} | {m['rows']:,} rows ({m['shape']}) | {s['local']:.1f} s | {s['ray, 1 worker']:.1f} s"
                     f" | {s['ray, 1 worker'] / s['local']:.2f} | {s[many]:.1f} s ({many}) | {s[many] / s['local']:.2f} |")
    lines += ["", f"Target: ray with one worker at most {TARGET:.2f} x local. Joining the cluster and checking its nodes: "
              + ", ".join(f"{m['connect_s']:.1f} s ({m['model']})" for m in report["models"]) + ", included above.", "",
              "Tasks (medians per task; latency: submission to start, for tasks submitted while a worker was free):", "",
              "| model | setup | tasks | input rows | output rows | sent | written | latency | task time |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in report["models"]:
        for name, t in m["tasks"].items():
            lines.append(f"| {m['model']} | {name} | {t['tasks']} | {m['rows'] / t['tasks']:,.0f} | {t['output_rows_per_task']:,.0f} |"
                         f" {t['sent_bytes_per_task'] / 1024:,.1f} KiB | {t['written_bytes_per_task'] / 2**20:,.2f} MiB |"
                         f" {t['latency_s'] * 1000:.1f} ms | {t['task_seconds_median']:.2f} s |")
    lines += ["", "Projection of a full build of these models at 1 billion rows (same shape of runs):", "",
              "| model | us/row/CPU | input rows/task | driver ms/run | " + " | ".join(f"{w} workers" for w in WORKERS) + " |",
              "|---|---:|---:|---:|" + "---:|" * len(WORKERS)]
    for model, p in report["projection"].items():
        lines.append(f"| {model} | {p['per_row_us']:.1f} | {p['rows_per_task']:,.0f} | {p['driver_s_per_run'] * 1000:.2f} | "
                     + " | ".join(f"{p['workers'][w] / 60:,.1f} min" for w in WORKERS) + " |")
    lines += ["", "Assumptions: 1 billion rows laid out as the measured lake (runs of 96 layers x 64 captures); workers "
              "of one CPU each, as fast as this machine's cores with one DuckDB thread; tasks of the measured input "
              "rows (the memory budget's batch), at least two per worker, each paying the measured latency, spread "
              "over the workers; the lake's filesystem serving every worker at the rate this disk served two (bytes "
              "written per task above); the driver's time outside the tasks (planning, screening, publishing, "
              "records: the build's time less the connection and the tasks' span) growing with the runs, not "
              "overlapping the tasks; Ray's "
              "connection once. events (split by cohort) is not projected."]
    lines += matches_markdown(report["matches"], report["matches_projection"])
    return "\n".join(lines) + "\n"


def matches_markdown(m: dict, p: dict) -> list[str]:
    s, many = m["seconds"], f"ray, {m['workers']} workers"
    lines = ["", "## matches in blocks of pairs", "",
             f"{m['signatures']:,} synthetic signatures of {m['dim']} floats in {len(m['groups'])} groups "
             f"({', '.join(f'{n:,}' for n in m['groups'])}): {m['pairs']:,} pairs. With one worker the model is one "
             "task over every group, run on the driver; with a worker per core each group larger than a "
             f"2 x {m['workers']}-th of the pairs is split into blocks of pairs, merged by one more task per group.", "",
             "| setup | time | vs local | tasks | task time (median) | sent (median) | written (median) |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| local | {s['local']:.1f} s | 1.00 | | | | |"]
    for name in ("ray, 1 worker", many):
        t = m["tasks"].get(name)
        cells = (f"{t['tasks']} | {t['task_seconds_median']:.2f} s | {t['sent_bytes_per_task'] / 1024:,.1f} KiB | "
                 f"{t['written_bytes_per_task'] / 2**20:,.2f} MiB" if t else "on the driver | | |")
        lines.append(f"| {name} | {s[name]:.1f} s | {s[name] / s['local']:.2f} | {cells} |")
    lines += ["", f"Projection: {p['ns_per_pair_float']:.2f} ns per pair and float on one thread (the tasks' "
              f"time over pairs x floats); a 1-billion-row lake of the shape above ({p['runs']:,.0f} runs, 97 "
              f"groups of one signature per run: {p['pairs']:.3g} pairs, {p['pair_floats']:.3g} pair-floats) "
              "takes " + ", ".join(f"{p['workers'][w] / 3600:,.1f} h on {w} workers" for w in WORKERS)
              + ". Every pair is scored: all-pairs matching grows with the square of the runs, so a lake "
              "of that size wants candidate pairs from an approximate nearest-neighbour index first."]
    return lines


if __name__ == "__main__":
    main()
