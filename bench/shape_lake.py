"""Lakes of one shape: the same kind of rows laid out as series of a chosen length.

A shape is ``runs`` runs of ``layers`` series (layers of one module, pooled rows, all six
descriptors filled) of ``captures`` captures each, so that lakes of the same rows differ only
in how long their series are and how many runs hold them. Every (run, layer, descriptor)
series is a random walk with noise and two level shifts at random captures (numpy, seeded:
the same rows on every machine). Runs come in cohorts of four seeds of one configuration
(``config_hash``), so the cross-run models see cohorts as in a sweep. A lake is written once
through ``warehouse.write`` into ``<name>.partial``, renamed when complete, and cached under
``WORK/lakes``.

The cost benchmark of events_candidates (``cpd_cost.py``) and the shapes benchmark
(``shapes.py``) read these lakes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from warehouse import writer
from warehouse.contracts import DESCRIPTORS

GENERATOR = 2  # version of the generator below: part of a cached lake's name
MODULE = "resid_post"
CHUNK_ROWS = 1_000_000  # rows simulated and written together
SHIFTS = 2  # level shifts per series
SEEDS_PER_COHORT = 4
# Bytes on disk per geometry_state row of a shape lake once every model has written its
# output (zstd Parquet; measured on the 1M-row shapes at 64 to 5,000 captures: 60 to 140),
# with room for DuckDB's spill files.
BYTES_PER_ROW = 400


@dataclass(frozen=True)
class Shape:
    """A layout of the rows: ``runs`` runs of ``layers`` series of ``captures`` captures."""

    captures: int
    layers: int
    runs: int

    @classmethod
    def for_rows(cls, rows: int, captures: int, layers: int) -> Shape:
        return cls(captures, layers, max(1, round(rows / (captures * layers))))

    @property
    def rows(self) -> int:
        return self.captures * self.layers * self.runs

    @property
    def name(self) -> str:
        return f"{self.runs}x{self.layers}x{self.captures}"


def series_values(rng: np.random.Generator, count: int, captures: int) -> np.ndarray:
    """``count`` series of ``captures`` values: a random walk, noise and SHIFTS level shifts
    of 1 to 3 units, each at least an eighth of the series from its ends."""
    walk = np.cumsum(rng.normal(0.0, 0.05, (count, captures)), axis=1)
    noise = rng.normal(0.0, 0.2, (count, captures))
    margin = captures // 8
    at = rng.integers(margin, captures - margin, (count, SHIFTS))
    size = rng.uniform(1.0, 3.0, (count, SHIFTS)) * rng.choice([-1.0, 1.0], (count, SHIFTS))
    t = np.arange(captures)
    shifts = sum(size[:, [k]] * (t >= at[:, [k]]) for k in range(SHIFTS))
    return (4.0 + walk + noise + shifts).astype(np.float32)


def geometry_chunk(shape: Shape, runs: range, rng: np.random.Generator) -> pa.Table:
    """The pooled rows of ``runs`` (indices), ordered by run, layer and capture."""
    per_run = shape.layers * shape.captures
    total = len(runs) * per_run
    names = np.repeat(np.array([run_id(k) for k in runs]), per_run)
    columns: dict = {
        "run_id": names, "analysis_id": np.full(total, "shape-lake"),
        "step": np.tile(np.arange(shape.captures, dtype=np.int64) * 10, len(runs) * shape.layers),
        "seed": np.repeat(np.array([seed(k) for k in runs], np.int64), per_run), "sample_set": np.full(total, "bench"),
        "sample_id": pa.nulls(total, pa.string()),
        "layer": np.tile(np.repeat(np.arange(shape.layers, dtype=np.int32), shape.captures), len(runs)),
        "module": np.full(total, MODULE), "n_samples": np.full(total, 64, np.int32), "dim": np.full(total, 256, np.int32),
    }
    for d in DESCRIPTORS:
        columns[d] = series_values(rng, len(runs) * shape.layers, shape.captures).ravel()
    return pa.table(columns)


def run_id(k: int) -> str:
    return f"shape-{k:06d}"


def seed(k: int) -> int:
    return k % SEEDS_PER_COHORT


def runs_rows(runs: range) -> list[dict]:
    """The runs rows of ``runs`` (indices): cohorts of four seeds, one configuration each."""
    return [{"run_id": run_id(k), "seed": seed(k), "run_mode": "train_full", "model_id": "bench",
             "config_json": f'{{"cohort":{k // SEEDS_PER_COHORT}}}', "config_hash": f"cohort-{k // SEEDS_PER_COHORT:06d}",
             "status": "completed", "started_at_utc": "2026-01-01T00:00:00Z"} for k in runs]


def cached_lake(work: Path, shape: Shape) -> Path:
    """The shape's lake under ``work`` (written first if missing; into ``.partial``, then renamed)."""
    lake = work / "lakes" / f"shape-v{GENERATOR}-{shape.name}"
    if lake.exists():
        return lake
    partial = lake.with_name(lake.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"writing {shape.rows:,} rows ({shape.runs:,} runs x {shape.layers} layers x {shape.captures:,} captures)"
          f" to {lake} ...", flush=True)
    rng = np.random.default_rng([GENERATOR, shape.captures])
    step = max(1, CHUNK_ROWS // (shape.layers * shape.captures))
    for first in range(0, shape.runs, step):
        write_runs(partial, shape, range(first, min(first + step, shape.runs)), rng)
    partial.rename(lake)
    return lake


def write_runs(lake: Path, shape: Shape, runs: range, rng: np.random.Generator) -> None:
    """Write the runs rows and geometry of ``runs`` (indices) into ``lake``."""
    writer.write("runs", runs_rows(runs), lake=lake, create=True)
    writer.write("geometry_state", geometry_chunk(shape, runs, rng), lake=lake)


def add_run(lake: Path, shape: Shape) -> None:
    """One run more than the shape holds (the next index, seeded by the shape: the same rows
    every time), as a sweep's new seed arrives."""
    write_runs(lake, shape, range(shape.runs, shape.runs + 1), np.random.default_rng([shape.captures, shape.runs]))


def require_disk(work: Path, rows: int, what: str) -> None:
    """Refuse, before anything is written, a benchmark whose lakes would not fit the disk of ``work``."""
    folder = work
    while not folder.exists():
        folder = folder.parent
    needed, free = rows * BYTES_PER_ROW, shutil.disk_usage(folder).free
    if needed > free:
        raise SystemExit(f"{what} needs about {needed / 1e9:.1f} GB of free disk under {work}"
                         f" ({rows:,} rows x {BYTES_PER_ROW} bytes); {free / 1e9:.1f} GB are free")
