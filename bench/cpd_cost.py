"""Cost of the change-point model: events_candidates alone, cpd@2 against cpd@1, on short and long series.

The same number of pooled geometry_state rows (``--rows``, default 10 million; one module,
``--layers`` layers, all six descriptors filled) is laid out as series of 64, 1,000 and
5,000 captures (``--captures``): runs = rows / (captures x layers), rounded, so the shapes
differ only in how long each series is: the lakes of ``shape_lake.py`` (random walks with
noise and two level shifts), cached under ``--work``.

Each measurement builds the model alone on a fresh hard-linked copy of the shape's lake:
``warehouse models run --select events_candidates`` (a first build: every run computed), in
a process of its own, timed and its peak resident memory taken as ``bench/measure.py`` does
(that process alone), DuckDB's memory limit set through ``SQUIGGLE_MEMORY_LIMIT`` (default
2GB) and its spill files under ``--work``. cpd@2 runs from the repository's ``sql/``, cpd@1
from a copy of it holding the frozen ``tests/data/models/events_candidates_cpd1.sql``
(``frozen_cpd1``). The report gives the median of ``--repeat`` builds: seconds, rows per
second, time per row against the 64-capture shape of the same model, the largest peak RSS,
and cpd@2's time over cpd@1's. A build that fails (out of memory, say) ends that model's
builds on that shape: the table gives its error. Each of ``--batch-bytes`` is measured: the
engine's batch size (``SQUIGGLE_BATCH_BYTES``, input bytes on disk per batch of runs), or
``default``, the engine's own: the memory limit over the model's ``batch_divisor`` (cpd@2
declares 256, 8 MB at 2GB, as it widens every capture into dozens of window columns; cpd@1
takes the engine's 32, 62.5 MB). The default list also takes 8 MB batches, the same for both
models. Writes bench/results/cpd_cost.md and .json (or ``--out``).

    python bench/cpd_cost.py [--rows 10000000] [--repeat 3] [--memory-limit 2GB] [--batch-bytes default 8000000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import frozen_cpd1
import machine
from report import save
from measure import CommandFailed, measure
from models import Settings, fresh_copy, memory_limit as resolve_limit
from shape_lake import Shape, cached_lake, require_disk


RESULTS = Path(__file__).resolve().parent / "results"
BUILD_LINE = re.compile(r"^events_candidates \S+ -> .*: ([0-9,]+) rows, .*, ([0-9.]+) s$", re.MULTILINE)


def build(lake: Path, sql: Path, env: dict[str, str], work: Path) -> dict:
    """One first build of events_candidates alone on a fresh copy of ``lake``, measured (or
    its error, if it fails)."""
    copy = fresh_copy(lake, work / "round" / "lake")
    load = os.getloadavg()[0]
    argv = [sys.executable, "-m", "warehouse.cli", "models", "run", "--lake", str(copy), "--sql", str(sql),
            "--select", "events_candidates"]
    try:
        m = measure(argv, env=env)
    except CommandFailed as exc:
        errors = [line for line in exc.stderr.splitlines() if "error" in line.lower()] or exc.stderr.splitlines()
        return {"error": errors[0].strip() if errors else "failed"}
    finally:
        shutil.rmtree(work / "round")
    found = BUILD_LINE.search(m.stdout)
    if not found:
        raise SystemExit(f"no events_candidates line in the build's output:\n{m.stdout}")
    return {"seconds": m.seconds, "cpu_seconds": m.cpu_seconds, "peak_rss_mib": m.peak_rss_mib, "load_average": load,
            "model_seconds": float(found.group(2)), "output_rows": int(found.group(1).replace(",", ""))}


def measure_shape(shape: Shape, sql: dict[str, Path], repeat: int, env: dict[str, str], work: Path) -> dict:
    lake = cached_lake(work, shape)
    out = {"shape": asdict(shape), "rows": shape.rows, "versions": {}}
    for version, folder in sql.items():
        samples = []
        for i in range(repeat):
            s = build(lake, folder, env, work)
            where = (f"  {shape.captures:,} captures, {version}, batches {env.get('SQUIGGLE_BATCH_BYTES', 'default')},"
                     f" build {i + 1}/{repeat}")
            if "error" in s:
                print(f"{where}: FAILED: {s['error']}", flush=True)
                out["versions"][version] = {"error": s["error"], "builds_before": samples}
                break
            samples.append(s)
            print(f"{where}: {s['seconds']:.1f} s, {s['peak_rss_mib']:.0f} MiB, {s['output_rows']:,} candidates",
                  flush=True)
        if version in out["versions"]:
            continue
        seconds = statistics.median(s["seconds"] for s in samples)
        out["versions"][version] = {
            "samples": samples, "median_seconds": seconds, "rows_per_second": shape.rows / seconds,
            "median_cpu_seconds": statistics.median(s["cpu_seconds"] for s in samples),
            "max_peak_rss_mib": max(s["peak_rss_mib"] for s in samples),
            "max_load_average": max(s["load_average"] for s in samples),
            "output_rows": samples[0]["output_rows"],
        }
    return out


def markdown(report: dict) -> str:
    lines = [
        "# Cost of events_candidates: cpd@2 against cpd@1\n",
        f"Machine: {report['machine']}. DuckDB memory limit {report['memory_limit']}; median of {report['repeat']}"
        " builds each. Each build is `warehouse models run --select events_candidates` on a fresh copy of the lake"
        " (the model alone, every run computed) in a process of its own, interpreter start-up included; peak RSS is"
        " that process's (the largest of the builds). Rows are pooled geometry_state rows of one module, all six"
        f" descriptors filled, {report['layers']} layers per run: the same rows laid out as series of different"
        " lengths. Time per row is against the shortest series' shape of the same model and batches. CPU seconds"
        " are user + system time of the build (steadier than wall time on a shared machine); load before is the"
        " largest 1-minute load average seen before a build of the row (2 cores)."
        f" Whole run: {report['seconds']:.0f} s.\n",
    ]
    for config in report["configs"]:
        lines += _table(config)
    return "\n".join(lines) + "\n"


def _table(config: dict) -> list[str]:
    shapes = config["shapes"]
    versions = list(shapes[0]["versions"])
    batch = config["batch_bytes"]
    lines = [
        f"## Batches of at most {batch:,} input bytes\n" if batch else "## The engine's default batches\n",
        "| captures per series | runs | rows | model | seconds | CPU seconds | rows/s | time per row vs shortest"
        " | peak RSS (MiB) | candidates | load before |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in shapes:
        for v in versions:
            r = s["versions"][v]
            head = f"| {s['shape']['captures']:,} | {s['shape']['runs']:,} | {s['rows']:,} | {v} |"
            if "error" in r:
                lines.append(f"{head} failed: {r['error'][:160]} | | | | | | |")
                continue
            first = shapes[0]["versions"][v]
            relative = (f"{r['median_seconds'] / s['rows'] / (first['median_seconds'] / shapes[0]['rows']):.2f}"
                        if "error" not in first else "-")
            lines.append(f"{head} {r['median_seconds']:.1f} | {r['median_cpu_seconds']:.1f} | {r['rows_per_second']:,.0f}"
                         f" | {relative} | {r['max_peak_rss_mib']:.0f} | {r['output_rows']:,} | {r['max_load_average']:.1f} |")
    if len(versions) == 2:
        ratios = [f"{_ratio(s, *versions)} at {s['shape']['captures']:,} captures" for s in shapes]
        lines += ["", f"{versions[0]} / {versions[1]} time: " + ", ".join(ratios) + ".", ""]
    return lines


def _ratio(shape: dict, a: str, b: str) -> str:
    ra, rb = shape["versions"][a], shape["versions"][b]
    return "-" if "error" in ra or "error" in rb else f"{ra['median_seconds'] / rb['median_seconds']:.2f}"


def build_env(memory_limit: str, batch_bytes: int | None, work: Path) -> dict[str, str]:
    """The builds' environment: DuckDB's memory limit ('default': the warehouse's own) and
    spill folder, and the batch size."""
    env = Settings(resolve_limit(memory_limit), None, work / "spill").env()
    env.pop("SQUIGGLE_BATCH_BYTES", None)
    if batch_bytes:
        env["SQUIGGLE_BATCH_BYTES"] = str(batch_bytes)
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="pooled rows of each shape (default 10000000)")
    parser.add_argument("--captures", type=int, nargs="+", default=[64, 1000, 5000],
                        help="captures per series of each shape (default 64 1000 5000)")
    parser.add_argument("--layers", type=int, default=8, help="layers per run (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="builds of each model on each shape (default 3)")
    parser.add_argument("--memory-limit", default="2GB", help="DuckDB memory_limit of the builds: a size, 'default' (the warehouse's own) or 'duckdb' (default 2GB)")
    parser.add_argument("--batch-bytes", nargs="+", default=["default", "8000000"],
                        help="engine batch sizes to measure, SQUIGGLE_BATCH_BYTES or 'default' (default: default 8000000)")
    parser.add_argument("--work", type=Path, default=Path(".bench"), help="cached lakes and spill (default .bench)")
    parser.add_argument("--out", type=Path, default=RESULTS / "cpd_cost", help="results path, without .md / .json")
    args = parser.parse_args(argv)
    batches = [None if b == "default" else int(b) if b.isdigit() and int(b) > 0 else parser.error(
        f"--batch-bytes: {b!r} is neither 'default' nor a number of bytes") for b in args.batch_bytes]
    if min(args.repeat, args.rows, args.layers) < 1 or min(args.captures) < 2:
        parser.error("--rows, --layers and --repeat must be at least 1, --captures at least 2")
    work = (args.work / "cpd_cost").resolve()
    started = time.perf_counter()
    sql = {"cpd@2": frozen_cpd1.REPO_SQL, "cpd@1": frozen_cpd1.sql_dir(work / "sql-cpd1")}
    shapes = [Shape.for_rows(args.rows, c, args.layers) for c in sorted(args.captures)]
    require_disk(work, sum(s.rows for s in shapes), "this benchmark")
    report = {
        "machine": machine.one_line(machine.describe()), "memory_limit": args.memory_limit, "repeat": args.repeat,
        "requested_rows": args.rows, "layers": args.layers,
        "configs": [{"batch_bytes": batch, "shapes": [
            measure_shape(s, sql, args.repeat, build_env(args.memory_limit, batch, work), work) for s in shapes]}
            for batch in batches],
    }
    report["seconds"] = time.perf_counter() - started
    text = markdown(report)
    save(args.out, text, report)
    print(text)


if __name__ == "__main__":
    main()
