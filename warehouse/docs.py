"""The README's generated sections: the data dictionary (from the contracts) and the
models' parameters (from the headers of ``sql/models/*.sql``).

The README holds each section between two marker comments; ``warehouse docs`` rewrites
only those parts, so the rest of the README stays hand-written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from .contracts import DATASETS, WRITER_FILLED, Column, Dataset
from .errors import WarehouseError
from .models.project import SQL_DIR
from .models.spec import Param, parse_model_file

START_MARKER = "<!-- data-dictionary:start -->"
END_MARKER = "<!-- data-dictionary:end -->"
PARAMS_START_MARKER = "<!-- model-parameters:start -->"
PARAMS_END_MARKER = "<!-- model-parameters:end -->"


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


def required_cell(column: Column) -> str:
    """Whether an input must give the column: ``yes``, ``no``, or ``no (filled in)`` for the
    columns the writer fills when left out (never NULL in a file, but not the user's job)."""
    if column.required:
        return "yes"
    return "no (filled in)" if column.name in WRITER_FILLED else "no"


def _column_row(dataset: Dataset, column: Column) -> str:
    doc = column.doc
    if column in dataset.path_columns:
        doc += " Stored only in the folder name."
    cells = [
        f"`{column.name}`",
        f"`{type_name(column.type)}`",
        required_cell(column),
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
        "| Column | Type | Required | Allowed values | Description |",
        "|---|---|---|---|---|",
    ]
    lines += [_column_row(dataset, c) for c in dataset.all_columns]
    return "\n".join(lines)


def data_dictionary() -> str:
    """The data dictionary of every dataset, in contract order, as Markdown."""
    intro = (
        "Generated from `warehouse/contracts.py` by `warehouse docs`; edit the contracts, "
        "not this section. Partition columns live in the folder names (`key=value/`) and "
        "are read as strings. Required: every input row must give the column, not NULL; the "
        "other columns may be left out or NULL, except `schema_version` and `created_at_utc`, "
        "which the writer fills in when left out (`warehouse schema DATASET` shows the same)."
    )
    return "\n\n".join([intro] + [dataset_section(d) for d in DATASETS.values()]) + "\n"


def _param_default(param: Param) -> str:
    if param.type == "str":
        return f"`{param.default!r}`"  # quoted: the empty default must show
    return f"`{str(param.default).lower()}`"  # a bool as the header writes it: true, false


def model_parameters(sql_dir: Path = SQL_DIR) -> str:
    """A table of every parameter of the models in ``sql_dir``, as Markdown."""
    intro = "Generated from the headers of `sql/models/*.sql` by `warehouse docs`; edit the headers, not this table."
    lines = ["| Model | Parameter | Type | Default | Range | Meaning |", "|---|---|---|---|---|---|"]
    for path in sorted((sql_dir / "models").glob("*.sql")):
        spec = parse_model_file(path)
        for p in spec.params.values():
            allowed = f"`{p.allowed}`" if p.allowed else "any"
            lines.append(f"| `{spec.name}` | `{p.name}` | `{p.type}` | {_param_default(p)} | {_cell(allowed)} | {_cell(p.doc)} |")
    return intro + "\n\n" + "\n".join(lines) + "\n"


def _replace(text: str, path: Path, start_marker: str, end_marker: str, what: str, content: str) -> str:
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < 0 or end < start:
        raise WarehouseError(f"{path}: {what} needs the markers {start_marker} and {end_marker}, in that order")
    return text[: start + len(start_marker)] + "\n" + content + text[end:]


def _render(text: str, path: Path) -> str:
    text = _replace(text, path, START_MARKER, END_MARKER, "the data dictionary", data_dictionary())
    return _replace(text, path, PARAMS_START_MARKER, PARAMS_END_MARKER, "the model parameter table", model_parameters())


def _read(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as f:  # keep the file's line endings
            return f.read()
    except FileNotFoundError:
        raise WarehouseError(f"{path}: no such README") from None


def update_readme(path: str | os.PathLike) -> bool:
    """Replace the text between the data-dictionary and the model-parameters markers;
    return whether the file changed."""
    path = Path(path)
    text = _read(path)
    new = _render(text, path)
    if new == text:
        return False
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(new)
    return True


def is_readme_current(path: str | os.PathLike) -> bool:
    """Whether the README's data dictionary matches the contracts and its parameter table
    the model headers."""
    path = Path(path)
    text = _read(path)
    return _render(text, path) == text
