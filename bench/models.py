"""Benchmark the model build against the floors of reading and copying its input.

On a scale lake of geometry_state (bench/scale_lake.py), each measurement runs in its own
process, repeated; the table gives the median wall time and the peak resident memory:

- scan floor: DuckDB reading every column of the input once;
- copy floor: DuckDB copying the input once to zstd Parquet with the same partitioning
  (read plus write: no model that writes its output can do less);
- full build: ``warehouse models run --full-refresh`` of every model, and each model's own
  time inside it;
- no-op build: ``warehouse models run`` with nothing new;
- one new run: ``warehouse models run`` after one run is added.

    python bench/models.py --rows 10000000 [--repeat 3] [--memory-limit 2GB]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
from pathlib import Path

import scale_lake
from measure import measure

from warehouse import contracts, lake as lk
from warehouse.scan import select_dataset

RESULTS = Path(__file__).resolve().parent / "results"
WAREHOUSE = [sys.executable, "-m", "warehouse.cli"]
MODEL_LINE = re.compile(r"^(\w+) \S+ -> .*, ([0-9.]+) s$", re.MULTILINE)


def duckdb_cmd(sql: str, memory_limit: str | None) -> list[str]:
    settings = f"con.execute(\"SET memory_limit = '{memory_limit}'\"); " if memory_limit else ""
    code = f"import duckdb; con = duckdb.connect(); {settings}con.execute({sql!r}).fetchall()"
    return [sys.executable, "-c", code]


def floors(root: Path, scratch: Path, memory_limit: str | None) -> dict[str, list[str]]:
    source = f"({select_dataset(contracts.GEOMETRY_STATE, lk.parquet_glob(root, contracts.GEOMETRY_STATE))})"
    scan = f"SELECT max(COLUMNS(*)) FROM {source}"
    copy = (
        f"COPY (SELECT * FROM {source}) TO '{scratch}' "
        "(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (analysis_id, run_id), OVERWRITE_OR_IGNORE)"
    )
    return {"scan floor": duckdb_cmd(scan, memory_limit), "copy floor": duckdb_cmd(copy, memory_limit)}


def run(rows: int, repeat: int, work: Path, memory_limit: str | None) -> dict:
    root = work / f"lake-{rows}"
    if not (root / "geometry_state").exists():
        print(f"writing a {rows:,}-row lake to {root} ...", flush=True)
        scale_lake.write_lake(root, rows)
    runs = len(list((root / "geometry_state" / "analysis_id=capture-v1").iterdir()))
    env = dict(os.environ, **({"SQUIGGLE_MEMORY_LIMIT": memory_limit} if memory_limit else {}))
    build = WAREHOUSE + ["models", "run", "--lake", str(root)]
    timings: dict[str, list[tuple[float, float]]] = {}

    def record(name: str, cmd: list[str]) -> None:
        m = measure(cmd, env=env)
        seconds, rss, out = m.seconds, m.peak_rss_mib, m.stdout
        timings.setdefault(name, []).append((seconds, rss))
        print(f"  {name}: {seconds:.2f} s, {rss:.0f} MiB", flush=True)
        if name == "full build":  # the engine's own line per model: "...: N rows, P partitions, S s"
            for model, model_seconds in MODEL_LINE.findall(out):
                timings.setdefault(f"  {model}", []).append((float(model_seconds), rss))

    for i in range(repeat):
        print(f"round {i + 1}/{repeat}", flush=True)
        for name, cmd in floors(root, work / "copy", memory_limit).items():
            shutil.rmtree(work / "copy", ignore_errors=True)
            record(name, cmd)
        record("full build", build + ["--full-refresh"])
        record("no-op build", build)
        scale_lake.write_run(root, runs + i)
        record("one new run", build)
    shutil.rmtree(work / "copy", ignore_errors=True)
    return summarise(rows, runs, timings, memory_limit)


def summarise(rows: int, runs: int, timings: dict, memory_limit: str | None) -> dict:
    med = {k: (statistics.median(s for s, _ in v), max(r for _, r in v)) for k, v in timings.items()}
    copy = med["copy floor"][0]
    return {
        "rows": rows,
        "runs": runs,
        "memory_limit": memory_limit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        # indented names are the models inside the full build (their own time; RSS is the build's)
        "results": {k: {"seconds": s, "peak_rss_mib": r, "ratio_to_copy": s / copy} for k, (s, r) in med.items()},
    }


def markdown(summary: dict) -> str:
    lines = [
        f"# Model build benchmark: {summary['rows']:,} geometry_state rows ({summary['runs']} runs)",
        "",
        f"Machine: {summary['machine']}; memory limit: {summary['memory_limit'] or 'DuckDB default'}."
        " Median wall time of the repeats, each in its own process (including interpreter start-up).",
        "",
        "| measurement | seconds | x copy floor | peak RSS (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for name, r in summary["results"].items():
        lines.append(f"| {name} | {r['seconds']:.2f} | {r['ratio_to_copy']:.2f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/squiggle-bench"))
    parser.add_argument("--memory-limit", help="DuckDB memory_limit for every measurement, e.g. 2GB")
    args = parser.parse_args()
    summary = run(args.rows, args.repeat, args.work.resolve(), args.memory_limit)
    RESULTS.mkdir(exist_ok=True)
    text = markdown(summary)
    (RESULTS / f"models-{args.rows}.md").write_text(text)
    (RESULTS / f"models-{args.rows}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
