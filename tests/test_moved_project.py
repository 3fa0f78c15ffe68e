"""A project folder (lake and catalog) copied or moved elsewhere: its catalog's views still
read the old lake through absolute paths. ``warehouse.connect()`` warns and ``warehouse
check`` reports it, until ``make catalog`` rebuilds the catalog in its new place."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest

from model_fixtures import cli, write_runs
from warehouse import build_catalog, connect
from warehouse.catalog import CatalogElsewhereWarning, refresh_catalog

STEPS = range(0, 50, 10)
ROWS_PER_RUN = 5 * 2 * 2  # write_runs: 5 steps x 2 layers x (pooled, one sample)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """``project/lake`` with one run, and ``project/warehouse.duckdb`` built from it."""
    folder = tmp_path / "project"
    write_runs(folder / "lake", {"r1": STEPS})
    build_catalog(folder / "lake", folder / "warehouse.duckdb")
    return folder


def rows(db: Path) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CatalogElsewhereWarning)
        with connect(db) as con:
            return con.execute("SELECT count(*) FROM geometry_state").fetchone()[0]


def connects_quietly(db: Path, **kw) -> bool:
    """True when ``connect`` gives no CatalogElsewhereWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CatalogElsewhereWarning)
        connect(db, **kw).close()
    return True


def test_a_catalog_where_it_was_built_connects_and_checks_quietly(project: Path, monkeypatch) -> None:
    monkeypatch.delenv("SQUIGGLE_LAKE", raising=False)
    assert connects_quietly(project / "warehouse.duckdb")
    assert connects_quietly(project / "warehouse.duckdb", lake=project / "lake")
    with connect(project / "warehouse.duckdb") as con:  # the connection is free for the README's queries
        assert con.sql("SELECT count(*) FROM runs").fetchall() == con.execute("SELECT count(*) FROM runs").fetchall()
    done = cli("check", cwd=project)  # the defaults: ./lake and ./warehouse.duckdb
    # nothing but the notes on its 4-capture series, too short for the change-point model
    said = [line for line in done.stdout.splitlines() if not line.startswith("note: ")]
    assert (done.returncode, said) == (0, ["lake is clean"]), done.stdout + done.stderr


def test_a_copied_project_warns_and_is_reported_until_its_catalog_is_rebuilt(project: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SQUIGGLE_LAKE", raising=False)
    copy = Path(shutil.copytree(project, tmp_path / "copy"))
    write_runs(copy / "lake", {"r2": STEPS})  # only in the copy
    db = copy / "warehouse.duckdb"
    assert rows(db) == ROWS_PER_RUN  # the copy's catalog silently reads the original lake

    with pytest.warns(CatalogElsewhereWarning) as warned:
        connect(db).close()
    (message,) = [str(w.message) for w in warned]
    assert message == (
        f"catalog {db} was built at {project / 'warehouse.duckdb'} (copied or moved since): its views read the "
        f"lake {project / 'lake'}. Rebuild it where it is: `make catalog` (warehouse catalog --lake LAKE --db {db})"
    )

    for args in (("check",), ("check", "--lake", "lake", "--db", "warehouse.duckdb")):
        done = cli(*args, cwd=copy)
        assert done.returncode == 1, done.stderr
        assert done.stdout.startswith(f"{db}: catalog_elsewhere: catalog {db} was built at {project / 'warehouse.duckdb'}")
        assert "reads another lake than" in done.stdout and "`make catalog`" in done.stdout
        assert done.stdout.endswith("1 problem(s) found\n")
    (problem,) = json.loads(cli("check", "--json", cwd=copy).stdout)
    assert (problem["kind"], problem["path"], problem["dataset"]) == ("catalog_elsewhere", str(db), None)

    done = cli("catalog", "--lake", "lake", "--db", "warehouse.duckdb", cwd=copy)  # what `make catalog` runs
    assert done.returncode == 0, done.stderr
    assert connects_quietly(db, lake=copy / "lake")
    assert rows(db) == 2 * ROWS_PER_RUN
    assert cli("check", cwd=copy).returncode == 0
    assert rows(project / "warehouse.duckdb") == ROWS_PER_RUN and connects_quietly(project / "warehouse.duckdb")


def test_a_moved_project_warns_that_its_lake_is_gone(project: Path, tmp_path: Path) -> None:
    moved = project.rename(tmp_path / "moved")
    with pytest.warns(CatalogElsewhereWarning, match="copied or moved since\\) and reads a lake that no longer exists"):
        connect(moved / "warehouse.duckdb").close()
    done = cli("check", cwd=moved)
    assert done.returncode == 1 and "catalog_elsewhere" in done.stdout and "no longer exists" in done.stdout


def test_a_catalog_of_another_lake_than_the_one_named(project: Path, tmp_path: Path, monkeypatch) -> None:
    other = tmp_path / "other-lake"
    write_runs(other, {"r9": STEPS})
    monkeypatch.setenv("SQUIGGLE_LAKE", str(other))
    with pytest.warns(CatalogElsewhereWarning, match=f"reads another lake than {other}"):
        connect(project / "warehouse.duckdb").close()
    done = cli("check", "--lake", str(other), "--db", str(project / "warehouse.duckdb"))
    assert done.returncode == 1 and f"reads another lake than {other}" in done.stdout
    # A catalog that is not beside the lake checked is another project's: not judged unless named.
    assert cli("check", "--lake", str(other), cwd=project, env={"SQUIGGLE_LAKE": ""}).returncode == 0
    done = cli("check", "--lake", str(other), "--db", str(tmp_path / "none.duckdb"))
    assert done.returncode == 2 and f"no catalog at {tmp_path / 'none.duckdb'}" in done.stderr


def test_refreshing_a_copied_catalog_rebuilds_it_in_its_place(project: Path, tmp_path: Path) -> None:
    # `make models` refreshes the catalog only when something changed: a catalog copied
    # beside the same lake is rebuilt too, so that it records where it now is.
    copied = Path(shutil.copy(project / "warehouse.duckdb", tmp_path / "copied.duckdb"))
    assert refresh_catalog(project / "lake", copied) is True
    assert connects_quietly(copied)
    assert refresh_catalog(project / "lake", copied) is False
    assert os.path.exists(project / "warehouse.duckdb") and connects_quietly(project / "warehouse.duckdb")


def test_a_catalog_built_before_its_location_was_recorded(project: Path, tmp_path: Path) -> None:
    db = project / "warehouse.duckdb"
    with connect(db, read_only=False) as con:
        con.execute("ALTER TABLE warehouse_catalog DROP COLUMN catalog")
    assert connects_quietly(db, lake=project / "lake")  # its lake is still compared
    with pytest.warns(CatalogElsewhereWarning, match=f"reads another lake than {tmp_path / 'elsewhere'}"):
        connect(db, lake=tmp_path / "elsewhere").close()
    assert refresh_catalog(project / "lake", db) is True  # rebuilt: it records its place
    with connect(db) as con:
        assert con.execute("SELECT catalog FROM warehouse_catalog").fetchone() == (str(db),)
