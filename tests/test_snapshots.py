"""The catalog's snapshots of model outputs: what they hold, when they are made anew, reused
and removed, and what a reader holding an old catalog sees."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from model_fixtures import only_models_sql, read_rows, write_runs
from warehouse import build_catalog, connect, models
from warehouse.errors import WarehouseError
from warehouse.snapshots import COMPLETE, snapshots_dir

DYN = "geometry_dynamics"
STEPS = range(0, 100, 10)


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SQUIGGLE_SQL", str(only_models_sql(tmp_path / "sql", DYN)))
    root = tmp_path / "lake"
    write_runs(root, {"r1": STEPS})
    models.run(lake=root, report=lambda _: None)
    return root


def snapshots(lake: Path) -> list[Path]:
    return sorted(snapshots_dir(lake).iterdir())


def dyn_rows(db: Path) -> int:
    with connect(db) as con:
        return con.execute(f"SELECT count(*) FROM {DYN}").fetchone()[0]


def test_a_snapshot_links_every_output_file_and_the_views_read_it(lake: Path, tmp_path: Path) -> None:
    db = build_catalog(lake, tmp_path / "w.duckdb")
    (snapshot,) = snapshots(lake)
    outputs = sorted(p.relative_to(lake) for p in (lake / DYN).rglob("*.parquet"))
    linked = sorted(p.relative_to(snapshot) for p in snapshot.rglob("*.parquet"))
    assert linked == outputs and (snapshot / COMPLETE).is_file()
    for rel in outputs:  # the same bytes, not a copy
        assert os.path.samefile(lake / rel, snapshot / rel)
    assert not (snapshot / "geometry_state").exists()  # written by writers only: read live
    with connect(db) as con:
        (sql,) = con.execute(f"SELECT sql FROM duckdb_views() WHERE view_name = '{DYN}'").fetchone()
        assert f"'{snapshot}/{DYN}/" in sql
    assert dyn_rows(db) == len(read_rows(lake, DYN))


def test_an_unchanged_lake_reuses_the_snapshot_and_a_changed_one_makes_another(lake: Path, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    build_catalog(lake, db)
    first = snapshots(lake)
    build_catalog(lake, db)
    assert snapshots(lake) == first
    write_runs(lake, {"r2": STEPS})
    models.run(lake=lake, report=lambda _: None)
    build_catalog(lake, db)
    assert len(snapshots(lake)) == 2 and snapshots(lake)[0] == first[0]


def test_a_held_catalog_keeps_its_outputs_until_the_retention_ends(lake: Path, tmp_path: Path, monkeypatch) -> None:
    db = build_catalog(lake, tmp_path / "w.duckdb")
    held = connect(db)
    rows_then = held.execute(f"SELECT count(*) FROM {DYN}").fetchone()
    models.run(lake=lake, report=lambda _: None, full_refresh=True)  # every output file replaced
    write_runs(lake, {"r2": STEPS})
    models.run(lake=lake, report=lambda _: None)
    build_catalog(lake, db)
    assert held.execute(f"SELECT count(*) FROM {DYN}").fetchone() == rows_then  # its own snapshot
    assert dyn_rows(db) == 2 * rows_then[0]
    monkeypatch.setenv("SQUIGGLE_SNAPSHOT_HOURS", "0")
    write_runs(lake, {"r3": STEPS})
    models.run(lake=lake, report=lambda _: None)
    build_catalog(lake, db)
    assert len(snapshots(lake)) == 1  # the superseded ones were past a retention of 0 hours
    with pytest.raises(duckdb.IOException, match="No files found|No such file"):
        held.execute(f"SELECT count(*) FROM {DYN}").fetchone()  # reconnect to read the newest
    held.close()
    assert dyn_rows(db) == 3 * rows_then[0]


def test_an_interrupted_snapshot_is_removed_by_the_next_catalog(lake: Path, tmp_path: Path) -> None:
    db = build_catalog(lake, tmp_path / "w.duckdb")
    (kept,) = snapshots(lake)
    interrupted = snapshots_dir(lake) / "1-deadbeef"
    (interrupted / DYN).mkdir(parents=True)  # no .complete: its catalog build was killed
    build_catalog(lake, db)
    assert snapshots(lake) == [kept]


def test_a_bad_retention_setting_is_refused(lake: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SQUIGGLE_SNAPSHOT_HOURS", "a day")
    with pytest.raises(WarehouseError, match="SQUIGGLE_SNAPSHOT_HOURS='a day': give the hours as a number >= 0"):
        build_catalog(lake, tmp_path / "w.duckdb")
    assert not (tmp_path / "w.duckdb").exists() and not snapshots_dir(lake).exists()
