"""Benchmark: ``warehouse ingest geometry_state`` against a plain pyarrow partitioned write.

Generates a deterministic geometry_state table (50 runs x 64 steps x 4 layers x 4 modules,
one pooled row plus per-sample rows per capture; 10 million rows by default) as a zstd
Parquet input file, then measures, each in a fresh child process and into a fresh lake:

(a) ``python -m warehouse.cli ingest geometry_state input.parquet --lake <fresh>``
(b) the baseline: read the same file with pyarrow and write it with
    ``pyarrow.dataset.write_dataset`` under the same hive partitioning
    (``analysis_id=/run_id=``) with zstd, and nothing else (no validation, no key checks,
    no sorting, no content hashing).

Each is run ``--repeats`` times (default 3), alternating; the table reports the median
wall time, CPU time (user + system) and peak RSS (``ru_maxrss`` of that child alone, from
``os.wait4``). The results are printed as Markdown and written to
``bench/results/ingest.md`` and ``.json``.

    python bench/ingest.py --rows 200000     # try it small first
    python bench/ingest.py                   # 10 million rows
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from machine import describe, one_line
from measure import measure

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

RUNS, STEPS, LAYERS = 50, 64, 4
MODULES = ("resid_pre", "attn_out", "mlp_out", "resid_post")

BASELINE = """
import sys
import pyarrow.dataset as ds
import pyarrow.parquet as pq
source, target = sys.argv[1], sys.argv[2]
table = pq.read_table(source)
ds.write_dataset(
    table, target, format="parquet",
    partitioning=ds.partitioning(table.select(["analysis_id", "run_id"]).schema, flavor="hive"),
    file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
    basename_template="part-{i}.parquet",
)
print(table.num_rows, "rows written")
"""


def geometry_state(rows: int, seed: int = 0) -> pa.Table:
    """``rows`` rows of geometry_state: every (run, step, layer, module) capture has one pooled
    row (sample_id NULL) and per-sample rows; value distributions follow the descriptors'
    ranges (eff_rank grows with depth and training, angles are NULL or 0 at the first step)."""
    per_capture = max(1, math.ceil(rows / (RUNS * STEPS * LAYERS * len(MODULES))))
    shape = (RUNS, STEPS, LAYERS, len(MODULES), per_capture)
    run, step_i, layer, module, sample = (a.ravel()[:rows] for a in np.indices(shape, dtype=np.int32))
    n = run.size
    rng = np.random.default_rng(seed)
    pooled = sample == 0
    t = step_i / (STEPS - 1)  # training progress 0..1
    depth = (layer + 1) / LAYERS

    # Planted squiggles: each run has a level shift at a run-specific step.
    shift_at = rng.integers(STEPS // 4, 3 * STEPS // 4, RUNS)[run]
    shifted = step_i >= shift_at

    # Per-sample rows describe single samples: noisier than the pooled row.
    noise = np.where(pooled, 0.02, 0.15).astype(np.float32)
    eff_rank = (8 + 24 * depth + 6 * t + 3 * shifted) * np.exp(noise * rng.standard_normal(n))
    sv_entropy = np.clip(0.55 + 0.3 * depth + 0.05 * t + noise * rng.standard_normal(n), 0.01, 1.0)
    sparsity = rng.beta(2 + 3 * depth, 5, n)
    angle_prev = np.where(step_i == 0, np.nan, rng.gamma(2.0, 0.02 + 0.05 * shifted, n))
    angle_init = np.where(step_i == 0, 0.0, np.minimum(np.pi / 2, 0.9 * t + 0.05 * rng.standard_normal(n) ** 2))
    act_norm = (5 + 20 * depth) * (1 + 0.5 * t) * rng.lognormal(0, noise)

    def f32(x: np.ndarray, nullable: bool = False) -> pa.Array:
        x = x.astype(np.float32)
        return pa.array(x, mask=np.isnan(x)) if nullable else pa.array(x)

    def take(names: list[str], index: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
        return pa.array(names).take(pa.array(index, mask=mask))

    return pa.table({
        "run_id": take([f"run-{i:03d}" for i in range(RUNS)], run),
        "analysis_id": pa.repeat(pa.scalar("geom-v1"), n),
        "step": pa.array(step_i.astype(np.int64) * 250),
        "seed": pa.array(run % 5),
        "sample_set": pa.repeat(pa.scalar("fixed_v1"), n),
        "sample_id": take([f"s{i:04d}" for i in range(max(per_capture - 1, 1))], np.maximum(sample - 1, 0), pooled),
        "layer": pa.array(layer.astype(np.int16)),
        "module": take(list(MODULES), module),
        "n_samples": pa.array(np.where(pooled, per_capture - 1, 1).astype(np.int32)),
        "dim": pa.repeat(pa.scalar(768, pa.int32()), n),
        "eff_rank": f32(eff_rank),
        "sv_entropy": f32(sv_entropy),
        "sparsity": f32(sparsity),
        "principal_angle_prev": f32(angle_prev, nullable=True),
        "principal_angle_init": f32(angle_init),
        "act_norm": f32(act_norm),
        "schema_version": pa.repeat(pa.scalar("geometry_state@2.0"), n),
        "created_at_utc": pa.repeat(pa.scalar(dt.datetime(2024, 5, 6, tzinfo=dt.timezone.utc), pa.timestamp("us", tz="UTC")), n),
    })


def lake_rows(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*.parquet") if not p.name.startswith(".")]
    return sum(pq.read_metadata(p).num_rows for p in files), len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the input (default 10000000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (default 3)")
    parser.add_argument("--workdir", type=Path, help="where the input and lakes go (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ingest.md", help="Markdown result (and .json beside it)")
    args = parser.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"geometry_state-{args.rows}.parquet"
    if not source.exists():
        t0 = time.perf_counter()
        table = geometry_state(args.rows)
        pq.write_table(table, source.with_suffix(".tmp"), compression="zstd")
        source.with_suffix(".tmp").rename(source)
        print(f"generated {table.num_rows:,} rows -> {source} ({source.stat().st_size / 2**20:.0f} MiB, "
              f"{time.perf_counter() - t0:.1f} s)", file=sys.stderr)
        del table

    commands = {
        "warehouse ingest": lambda lake: [sys.executable, "-m", "warehouse.cli", "ingest", "geometry_state",
                                          str(source), "--lake", str(lake), "--create"],
        "pyarrow write_dataset (baseline)": lambda lake: [sys.executable, "-c", BASELINE, str(source), str(lake)],
    }
    # The commands alternate, so that a change in the machine's load (it may be shared)
    # affects both alike; the CPU time of each child is reported beside its wall time.
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
    files: dict[str, int] = {}
    for i in range(args.repeats):
        for k, (name, command) in enumerate(commands.items()):
            lake = work / f"lake-{k}"
            shutil.rmtree(lake, ignore_errors=True)
            m = measure(command(lake), cwd=work)
            elapsed, cpu, peak = m.seconds, m.cpu_seconds, m.peak_rss_mib
            rows, files[name] = lake_rows(lake)
            if rows != args.rows:
                raise SystemExit(f"{name}: the lake holds {rows} rows, expected {args.rows}")
            runs[name].append((elapsed, cpu, peak))
            print(f"{name} run {i + 1}: {elapsed:.2f} s, CPU {cpu:.2f} s, peak RSS {peak:.0f} MiB, "
                  f"{files[name]} files", file=sys.stderr)
            shutil.rmtree(lake, ignore_errors=True)
    results = {
        name: {"seconds": [r[0] for r in rs], "cpu_seconds": [r[1] for r in rs], "peak_rss_mib": [r[2] for r in rs],
               "files": files[name], "median_seconds": statistics.median(r[0] for r in rs),
               "median_cpu_seconds": statistics.median(r[1] for r in rs),
               "median_peak_rss_mib": statistics.median(r[2] for r in rs)}
        for name, rs in runs.items()
    }

    base = results["pyarrow write_dataset (baseline)"]
    lines = [
        f"# Ingest benchmark: {args.rows:,} geometry_state rows",
        "",
        f"Input: {source.name}, {source.stat().st_size / 2**20:.0f} MiB zstd Parquet; "
        f"{RUNS} runs x {STEPS} steps x {LAYERS} layers x {len(MODULES)} modules, pooled + per-sample rows. "
        f"Median of {args.repeats} runs of each, alternating, each a fresh child process writing a fresh lake.",
        "",
        "| command | time (s) | CPU (s) | peak RSS (MiB) | time ratio | CPU ratio | RSS ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['median_seconds']:.2f} | {r['median_cpu_seconds']:.2f} | {r['median_peak_rss_mib']:.0f} | "
            f"{r['median_seconds'] / base['median_seconds']:.2f}x | "
            f"{r['median_cpu_seconds'] / base['median_cpu_seconds']:.2f}x | "
            f"{r['median_peak_rss_mib'] / base['median_peak_rss_mib']:.2f}x |"
        )
    machine = one_line(describe())
    lines += [
        "",
        f"Machine: {machine}. Wall times of the runs (s): " + "; ".join(
            f"{name}: {', '.join(f'{t:.2f}' for t in r['seconds'])}" for name, r in results.items()) + ".",
        "",
        "The baseline holds the whole input table in memory. Ingest reads it in batches of "
        "1,000,000 rows; its peak is DuckDB's duplicate-key check and sort, which stay in memory "
        "up to DuckDB's default memory_limit (80% of RAM) since the writer sets none.",
        "",
    ]
    markdown = "\n".join(lines)
    print(markdown)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"rows": args.rows, "repeats": args.repeats, "input_bytes": source.stat().st_size, "machine": machine,
         "results": results}, indent=2) + "\n")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
