"""A lake root that does not exist is refused, not created: only `init`, `demo`, `ingest
--create` and the Python calls given ``create=True`` make a lake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import warehouse
import warehouse.models
from warehouse import catalog, writer
from warehouse.errors import LakeNotFound

BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("SQUIGGLE_LAKE", "SQUIGGLE_DB")}
    return subprocess.run([str(BIN / "warehouse"), *args], capture_output=True, text=True, cwd=cwd,
                          env={**environ, **(env or {})}, timeout=300)


def a_csv(folder: Path) -> Path:
    path = folder / "checkpoints.csv"
    path.write_text("run_id,step,train_loss\nr1,1,0.5\nr1,2,0.25\n")
    return path


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


COMMANDS = {
    "ingest": lambda lake, tmp: ["ingest", "checkpoints", str(a_csv(tmp)), "--lake", lake],
    "catalog": lambda lake, tmp: ["catalog", "--lake", lake, "--db", str(tmp / "w.duckdb")],
    "catalog_if_changed": lambda lake, tmp: ["catalog", "--if-changed", "--lake", lake, "--db", str(tmp / "w.duckdb")],
    "check": lambda lake, tmp: ["check", "--lake", lake],
    "models_run": lambda lake, tmp: ["models", "run", "--lake", lake, "--db", str(tmp / "w.duckdb")],
    "models_plan": lambda lake, tmp: ["models", "plan", "--lake", lake],
    "scorecard": lambda lake, tmp: ["scorecard", "--lake", lake, "--db", str(tmp / "w.duckdb")],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_a_missing_lake_and_creates_nothing(tmp_path: Path, command: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    args = COMMANDS[command]("data/lakee", work)  # a typo'd path, below a folder that does not exist either
    before = everything_under(work)
    done = run(*args, cwd=work)
    missing = work / "data" / "lakee"
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"warehouse {args[0]}: error: lake root {missing} does not exist (is the path right?); "
        f"create an empty lake with `warehouse init {missing}`, or ingest with `--create`\n")
    assert everything_under(work) == before


def test_the_default_lake_is_refused_too(tmp_path: Path) -> None:
    done = run("models", "run", cwd=tmp_path)  # ./lake, which this folder does not have
    assert done.returncode == 2 and f"lake root {tmp_path / 'lake'} does not exist" in done.stderr
    assert list(tmp_path.iterdir()) == []
    via_env = run("check", cwd=tmp_path, env={"SQUIGGLE_LAKE": str(tmp_path / "elsewhere")})
    assert via_env.returncode == 2 and f"lake root {tmp_path / 'elsewhere'} does not exist" in via_env.stderr


def test_a_file_in_place_of_the_lake_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lake").write_text("not a folder")
    for args in (["check"], ["init"], ["ingest", "checkpoints", str(a_csv(tmp_path)), "--create"]):
        done = run(*args, cwd=tmp_path)
        assert done.returncode == 2 and f"lake root {tmp_path / 'lake'} is not a folder" in done.stderr, args


def test_init_creates_an_empty_lake_that_every_command_accepts(tmp_path: Path) -> None:
    done = run("init", "my/lake", cwd=tmp_path)
    lake = tmp_path / "my" / "lake"
    assert (done.returncode, done.stdout, done.stderr) == (0, f"empty lake created: {lake}\n", "")
    assert everything_under(lake) == ["_meta"]
    again = run("init", str(lake), cwd=tmp_path)
    assert (again.returncode, again.stdout) == (0, f"lake already exists, left as it is: {lake}\n")
    check = run("check", "--lake", str(lake), cwd=tmp_path)
    assert (check.returncode, check.stdout) == (0, "lake is clean\n")
    ingest = run("ingest", "checkpoints", str(a_csv(tmp_path)), "--lake", str(lake), cwd=tmp_path)
    assert (ingest.returncode, ingest.stderr) == (0, "")
    assert ingest.stdout == f"{tmp_path / 'checkpoints.csv'}: 2 rows written, 0 already present, 1 files\n"


def test_init_takes_the_default_lake(tmp_path: Path) -> None:
    done = run("init", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"empty lake created: {tmp_path / 'lake'}\n")
    assert (tmp_path / "lake" / "_meta").is_dir()


def test_ingest_create_makes_the_lake(tmp_path: Path) -> None:
    done = run("ingest", "checkpoints", str(a_csv(tmp_path)), "--lake", "new/lake", "--create", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "new" / "lake" / "checkpoints" / "run_id=r1").is_dir()


def test_ingest_create_with_a_missing_input_creates_nothing(tmp_path: Path) -> None:
    done = run("ingest", "checkpoints", "nosuch.csv", "--lake", "new/lake", "--create", cwd=tmp_path)
    assert done.returncode == 2 and "nosuch.csv: no such file" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_creates_its_lake(tmp_path: Path) -> None:
    done = run("demo", "--lake", "fresh/lake", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fresh" / "lake" / "runs").is_dir()


# -- the Python entry points --------------------------------------------------------------

ENTRY_POINTS = {
    "write": lambda lake: writer.write("checkpoints", [{"run_id": "r1", "step": 1}], lake=lake),
    "ingest_files": lambda lake: writer.ingest_files("checkpoints", [a_csv(lake.parent.parent)], lake=lake),
    "models.run": lambda lake: warehouse.models.run(lake=lake, report=lambda line: None),
    "models.run_dry": lambda lake: warehouse.models.run(lake=lake, dry_run=True, report=lambda line: None),
    "build_catalog": lambda lake: catalog.build_catalog(lake, lake.parent.parent / "w.duckdb"),
    "refresh_catalog": lambda lake: catalog.refresh_catalog(lake, lake.parent.parent / "w.duckdb"),
    "check_lake": lambda lake: warehouse.check_lake(lake),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_python_entry_points_refuse_a_missing_lake(tmp_path: Path, entry: str) -> None:
    lake = tmp_path / "typo" / "lake"
    with pytest.raises(LakeNotFound, match=f"lake root {lake} does not exist"):
        ENTRY_POINTS[entry](lake)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["checkpoints.csv"] if entry == "ingest_files" else [])


def test_write_creates_the_lake_when_asked(tmp_path: Path) -> None:
    lake = tmp_path / "first" / "lake"
    result = writer.write("checkpoints", [{"run_id": "r1", "step": 1}], lake=lake, create=True)
    assert result.rows_written == 1
    assert (lake / "checkpoints" / "run_id=r1").is_dir()


def test_a_refused_batch_does_not_create_the_lake_before_its_type_is_known(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with pytest.raises(TypeError):
        writer.write("checkpoints", 42, lake=lake, create=True)
    assert not lake.exists()


def test_a_capture_session_creates_its_lake(tmp_path: Path) -> None:
    from warehouse.capture import CaptureSession

    lake = tmp_path / "runs" / "lake"
    with CaptureSession("r1", {"lr": 0.1, "seed": 3}, model_id="m", lake=lake):
        pass
    assert [p.name for p in (lake / "runs").iterdir()] == ["run_id=r1"]


def test_a_capture_session_with_bad_arguments_creates_nothing(tmp_path: Path) -> None:
    from warehouse.capture import CaptureSession
    from warehouse.errors import CaptureError

    with pytest.raises(CaptureError):
        CaptureSession("r1", {"lr": 0.1, "seed": 3}, model_id="m", lake=tmp_path / "lake", flush_every=0)
    assert list(tmp_path.iterdir()) == []
