"""Every model on the shapes real lakes have: short and long series, few large and many small runs.

The same number of pooled geometry_state rows (``--rows``, default 1 million; ``--layers``
layers of one module) is laid out as series of 16, 64, 1,000 and 5,000 captures
(``--captures``), the lakes of ``shape_lake.py``; beside them the many-small-runs shape
(``--small-runs`` runs of ``--small-captures`` captures and 4 layers: 1,000 x 24 by default).
On each shape, in rounds of fresh hard-linked copies of the cached lake, each command in a
process of its own (wall time and that process's peak RSS, as ``measure.py`` takes them):

- full build: ``warehouse models run`` of every model, and each model's own time from its
  line, as time per geometry_state row;
- no-op build: the same again with nothing new;
- one new run: one more run written (not timed), then ``warehouse models run``;
- each formula the polars peer computes, alone, beside the peer:
  ``models run --select geometry_dynamics --full-refresh`` (dyn@1) against ``polars_baseline.py
  --only geometry_dynamics``, and cpd@1 (the frozen model, ``frozen_cpd1``) against ``--only
  events_candidates``; the first round checks the peer's output against the models'
  (``agreement.py``). Between the two, where the build's time goes: DuckDB copying the rows
  the build wrote as the lake lays them out (a file per run) and into one file, so that the
  cost of the layout is measured apart from the formula's.

``--measure`` picks the sets: ``builds`` (the first three) and ``peers`` (the last); a
10-million-row run of the peers alone takes minutes where the full builds take an hour.

Every DuckDB process runs at the warehouse's default memory limit unless ``--memory-limit``
says otherwise. The report gives medians, each model's time per row against its time per row
at 64 captures, the many-small-runs build against its target (5 s), each peak RSS against the
limit + 1 GB, and the peer ratios. Writes bench/results/shapes.md and .json (or ``--out``).

    python bench/shapes.py [--rows 1000000] [--captures 16 64 1000 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import agreement
import frozen_cpd1
import machine
from measure import CommandFailed, Measurement, measure
from models import FLOOR, MODEL_LINE, WAREHOUSE, Settings, fresh_copy, memory_limit
from report import limit_bytes, save
from shape_lake import Shape, add_run, cached_lake, require_disk

from warehouse import contracts, duck
from warehouse.scan import read_parquet
from warehouse.sql import quote_literal as ql

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BASE_CAPTURES = 64  # time per row is compared with this shape's
SMALL_RUNS_TARGET_S = 5.0
NEW_RUN_TARGET = 0.05  # of the full build's time
SMALL_RUN_LAYERS = 4
# (name, the build of the formula alone, the peer's --only)
PEERED = (("dyn@1", "geometry_dynamics", False), ("cpd@1", "events_candidates", True))
MEASURES = ("builds", "peers")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="pooled rows of each series-length shape (default 1000000)")
    parser.add_argument("--captures", type=int, nargs="+", default=[16, 64, 1000, 5000],
                        help="captures per series of each shape (default 16 64 1000 5000)")
    parser.add_argument("--layers", type=int, default=96,
                        help="series (layers of one module) per run of those shapes (default 96: 24 layers x 4 modules)")
    parser.add_argument("--small-runs", type=int, default=1000, help="runs of the many-small-runs shape (0: none)")
    parser.add_argument("--small-captures", type=int, default=24, help="captures per series of that shape (default 24)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every measurement (default 3)")
    parser.add_argument("--memory-limit", default="default",
                        help="DuckDB memory_limit of every process: a size, 'default' (the warehouse's own) or 'duckdb'")
    parser.add_argument("--measure", nargs="+", choices=MEASURES, default=list(MEASURES),
                        help="what to measure on every shape (default: builds peers)")
    parser.add_argument("--timeout", type=float,
                        help="seconds after which a command is killed (default: none); a killed warehouse command"
                             " ends its shape, a killed peer is not run again on that shape")
    parser.add_argument("--work", type=Path, default=Path(".bench"), help="cached lakes and spill (default .bench)")
    parser.add_argument("--out", type=Path, default=RESULTS / "shapes", help="results path, without .md / .json")
    args = parser.parse_args(argv)
    if min(args.repeat, args.rows, args.layers) < 1 or min(args.captures + [args.small_captures]) < 2:
        parser.error("--rows, --layers and --repeat must be at least 1, captures at least 2")
    work = (args.work / "shapes").resolve()
    shapes = [(Shape.for_rows(args.rows, c, args.layers), False) for c in sorted(args.captures)]
    if args.small_runs:
        shapes.append((Shape(args.small_captures, SMALL_RUN_LAYERS, args.small_runs), True))
    require_disk(work, sum(s.rows for s, _ in shapes), "this benchmark")
    limit = memory_limit(args.memory_limit)
    env = Settings(limit, None, work / "spill").env()
    started = time.perf_counter()
    report = {
        "machine": machine.one_line(machine.describe()), "memory_limit": limit, "repeat": args.repeat,
        "limit_bytes": None if limit == duck.DUCKDB_DEFAULT else limit_bytes(limit),
        "shapes": [measure_shape(s, args.repeat, env, work, set(args.measure), args.timeout) | {"many_small_runs": small}
                   for s, small in shapes],
    }
    report["seconds"] = time.perf_counter() - started
    text = markdown(report)
    save(args.out, text, report)
    print(text)


def measure_shape(shape: Shape, rounds: int, env: dict[str, str], work: Path, measures: set[str],
                  timeout: float | None = None) -> dict:
    """Every measurement on ``shape``, ``rounds`` times: samples per measurement, model times.
    A warehouse command that fails or runs past ``timeout`` seconds ends the shape; a peer that
    does is not run again on it. Either is named in the result's ``failures``."""
    cache = cached_lake(work, shape)
    sql_cpd1 = frozen_cpd1.sql_dir(work / "sql-cpd1") if "peers" in measures else None
    samples: dict[str, list[dict]] = {}
    result = {"shape": shape.__dict__ | {"rows": shape.rows}, "samples": samples, "models": {}, "agreement": None,
              "failures": {}}
    for i in range(rounds):
        lake = fresh_copy(cache, work / "round" / "lake")
        print(f"{shape.name} ({shape.rows:,} rows), round {i + 1}/{rounds}", flush=True)
        try:
            take = functools.partial(_take, samples, result["failures"], env=env, timeout=timeout)
            _round(shape, lake, take, result, sql_cpd1, "builds" in measures, first=i == 0)
        except CommandFailed:
            break
        finally:
            shutil.rmtree(work / "round", ignore_errors=True)
    return result


