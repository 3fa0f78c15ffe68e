"""Hand-made hive-partitioned Parquet files for tests that must not depend on the writer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse import contracts


def sample_value(column: contracts.Column, i: int, type_: pa.DataType | None = None) -> Any:
    """A plausible value of ``column`` for row ``i`` (enum columns take an allowed value)."""
    type_ = type_ or column.type
    if pa.types.is_list(type_):
        return [sample_value(column, i, type_.value_type)]
    if pa.types.is_string(type_):
        return column.enum[i % len(column.enum)] if column.enum else f"{column.name}-{i}"
    if pa.types.is_integer(type_):
        return i
    if pa.types.is_floating(type_):
        return i + 0.5
    if pa.types.is_timestamp(type_):
        return dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=i)
    raise AssertionError(f"no sample value for {type_}")


def write_part(
    lake: Path,
    dataset: str,
    partition: Mapping[str, str] | None = None,
    n_rows: int = 2,
    *,
    extra_dirs: tuple[str, ...] = (),
    name: str = "part-x.parquet",
    start: int = 0,
) -> Path:
    """Write ``n_rows`` rows of ``dataset`` to ``<lake>/<dataset>/<k>=<v>/.../<extra_dirs>/<name>``.

    Partition columns are left out of the file, as in a hive layout; ``partition`` must
    give a value for each of the dataset's partition columns.
    """
    d = contracts.get(dataset)
    partition = dict(partition or {})
    assert set(partition) == set(d.partition_by), f"{dataset} partitions by {d.partition_by}"
    folder = lake / dataset
    for key in d.partition_by:
        folder = folder / f"{key}={partition[key]}"
    for extra in extra_dirs:
        folder = folder / extra
    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([c.field for c in d.file_columns])
    data = {c.name: [sample_value(c, start + i) for i in range(n_rows)] for c in d.file_columns}
    path = folder / name
    pq.write_table(pa.table(data, schema=schema), path, compression="zstd")
    return path
