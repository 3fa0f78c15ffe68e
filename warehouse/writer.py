"""The lake writer: validate a batch against its contract, then publish it atomically.

A write goes through three phases, and nothing reaches the lake before the last:

1. *Stage*: each input batch is conformed to the contract (:func:`validate.conform`) and
   written to a private staging folder under ``<lake>/.staging/``.
2. *Check keys*: DuckDB looks for primary keys repeated inside the batch, and compares the
   batch with the rows already in the partitions it touches. A key already present with the
   same values is skipped (so writing the same batch twice is a no-op); a key present with
   other values is refused, naming the column that differs.
3. *Publish*: the new rows, sorted by partition and key, are written one partition at a time
   as zstd Parquet to a file in the staging folder and renamed into the target folder under
   the hash of their bytes (:func:`lake.publish`).

A write that fails for any reason (a refused value, a full disk, a folder it may not
write) removes what it staged and leaves every published file as it was. A writer killed
outright leaves its staging folder behind, which the next writer or build removes.

Inputs of any size are streamed batch by batch: memory holds one batch, and DuckDB sorts
and compares out of core.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import checked, contracts, lake as lk
from .contracts import Dataset
from .duck import work_connection
from .errors import ValidationError, WarehouseError
from .readers import read_batches, rows_to_table
from .sql import quote_identifier as qi, quote_literal as ql
from .validate import conform

ROW = "__row"  # input row number carried through staging for messages
PUBLISH_BATCH_ROWS = 256_000


@dataclass
class WriteResult:
    """What one write did: rows written, rows skipped as already present, files published."""

    dataset: str
    source: str
    rows_written: int = 0
    rows_skipped: int = 0
    files: list[Path] = field(default_factory=list)


Data = pa.Table | pa.RecordBatch | Sequence[dict] | Iterable[pa.RecordBatch]


def write(
    dataset: str,
    data: Data,
    *,
    lake: str | Path | None = None,
    source: str = "<batch>",
    created_at: dt.datetime | None = None,
) -> WriteResult:
    """Validate ``data`` against ``dataset``'s contract and write it to the lake.

    ``data`` is an Arrow table or record batch, a list of row dicts, or an iterable of
    record batches (streamed). Raises :class:`~warehouse.errors.ValidationError` and writes
    nothing if any row breaks the contract.
    """
    contract = contracts.get(dataset)
    return _write_batches(contract, _as_batches(data, contract, source), lk.lake_root(lake), source, created_at)


def ingest_files(
    dataset: str,
    paths: Sequence[str | Path],
    *,
    lake: str | Path | None = None,
    batch_rows: int = 1_000_000,
) -> list[WriteResult]:
    """Write Parquet, CSV or JSON Lines files to ``dataset``, one validated write per file.

    Each file is validated completely before any of its rows is written. Files are written
    in order: the first file that fails stops the ingest with an error naming it, and the
    files before it stay written.
    """
    contract = contracts.get(dataset)
    root = lk.lake_root(lake)
    created_at = dt.datetime.now(dt.timezone.utc)
    results = []
    for path in paths:
        batches = read_batches(Path(path), contract, batch_rows=batch_rows)
        results.append(_write_batches(contract, batches, root, str(path), created_at, refuse_empty=True))
    return results


def _as_batches(data: Data, contract: Dataset, source: str) -> Iterator[pa.Table]:
    if isinstance(data, pa.Table):
        yield data
    elif isinstance(data, pa.RecordBatch):
        yield pa.Table.from_batches([data])
    elif isinstance(data, Sequence) and not (len(data) and isinstance(data[0], (pa.RecordBatch, pa.Table))):
        yield rows_to_table(list(data), contract, source)
    else:
        for batch in data:
            yield batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


def _write_batches(
    contract: Dataset,
    batches: Iterable[pa.Table],
    root: Path,
    source: str,
    created_at: dt.datetime | None,
    *,
    refuse_empty: bool = False,
) -> WriteResult:
    created_at = created_at or dt.datetime.now(dt.timezone.utc)
    published: list[Path] = []  # kept outside the block: a failure reports what was published
    try:
        lk.reclaim_stale(root)
        with lk.scratch_dir(root) as staging:
            staged = _stage(contract, batches, staging, source, created_at)
            if not staged and refuse_empty:
                raise ValidationError("the input holds no rows", dataset=contract.name, source=source)
            result = WriteResult(contract.name, source)
            if staged:
                with lk.dataset_lock(root, contract), work_connection(staging / "spill") as con:
                    _register_staged(con, contract, staging)
                    _refuse_duplicates(con, contract, source)
                    result.rows_skipped = _register_new_rows(con, contract, root, source)
                    result.rows_written, result.files = _publish(con, contract, root, staging, published)
            return result
    except (OSError, duckdb.IOException, duckdb.OutOfMemoryException) as exc:
        raise _write_failed(contract, source, root, exc, published) from exc


def _write_failed(
    contract: Dataset, source: str, root: Path, exc: BaseException, published: list[Path]
) -> WarehouseError:
    """The error of a write the file system refused (no space left, no permission)."""
    what = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
    where = getattr(exc, "filename", None) or root
    done = (
        f"{len(published)} partition file(s) were published before the failure, each complete; "
        "writing the same input again skips their rows"
        if published else "nothing was written"
    )
    return WarehouseError(f"dataset {contract.name}, input {source}: cannot write to the lake at {where}: {what}; {done}")


def _stage(contract: Dataset, batches: Iterable[pa.Table], staging: Path, source: str, created_at) -> bool:
    schema = contract.schema.append(pa.field(ROW, pa.int64(), nullable=False))
    first_row = 1
    dictionary = _dictionary_columns(schema)
    with pq.ParquetWriter(staging / "input.parquet", schema, compression="lz4", use_dictionary=dictionary) as out:
        for batch in batches:
            table = conform(contract, batch, source=source, first_row=first_row, created_at=created_at)
            rows = pa.array(range(first_row, first_row + table.num_rows), pa.int64())
            out.write_table(table.append_column(schema.field(ROW), rows))
            first_row += table.num_rows
    return first_row > 1


def _register_staged(con: duckdb.DuckDBPyConnection, contract: Dataset, staging: Path) -> None:
    con.execute(f"CREATE VIEW staged AS SELECT * FROM read_parquet({ql(str(staging / 'input.parquet'))})")


def _row_identity(contract: Dataset) -> tuple[str, ...]:
    """The partition columns and the primary key: what identifies a row in the lake."""
    return tuple(dict.fromkeys(contract.partition_by + contract.primary_key))


def _key_match(contract: Dataset, left: str, right: str) -> str:
    # NULL is a value in a key (a pooled row has sample_id NULL), hence IS NOT DISTINCT FROM.
    return " AND ".join(f"{left}.{qi(k)} IS NOT DISTINCT FROM {right}.{qi(k)}" for k in _row_identity(contract))


def _refuse_duplicates(con: duckdb.DuckDBPyConnection, contract: Dataset, source: str) -> None:
    # A key is unique within its partition: probe_summaries' key leaves out its analysis_id folder.
    keys = ", ".join(qi(k) for k in _row_identity(contract))
    # The grouping keeps only min(row): collecting every group's rows costs a third more.
    dup = _first_row(
        con,
        f"SELECT {keys}, min({ROW}) FROM staged GROUP BY {keys} HAVING count(*) > 1 ORDER BY min({ROW}) LIMIT 1",
    )
    if dup:
        identity = dict(zip(_row_identity(contract), dup[:-1]))
        key = {k: identity[k] for k in contract.primary_key + tuple(k for k in identity if k not in contract.primary_key)}
        first = dup[-1]
        (second,) = _first_row(
            con,
            f"SELECT min(s.{ROW}) FROM staged s, (SELECT * FROM staged WHERE {ROW} = {int(first)}) d"
            f" WHERE {_key_match(contract, 's', 'd')} AND s.{ROW} > {int(first)}",
        )
        raise ValidationError(
            f"duplicate primary key: rows {first} and {second} have the same key",
            dataset=contract.name, source=source, column=", ".join(contract.primary_key), row=second, value=key,
        )


def _register_new_rows(con: duckdb.DuckDBPyConnection, contract: Dataset, root: Path, source: str) -> int:
    """Create the view ``new_rows`` (staged rows not yet in the lake); return how many were skipped."""
    existing = _existing_files(con, contract, root)
    if not existing:
        con.execute("CREATE VIEW new_rows AS SELECT * FROM staged")
        return 0
    try:
        return _compare_with_lake(con, contract, existing, source)
    except (duckdb.InvalidInputException, duckdb.IOException) as exc:  # a lake file DuckDB cannot read
        raise WarehouseError(
            f"dataset {contract.name}, input {source}: cannot compare with the rows already in the partitions it "
            f"touches, since a file there is unreadable ({str(exc).splitlines()[0]}); nothing was written. "
            "`warehouse check` lists the lake's problems"
        ) from None


def _compare_with_lake(con: duckdb.DuckDBPyConnection, contract: Dataset, existing: list[Path], source: str) -> int:
    con.execute(f"CREATE VIEW existing AS {_read_lake_files(contract, existing)}")
    compared = [c.name for c in contract.all_columns if c.name not in contract.primary_key and c.name != "created_at_utc"]
    differs = " OR ".join(f"s.{qi(c)} IS DISTINCT FROM e.{qi(c)}" for c in compared) or "false"
    first_diff = "CASE " + " ".join(f"WHEN s.{qi(c)} IS DISTINCT FROM e.{qi(c)} THEN {ql(c)}" for c in compared) + " END"
    clash = _first_row(
        con,
        f"SELECT s.{ROW}, {first_diff}, e.__file FROM staged s JOIN existing e ON {_key_match(contract, 's', 'e')}"
        f" WHERE {differs} ORDER BY s.{ROW} LIMIT 1",
    )
    if clash:
        row, column, path = clash
        new, old = _first_row(
            con,
            f"SELECT s.{qi(column)}, e.{qi(column)} FROM staged s JOIN existing e ON {_key_match(contract, 's', 'e')}"
            f" WHERE s.{ROW} = {int(row)} AND e.__file = {ql(path)} LIMIT 1",
        )
        raise ValidationError(
            f"primary key already in the lake with a different {column}: {old!r} in {path}; "
            f"{contract.kind} rows are immutable",
            dataset=contract.name, source=source, column=column, row=row, value=new,
        )
    con.execute(
        f"CREATE TABLE new_rows AS SELECT s.* FROM staged s ANTI JOIN existing e ON {_key_match(contract, 's', 'e')}"
    )
    staged, new = _first_row(con, "SELECT (SELECT count(*) FROM staged), (SELECT count(*) FROM new_rows)")
    return staged - new


def _first_row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple | None:
    """The first row of a query, fetched completely (DuckDB 2 refuses further work on a
    connection while an ``execute()`` result is only partly fetched)."""
    rows = con.execute(sql).fetchall()
    return rows[0] if rows else None


def _existing_files(con: duckdb.DuckDBPyConnection, contract: Dataset, root: Path) -> list[Path]:
    """The lake's files in the partitions this batch touches."""
    if not contract.partition_by:
        return lk.data_files(root, contract)
    cols = ", ".join(qi(c) for c in contract.partition_by)
    files: list[Path] = []
    for values in con.execute(f"SELECT DISTINCT {cols} FROM staged").fetchall():
        folder = lk.partition_dir(root, contract, dict(zip(contract.partition_by, values)))
        if folder.is_dir():
            files += sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(".") and not p.is_dir())
    return files


