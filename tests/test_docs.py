"""The data dictionary generated from the contracts, and its place in the README."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from warehouse import contracts
from warehouse.docs import END_MARKER, START_MARKER, data_dictionary, is_readme_current, type_name, update_readme
from warehouse.errors import WarehouseError


def test_dictionary_lists_every_dataset_and_column() -> None:
    text = data_dictionary()
    for d in contracts.DATASETS.values():
        section = text.split(f"### {d.number} `{d.name}` ({d.kind})", 1)[1].split("\n### ", 1)[0]
        assert f"`{d.schema_version}`" in section
        assert d.doc in section
        for c in d.all_columns:
            assert f"| `{c.name}` | `{type_name(c.type)}` | {'yes' if c.nullable else 'no'} |" in section, (d.name, c.name)
    assert "| `split` | `string` | no | `train`, `val`, `probe` |" in text


@pytest.mark.parametrize(
    "type_, name",
    [
        (pa.string(), "string"),
        (pa.int64(), "int64"),
        (pa.float32(), "float32"),
        (pa.list_(pa.float32()), "list<float32>"),
        (pa.list_(pa.int16()), "list<int16>"),
        (contracts.TIMESTAMP, "timestamp[us, tz=UTC]"),
    ],
)
def test_type_names_follow_the_specification(type_: pa.DataType, name: str) -> None:
    assert type_name(type_) == name


def test_update_readme_replaces_only_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nIntro.\n\n", "\n\n## After\n\nMore text.\n"
    readme.write_text(f"{before}{START_MARKER}\nstale dictionary\n{END_MARKER}{after}")
    assert not is_readme_current(readme)
    assert update_readme(readme) is True
    text = readme.read_text()
    assert text.startswith(before + START_MARKER + "\n") and text.endswith(END_MARKER + after)
    assert "stale dictionary" not in text
    assert data_dictionary() in text
    assert is_readme_current(readme)
    # Idempotent: a second run changes nothing.
    assert update_readme(readme) is False
    assert readme.read_text() == text


def test_missing_markers_name_the_file(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n{START_MARKER}\n")
    with pytest.raises(WarehouseError, match="README.md"):
        update_readme(readme)
    assert readme.read_text() == f"# Title\n{START_MARKER}\n"


def test_repository_readme_is_current() -> None:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    assert is_readme_current(readme), "README.md's data dictionary is stale: run `make docs`"
