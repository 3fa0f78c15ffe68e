"""Benchmark match@1 (sql/models/matches.sql) on synthetic trajectory signatures.

The generator writes ``n`` signatures shaped like sig@1's: runs in cohorts, each run with a
run-scope signature and layer-scope signatures of two layers (three vector layouts, about
n / 3 signatures each, so about n^2 / 3 ordered pairs), vectors of ``--dim`` floats (a
cohort prototype plus noise), and about five events per signature (the cohort's planted
events with jitter in t, and some noise events). Each measurement runs the model alone (a
copy of sql/ holding only it and the macros) in its own process with ``--full-refresh``,
repeated; the table gives the median wall time, the median CPU time (user + system: less
sensitive to other load on the machine), the peak resident memory, and the model's own
time as the engine reports it.

    python bench/matches.py [--signatures 10000] [--dim 384] [--repeat 3] [--memory-limits default 512MB]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from warehouse import contracts, writer
import machine
from measure import measure

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
MODULES = ("attn_out", "mlp_out", "resid_post", "resid_pre")
LAYERS = 6
COHORT_SIZE = 3  # seeds per cohort
LAYOUT_LAYERS = (0, 1)  # the layer-scope signatures written per run


def signatures_table(n: int, dim: int, seed: int = 0) -> pa.Table:
    """``n`` signatures: per run one of scope run and one per layer of LAYOUT_LAYERS."""
    rng = np.random.default_rng(seed)
    per_run = 1 + len(LAYOUT_LAYERS)
    runs = -(-n // per_run)
    cohorts = -(-runs // COHORT_SIZE)
    metrics = [f"{m}.{d}" for m in MODULES for d in contracts.DESCRIPTORS] + ["__composite__"]
    prototypes = rng.normal(size=(cohorts, per_run, dim))
    # each cohort's planted events: (layer, metric, t), seen by its runs with jitter
    planted = [
        [(int(rng.integers(LAYERS)), metrics[rng.integers(len(metrics))], float(rng.uniform())) for _ in range(4)]
        for _ in range(cohorts)
    ]
    rows = []
    for r in range(runs):
        cohort = r // COHORT_SIZE
        run_id = f"c{cohort:04d}-s{r % COHORT_SIZE}"
        events = [(l, m, t + rng.normal(scale=0.02)) for l, m, t in planted[cohort] if rng.uniform() < 0.8]
        events += [(int(rng.integers(LAYERS)), metrics[rng.integers(len(metrics))], float(rng.uniform()))
                   for _ in range(int(rng.integers(0, 3)))]
        events = [(l, m, float(np.clip(t, 0, 1))) for l, m, t in events]
        for k, (scope, layer) in enumerate([("run", None)] + [("layer", l) for l in LAYOUT_LAYERS]):
            mine = events if layer is None else [e for e in events if e[0] == layer] + [
                (layer, metrics[rng.integers(len(metrics))], float(rng.uniform())) for _ in range(4)
            ]
            vector = (prototypes[cohort, k] + rng.normal(scale=0.7, size=dim)).astype(np.float32)
            layout = f"K16;run;{dim}" if layer is None else f"K16;layer{layer};{dim}"
            rows.append({
                "signature_id": f"sig-{run_id}-{scope}-{layer}", "analysis_id": "bench-sig", "run_id": run_id,
                "kind": "trajectory", "scope": scope, "layer": layer, "family_id": None, "seed": r % COHORT_SIZE,
                "probe_name": None, "signature_version": "sig@1", "vector": vector.tolist(),
                "vector_layout": layout, "norm": float(np.linalg.norm(vector)),
                "event_t": [t for _, _, t in mine], "event_steps": [int(t * 10_000) for _, _, t in mine],
                "event_layers": [l for l, _, _ in mine], "event_metrics": [m for _, m, _ in mine],
                "event_scores": [1.0] * len(mine),
            })
    engine = ("schema_version", "created_at_utc")
    schema = pa.schema([c.field for c in contracts.SIGNATURES.all_columns if c.name not in engine])
    return pa.Table.from_pylist(rows[:n], schema=schema)


def model_only_sql(work: Path) -> Path:
    """A copy of sql/ with the macros and only the matches model: it reads our signatures."""
    target = work / "sql"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(REPO / "sql" / "macros", target / "macros")
    (target / "models").mkdir()
    shutil.copy(REPO / "sql" / "models" / "matches.sql", target / "models" / "matches.sql")
    return target


def run(n: int, dim: int, repeat: int, work: Path, memory_limit: str | None) -> dict:
    lake = work / f"lake-{n}-{dim}"
    if not (lake / "signatures").exists():
        print(f"writing {n:,} signatures of {dim} floats to {lake} ...", flush=True)
        writer.write("signatures", signatures_table(n, dim), lake=lake, create=True)
    sql = model_only_sql(work)
    env = dict(os.environ, **({"SQUIGGLE_MEMORY_LIMIT": memory_limit} if memory_limit else {}))
    code = (
        "from warehouse import models; "
        f"models.run(lake={str(lake)!r}, sql_dir={str(sql)!r}, full_refresh=True)"
    )
    samples = []
    for i in range(repeat):
        m = measure([sys.executable, "-c", code], env=env)
        wall, cpu, rss, out = m.seconds, m.cpu_seconds, m.peak_rss_mib, m.stdout
        line = out.strip().splitlines()[-1]
        model_s = float(re.search(r"([0-9.]+) s$", line).group(1))
        rows = int(re.search(r": ([0-9,]+) rows", line).group(1).replace(",", ""))
        samples.append((wall, cpu, rss, model_s))
        print(f"  round {i + 1}/{repeat}: {wall:.2f} s wall, {cpu:.2f} s CPU, {rss:.0f} MiB, model {model_s:.2f} s; {line}",
              flush=True)
    groups = group_sizes(lake)
    return {
        "signatures": n,
        "dim": dim,
        "ordered_pairs": sum(g * (g - 1) for g in groups),
        "output_rows": rows,
        "memory_limit": memory_limit,
        "machine": machine.one_line(machine.describe()),
        "load_average_at_end": os.getloadavg()[0],
        "wall_s": statistics.median(s[0] for s in samples),
        "cpu_s": statistics.median(s[1] for s in samples),
        "peak_rss_mib": max(s[2] for s in samples),
        "model_s": statistics.median(s[3] for s in samples),
    }


def group_sizes(lake: Path) -> list[int]:
    import duckdb

    glob = str(lake / "signatures" / "**" / "*.parquet")
    return [r[0] for r in duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = false) GROUP BY kind, scope, vector_layout"
    ).fetchall()]


def markdown(summaries: list[dict]) -> str:
    s0 = summaries[0]
    lines = [
        "# match@1 benchmark: synthetic trajectory signatures",
        "",
        f"Machine: {s0['machine']}. Three vector layouts"
        " (one run scope, two layer scopes), about five events per signature. Each build is"
        " `models.run(full_refresh=True)` of the matches model alone, in its own process (including"
        " interpreter start-up); median of the repeats, peak RSS the largest. CPU is user + system"
        " time of the process (the machine may be shared: CPU time is the steadier figure).",
        "",
        "| signatures | dim | ordered pairs | output rows | memory limit | wall (s) | CPU (s) | model (s) | peak RSS (MiB) | load avg |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['signatures']:,} | {s['dim']} | {s['ordered_pairs']:,} | {s['output_rows']:,} |"
            f" {s['memory_limit'] or 'DuckDB default'} | {s['wall_s']:.2f} |"
            f" {s['cpu_s']:.2f} | {s['model_s']:.2f} | {s['peak_rss_mib']:.0f} | {s['load_average_at_end']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signatures", type=int, nargs="+", default=[10_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/squiggle-bench-matches"))
    parser.add_argument("--memory-limits", nargs="+", default=["default"],
                        help="DuckDB memory_limit of the builds, each measured: 'default' or e.g. 512MB")
    args = parser.parse_args()
    summaries = [
        run(n, args.dim, args.repeat, args.work.resolve(), None if limit == "default" else limit)
        for n in args.signatures
        for limit in args.memory_limits
    ]
    RESULTS.mkdir(exist_ok=True)
    text = markdown(summaries)
    (RESULTS / "matches.md").write_text(text)
    (RESULTS / "matches.json").write_text(json.dumps(summaries, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
