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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

import duckdb
import pyarrow.parquet as pq

from .. import contracts, lake as lk
from ..duck import memory_bytes, work_connection
from ..scan import select_dataset
from ..sql import quote_identifier as qi, quote_literal as ql
from .executors import LocalExecutor
from .kinds import WHOLE, Batch, merged_blocks
from .plan import ModelPlan
from .project import ADDED_RUNS, ENGINE_COLUMNS, PREVIOUS_OUTPUT
from .spec import ModelError

if TYPE_CHECKING:
    from .executors import Executor

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


def output_sql(plan: ModelPlan, sql: str, created_at: dt.datetime) -> str:
    """The model's query ``sql`` (its full or its merging SQL) wrapped to give the target's
    columns, types and engine columns."""
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
    return f"SELECT\n    {select}\nFROM (\n{sql}\n) AS model_output"


def model_sql(plan: ModelPlan) -> str:
    return plan.model.additions_sql if plan.added else plan.model.sql


@dataclass(frozen=True)
class Work:
    """What every batch of one model's computation shares: the statements that prepare a
    connection (variables), the output queries (full, and merging for a merging model) and
    whether its output is partitioned by run. An executor runs it batch by batch, here or
    on workers."""

    model: str
    setup: tuple[str, ...]
    query: str
    merge_query: str | None
    by_run: bool

    def query_for(self, batch: Batch) -> str:
        """The query computing ``batch``: merging when it adds runs."""
        return self.query if batch.added is None else self.merge_query


