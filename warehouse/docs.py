"""The data dictionary: Markdown generated from the contracts, kept in the README.

The README holds the dictionary between two marker comments; ``warehouse docs`` rewrites
only that part, so the rest of the README stays hand-written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from .contracts import DATASETS, Column, Dataset
from .errors import WarehouseError

START_MARKER = "<!-- data-dictionary:start -->"
END_MARKER = "<!-- data-dictionary:end -->"


def type_name(type_: pa.DataType) -> str:
    """The type as the specification writes it: ``string``, ``list<float32>``, ``timestamp[us, tz=UTC]``."""
    if pa.types.is_list(type_):
        return f"list<{type_name(type_.value_type)}>"
    if pa.types.is_timestamp(type_):
        return f"timestamp[{type_.unit}" + (f", tz={type_.tz}]" if type_.tz else "]")
    if pa.types.is_floating(type_):
        return f"float{type_.bit_width}"
    return str(type_)  # string, int16, int32, int64


def _cell(text: str) -> str:
    # A pipe or a line break would break the table row.
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _codes(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _column_row(dataset: Dataset, column: Column) -> str:
    doc = column.doc
    if column in dataset.path_columns:
        doc += " Stored only in the folder name."
    cells = [
        f"`{column.name}`",
        f"`{type_name(column.type)}`",
        "yes" if column.nullable else "no",
        _codes(column.enum) if column.enum else "",
        _cell(doc),
    ]
    return "| " + " | ".join(cells) + " |"


def dataset_section(dataset: Dataset) -> str:
    """The Markdown section of one dataset: its facts and a table of its columns."""
    lines = [
        f"### {dataset.number} `{dataset.name}` ({dataset.kind})",
        "",
        dataset.doc,
        "",
        f"- Schema version: `{dataset.schema_version}`",
        f"- Primary key: {_codes(dataset.primary_key)}",
        f"- Partitioned by: {_codes(dataset.partition_by) if dataset.partition_by else 'not partitioned'}",
        "",
        "| Column | Type | Nullable | Allowed values | Description |",
        "|---|---|---|---|---|",
    ]
    lines += [_column_row(dataset, c) for c in dataset.all_columns]
    return "\n".join(lines)


def data_dictionary() -> str:
    """The data dictionary of every dataset, in contract order, as Markdown."""
    intro = (
        "Generated from `warehouse/contracts.py` by `warehouse docs`; edit the contracts, "
        "not this section. Partition columns live in the folder names (`key=value/`) and "
        "are read as strings."
    )
    return "\n\n".join([intro] + [dataset_section(d) for d in DATASETS.values()]) + "\n"


def _render(text: str, path: Path) -> str:
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start < 0 or end < 0 or end < start:
        raise WarehouseError(
            f"{path}: the data dictionary needs the markers {START_MARKER} and {END_MARKER}, in that order"
        )
    return text[: start + len(START_MARKER)] + "\n" + data_dictionary() + text[end:]


def _read(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as f:  # keep the file's line endings
            return f.read()
    except FileNotFoundError:
        raise WarehouseError(f"{path}: no such README") from None


def update_readme(path: str | os.PathLike) -> bool:
    """Replace the text between the data-dictionary markers; return whether the file changed."""
    path = Path(path)
    text = _read(path)
    new = _render(text, path)
    if new == text:
        return False
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(new)
    return True


def is_readme_current(path: str | os.PathLike) -> bool:
    """Whether the README's data dictionary matches the contracts."""
    path = Path(path)
    text = _read(path)
    return _render(text, path) == text