def _round(shape: Shape, lake: Path, take: Callable[..., Measurement], result: dict,
           sql_cpd1: Path | None, builds: bool, first: bool) -> None:
    build = WAREHOUSE + ["models", "run", "--lake", str(lake)]
    if builds:
        full = take("full build", build)
        for model, seconds in MODEL_LINE.findall(full.stdout):
            result["models"].setdefault(model, []).append(float(seconds))
        take("no-op build", build)
    if sql_cpd1 is not None:
        out, copies = lake.parent / "peer", lake.parent / "copies"
        peered = []
        for name, model, frozen in PEERED:
            select = ["--select", model, "--full-refresh"] + (["--sql", str(sql_cpd1)] if frozen else [])
            take(f"{name} build", build + select)
            for layout, query in layout_copies(lake, model, copies).items():
                copies.mkdir()
                take(f"{name} output {layout}", [sys.executable, "-c", FLOOR, str(copies / "spill"), query])
                shutil.rmtree(copies)
            peer = f"{name} polars"
            if peer in result["failures"]:
                continue
            try:
                take(peer, [sys.executable, str(HERE / "polars_baseline.py"), "--lake", str(lake),
                            "--out", str(out), "--only", model])
                peered.append(model)
            except CommandFailed:
                print(f"  {peer} is not run again on this shape", flush=True)
        if first and peered:
            result["agreement"] = [t.summary() for t in agreement.compare(lake, out, peered)]
        shutil.rmtree(out, ignore_errors=True)
    if builds:
        if sql_cpd1 is not None:
            take("rebuild", build, keep=False)  # the repository's models again before the new run
        add_run(lake, shape)
        take("one new run", build)


def layout_copies(lake: Path, model: str, target: Path) -> dict[str, str]:
    """DuckDB copying the rows of ``model``'s newest analysis as the lake lays them out (a
    zstd file per run) and into one zstd file: the first less the second is what the layout
    costs a build that writes those rows."""
    contract = contracts.DATASETS[model]
    rows = f"SELECT * FROM {read_parquet(agreement.model_files(lake, model), partitions=contract.partition_by)}"
    options = "FORMAT parquet, COMPRESSION zstd"
    return {"to a file per run": f"COPY ({rows}) TO {ql(str(target / 'by_run'))} ({options}, PARTITION_BY (run_id))",
            "to one file": f"COPY ({rows}) TO {ql(str(target / 'one.parquet'))} ({options})"}


