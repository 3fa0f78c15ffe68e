"""The data dictionary generated from the contracts, and its place in the README."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from warehouse import contracts
from model_fixtures import REPO_SQL, copy_sql, edit_model
from warehouse.docs import (
    END_MARKER,
    PARAMS_END_MARKER,
    PARAMS_START_MARKER,
    START_MARKER,
    data_dictionary,
    is_readme_current,
    model_parameters,
    type_name,
    update_readme,
)
from warehouse.errors import WarehouseError


def test_dictionary_lists_every_dataset_and_column() -> None:
    text = data_dictionary()
    filled = {"schema_version", "created_at_utc"}
    for d in contracts.DATASETS.values():
        section = text.split(f"### {d.number} `{d.name}` ({d.kind})", 1)[1].split("\n### ", 1)[0]
        assert f"`{d.schema_version}`" in section
        assert d.doc in section
        for c in d.all_columns:
            required = "no" if c.nullable else "no (filled in)" if c.name in filled else "yes"
            assert f"| `{c.name}` | `{type_name(c.type)}` | {required} |" in section, (d.name, c.name)
    assert "| `split` | `string` | yes | `train`, `val`, `probe` |" in text
    # The writer fills these two: a user need not give them, so they are not required.
    assert "| `schema_version` | `string` | no (filled in) |" in text
    assert "| `created_at_utc` | `timestamp[us, tz=UTC]` | no (filled in) |" in text
    assert "| `run_id` | `string` | yes |" in text


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
    params = f"\n{PARAMS_START_MARKER}\nstale parameters\n{PARAMS_END_MARKER}\n"
    readme.write_text(f"{before}{START_MARKER}\nstale dictionary\n{END_MARKER}{after}{params}")
    assert not is_readme_current(readme)
    assert update_readme(readme) is True
    text = readme.read_text()
    assert text.startswith(before + START_MARKER + "\n")
    assert END_MARKER + after + "\n" + PARAMS_START_MARKER + "\n" in text and text.endswith(PARAMS_END_MARKER + "\n")
    assert "stale dictionary" not in text and "stale parameters" not in text
    assert data_dictionary() in text and model_parameters() in text
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
    assert is_readme_current(readme), "README.md's data dictionary or parameter table is stale: run `make docs`"


def test_parameter_table_lists_every_parameter_from_the_headers() -> None:
    rows = [line for line in model_parameters().splitlines() if line.startswith("| `")]
    # written by hand from the headers of sql/models/*.sql
    assert rows == [
        "| `events` | `min_tolerance` | `float` | `0.05` | `[0, 1]` | smallest gap tolerance in normalised time t: "
        "gaps up to it never split an event |",
        "| `events` | `max_tolerance` | `float` | `0.25` | `[0, 1]` | largest gap tolerance in t, however far the "
        "seeds spread (at or below min_tolerance: a fixed tolerance) |",
        "| `events` | `sample_set` | `str` | `''` | any | sample set whose series give t; empty: per run, the "
        "alphabetically first with pooled rows |",
        "| `events_candidates` | `min_scale` | `int` | `4` | `[2, 64]` | smallest scale G, in captures "
        "on each side of a boundary |",
        "| `events_candidates` | `max_scale` | `int` | `256` | `[4, 4096]` | largest scale; the scales "
        "are min_scale doubled up to it (a series uses those with 4 G <= its captures) |",
        "| `events_candidates` | `alpha` | `float` | `0.01` | `[0.0001, 0.5]` | false-alarm level of "
        "each scale and contrast (the moving-sum threshold of Eichinger and Kirch, 2018, for one "
        "series) |",
        "| `events_candidates` | `trend_scale` | `int` | `64` | `[2, 4096]` | from this scale up the "
        "level contrast is blind to a local line (a trend over a wide window is no level shift) |",
        "| `events_candidates` | `clip` | `float` | `3.0` | `[0.5, 100]` | winsorising: a capture "
        "further than clip robust units from its 3-point median is pulled back to that distance |",
        "| `events_candidates` | `noise_window` | `int` | `64` | `[4, 4096]` | captures on each side "
        "over which the local noise level is taken (at least the scale) |",
        "| `events_candidates` | `tolerance` | `int` | `2` | `>= 0` | captures (at least a quarter of "
        "the event's scale) within which another layer's event counts for coherence |",
        "| `events_candidates` | `sample_set` | `str` | `''` | any | sample set analysed; '' = per run, "
        "the alphabetically first with pooled rows |",
        "| `geometry_dynamics` | `volatility_window` | `int` | `5` | `[2, 100]` | captures in the volatility window |",
        "| `matches` | `tolerance` | `float` | `0.05` | `[0, 1]` | largest \\|delta t\\| (inclusive) at which two "
        "events of the same layer and metric match |",
        "| `matches` | `top_k` | `int` | `10` | `>= 1` | partners kept per signature (at least 1), best score first |",
        "| `probe_events_candidates` | `tolerance_captures` | `int` | `2` | `[0, 1000]` | captures, in units of the run's "
        "median step spacing, within which change points are one event |",
        "| `probe_summaries` | `module` | `str` | `'resid_post'` | `{resid_pre, attn_out, mlp_out, resid_post, logits}` "
        "| module whose pooled series are summarised |",
        "| `probe_summaries` | `sample_set` | `str` | `''` | any | sample set analysed; empty: per run the "
        "alphabetically first with pooled rows |",
        "| `signatures` | `sample_set` | `str` | `''` | any | sample set the trajectories are read from; empty: each "
        "run's alphabetically first sample set with pooled rows |",
        "| `signatures` | `bins` | `int` | `16` | `>= 2` | K, the bins of equal width in normalised time per series |",
    ]


def test_parameter_table_follows_an_edited_header(tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    edit_model(sql, "matches", "param top_k: int = 10 >= 1 |", "param top_k: int = 20 in [1, 50] |")
    assert "| `matches` | `top_k` | `int` | `20` | `[1, 50]` |" in model_parameters(sql)
    assert "| `matches` | `top_k` | `int` | `10` | `>= 1` |" in model_parameters(REPO_SQL)


def test_missing_parameter_markers_name_the_file(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n{START_MARKER}\n{END_MARKER}\n")
    with pytest.raises(WarehouseError, match=f"README.md: the model parameter table needs the markers {PARAMS_START_MARKER}"):
        update_readme(readme)
    assert readme.read_text() == f"# Title\n{START_MARKER}\n{END_MARKER}\n"