def _read_lake_files(contract: Dataset, files: list[Path]) -> str:
    """SQL reading published files with the contract's types and their folder's partition values."""
    paths = "[" + ", ".join(ql(str(p)) for p in files) + "]"
    hive_types = "{" + ", ".join(f"{ql(k)}: 'VARCHAR'" for k in contract.partition_by) + "}"
    hive = f", hive_partitioning = true, hive_types = {hive_types}" if contract.partition_by else ", hive_partitioning = false"
    return (
        f"SELECT *, filename AS __file FROM read_parquet({paths}, filename = true, union_by_name = true{hive})"
    )


def _publish(
    con: duckdb.DuckDBPyConnection, contract: Dataset, root: Path, staging: Path, published: list[Path]
) -> tuple[int, list[Path]]:
    order = ", ".join(qi(c) for c in contract.partition_by + contract.primary_key)
    columns = ", ".join(qi(c.name) for c in contract.file_columns)
    parts = ", ".join(qi(c) for c in contract.partition_by)
    select = f"SELECT {parts + ', ' if parts else ''}{columns} FROM new_rows ORDER BY {order}"
    reader = con.sql(select).to_arrow_reader(PUBLISH_BATCH_ROWS)
    file_schema = pa.schema([c.field for c in contract.file_columns])
    rows, files = 0, []
    writer = _PartitionWriter(contract, root, file_schema, staging, published)
    try:
        for batch in reader:
            rows += batch.num_rows
            writer.write(batch)
        files = writer.close()
    except BaseException:
        writer.abort()
        raise
    checked.vouch(root, contract, writer.before)
    return rows, files


