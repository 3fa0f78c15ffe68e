"""The Makefile run for real: the lake and catalog it uses (LAKE / DB, else $SQUIGGLE_LAKE /
$SQUIGGLE_DB, else ./lake and ./warehouse.duckdb), `make clean`'s care with a lake named
by the environment, and the hints `make demo` prints working without the virtual
environment on the PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_fixtures import REPO

VENV = Path(sys.prefix)
INSTALLED = VENV / ".installed"
# a PATH without the virtual environment, as in a new shell
PLAIN_PATH = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if not p.startswith(str(VENV)))
SQUIGGLE = ("SQUIGGLE_LAKE", "SQUIGGLE_DB", "LAKE", "DB")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``make`` with this virtual environment taken as installed (never reinstalled by a test)."""
    base = {k: v for k, v in os.environ.items() if k not in SQUIGGLE and k != "MAKEFLAGS"}
    return subprocess.run(
        ["make", "--no-print-directory", "-o", str(INSTALLED), f"VENV={VENV}", *args],
        cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.parametrize(
    ("env", "args", "lake", "db"),
    [
        ({}, [], "lake", "warehouse.duckdb"),
        ({"SQUIGGLE_LAKE": "/data/lake", "SQUIGGLE_DB": "/data/w.duckdb"}, [], "/data/lake", "/data/w.duckdb"),
        ({"SQUIGGLE_LAKE": "/data/lake"}, [], "/data/lake", "warehouse.duckdb"),
        ({"SQUIGGLE_LAKE": "/data/lake", "SQUIGGLE_DB": "/data/w.duckdb"}, ["LAKE=mine", "DB=mine.duckdb"], "mine", "mine.duckdb"),
        ({"SQUIGGLE_LAKE": "/data/lake", "LAKE": "from-env"}, [], "from-env", "warehouse.duckdb"),
    ],
)
def test_models_target_takes_lake_and_db(env: dict[str, str], args: list[str], lake: str, db: str) -> None:
    r = make("-n", "models", *args, env=env)
    assert r.returncode == 0, r.stderr
    assert f"{VENV}/bin/warehouse models run --lake {lake} --db {db}\n" in r.stdout


def test_clean_keeps_a_lake_named_only_by_the_environment(tmp_path: Path) -> None:
    shutil.copy2(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "runs.parquet").write_bytes(b"precious")
    r = make("clean", cwd=tmp_path, env={"SQUIGGLE_LAKE": "data"})
    assert r.returncode == 2
    assert "not removing data, named by SQUIGGLE_LAKE / SQUIGGLE_DB; name it: make clean LAKE=data" in r.stderr
    assert (tmp_path / "data" / "runs.parquet").read_bytes() == b"precious"
    r = make("clean", "LAKE=data", cwd=tmp_path, env={"SQUIGGLE_LAKE": "data"})
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("named_by", ["environment", "command line"])
def test_make_demo_uses_the_lake_given_and_its_hints_work_outside_the_venv(tmp_path: Path, named_by: str) -> None:
    lake, db = tmp_path / "data-lake", tmp_path / "data.duckdb"
    before = {p: p.exists() for p in (REPO / "lake", REPO / "warehouse.duckdb")}
    if named_by == "environment":
        env, args = {"SQUIGGLE_LAKE": str(lake), "SQUIGGLE_DB": str(db), "PATH": PLAIN_PATH}, []
    else:
        env, args = {"PATH": PLAIN_PATH}, [f"LAKE={lake}", f"DB={db}"]
    r = make("demo", *args, env=env)
    assert r.returncode == 0, r.stderr
    assert f"models run --lake {lake} --db {db}" in r.stdout
    assert (lake / "geometry_dynamics").is_dir() and db.is_file()
    assert f"report written: {tmp_path / 'report.html'} (" in r.stdout  # the report, beside the catalog
    assert {p: p.exists() for p in before} == before  # ./lake and ./warehouse.duckdb untouched

    hints = r.stdout.split("  next (", 1)[1].splitlines()[1:4]
    # make reads $SQUIGGLE_LAKE now; a lake or catalog given to make alone is spelled out
    assert hints[0] == ("    make models" + f" DB={db}" if named_by == "environment" else f"    make models LAKE={lake} DB={db}")
    python = os.path.relpath(VENV / "bin" / "python", REPO)  # .venv/bin/python under `make test`
    assert all(h.startswith(f"    {python if not python.startswith('..') else VENV / 'bin' / 'python'} -c ") for h in hints[1:])
    assert f"warehouse.connect({str(db)!r})" in hints[1]
    for hint in hints[1:]:
        # the shell of a user who never activated the environment, in the repository
        done = subprocess.run(["sh", "-c", hint], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, (hint, done.stderr)
        assert done.stdout.strip()
    again = subprocess.run(["sh", "-c", hints[0] + f" -o {INSTALLED} VENV={VENV}"], cwd=REPO,
                           env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"--lake {lake} --db {db}" in again.stdout and "up to date" in again.stdout
