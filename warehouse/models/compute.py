"""Computing: a model's SQL run in its own DuckDB connection over exactly the input files
it needs, batch by batch, written by ``COPY`` into a staging folder inside the lake.

Nothing here touches published data: what a failed computation leaves in staging is
discarded with it.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import duckdb
import pyarrow.parquet as pq

from .. import contracts, lake as lk
from ..duck import memory_bytes, work_connection
from ..scan import select_dataset
from ..sql import quote_identifier as qi, quote_literal as ql
from .kinds import WHOLE, Batch
from .plan import ModelPlan
from .project import ADDED_RUNS, ENGINE_COLUMNS, PREVIOUS_OUTPUT
from .spec import ModelError

# What a computation staged per unit: its rows and the files that hold them.
Staged = dict[str, "StagedUnit"]


@dataclass(frozen=True)
class StagedUnit:
    rows: int
    files: list[Path]


@dataclass(frozen=True)
class Progress:
    """How far a model's computation is: ``done`` of its ``total`` batches written, the rows
    they wrote and the seconds since the first began."""

    plan: ModelPlan
    done: int
    total: int
    rows: int
    seconds: float

    def describe(self) -> str:
        """``batch 3/10, 52,000 rows/s, 0:21 left`` (the time left at the batches' mean pace)."""
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        left = round(self.seconds / self.done * (self.total - self.done))
        return f"batch {self.done}/{self.total}, {rate:,.0f} rows/s, {left // 60}:{left % 60:02d} left"


def output_sql(plan: ModelPlan, created_at: dt.datetime) -> str:
    """The model's query (its merging variant when the plan adds runs) wrapped to give the
    target's columns, types and engine columns."""
    contract = plan.model.spec.contract
    engine = {
        "analysis_id": ql(plan.analysis_id),
        "schema_version": ql(contract.schema_version),
        "created_at_utc": f"{ql(created_at.isoformat())}::TIMESTAMPTZ",
    }
    columns = [c for c in contract.all_columns if c.name not in contract.partition_by or c.name == "run_id"]
    select = ",\n    ".join(
        f"CAST({engine[c.name] if c.name in ENGINE_COLUMNS else 'model_output.' + qi(c.name)}"
        f" AS {contracts.duckdb_type(c.type)}) AS {qi(c.name)}"
        for c in columns
    )
    return f"SELECT\n    {select}\nFROM (\n{model_sql(plan)}\n) AS model_output"


def model_sql(plan: ModelPlan) -> str:
    return plan.model.additions_sql if plan.added else plan.model.sql


def compute(
    plan: ModelPlan, staging: Path, excluded: set[Path],
    progress: Callable[[Progress], None] | None = None, versions: Mapping[str, str] | None = None,
    say: Callable[[str], None] = print,
) -> Staged:
    """Run the model for the plan's units into ``staging/out`` without the ``excluded``
    input files; rows and files per unit. ``versions``: the model version behind each input
    analysis, for the SQL to read. ``say`` hears of a batch split because it ran out of memory.

    The model's kind splits the work into batches (:meth:`~.kinds.Kind.batches`) whose
    input files stay within a share of DuckDB's memory limit (:func:`batch_bytes`) where it
    can: runs of a per_run model, groups of a grouped one. So the memory a build needs is
    bounded by the batch, not the lake. A batch of n runs that runs out of memory all the same
    is computed again, with every batch after it, in batches of at most n // 2 runs (a wrong
    estimate is learned once, not paid again by each batch sized like it). ``progress`` hears
    of each batch written.
    """
    spec = plan.model.spec
    units = sorted(plan.build)
    out = staging / "out"
    by_run = "run_id" in spec.contract.partition_by
    out.mkdir(parents=True, exist_ok=True)
    con = work_connection(staging / "spill")
    try:
        _set_variables(con, plan, versions or {})
        query = output_sql(plan, dt.datetime.now(dt.timezone.utc))
        if plan.added:
            _create_previous(plan, con)
        steps = deque(spec.kind.batches(plan, units, con, excluded, batch_bytes(con, spec.batch_divisor)))
        began, rows, done, total = time.perf_counter(), 0, 0, len(steps)
        while steps:
            batch = steps.popleft()
            _input_views(con, plan, batch, excluded)
            if done == 0:
                _check_types(plan, con)
            try:
                written = _copy(con, query, out, by_run, done)
            except duckdb.OutOfMemoryException as exc:
                if batch.filters or len(batch.units) < 2 or not by_run:  # no smaller batch computes it
                    raise
                # the batches after it were sized alike: none is given more runs than now fit
                most = len(batch.units) // 2
                _remove_runs(batch, out)
                steps = deque(smaller for step in [batch, *steps] for smaller in _at_most(step, most))
                total = done + len(steps)
                say(f"  {spec.name}: {len(batch.units)} {spec.kind.unit_word(len(batch.units))} together ran out of"
                    f" memory ({str(exc).splitlines()[0]}); computing them and the batches after them in batches"
                    f" of at most {most} {spec.kind.unit_word(most)}")
                continue
            done += 1
            if progress:
                rows += written.fetchone()[0]
                progress(Progress(plan, done, total, rows, time.perf_counter() - began))
    except duckdb.Error as exc:
        raise ModelError(f"{spec.where()}: the SQL failed: {exc}\n--- rendered SQL ---\n{model_sql(plan)}") from None
    finally:
        con.close()
    return _staged_units(out, units, by_run)


def _input_views(con: duckdb.DuckDBPyConnection, plan: ModelPlan, batch: Batch, excluded: set[Path]) -> None:
    """Each input as a view over the batch's files (less ``excluded``), under its name in the SQL."""
    for name, inp in plan.inputs.items():
        # exact: every file left has the contract's columns (screened, vouched for or ours)
        files = [f for f in inp.files_for(batch.units) if f not in excluded]
        select = select_dataset(inp.dataset, files, exact=True)
        if name in batch.filters:
            select = f"SELECT * FROM ({select}) WHERE {batch.filters[name]}"
        con.execute(f"CREATE OR REPLACE VIEW {qi(name)} AS {select}")


def _copy(con: duckdb.DuckDBPyConnection, query: str, out: Path, by_run: bool, done: int) -> duckdb.DuckDBPyConnection:
    """Write one batch's output into ``out``: run folders beside the earlier batches' ones
    (partitioned by run), else a file of its own."""
    if by_run:
        append = ", APPEND" if any(out.iterdir()) else ""
        return con.execute(f"COPY (\n{query}\n) TO {ql(str(out))} (FORMAT parquet, COMPRESSION zstd,"
                           f" PARTITION_BY (run_id){append})")
    return con.execute(f"COPY (\n{query}\n) TO {ql(str(out / f'data-{done}.parquet'))} (FORMAT parquet, COMPRESSION zstd)")


def _remove_runs(batch: Batch, out: Path) -> None:
    """Remove the run folders a batch's failed ``COPY`` may have begun (each run is in one
    batch only)."""
    units = set(batch.units)
    for folder in out.glob("run_id=*"):
        if lk.partition_value(folder) in units:
            shutil.rmtree(folder)


def _at_most(batch: Batch, most: int) -> list[Batch]:
    """``batch`` as consecutive batches of at most ``most`` runs."""
    return [Batch(batch.units[i:i + most]) for i in range(0, len(batch.units), most)]


def _set_variables(con: duckdb.DuckDBPyConnection, plan: ModelPlan, versions: Mapping[str, str]) -> None:
    # Ids the SQL may need (e.g. inside stable hashes) but cannot hold as text: they
    # derive from its fingerprint. It reads them with getvariable('analysis_id').
    con.execute(f"SET VARIABLE analysis_id = {ql(plan.analysis_id)}")
    # The version of the model behind each input analysis, which the SQL cannot know
    # either: getvariable('input_versions')['events_candidates'] (NULL for an input
    # without one). Not part of the SQL, so an upstream version leaves the logic as it is.
    pairs = ", ".join(f"{ql(d)}: {ql(v)}" for d, v in versions.items())
    con.execute(f"SET VARIABLE input_versions = MAP {{{pairs}}}::MAP(VARCHAR, VARCHAR)")


def _create_previous(plan: ModelPlan, con: duckdb.DuckDBPyConnection) -> None:
    """The views a merging build reads besides its inputs: its last output and the new runs."""
    previous = select_dataset(plan.model.spec.contract, list(plan.previous_files), exact=True)
    con.execute(f"CREATE VIEW {PREVIOUS_OUTPUT} AS {previous}")
    runs = ", ".join(ql(r) for r in plan.added)
    con.execute(f"CREATE VIEW {ADDED_RUNS} AS SELECT CAST(unnest([{runs}]) AS VARCHAR) AS run_id")


def batch_bytes(con: duckdb.DuckDBPyConnection, divisor: int = 32) -> int:
    """The input bytes (Parquet on disk) a batch of runs may read: ``$SQUIGGLE_BATCH_BYTES``,
    else the connection's memory limit / ``divisor`` (the model's ``batch_divisor``, 32 by
    default). Decoded, sorted and widened by a window over every lag a model needs, a batch's
    input takes up to about 16 times its size on disk."""
    if os.environ.get("SQUIGGLE_BATCH_BYTES"):
        value = os.environ["SQUIGGLE_BATCH_BYTES"]
        if not value.isdigit() or int(value) < 1:
            raise ModelError(f"SQUIGGLE_BATCH_BYTES={value!r} is not a number of bytes (1 or more)")
        return int(value)
    return memory_bytes(con.execute("SELECT current_setting('memory_limit')").fetchone()[0]) // divisor


def _check_types(plan: ModelPlan, con: duckdb.DuckDBPyConnection) -> None:
    """Compare the model's own output types with the contract before anything is written."""
    described = con.execute(f"DESCRIBE {model_sql(plan)}").fetchall()
    contract = plan.model.spec.contract
    for name, type_, *_ in described:
        expected = contracts.duckdb_type(contract.column(name).type)
        if type_ != expected:
            raise ModelError(
                f"{plan.model.spec.where()}: output column {name} is {type_}, the {contract.name} contract says {expected}"
            )


def _staged_units(out: Path, units: list[str], by_run: bool) -> Staged:
    staged = {u: StagedUnit(0, []) for u in units}
    if not by_run:
        staged[WHOLE] = _rows_and_files(sorted(out.glob("*.parquet")))
        return staged
    for folder in out.glob("run_id=*"):
        staged[lk.partition_value(folder)] = _rows_and_files(sorted(folder.glob("*.parquet")))
    if WHOLE in units:  # a full model partitioned by run: its runs make up its one unit
        staged = {WHOLE: StagedUnit(sum(s.rows for s in staged.values()), [f for s in staged.values() for f in s.files])}
    return staged


def _rows_and_files(files: list[Path]) -> StagedUnit:
    """Rows of staged output files, and the files that hold rows (an empty file is never published)."""
    counts = [(pq.ParquetFile(f).metadata.num_rows, f) for f in files]
    return StagedUnit(sum(n for n, _ in counts), [f for n, f in counts if n])
