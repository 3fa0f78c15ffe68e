"""A dataset's columns for a person about to write one: ``warehouse schema DATASET``.

:func:`describe` lists the columns from the contract (type, whether an input must give it,
meaning); :func:`write_template` writes an empty CSV or Parquet file holding exactly the
columns an input gives (every column but those the writer fills in), ready to be filled
and ingested.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .contracts import WRITER_FILLED, Column, Dataset
from .docs import required_cell, type_name
from .errors import WarehouseError

TEMPLATE_FORMATS = ("csv", "parquet")


def input_columns(dataset: Dataset) -> list[Column]:
    """The columns an input gives, in contract order: all but those the writer fills in."""
    return [c for c in dataset.all_columns if c.name not in WRITER_FILLED]


def describe(dataset: Dataset) -> str:
    """A plain-text table of the dataset's columns, with its key and partitioning."""
    partitions = ", ".join(dataset.partition_by) or "not partitioned"
    head = [
        f"{dataset.name} ({dataset.kind}, schema {dataset.schema_version}): {dataset.doc}",
        f"primary key: {', '.join(dataset.primary_key)}; partitioned by: {partitions}",
        "",
    ]
    rows = [("column", "type", "required", "meaning")]
    for c in dataset.all_columns:
        meaning = " ".join(c.doc.split())
        if c.enum:
            meaning = f"{meaning} One of: {', '.join(c.enum)}.".strip()
        rows.append((c.name, type_name(c.type), required_cell(c), meaning))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    foot = [
        "",
        "required: every row must give the column, not NULL; other columns may be left out or empty.",
        f"`warehouse schema {dataset.name} --template csv` writes an empty file with these columns to fill.",
    ]
    return "\n".join(head + [line.rstrip() for line in lines] + foot)


def write_template(dataset: Dataset, fmt: str, output: str | os.PathLike | None = None) -> Path:
    """Write an empty ``fmt`` file (a CSV header, or a zero-row Parquet file with the
    contract's types) with the dataset's input columns; return its path.

    An existing file is never overwritten.
    """
    if fmt not in TEMPLATE_FORMATS:
        raise WarehouseError(f"template format {fmt!r}: expected one of {', '.join(TEMPLATE_FORMATS)}")
    path = Path(output) if output is not None else Path(f"{dataset.name}.{fmt}")
    if path.exists():
        raise WarehouseError(f"{path} already exists; choose another path with --output")
    if not path.parent.is_dir():
        raise WarehouseError(f"{path}: folder {path.parent} does not exist")
    columns = input_columns(dataset)
    if fmt == "csv":
        with open(path, "x", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerow([c.name for c in columns])
    else:
        schema = pa.schema([c.field for c in columns])
        pq.write_table(schema.empty_table(), path, compression="zstd")
    return path
