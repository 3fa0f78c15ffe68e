"""Deterministic scale lakes for the benchmarks: the demo's simulation at any size.

A scale lake holds cohorts of training runs and probe runs (three seeds of each probe
family, one family per four cohorts). A cohort is one configuration of a sweep (its own
``config_hash``) trained with 3, 4 or 5 seeds (3, 4, 5, 4 in turn), so that events finds
each cohort's consensus as it would in a real sweep. Each run's geometry comes
from ``warehouse.demo``'s simulation: 6 layers x 4 residual-stream modules, 64 captures on
an irregular step grid (denser early), a pooled row and 8 per-sample series per capture,
trends, noise, and the cohort's planted level shifts (13,824 geometry_state rows per
training run, 336 per probe run). Each cohort draws its own plants (2 to 5 shifts of 1 or 2
descriptors of one module on 1 to 4 neighbouring layers, well apart in time), trend shape
and width; each family its own effect and layer.

Everything goes through ``warehouse.write`` (validated, sorted, one file per run
partition, exactly as the warehouse writes a lake), a chunk of cohorts at a time, so memory
holds one chunk whatever the size. The planted truth goes where the demo keeps its own
(``_meta/demo/``), so ``warehouse scorecard`` scores a scale lake too. A lake is written
into ``<path>.partial`` and renamed when complete: a cached lake is always a whole one.

    python bench/scale_lake.py --rows 10000000 --lake .bench/lakes/lake-10000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse import demo, writer
from warehouse.hashing import canonical_json, config_hash
from warehouse.scorecard import TRUTH_DIR

SEED = 0  # the simulation's seed: the same size gives the same lake, byte for byte
VERSION = 3  # of this generator: part of a cached lake's name, raised when its output changes
ROWS_PER_TRAINING_RUN = demo.N_CAPTURES * demo.N_LAYERS * len(demo.MODULES) * (1 + demo.N_TRACKED)
ROWS_PER_PROBE_RUN = len(demo.PROBE_STEPS) * demo.N_LAYERS * len(demo.MODULES)
COHORTS_PER_FAMILY = 4
SEEDS_PER_COHORT = (3, 4, 5, 4)  # cohort k trains SEEDS_PER_COHORT[k % 4] seeds: 0, 1, ...
CHUNK_COHORTS = 16  # cohorts simulated and written together (about 660,000 rows)
PLANTED = ("eff_rank", "sv_entropy", "sparsity", "act_norm", "principal_angle_init")
WIDTHS = (128, 192, 256, 384, 512)
SHAPES = ("linear", "saturating", "bump", "late_sigmoid")
# capture indices a plant may start at: cpd@1's windows fit on both sides, with the jitter
FIRST_INDEX, LAST_INDEX = demo.WINDOW + 1, demo.N_CAPTURES - demo.WINDOW - 2


def seeds(k: int) -> tuple[int, ...]:
    """The seeds cohort k trains."""
    return tuple(range(SEEDS_PER_COHORT[k % len(SEEDS_PER_COHORT)]))


@dataclass(frozen=True)
class Layout:
    """How many cohorts (of 3 to 5 runs) and probe families a lake of ``rows`` holds."""

    cohorts: int
    families: int

    @classmethod
    def for_rows(cls, rows: int) -> Layout:
        """The cohorts whose training runs come nearest to ``rows`` (at least one)."""
        target, cohorts, runs = rows / ROWS_PER_TRAINING_RUN, 1, len(seeds(0))
        while abs(runs + len(seeds(cohorts)) - target) < abs(runs - target):
            runs += len(seeds(cohorts))
            cohorts += 1
        return cls(cohorts, math.ceil(cohorts / COHORTS_PER_FAMILY))

    @property
    def training_runs(self) -> int:
        return sum(len(seeds(k)) for k in range(self.cohorts))

    @property
    def probe_runs(self) -> int:
        return self.families * len(demo.SEEDS)

    @property
    def rows(self) -> int:
        return self.training_runs * ROWS_PER_TRAINING_RUN + self.probe_runs * ROWS_PER_PROBE_RUN


def cached_lake(work: Path, rows: int) -> Path:
    """The cached lake of ``rows`` rows under ``work``, written first if it is not there."""
    root = work / "lakes" / f"lake-{rows}-v{VERSION}"
    if not root.is_dir():
        print(f"writing a scale lake of about {rows:,} rows to {root} ...", flush=True)
        write_lake(root, rows)
    return root


def write_lake(root: Path, rows: int) -> Layout:
    """Write the lake of about ``rows`` geometry_state rows at ``root`` (which must not exist)."""
    layout = Layout.for_rows(rows)
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    planted: list[dict] = []
    for first in range(0, layout.cohorts, CHUNK_COHORTS):
        planted += _write_training_runs(partial, range(first, min(first + CHUNK_COHORTS, layout.cohorts)))
    families = tuple(family(j) for j in range(layout.families))
    writer.write("families", demo.families_table(families), lake=partial, created_at=demo.CREATED_AT, create=True)
    _write_probe_runs(partial, families)
    truth = partial / TRUTH_DIR
    truth.mkdir(parents=True)
    pq.write_table(demo.planted_events_table(planted), truth / "planted_events.parquet", compression="zstd")
    pq.write_table(demo.planted_families_table(families), truth / "planted_families.parquet", compression="zstd")
    partial.rename(root)
    return layout


def add_run(root: Path, seed: int) -> None:
    """Add one more seed of the first cohort to the lake: its geometry and its runs row."""
    if seed in seeds(0):
        raise ValueError(f"the first cohort already has seed {seed} (seeds {seeds(0)})")
    _write_training_runs(root, [0], (seed,))


def training_config(c: demo.Cohort, seed: int) -> dict:
    """The demo's configuration of a run with the cohort's point of the sweep (its name): the
    demo draws width and learning rate from a few values, which alone would put many
    cohorts under one ``config_hash``."""
    return {**demo.training_config(c, seed), "sweep_point": c.cohort}


def cohort(k: int) -> demo.Cohort:
    """The k-th cohort: its width, learning rate, trend shape and planted level shifts."""
    rng = np.random.default_rng([SEED, 1, k])
    return demo.Cohort(
        cohort=f"b{k:05d}", lr=float(rng.choice([3e-4, 1e-3, 3e-3])), width=int(rng.choice(WIDTHS)),
        shape=str(rng.choice(SHAPES)), loss_floor=float(rng.uniform(2.0, 2.4)), plants=_plants(rng), jump=0,
    )


def _plants(rng: np.random.Generator) -> tuple[demo.Plant, ...]:
    """2 to 5 level shifts, one per equal slot of the capture range, at least w + 1 captures apart."""
    n = int(rng.integers(2, 6))
    slot = (LAST_INDEX - FIRST_INDEX) // n
    plants = []
    for j in range(n):
        module = str(rng.choice(demo.MODULES))
        descriptors = rng.choice(PLANTED, size=int(rng.integers(1, 3)), replace=False)
        n_layers = int(rng.integers(1, 5))
        bottom = int(rng.integers(0, demo.N_LAYERS - n_layers + 1))
        plants.append(demo.Plant(
            metrics=tuple(f"{module}.{d}" for d in descriptors), layers=tuple(range(bottom, bottom + n_layers)),
            index=FIRST_INDEX + j * slot + int(rng.integers(0, slot - demo.WINDOW)), sign=int(rng.choice([-1, 1])),
        ))
    return tuple(plants)


def family(j: int) -> demo.Family:
    """The j-th probe family: its effect (in noise sigmas) on resid_post at one layer."""
    rng = np.random.default_rng([SEED, 2, j])
    return demo.Family(
        family_id=f"fam-{j:04d}", effect=float(rng.uniform(2.0, 60.0)), layer=int(rng.integers(demo.N_LAYERS)),
        tags=("bench",), template="Probe prompt {a} of family " + f"{j:04d}.",
    )


def _started(k: int, seed: int) -> dt.datetime:
    return demo.CREATED_AT + dt.timedelta(hours=k, minutes=seed)


def _write_training_runs(root: Path, cohorts: Iterable[int], only: tuple[int, ...] | None = None) -> list[dict]:
    """Simulate and write the runs of ``cohorts`` (indices), each with its seeds (or the
    seeds ``only``); return their planted events."""
    geometry, runs, planted = [], [], []
    for k in cohorts:
        c = cohort(k)
        for seed in only or seeds(k):
            run = demo.simulate_training_run(c, seed, SEED)
            cfg = training_config(c, seed)
            geometry.append(demo.geometry_table(run))
            row = demo.training_run_row(c, run, _started(k, seed), 0.02 * float(run.steps[-1]))
            row = row.set_column(row.schema.get_field_index("config_json"), "config_json", pa.array([canonical_json(cfg)]))
            runs.append(row.set_column(row.schema.get_field_index("config_hash"), "config_hash", pa.array([config_hash(cfg)])))
            planted += [{**e, "cohort_id": config_hash(cfg)} for e in run.events]
    _write(root, runs, geometry)
    return planted


def _write_probe_runs(root: Path, families: tuple[demo.Family, ...]) -> None:
    for first in range(0, len(families), CHUNK_COHORTS):
        geometry, runs = [], []
        for j, f in enumerate(families[first:first + CHUNK_COHORTS], start=first):
            for seed in demo.SEEDS:
                run = demo.simulate_probe_run(f, seed, SEED)
                geometry.append(demo.geometry_table(run))
                runs.append(demo.probe_run_row(f, run, _started(j, seed), 3.0 * len(run.steps)))
        _write(root, runs, geometry)


def _write(root: Path, runs: list[pa.Table], geometry: list[pa.Table]) -> None:
    writer.write("runs", pa.concat_tables(runs), lake=root, created_at=demo.CREATED_AT, create=True)
    writer.write("geometry_state", pa.concat_tables(geometry), lake=root, created_at=demo.CREATED_AT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="geometry_state rows, about (default 10000000)")
    parser.add_argument("--lake", type=Path, required=True, help="where to write it (must not exist)")
    args = parser.parse_args()
    if args.lake.exists():
        raise SystemExit(f"{args.lake} exists: a scale lake is written into a new folder")
    layout = write_lake(args.lake.resolve(), args.rows)
    print(f"{layout.training_runs} training runs ({layout.cohorts} cohorts) and {layout.probe_runs} probe runs"
          f" ({layout.families} families): {layout.rows:,} geometry_state rows in {args.lake}")


if __name__ == "__main__":
    main()
