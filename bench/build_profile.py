"""Where the time of a no-op build and of one new run's build goes on a lake of many runs.

A lake of ``--runs`` small runs (``shape_lake.py``: ``--layers`` layers x ``--captures``
captures each; at 7,000 runs it has the file count of a 100-million-row scale lake, about
35,000 files) is built once (one round); then, each command in a process of its own:

- the interpreter importing what ``warehouse models run`` imports, and nothing else;
- the no-op ``warehouse models run`` (median of ``--repeat``), then one under cProfile;
- one run more written (not timed), then ``warehouse models run`` under cProfile (a second
  copy of the lake without the profiler gives its plain time and each model's line).

Each profiled command's cumulative time is split over the engine's phases (``PHASES``:
loading the project, reading the analysis records, listing the inputs, saying what is left
out, planning each model, screening inputs, the models' SQL, checking, publishing and
recording their output). cProfile slows Python code more than the file system and DuckDB
calls beneath it, so the phases' shares are what to read, not their seconds.

    python bench/build_profile.py [--runs 7000] [--repeat 5]

Writes bench/results/build_profile.md and .json (or ``--out``).
"""

from __future__ import annotations

import argparse
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import machine
from measure import measure
from models import MODEL_LINE, WAREHOUSE, Settings, fresh_copy, memory_limit
from report import save
from shape_lake import Shape, add_run, cached_lake

HERE = Path(__file__).resolve().parent
IMPORTS = [sys.executable, "-c", "import warehouse.cli, warehouse.models.build"]
# (phase, file ending, function): cumulative time of that function in the profile
PHASES = (
    ("load the project (compiled models cache)", "warehouse/models/project.py", "load_project"),
    ("read the analysis records", "warehouse/models/state.py", "load_analyses"),
    ("list the inputs", "warehouse/models/build.py", "_list_inputs"),
    ("say what is left out", "warehouse/coverage.py", "left_out"),
    ("plan every model", "warehouse/models/build.py", "plan"),
    ("screen the inputs read", "warehouse/models/inputs.py", "screen"),
    ("the models' SQL (DuckDB)", "warehouse/models/compute.py", "compute"),
    ("check the output", "warehouse/models/publish.py", "check_output"),
    ("publish the output", "warehouse/models/publish.py", "publish"),
    ("record the build", "warehouse/models/record.py", "record_build"),
    ("the command as a whole (after imports)", "warehouse/cli.py", "main"),
)
WHOLE = PHASES[-1][0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7000, help="runs of the lake (default 7000)")
    parser.add_argument("--layers", type=int, default=4, help="layers of one module per run (default 4)")
    parser.add_argument("--captures", type=int, default=24, help="captures per series (default 24)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of each timed command (default 5)")
    parser.add_argument("--work", type=Path, default=Path(".bench"), help="cached lakes (default .bench)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "build_profile", help="results path, without suffix")
    args = parser.parse_args(argv)
    if min(args.runs, args.layers, args.repeat) < 1 or args.captures < 2:
        parser.error("--runs, --layers and --repeat must be at least 1, --captures at least 2")
    work = (args.work / "profile").resolve()
    env = Settings(memory_limit("default"), None, work / "spill").env()
    shape = Shape(args.captures, args.layers, args.runs)
    lake = fresh_copy(cached_lake(work, shape), work / "round" / "lake")
    build = WAREHOUSE + ["models", "run", "--lake", str(lake)]
    print(f"building {args.runs:,} runs", flush=True)
    full = measure(build, env=env)
    os.sync()  # the build's files are on disk before anything is timed (writeback slows file-system calls)
    files = sum(1 for p in lake.rglob("*.parquet"))
    imports = [measure(IMPORTS, env=env).seconds for _ in range(args.repeat)]
    noop = [measure(build, env=env).seconds for _ in range(args.repeat)]
    noop_phases = profile(build, env)
    twin = fresh_copy(lake, work / "round" / "twin")  # the same built lake, for the unprofiled new run
    for root in (lake, twin):
        add_run(root, shape)
    os.sync()
    new_run = measure(WAREHOUSE + ["models", "run", "--lake", str(twin)], env=env)
    result = {"machine": machine.one_line(machine.describe()), "runs": args.runs, "files": files,
              "repeat": args.repeat, "imports_seconds": imports, "noop_seconds": noop, "phases": noop_phases,
              "full_build_seconds": full.seconds, "new_run_seconds": new_run.seconds,
              "new_run_models": {m: float(t) for m, t in MODEL_LINE.findall(new_run.stdout)},
              "new_run_phases": profile(build, env)}
    text = markdown(result)
    save(args.out, text, result)
    print(text)


def profile(build: list[str], env: dict[str, str]) -> dict[str, float]:
    """Each phase's cumulative seconds in one build run under cProfile."""
    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "build.prof"
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
    models = ", ".join(f"{m} {t:.2f} s" for m, t in r["new_run_models"].items())
    lines = [
        "# Where a no-op build's and one new run's time goes\n",
        f"Machine: {r['machine']}. A lake of {r['runs']:,} runs and {r['files']:,} Parquet files, every model"
        f" built; medians of {r['repeat']} rounds, each command its own process.\n",
        f"- no-op `warehouse models run`: {noop:.2f} s (target: under 1 s)",
        f"- the interpreter and the imports alone: {imports:.2f} s",
        f"- the full build (one round): {r['full_build_seconds']:.2f} s",
        f"- one new run's build (one round): {r['new_run_seconds']:.2f} s"
        f" ({100 * r['new_run_seconds'] / r['full_build_seconds']:.1f}% of the full build; target: under 5%);"
        f" the models' lines: {models}\n",
        "Each under cProfile (its overhead inflates Python code: read the shares):\n",
        "| phase | no-op: profiled s | share | one new run: profiled s | share |", "|---|---:|---:|---:|---:|",
    ]
    noop_whole, new_whole = r["phases"][WHOLE], r["new_run_phases"][WHOLE]
    for phase, seconds in r["phases"].items():
        new = r["new_run_phases"][phase]
        lines.append(f"| {phase} | {seconds:.3f} | {100 * seconds / noop_whole:.0f}% | {new:.3f}"
                     f" | {100 * new / new_whole:.0f}% |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