def compute(
    plan: ModelPlan, staging: Path, excluded: set[Path],
    progress: Callable[[Progress], None] | None = None, versions: Mapping[str, str] | None = None,
    say: Callable[[str], None] = print, executor: Executor | None = None,
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
    of each batch written. ``executor`` runs the batches (:mod:`.executors`; default: here, one
    after another); a model computed in one batch always runs here. A pairwise model's blocks
    of pairs (:func:`~.kinds.pair_blocks`) are merged, once all are written, by one more
    batch per group.
    """
    spec = plan.model.spec
    units = sorted(plan.build)
    out = staging / "out"
    out.mkdir(parents=True, exist_ok=True)
    created = dt.datetime.now(dt.timezone.utc)
    merging = plan.model.additions_sql
    work = Work(spec.where(), tuple(_variables(plan, versions or {})), output_sql(plan, plan.model.sql, created),
                output_sql(plan, merging, created) if merging else None, "run_id" in spec.contract.partition_by)
    executor = executor or LocalExecutor()
    try:
        steps = _plan_batches(plan, work, units, staging, excluded, executor.slots)
        split_groups = {step.block_of for step in steps} - {None}
        track = Tracker(plan, len(steps) + len(split_groups), progress, say)
        _run(executor, work, steps, lambda b: batch_views(plan, b, excluded), out, track)
        if split_groups:
            # the blocks' output leaves ``out`` for a folder laid out as the target's analysis
            # folder (its path gives analysis_id), which the merging steps read
            blocks = staging / "blocks" / f"analysis_id={plan.analysis_id}"
            blocks.mkdir(parents=True)
            merges = merged_blocks(steps, out, blocks)
            _run(executor, work, merges, lambda b: batch_views(plan, b, excluded), out, track)
    except duckdb.Error as exc:
        raise ModelError(f"{spec.where()}: the SQL failed: {exc}\n--- rendered SQL ---\n{model_sql(plan)}") from None
    return _staged_units(out, units, work.by_run)


def _plan_batches(plan: ModelPlan, work: Work, units: list[str], staging: Path, excluded: set[Path],
                  spread: int) -> list[Batch]:
    """The model's batches, for ``spread`` workers; the output types checked against the
    contract on the first."""
    con = work_connection(staging / "spill")
    try:
        for statement in work.setup:
            con.execute(statement)
        spec = plan.model.spec
        steps = spec.kind.batches(plan, units, con, excluded, batch_bytes(con, spec.batch_divisor), spread)
        con.execute(batch_views(plan, steps[0], excluded))
        _check_types(plan, con)
    finally:
        con.close()
    return steps


def _run(executor: Executor, work: Work, steps: list[Batch], views: Callable[[Batch], str], out: Path,
         track: Tracker) -> None:
    """``steps`` by the executor; one step, here."""
    (executor if len(steps) > 1 else LocalExecutor()).run(work, steps, views, out, track)


class Tracker:
    """A computation's batches as they finish: progress, and the batches split when one ran
    out of memory (every executor splits alike)."""

    def __init__(self, plan: ModelPlan, total: int, progress: Callable[[Progress], None] | None,
                 say: Callable[[str], None]) -> None:
        self.plan, self.total, self.progress, self.say = plan, total, progress, say
        self.done, self.rows, self.began = 0, 0, time.perf_counter()

    def finished(self, rows: int) -> None:
        self.done += 1
        self.rows += rows
        if self.progress:
            self.progress(Progress(self.plan, self.done, self.total, self.rows, time.perf_counter() - self.began))

    def split(self, batch: Batch, queue: list[Batch], by_run: bool, error: str, running: int = 0) -> list[Batch]:
        """``batch`` (out of memory) and the ``queue`` not yet begun, in batches of at most
        half its runs; raises when no smaller batch computes it. ``running``: other batches
        being computed meanwhile (by workers)."""
        if batch.filters or len(batch.units) < 2 or not by_run:
            raise duckdb.OutOfMemoryException(error)
        # the batches after it were sized alike: none is given more runs than now fit
        most = len(batch.units) // 2
        smaller = [part for step in [batch, *queue] for part in _at_most(step, most)]
        self.total = self.done + len(smaller) + running
        kind = self.plan.model.spec.kind
        self.say(f"  {self.plan.name}: {len(batch.units)} {kind.unit_word(len(batch.units))} together ran out of"
                 f" memory ({error.splitlines()[0]}); computing them and the batches after them in batches"
                 f" of at most {most} {kind.unit_word(most)}")
        return smaller


def batch_views(plan: ModelPlan, batch: Batch, excluded: set[Path]) -> str:
    """Each input as a view over the batch's files (less ``excluded``), under its name in the
    SQL; for the merging SQL, the previous output and the added runs too."""
    views = []
    for name, inp in plan.inputs.items():
        # exact: every file left has the contract's columns (screened, vouched for or ours)
        select = select_dataset(inp.dataset, [f for f in batch.files(inp) if f not in excluded], exact=True)
        if name in batch.filters:
            select = f"SELECT * FROM ({select}) WHERE {batch.filters[name]}"
        views.append(f"CREATE OR REPLACE VIEW {qi(name)} AS {select};")
    if batch.added is not None:
        views += _merge_views(plan, batch)
    return "\n".join(views)


def copy_batch(con: duckdb.DuckDBPyConnection, work: Work, batch: Batch, out: Path, index: int) -> int:
    """Write the ``index``-th batch's output into ``out``, its rows: run folders beside the
    earlier batches' ones (partitioned by run), else a file of its own."""
    query = work.query_for(batch)
    if work.by_run:
        append = ", APPEND" if out.is_dir() and any(out.iterdir()) else ""
        written = con.execute(f"COPY (\n{query}\n) TO {ql(str(out))} (FORMAT parquet, COMPRESSION zstd,"
                              f" PARTITION_BY (run_id){append})")
    else:
        out.mkdir(parents=True, exist_ok=True)
        written = con.execute(f"COPY (\n{query}\n) TO {ql(str(out / batch.output_name(index)))}"
                              " (FORMAT parquet, COMPRESSION zstd)")
    return written.fetchone()[0]


def remove_runs(batch: Batch, out: Path) -> None:
    """Remove the run folders a batch's failed ``COPY`` may have begun (each run is in one
    batch only)."""
    units = set(batch.units)
    for folder in out.glob("run_id=*"):
        if lk.partition_value(folder) in units:
            shutil.rmtree(folder)


def _at_most(batch: Batch, most: int) -> list[Batch]:
    """``batch`` as consecutive batches of at most ``most`` runs."""
    return [Batch(batch.units[i:i + most]) for i in range(0, len(batch.units), most)]


def _variables(plan: ModelPlan, versions: Mapping[str, str]) -> list[str]:
    # Ids the SQL may need (e.g. inside stable hashes) but cannot hold as text: they
    # derive from its fingerprint. It reads them with getvariable('analysis_id').
    # The version of the model behind each input analysis, which the SQL cannot know
    # either: getvariable('input_versions')['events_candidates'] (NULL for an input
    # without one). Not part of the SQL, so an upstream version leaves the logic as it is.
    pairs = ", ".join(f"{ql(d)}: {ql(v)}" for d, v in versions.items())
    return [f"SET VARIABLE analysis_id = {ql(plan.analysis_id)}",
            f"SET VARIABLE input_versions = MAP {{{pairs}}}::MAP(VARCHAR, VARCHAR)"]


def _merge_views(plan: ModelPlan, batch: Batch) -> list[str]:
    """The views the merging SQL reads besides its inputs: the output it merges into and the
    runs it adds (either may be empty: blocks of pairs, and their merge)."""
    previous = select_dataset(plan.model.spec.contract, list(batch.previous), exact=True)
    runs = ", ".join(f"({ql(r)})" for r in sorted(batch.added))
    added = f"SELECT run_id FROM (VALUES {runs}) AS added(run_id)" if runs else "SELECT NULL::VARCHAR AS run_id WHERE false"
    return [f"CREATE OR REPLACE VIEW {PREVIOUS_OUTPUT} AS {previous};",
            f"CREATE OR REPLACE VIEW {ADDED_RUNS} AS {added};"]


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