def _take(samples: dict, failures: dict, name: str, argv: list[str], env: dict[str, str],
          timeout: float | None = None, keep: bool = True) -> Measurement:
    """Measure ``argv`` as ``name`` (kept among the samples unless ``keep`` is false); if it
    fails, why is kept in ``failures`` under ``name`` before the failure is raised on."""
    try:
        m = measure(argv, env=env, timeout=timeout)
    except CommandFailed as exc:
        failures[name] = _error_line(exc)
        print(f"  {name}: FAILED: {failures[name]}", flush=True)
        raise
    if keep:
        samples.setdefault(name, []).append({"seconds": m.seconds, "cpu_seconds": m.cpu_seconds,
                                             "peak_rss_mib": m.peak_rss_mib, "load": os.getloadavg()[0]})
        print(f"  {name}: {m.seconds:.2f} s, {m.peak_rss_mib:.0f} MiB", flush=True)
    return m


def _error_line(exc: CommandFailed) -> str:
    """The line of a failed command's stderr that says what failed (a model's error is
    followed by its rendered SQL)."""
    lines = exc.stderr.strip().splitlines()
    return next((line for line in lines if "error" in line.lower()), lines[-1] if lines else str(exc))


def median(samples: list[dict], key: str = "seconds") -> float:
    return statistics.median(s[key] for s in samples)


def markdown(report: dict) -> str:
    limit_mib = report["limit_bytes"] / 2**20 if report["limit_bytes"] else None
    lines = [
        "# Every model on every shape\n",
        f"Machine: {report['machine']}. DuckDB memory limit {report['memory_limit']} (the warehouse's default"
        " unless set); median of up to"
        f" {report['repeat']} rounds, each command in a process of its own on a fresh copy of the lake (interpreter"
        " start-up included). Rows are pooled geometry_state rows of one module (all six descriptors);"
        f" time per row is against the {BASE_CAPTURES}-capture shape's of the same model."
        f" Whole run: {report['seconds']:.0f} s.\n",
    ]
    if any("full build" in x["samples"] or "full build" in x["failures"] for x in report["shapes"]):
        lines += _builds(report)
    lines += ["## Targets\n", *_targets(report, limit_mib), *_layout_cost(report), *_failures(report)]
    return "\n".join(lines) + "\n"


