"""Stream input files (Parquet, CSV, JSON Lines) as Arrow tables of at most ``batch_rows`` rows.

Types are left for :func:`warehouse.validate.conform` to cast, so that a bad value is
reported with its row and column. CSV is read as text (an empty field is NULL; list columns
hold JSON arrays); JSON Lines values keep their JSON types.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .contracts import Dataset
from .errors import ValidationError, WarehouseError

PARQUET_SUFFIXES = {".parquet", ".pq"}
CSV_SUFFIXES = {".csv"}
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}


def read_batches(path: Path, contract: Dataset, *, batch_rows: int = 1_000_000) -> Iterator[pa.Table]:
    """Yield ``path``'s rows in batches; the reader is chosen by the file's suffix."""
    if path.is_dir():
        raise WarehouseError(f"input {path}: is a folder, not a file")
    if not path.is_file():
        raise WarehouseError(f"input {path}: no such file")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return _parquet(path, batch_rows)
    if suffix in CSV_SUFFIXES:
        return _csv(path, contract, batch_rows)
    if suffix in JSONL_SUFFIXES:
        return _jsonl(path, contract, batch_rows)
    known = ", ".join(sorted(PARQUET_SUFFIXES | CSV_SUFFIXES | JSONL_SUFFIXES))
    raise WarehouseError(f"input {path}: unknown file type {suffix!r}; expected one of {known}")


def _parquet(path: Path, batch_rows: int) -> Iterator[pa.Table]:
    try:
        file = pq.ParquetFile(path)
        for batch in file.iter_batches(batch_size=batch_rows):
            yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, OSError) as exc:
        raise WarehouseError(f"input {path}: not a readable Parquet file ({exc})") from None


def _csv(path: Path, contract: Dataset, batch_rows: int) -> Iterator[pa.Table]:
    names = contract.column_names
    convert = pcsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    try:
        reader = pcsv.open_csv(path, convert_options=convert, read_options=pcsv.ReadOptions(block_size=1 << 24))
        first_row = 1
        for batch in reader:
            table = _rebatch_lists(pa.Table.from_batches([batch]), contract, path, first_row)
            first_row += table.num_rows
            yield from _slices(table, batch_rows)
    except pa.ArrowInvalid as exc:
        raise WarehouseError(f"input {path}: not a readable CSV file ({exc})") from None


def _rebatch_lists(table: pa.Table, contract: Dataset, path: Path, first_row: int) -> pa.Table:
    """Parse the JSON arrays that CSV list columns hold."""
    for i, name in enumerate(table.column_names):
        if name in contract.column_names and pa.types.is_list(contract.column(name).type):
            values = []
            for offset, text in enumerate(table.column(i).to_pylist()):
                try:
                    values.append(None if text is None else json.loads(text))
                except json.JSONDecodeError:
                    raise ValidationError(
                        "a list column in CSV must hold a JSON array, e.g. [1, 2]",
                        dataset=contract.name, source=str(path), column=name, row=first_row + offset, value=text,
                    ) from None
            table = table.set_column(i, name, column_array(values, contract, path, name, first_row))
    return table


def _jsonl(path: Path, contract: Dataset, batch_rows: int) -> Iterator[pa.Table]:
    with open(path, encoding="utf-8") as f:
        first_row = 1
        while lines := list(islice(f, batch_rows)):
            rows = []
            for offset, line in enumerate(lines):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValidationError(
                        f"not a JSON object ({exc.msg})", dataset=contract.name, source=str(path), row=first_row + offset
                    ) from None
                if not isinstance(row, dict):
                    raise ValidationError(
                        "each line must be a JSON object", dataset=contract.name, source=str(path), row=first_row + offset
                    )
                rows.append(row)
            yield _rows_to_table(rows, contract, path, first_row)
            first_row += len(rows)


def rows_to_table(rows: list[dict], contract: Dataset, source: str = "<batch>") -> pa.Table:
    """A table of row dicts; a value of another type than the rows before it is refused by row."""
    for offset, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValidationError("each row must be a dict", dataset=contract.name, source=source, row=1 + offset)
    return _rows_to_table(rows, contract, source, 1)


def _rows_to_table(rows: list[dict], contract: Dataset, path: Path | str, first_row: int) -> pa.Table:
    names = list(dict.fromkeys(k for row in rows for k in row))
    columns = {n: column_array([row.get(n) for row in rows], contract, path, n, first_row) for n in names}
    return pa.table(columns)


def column_array(values: list, contract: Dataset, path: Path | str, name: str, first_row: int) -> pa.Array:
    """An Arrow array of one input column; a value of the wrong JSON type is reported by row."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        first = next(v for v in values if v is not None)
        for offset, v in enumerate(values):
            if v is not None and type(v) is not type(first) and not _both_numbers(v, first):
                raise ValidationError(
                    f"value of JSON type {type(v).__name__} where earlier rows hold {type(first).__name__}",
                    dataset=contract.name, source=str(path), column=name, row=first_row + offset, value=v,
                ) from None
        raise ValidationError(
            "values cannot form one column", dataset=contract.name, source=str(path), column=name
        ) from None


def _both_numbers(a: object, b: object) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))


def _slices(table: pa.Table, rows: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, rows):
        yield table.slice(start, rows)