class _PartitionWriter:
    """Writes a stream sorted by partition into one published file per partition.

    Each file is written in the staging folder and renamed into its partition when complete.
    """

    def __init__(self, contract: Dataset, root: Path, schema: pa.Schema, staging: Path, published: list[Path]) -> None:
        self.contract, self.root, self.schema, self.staging = contract, root, schema, staging
        self.dictionary = _dictionary_columns(schema)
        self.key: tuple | None = None
        self.folder: Path | None = None
        self.temp: Path | None = None
        self.out: pq.ParquetWriter | None = None
        self.published = published
        self.before: dict[Path, str | None] = {}  # each folder's stamp before this write

    def write(self, batch: pa.RecordBatch) -> None:
        table = pa.Table.from_batches([batch])
        for key, part in _split_by(table, self.contract.partition_by):
            if key != self.key:
                self._finish()
                self._start(key)
            self.out.write_table(part.select(self.schema.names).cast(self.schema))

    def _start(self, key: tuple) -> None:
        self.key = key
        self.folder = lk.partition_dir(self.root, self.contract, dict(zip(self.contract.partition_by, key)))
        self.before[self.folder] = checked.folder_stamp(self.contract, self.folder)
        self.temp = lk.temp_path(self.staging)
        self.out = pq.ParquetWriter(self.temp, self.schema, compression="zstd", use_dictionary=self.dictionary)

    def _finish(self) -> None:
        if self.out is not None:
            self.out.close()
            self.published.append(lk.publish(self.temp, self.folder))
            self.out = None

    def close(self) -> list[Path]:
        self._finish()
        return self.published

    def abort(self) -> None:
        if self.out is not None:
            self.out.close()
            lk.remove_quietly([self.temp])
            self.out = None


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """The Parquet columns worth dictionary encoding: all but floats.

    Float descriptors rarely repeat: their dictionary is built, overflows and is dropped,
    which made writing about 2.5x slower and the zstd files about a third larger.
    """
    paths = []
    for f in schema:
        type_, path = f.type, f.name
        while pa.types.is_list(type_):
            type_, path = type_.value_type, f"{path}.list.element"
        if not pa.types.is_floating(type_):
            paths.append(path)
    return paths


def _split_by(table: pa.Table, columns: tuple[str, ...]) -> Iterator[tuple[tuple, pa.Table]]:
    """Consecutive runs of equal partition values in a sorted table."""
    if not columns:
        yield (), table
        return
    n = table.num_rows
    changed = np.zeros(max(n - 1, 0), dtype=bool)
    for c in columns:
        values = table.column(c)
        changed |= pc.not_equal(values.slice(1), values.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    bounds = [0, *(np.flatnonzero(changed) + 1).tolist(), n]
    for start, end in zip(bounds, bounds[1:]):
        key = tuple(table.column(c)[start].as_py() for c in columns)
        yield key, table.slice(start, end - start)