def _builds(report: dict) -> list[str]:
    """The full builds, no-op builds and new runs of every shape, and each model's time per row."""
    lines = [
        "## Full builds\n",
        "| shape (runs x layers x captures) | rows | full build (s) | peak RSS (MiB) | no-op (s)"
        " | one new run (s; % of the full build's time, and of its rows) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in report["shapes"]:
        m = s["samples"]
        if "full build" not in m:
            failed = s["failures"].get("full build")
            what = f"failed: {failed}" if failed else "not measured"
            lines.append(f"| {_name(s)} | {s['shape']['rows']:,} | {what} | | | |")
            continue
        full = median(m["full build"])
        new = median(m["one new run"]) if "one new run" in m else None
        lines.append(
            f"| {_name(s)} | {s['shape']['rows']:,} | {full:.2f} | {max(x['peak_rss_mib'] for x in m['full build']):.0f}"
            f" | {median(m['no-op build']):.2f} | "
            + (f"{new:.2f} ({100 * new / full:.1f}%; {100 / (s['shape']['runs'] + 1):.1f}%)" if new else "-") + " |")
    lines += ["", "## Each model's time per row (microseconds; in brackets, against the "
              f"{BASE_CAPTURES}-capture shape)\n"]
    models = sorted({m for s in report["shapes"] for m in s["models"]})
    lines += ["| shape | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    base = _base(report)
    for s in report["shapes"]:
        cells = []
        for model in models:
            per_row = _per_row(s, model)
            ref = _per_row(base, model) if base else None
            cells.append("-" if per_row is None else f"{per_row:.2f}" + (f" ({per_row / ref:.2f})" if ref else ""))
        lines.append(f"| {_name(s)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _layout_cost(report: dict) -> list[str]:
    """Where the time of each build beside the peer goes: the rows it wrote copied by DuckDB
    as a file per run and as one file (medians, seconds)."""
    rows = []
    for s in report["shapes"]:
        m = s["samples"]
        for name, _, _ in PEERED:
            parts = [f"{name} build", f"{name} output to a file per run", f"{name} output to one file", f"{name} polars"]
            if all(p in m for p in parts[:3]):
                build, by_run, one = (median(m[p]) for p in parts[:3])
                peer = f"{median(m[parts[3]]):.2f}" if parts[3] in m else "failed"
                rows.append(f"| {name} | {_name(s)} | {build:.2f} | {by_run:.2f} | {one:.2f} | {by_run - one:.2f}"
                            f" | {build - (by_run - one):.2f} | {peer} |")
    if not rows:
        return []
    return ["", "## Where the time of the builds beside the peer goes (seconds)\n",
            "The rows the build wrote, copied by DuckDB (read and zstd write, a process of its own) as the lake"
            " lays them out (a file per run) and into one file: the difference is what the layout costs the"
            " build; the build less that difference is what it would take writing one file.\n",
            "| formula | shape | build | copy, a file per run | copy, one file | layout cost | build less layout"
            " cost | polars |", "|---|---|---:|---:|---:|---:|---:|---:|", *rows]


def _failures(report: dict) -> list[str]:
    lines = [f"- {_name(s)}, {name}: {why}" for s in report["shapes"] for name, why in s["failures"].items()]
    return ["", "## Failed measurements\n", *lines] if lines else []


def _base(report: dict) -> dict | None:
    """The shape every other's time per row is compared with."""
    return next((s for s in report["shapes"] if s["shape"]["captures"] == BASE_CAPTURES and not s["many_small_runs"]),
                None)


def _name(s: dict) -> str:
    return f"{s['shape']['runs']:,} x {s['shape']['layers']} x {s['shape']['captures']:,}"


def _per_row(s: dict | None, model: str) -> float | None:
    if s is None or not s["models"].get(model):
        return None
    return 1e6 * statistics.median(s["models"][model]) / s["shape"]["rows"]


def _targets(report: dict, limit_mib: float | None) -> list[str]:
    lines = ["| target | shape | measured | met |", "|---|---|---:|---|"]
    for s in report["shapes"]:
        m = s["samples"]
        for name, _, _ in PEERED:
            target = f"| {name}: polars time / warehouse time >= 1.5 | {_name(s)}"
            if f"{name} build" in m and f"{name} polars" in m:
                ours, theirs = median(m[f"{name} build"]), median(m[f"{name} polars"])
                lines.append(f"{target} | {theirs / ours:.2f} ({theirs:.1f} s / {ours:.1f} s)"
                             f" | {'yes' if theirs / ours >= 1.5 else 'no'} |")
            elif f"{name} build" in m and f"{name} polars" in s["failures"]:
                lines.append(f"{target} | polars failed ({s['failures'][f'{name} polars']}); warehouse"
                             f" {median(m[f'{name} build']):.1f} s | no ratio |")
        base = _base(report)
        if base and s["shape"]["captures"] > BASE_CAPTURES and not s["many_small_runs"]:
            for model in sorted(s["models"]):
                per_row, ref = _per_row(s, model), _per_row(base, model)
                if per_row and ref:
                    lines.append(f"| {model}: time per row <= 1.5 x at {BASE_CAPTURES} captures | {_name(s)}"
                                 f" | {per_row / ref:.2f} x | {'yes' if per_row / ref <= 1.5 else 'no'} |")
        if "one new run" in m and "full build" in m:
            share, rows_share = median(m["one new run"]) / median(m["full build"]), 1 / (s["shape"]["runs"] + 1)
            met = "yes" if share < NEW_RUN_TARGET else "no"
            if rows_share >= NEW_RUN_TARGET:  # the run alone is that share of the work
                met = f"not applicable: the new run holds {100 * rows_share:.0f}% of the rows"
            lines.append(f"| one new run < {100 * NEW_RUN_TARGET:.0f}% of the full build | {_name(s)} | {100 * share:.1f}%"
                         f" | {met} |")
        if s["many_small_runs"] and "full build" in m:
            full = median(m["full build"])
            lines.append(f"| many small runs: full build < {SMALL_RUNS_TARGET_S:.0f} s | {_name(s)} | {full:.2f} s"
                         f" | {'yes' if full < SMALL_RUNS_TARGET_S else 'no'} |")
        peak = max((x["peak_rss_mib"] for name, xs in m.items() if "polars" not in name for x in xs), default=None)
        if peak is not None and limit_mib is not None:
            lines.append(f"| peak RSS of every command <= limit + 1 GB ({limit_mib + 1e9 / 2**20:,.0f} MiB)"
                         f" | {_name(s)} | {peak:,.0f} MiB | {'yes' if peak <= limit_mib + 1e9 / 2**20 else 'no'} |")
        if s.get("agreement") is not None:
            agree = all(t["agrees"] for t in s["agreement"])
            tables = ", ".join(t["table"] for t in s["agreement"])
            lines.append(f"| polars peer agrees with the models ({tables}) | {_name(s)}"
                         f" | {'agrees' if agree else 'differs'} | {'yes' if agree else 'no'} |")
    return lines


if __name__ == "__main__":
    main()
