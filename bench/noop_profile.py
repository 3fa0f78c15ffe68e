"""Where a no-op build's time goes on a lake of many runs (the file count of a 100M-row lake).

A lake of ``--runs`` small runs (``shape_lake.py``: ``--layers`` layers x ``--captures``
captures each; a 100-million-row scale lake has about 7,000 runs and 35,000 to 45,000
files) is built once (not timed); then, each command in a process of its own:

- the interpreter importing what ``warehouse models run`` imports, and nothing else;
- the no-op ``warehouse models run`` (median of ``--repeat``);
- one no-op under cProfile, whose cumulative time is split over the engine's phases
  (``PHASES``: loading the project, reclaiming what killed builds left, reading the
  analysis records, listing the inputs, saying what is left out, planning each model).
  cProfile slows Python code more than the file system calls beneath it, so the phases'
  shares of the profiled time are what to read, not their seconds.

    python bench/noop_profile.py [--runs 7000] [--repeat 5]

Writes bench/results/noop_profile.md and .json (or ``--out``).
"""

from __future__ import annotations

import argparse
import pstats
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import machine
from measure import measure
from models import WAREHOUSE, Settings, fresh_copy, memory_limit
from report import save
from shape_lake import Shape, cached_lake

HERE = Path(__file__).resolve().parent
IMPORTS = [sys.executable, "-c", "import warehouse.cli, warehouse.models.build"]
# (phase, file ending, function): cumulative time of that function in the profile
PHASES = (
    ("load the project (compiled models cache)", "warehouse/models/project.py", "load_project"),
    ("reclaim stale staging", "warehouse/lake.py", "reclaim_stale"),
    ("remove stale records", "warehouse/models/state.py", "remove_stale_records"),
    ("read the analysis records", "warehouse/models/state.py", "load_analyses"),
    ("list the inputs", "warehouse/models/build.py", "_list_inputs"),
    ("say what is left out", "warehouse/coverage.py", "left_out"),
    ("plan every model", "warehouse/models/build.py", "plan"),
    ("the command as a whole (after imports)", "warehouse/cli.py", "main"),
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7000, help="runs of the lake (default 7000)")
    parser.add_argument("--layers", type=int, default=4, help="layers of one module per run (default 4)")
    parser.add_argument("--captures", type=int, default=24, help="captures per series (default 24)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of each timed command (default 5)")
    parser.add_argument("--work", type=Path, default=Path(".bench"), help="cached lakes (default .bench)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "noop_profile", help="results path, without suffix")
    args = parser.parse_args(argv)
    if min(args.runs, args.layers, args.repeat) < 1 or args.captures < 2:
        parser.error("--runs, --layers and --repeat must be at least 1, --captures at least 2")
    work = (args.work / "noop").resolve()
    env = Settings(memory_limit("default"), None, work / "spill").env()
    lake = fresh_copy(cached_lake(work, Shape(args.captures, args.layers, args.runs)), work / "round" / "lake")
    build = WAREHOUSE + ["models", "run", "--lake", str(lake)]
    print(f"building {args.runs:,} runs (not timed)", flush=True)
    subprocess.run(build, check=True, capture_output=True, env=env)
    files = sum(1 for p in lake.rglob("*.parquet"))
    imports = [measure(IMPORTS, env=env).seconds for _ in range(args.repeat)]
    noop = [measure(build, env=env).seconds for _ in range(args.repeat)]
    result = {"machine": machine.one_line(machine.describe()), "runs": args.runs, "files": files,
              "repeat": args.repeat, "imports_seconds": imports, "noop_seconds": noop,
              "phases": profile(build, env)}
    text = markdown(result)
    save(args.out, text, result)
    print(text)


def profile(build: list[str], env: dict[str, str]) -> dict[str, float]:
    """Each phase's cumulative seconds in one no-op build run under cProfile."""
    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "noop.prof"
        argv = [build[0], "-m", "cProfile", "-o", str(stats_file)] + build[1:]
        subprocess.run(argv, check=True, capture_output=True, env=env)
        stats = pstats.Stats(str(stats_file)).stats  # (file, line, function) -> (cc, nc, tt, ct, callers)
    seconds = {}
    for phase, ending, function in PHASES:
        seconds[phase] = sum(ct for (file, _, name), (_, _, _, ct, _) in stats.items()
                             if name == function and file.endswith(ending))
    return seconds


def markdown(r: dict) -> str:
    noop, imports = statistics.median(r["noop_seconds"]), statistics.median(r["imports_seconds"])
    whole = r["phases"]["the command as a whole (after imports)"]
    lines = [
        "# Where a no-op build's time goes\n",
        f"Machine: {r['machine']}. A lake of {r['runs']:,} runs and {r['files']:,} Parquet files, every model"
        f" built; medians of {r['repeat']} rounds, each command its own process.\n",
        f"- no-op `warehouse models run`: {noop:.2f} s (target: under 1 s)",
        f"- of which the interpreter and the imports alone: {imports:.2f} s\n",
        "One no-op under cProfile (its overhead inflates Python code: read the shares):\n",
        "| phase | profiled seconds | share of the command |", "|---|---:|---:|",
    ]
    for phase, seconds in r["phases"].items():
        lines.append(f"| {phase} | {seconds:.3f} | {100 * seconds / whole:.0f}% |" if whole else f"| {phase} | {seconds:.3f} | - |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
