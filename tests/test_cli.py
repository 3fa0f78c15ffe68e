"""The ``warehouse`` command's own behaviour: exit codes and error reports, ``--version``,
``schema`` and its templates. Each test runs the command in a real process."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse.lake import init_lake

from test_writer import read_dataset

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
UTC_US = pa.timestamp("us", tz="UTC")


def run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("SQUIGGLE_LAKE", "SQUIGGLE_DB", "SQUIGGLE_DEBUG")}
    return subprocess.run([str(BIN / "warehouse"), *args], capture_output=True, text=True, cwd=cwd,
                          env={**environ, **(env or {})}, timeout=300)


# -- exit codes and error reports ---------------------------------------------------------

# Runs the command with `check_lake` replaced by a function that fails as a bug would.
BUGGY = textwrap.dedent("""
    import sys
    import warehouse.check

    def broken(lake=None):
        record = {{}}
        return record["model"]  # the line the report must name

    warehouse.check.check_lake = broken
    from warehouse.cli import main
    sys.exit(main({argv!r}))
""")


def run_buggy(tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    init_lake(tmp_path / "lake")
    script = tmp_path / "buggy.py"
    script.write_text(BUGGY.format(argv=["check", "--lake", str(tmp_path / "lake")]))
    environ = {k: v for k, v in os.environ.items() if k != "SQUIGGLE_DEBUG"}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                          env={**environ, **(env or {})}, timeout=120)


def test_an_unexpected_error_names_its_type_and_line_and_exits_3(tmp_path: Path) -> None:
    done = run_buggy(tmp_path)
    line = next(i for i, text in enumerate(BUGGY.splitlines(), 1) if 'record["model"]' in text)
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr.splitlines() == [
        "warehouse check: internal error: KeyError: 'model'",
        f"  at {tmp_path / 'buggy.py'}:{line} in broken",
        "  set SQUIGGLE_DEBUG=1 for the full traceback",
        "This is a bug in the warehouse, not a problem with your data; please report it with the command you ran.",
    ]


def test_debug_prints_the_full_traceback(tmp_path: Path) -> None:
    done = run_buggy(tmp_path, env={"SQUIGGLE_DEBUG": "1"})
    assert done.returncode == 3
    assert "Traceback (most recent call last):" in done.stderr
    assert 'return record["model"]' in done.stderr and "warehouse/cli.py" in done.stderr
    assert "SQUIGGLE_DEBUG=1 for" not in done.stderr


def test_a_bug_inside_the_package_is_located_in_it(tmp_path: Path) -> None:
    """The location is shown relative to the installed package (warehouse/...)."""
    init_lake(tmp_path / "lake")
    script = tmp_path / "buggy.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        import warehouse.check
        warehouse.check.DATASETS = None  # check_lake then fails inside warehouse/check.py
        from warehouse.cli import main
        sys.exit(main(["check", "--lake", {str(tmp_path / "lake")!r}]))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    first, at = done.stderr.splitlines()[:2]
    assert first.startswith("warehouse check: internal error: TypeError: ")
    assert re.fullmatch(r"  at warehouse/check\.py:\d+ in \w+", at), at


def test_bad_input_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    init_lake(tmp_path / "lake")
    for args, message in [
        (["ingest", "nosuch", "x.csv", "--lake", "lake"], "unknown dataset 'nosuch'; known datasets: runs, "),
        (["ingest", "checkpoints", "missing.csv", "--lake", "lake"], f"input {Path('missing.csv')}: no such file"),
        (["schema", "nosuch"], "unknown dataset 'nosuch'"),
        (["ingest", "checkpoints", "x.csv", "--batch-rows", "0", "--lake", "lake"], "--batch-rows must be at least 1"),
    ]:
        done = run(*args, cwd=tmp_path)
        assert (done.returncode, done.stdout) == (2, ""), args
        assert done.stderr.startswith(f"warehouse {args[0]}: error: {message}"), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr


def test_the_exit_codes_are_documented() -> None:
    from warehouse import cli

    readme = (ROOT / "README.md").read_text()
    for text in (cli.__doc__, readme):
        assert "SQUIGGLE_DEBUG=1" in text
        for code in ("0", "1", "2", "3"):
            assert re.search(rf"\b{code}\b[^\n]*", text)
    assert "| 3 |" in readme and "| 2 |" in readme


# -- --version ----------------------------------------------------------------------------


def test_version_is_the_installed_package_version(tmp_path: Path) -> None:
    declared = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    done = run("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"warehouse {declared}\n", "")


# -- schema and templates -----------------------------------------------------------------

CHECKPOINT_INPUT_COLUMNS = ["run_id", "step", "checkpoint_path", "train_loss", "val_loss", "tokens_seen", "wall_time_s"]


def test_schema_lists_columns_with_type_required_and_meaning(tmp_path: Path) -> None:
    done = run("schema", "checkpoints", cwd=tmp_path)
    assert done.returncode == 0
    rows = {line.split()[0]: line.split(None, 3) for line in done.stdout.splitlines()[3:13]}
    assert rows["run_id"][1:3] == ["string", "yes"]
    assert rows["step"][1:3] == ["int64", "yes"]
    assert rows["train_loss"][1:3] == ["float32", "no"]
    assert rows["schema_version"][1:] == ["string", "no", "(filled in)  Table schema version identifier, e.g. runs@2.0."]
    assert rows["created_at_utc"][1:3] == ["timestamp[us,", "tz=UTC]"]
    assert "no (filled in)" in done.stdout.splitlines()[13 - 1]
    assert "primary key: run_id, step; partitioned by: run_id" in done.stdout


def test_schema_shows_allowed_values(tmp_path: Path) -> None:
    done = run("schema", "samples", cwd=tmp_path)
    assert re.search(r"^split +string +yes +.*One of: train, val, probe\.$", done.stdout, re.M), done.stdout


def test_csv_template_is_a_header_of_the_input_columns(tmp_path: Path) -> None:
    done = run("schema", "checkpoints", "--template", "csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "checkpoints.csv").read_text() == ",".join(CHECKPOINT_INPUT_COLUMNS) + "\n"


def test_parquet_template_has_the_contract_types_and_no_rows(tmp_path: Path) -> None:
    out = tmp_path / "t" / "runs_template.parquet"
    out.parent.mkdir()
    done = run("schema", "runs", "--template", "parquet", "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    assert table.num_rows == 0
    s, ts = pa.string(), UTC_US
    assert table.schema.remove_metadata() == pa.schema([
        pa.field("run_id", s, False), pa.field("seed", pa.int32(), False), pa.field("run_mode", s, False),
        pa.field("model_id", s, False), pa.field("base_checkpoint", s), pa.field("family_id", s),
        pa.field("probe_name", s), pa.field("probe_config_hash", s), pa.field("config_json", s, False),
        pa.field("config_hash", s, False), pa.field("code_version", s), pa.field("status", s, False),
        pa.field("started_at_utc", ts, False), pa.field("ended_at_utc", ts), pa.field("notes", s),
    ])


def test_a_template_never_overwrites_a_file(tmp_path: Path) -> None:
    (tmp_path / "checkpoints.csv").write_text("mine\n")
    done = run("schema", "checkpoints", "--template", "csv", cwd=tmp_path)
    assert done.returncode == 2 and "checkpoints.csv already exists" in done.stderr
    assert (tmp_path / "checkpoints.csv").read_text() == "mine\n"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_filled_template_ingests(tmp_path: Path, fmt: str) -> None:
    assert run("init", "lake", cwd=tmp_path).returncode == 0
    assert run("schema", "checkpoints", "--template", fmt, cwd=tmp_path).returncode == 0
    path = tmp_path / f"checkpoints.{fmt}"
    if fmt == "csv":
        with open(path, "a", newline="") as f:  # rows appended under the header, optional cells left empty
            csv.writer(f).writerows([["r1", "1", "", "0.5", "", "", ""], ["r1", "2", "/ck/2", "0.25", "0.3", "64", "1.5"]])
    else:
        empty = pq.read_table(path)
        filled = pa.table({
            "run_id": ["r1", "r1"], "step": [1, 2], "checkpoint_path": [None, "/ck/2"], "train_loss": [0.5, 0.25],
            "val_loss": [None, 0.3], "tokens_seen": [None, 64], "wall_time_s": [None, 1.5],
        }, schema=empty.schema)
        path.unlink()
        pq.write_table(filled, path)
    done = run("ingest", "checkpoints", str(path), "--lake", "lake", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    got = sorted(read_dataset(tmp_path / "lake", "checkpoints").to_pylist(), key=lambda r: r["step"])
    assert [(r["run_id"], r["step"], r["checkpoint_path"], r["tokens_seen"], r["schema_version"]) for r in got] == [
        ("r1", 1, None, None, "checkpoints@2.0"), ("r1", 2, "/ck/2", 64, "checkpoints@2.0")]
    assert [round(r["val_loss"], 6) if r["val_loss"] is not None else None for r in got] == [None, 0.3]
