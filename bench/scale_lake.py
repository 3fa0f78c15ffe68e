"""Write a deterministic geometry_state lake of a given size for benchmarks.

Runs x 64 captures (irregular steps) x 4 layers x 4 residual-stream modules x 16 series
(one pooled, 15 per sample), with smooth trends, noise and a level shift per series.
Geometry files are written straight with pyarrow in the lake's layout (one published
file per run), since the benchmark measures the models, not the writer; the runs rows
(cohorts of three seeds) go through the writer.

    python bench/scale_lake.py --rows 10000000 --lake /tmp/bench-lake
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse import lake as lk, writer
from warehouse.contracts import DESCRIPTORS, GEOMETRY_STATE
from warehouse.hashing import config_hash

CAPTURES, LAYERS, MODULES, SERIES = 64, 4, ("resid_pre", "attn_out", "mlp_out", "resid_post"), 16
ROWS_PER_RUN = CAPTURES * LAYERS * len(MODULES) * SERIES
CREATED = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def run_table(run: int, seed: int = 0) -> pa.Table:
    """One run's geometry_state rows (without the partition columns), deterministic in ``run``."""
    rng = np.random.default_rng([seed, run])
    steps = np.cumsum(rng.integers(20, 200, CAPTURES)).astype(np.int64)
    n_series = LAYERS * len(MODULES) * SERIES
    t = np.linspace(0, 1, CAPTURES)
    shift_at = rng.integers(10, CAPTURES - 10, n_series)
    shift = (np.arange(CAPTURES)[None, :] >= shift_at[:, None]).astype(float)
    columns = {}
    for k, d in enumerate(DESCRIPTORS):
        level = rng.uniform(0.5, 20.0, n_series)[:, None]
        trend = rng.uniform(-0.3, 0.3, n_series)[:, None] * (1 - np.exp(-3 * t))[None, :]
        noise = rng.normal(0, 0.01, (n_series, CAPTURES))
        values = level * (1 + trend + 0.2 * shift + noise)
        if d.startswith("principal_angle"):
            values = np.clip(values / 20.0, 0, math.pi / 2)
        columns[d] = values.astype(np.float32).ravel()
    columns["principal_angle_prev"] = np.where(np.tile(np.arange(CAPTURES) == 0, n_series), np.nan, columns["principal_angle_prev"])
    columns["principal_angle_init"] = np.where(np.tile(np.arange(CAPTURES) == 0, n_series), 0.0, columns["principal_angle_init"]).astype(np.float32)
    series = np.repeat(np.arange(n_series), CAPTURES)
    layer, rest = np.divmod(series, len(MODULES) * SERIES)
    module, sample = np.divmod(rest, SERIES)
    sample_ids = pa.array([None] + [f"s{i:03d}" for i in range(1, SERIES)], pa.string()).take(pa.array(sample))
    data = {
        "step": np.tile(steps, n_series),
        "seed": np.full(series.size, run % 3, np.int32),
        "sample_set": pa.array(["fixed_v1"] * series.size),
        "sample_id": sample_ids,
        "layer": layer.astype(np.int16),
        "module": pa.array(MODULES).take(pa.array(module)),
        "n_samples": np.full(series.size, 256, np.int32),
        "dim": np.full(series.size, 768, np.int32),
    }
    for d in DESCRIPTORS:
        data[d] = pa.array(columns[d], pa.float32(), from_pandas=True)  # NaN -> NULL at i = 0
    data["schema_version"] = pa.array([GEOMETRY_STATE.schema_version] * series.size)
    data["created_at_utc"] = pa.array([CREATED] * series.size, pa.timestamp("us", tz="UTC"))
    schema = pa.schema([c.field for c in GEOMETRY_STATE.file_columns])
    return pa.table(data).select(schema.names).cast(schema)


def run_rows(runs: range) -> list[dict]:
    """The runs rows: cohorts of three seeds sharing a config."""
    rows = []
    for run in runs:
        config = {"cohort": run // 3, "lr": 1e-3 * (1 + run // 3 % 5)}
        rows.append({
            "run_id": f"r{run:05d}", "seed": run % 3, "run_mode": "train_full", "model_id": "bench-transformer",
            "config_json": json.dumps(config | {"seed": run % 3}), "config_hash": config_hash(config),
            "status": "completed", "started_at_utc": CREATED,
        })
    return rows


def write_run(root: Path, run: int, analysis: str = "capture-v1") -> Path:
    folder = lk.partition_dir(root, GEOMETRY_STATE, {"analysis_id": analysis, "run_id": f"r{run:05d}"})
    folder.mkdir(parents=True, exist_ok=True)
    temp = lk.temp_path(folder)
    pq.write_table(run_table(run), temp, compression="zstd")
    writer.write("runs", run_rows(range(run, run + 1)), lake=root, created_at=CREATED)
    return lk.publish(temp, folder)


def write_lake(root: Path, rows: int) -> int:
    """Write ceil(rows / ROWS_PER_RUN) runs; return the number of runs."""
    runs = max(1, math.ceil(rows / ROWS_PER_RUN))
    for run in range(runs):
        write_run(root, run)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--lake", type=Path, required=True)
    args = parser.parse_args()
    runs = write_lake(args.lake.resolve(), args.rows)
    print(f"{runs} runs, {runs * ROWS_PER_RUN:,} geometry_state rows in {args.lake}")


if __name__ == "__main__":
    main()
