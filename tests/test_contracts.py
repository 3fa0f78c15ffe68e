"""The contracts against the user's specification, read from the document itself.

Tables 03, 12, 13, 14 and 22 are spelled out column by column in
``shared/spec/parquet-schemas-v2.md``: names, types, order and primary keys must match it
exactly, and every column it marks nullable (or optional) must be nullable here.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from warehouse import contracts

REPO = Path(__file__).resolve().parent.parent
SPEC_IN_SHARED = Path("shared") / "spec" / "parquet-schemas-v2.md"


def find_spec() -> Path:
    """The specification: $SQUIGGLE_SPEC, else beside the repository (../shared/spec/, where
    CI puts it), else beside the local repository this clone was made from."""
    if os.environ.get("SQUIGGLE_SPEC"):
        return Path(os.environ["SQUIGGLE_SPEC"])
    beside = REPO.parent / SPEC_IN_SHARED
    origin = subprocess.run(
        ["git", "-C", str(REPO), "remote", "get-url", "origin"], capture_output=True, text=True
    ).stdout.strip()
    if not beside.is_file() and origin and Path(origin).is_dir():
        return Path(origin).resolve().parent / SPEC_IN_SHARED
    return beside


SPEC = find_spec()
EXACT = {"03": "families", "12": "probe_captures_index", "13": "probe_summaries",
         "14": "probe_events_candidates", "22": "events_candidates"}
TYPES = {
    "string": pa.string(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "float32": pa.float32(), "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
}
COLUMN = re.compile(r"^- `(?P<name>\w+)` (?P<type>list<\w+>|timestamp\[[^\]]+\]|\w+)(?P<rest>.*)$")


def spec_type(text: str) -> pa.DataType:
    inner = re.fullmatch(r"list<(\w+)>", text)
    return pa.list_(TYPES[inner[1]]) if inner else TYPES[text]


def spec_tables() -> dict[str, dict]:
    """Every table the document spells out: its columns (name, type, nullable) and key."""
    tables: dict[str, dict] = {}
    current = None
    nullable_section = False
    lines = SPEC.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        heading = re.match(r"^## (\d\d) — `(\w+)/`", line)
        if heading:
            current = tables.setdefault(heading[1], {"name": heading[2], "columns": [], "key": None})
            nullable_section = False
        elif current is None:
            continue
        elif line.startswith("Primary key"):
            current["key"] = tuple(re.findall(r"`(\w+)`", lines[i + 1]))
        elif line.endswith(":") and not line.startswith("-"):
            # "Scoring breakdown (nullable):" makes every column below it nullable
            nullable_section = "(nullable" in line
        elif m := COLUMN.match(line):
            optional = "(nullable)" in m["rest"] or "(optional)" in m["rest"] or nullable_section
            current["columns"].append((m["name"], spec_type(m["type"]), optional))
    return tables


@pytest.fixture(scope="module")
def tables() -> dict[str, dict]:
    assert SPEC.is_file(), f"the specification is missing at {SPEC}: set SQUIGGLE_SPEC to parquet-schemas-v2.md"
    return spec_tables()


def test_the_document_spells_out_the_five_tables(tables: dict[str, dict]) -> None:
    assert set(tables) == set(EXACT)
    assert {n: t["name"] for n, t in tables.items()} == EXACT
    assert all(len(t["columns"]) >= 6 for t in tables.values())


@pytest.mark.parametrize("number", sorted(EXACT))
def test_contract_matches_the_document_column_for_column(tables: dict[str, dict], number: str) -> None:
    spec = tables[number]
    dataset = contracts.get(spec["name"])
    assert dataset.number == number
    assert [(c.name, c.type) for c in dataset.columns] == [(n, t) for n, t, _ in spec["columns"]]
    for name, _, optional in spec["columns"]:
        if optional:
            assert dataset.column(name).nullable, f"{spec['name']}.{name} is nullable in the specification"
    if spec["key"]:
        assert dataset.primary_key == spec["key"]


def test_every_dataset_of_the_index_has_a_contract() -> None:
    numbers = re.findall(r"^### (\d\d) — `(\w+)/`", SPEC.read_text(encoding="utf-8"), re.MULTILINE)
    assert {(n, name) for n, name in numbers} == {(d.number, d.name) for d in contracts.DATASETS.values()}


def test_common_columns_everywhere() -> None:
    for d in contracts.DATASETS.values():
        assert d.column("created_at_utc").type == contracts.TIMESTAMP, d.name
        if d.name != "families":  # the one table whose exact columns (from the seed) lack it
            assert d.column("schema_version").type == pa.string(), d.name
        assert set(d.primary_key) <= set(d.column_names), d.name
        assert set(d.partition_by) <= set(d.column_names), d.name
        assert "step" not in d.partition_by, d.name


def test_the_dis_features_are_per_layer_columns_of_probe_summaries() -> None:
    columns = {c.name: c for c in contracts.get("probe_summaries").all_columns}
    assert len(set(contracts.DIS_FEATURES)) == 6
    for name in contracts.DIS_FEATURES:
        assert name in columns and "Aligned with layers_covered" in columns[name].doc, name
