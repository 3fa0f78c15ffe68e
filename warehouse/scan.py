"""SQL that reads a dataset's Parquet files with the contract's exact column types.

Used by the catalog's views and by the model engine's inputs, so that both see the same
columns: contract order, explicit casts, hive partition values as strings (a folder
``run_id=0007`` stays '0007' and no other folder name is guessed into a typed column),
and files that lack a nullable column read it as NULL (``union_by_name``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .contracts import Dataset, duckdb_type
from .sql import quote_identifier as qi, quote_literal as ql


def select_dataset(dataset: Dataset, sources: str | Sequence[Path]) -> str:
    """A SELECT of every contract column over ``sources`` (a glob, or a list of files).

    With an empty list of files it selects no rows, typed all the same.
    """
    columns = ",\n    ".join(f"CAST({qi(c.name)} AS {duckdb_type(c.type)}) AS {qi(c.name)}" for c in dataset.all_columns)
    if not isinstance(sources, str) and not sources:
        nulls = ",\n    ".join(f"CAST(NULL AS {duckdb_type(c.type)}) AS {qi(c.name)}" for c in dataset.all_columns)
        return f"SELECT\n    {nulls}\nWHERE false"
    return f"SELECT\n    {columns}\nFROM {read_parquet(dataset, sources)}"


def read_parquet(dataset: Dataset, sources: str | Sequence[Path], *, filename: bool = False) -> str:
    """A ``read_parquet(...)`` call over ``sources`` with the dataset's hive partition types."""
    paths = ql(sources) if isinstance(sources, str) else "[" + ", ".join(ql(str(p)) for p in sources) + "]"
    options = ["union_by_name = true"]
    if dataset.partition_by:
        hive_types = ", ".join(f"{ql(k)}: 'VARCHAR'" for k in dataset.partition_by)
        options += ["hive_partitioning = true", f"hive_types = {{{hive_types}}}", "hive_types_autocast = false"]
    else:
        options.append("hive_partitioning = false")
    if filename:
        options.append("filename = true")
    return f"read_parquet({paths}, {', '.join(options)})"
