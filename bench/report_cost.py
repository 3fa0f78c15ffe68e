"""Cost of `warehouse report`: time, peak memory, figures and file size by lake size.

    python bench/report_cost.py --rows 0 1000000 10000000 --repeat 3

Size 0 is the demo lake; others are the benchmark's scale lakes (``scale_lake.py``),
copied once under ``--work`` and built there (every model and the catalog), so the cached
lakes stay as written. Each report runs in a process of its own, interpreter start-up
included: the median of ``--repeat`` runs is reported -> bench/results/report_cost.md.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import machine
import scale_lake
from measure import measure

RESULTS = Path(__file__).resolve().parent / "results"
CLI = str(Path(sys.executable).parent / "warehouse")


def built_lake(work: Path, rows: int) -> tuple[Path, Path]:
    """A lake of ``rows`` rows (0: the demo's) with every model built: (lake, catalog)."""
    lake, db = work / f"lake-{rows}", work / f"catalog-{rows}.duckdb"
    if not lake.is_dir():
        if rows:
            shutil.copytree(scale_lake.cached_lake(work.parent, rows), lake)
        else:
            subprocess.run([CLI, "demo", "--lake", str(lake)], check=True, capture_output=True)
    subprocess.run([CLI, "models", "run", "--lake", str(lake), "--db", str(db)], check=True, capture_output=True)
    return lake, db


def shape(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows, runs = con.execute("SELECT count(*), count(DISTINCT run_id) FROM geometry_state").fetchone()
        cohorts = con.execute("SELECT count(DISTINCT config_hash) FROM runs").fetchone()[0]
    finally:
        con.close()
    return {"rows": rows, "runs": runs, "cohorts": cohorts}


def measure_size(work: Path, rows: int, repeat: int) -> dict:
    lake, db = built_lake(work, rows)
    out = work / f"report-{rows}.html"
    runs = [measure([CLI, "report", "--db", str(db), "-o", str(out)]) for _ in range(repeat)]
    figures = int(re.search(r"\((\d+) figures", runs[-1].stdout).group(1))
    return {
        **shape(db), "figures": figures, "bytes": out.stat().st_size,
        "seconds": statistics.median(r.seconds for r in runs),
        "seconds_all": [round(r.seconds, 2) for r in runs],
        "peak_rss_mib": max(r.peak_rss_mib for r in runs),
    }


def markdown(report: dict) -> str:
    lines = [
        "# Cost of `warehouse report` by lake size", "",
        f"Machine: {report['machine']}. Median of {report['repeat']} reports each, each in a process of its own"
        " (interpreter start-up included); peak RSS is the largest. Size 0 is the demo lake. Whole run:"
        f" {report['seconds']:.0f} s.", "",
        "| geometry_state rows | runs | cohorts | figures | file (MB) | seconds (median) | runs (s) | peak RSS (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for s in report["sizes"]:
        lines.append(f"| {s['rows']:,} | {s['runs']:,} | {s['cohorts']:,} | {s['figures']} | {s['bytes'] / 1e6:.1f} |"
                     f" {s['seconds']:.1f} | {', '.join(map(str, s['seconds_all']))} | {s['peak_rss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[0, 1_000_000, 10_000_000],
                        help="lake sizes in geometry_state rows, 0 for the demo lake (default 0 1000000 10000000)")
    parser.add_argument("--repeat", type=int, default=3, help="reports per size (default 3)")
    parser.add_argument("--work", type=Path, default=Path(".bench"), help="cached lakes (default .bench)")
    parser.add_argument("--out", type=Path, default=RESULTS / "report_cost", help="results path, without .md / .json")
    args = parser.parse_args(argv)
    if args.repeat < 1 or min(args.rows) < 0:
        parser.error("--repeat must be at least 1 and --rows not negative")
    work = (args.work / "report_cost").resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = {"machine": machine.one_line(machine.describe()), "repeat": args.repeat,
              "sizes": [measure_size(work, rows, args.repeat) for rows in args.rows]}
    report["seconds"] = time.perf_counter() - started
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
