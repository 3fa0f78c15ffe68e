"""The catalog file: typed views over the lake, comments, BI views, the atomic swap."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from lake_fixtures import write_part
from warehouse import build_catalog, connect, contracts
from warehouse.catalog import parse_view_header, refresh_catalog
from warehouse.errors import WarehouseError

# Datasets given files in the standard lake; every other dataset stays empty.
FILLED = {
    "runs": [({"run_id": "0007"}, 1), ({"run_id": "0008"}, 1)],
    "checkpoints": [({"run_id": "0007"}, 3)],
    "families": [({}, 2)],
    "samples": [({"sample_set": "fixed_v1"}, 4)],
    "geometry_state": [({"analysis_id": "geom-a", "run_id": "0007"}, 5)],
    "probe_summaries": [({"analysis_id": "dis-a", "run_id": "0007"}, 2)],
    "events": [({"analysis_id": "cons-a"}, 1)],
}
EXPECTED_ROWS = {name: sum(n for _, n in FILLED.get(name, [])) for name in contracts.DATASETS}

EXAMPLE_VIEW = """\
-- name: run_overview
-- description: One row per run with its checkpoint count.
-- column run_id: The run.
-- column n_checkpoints: Checkpoints recorded for the run.
CREATE VIEW run_overview AS
SELECT r.run_id, count(c.step) AS n_checkpoints
FROM runs r LEFT JOIN checkpoints c USING (run_id)
GROUP BY r.run_id
"""


def make_lake(root: Path) -> Path:
    for dataset, parts in FILLED.items():
        for partition, n in parts:
            write_part(root, dataset, partition, n)
    return root


def describe(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f'DESCRIBE "{view}"').fetchall()]


def contract_columns(name: str) -> list[tuple[str, str]]:
    return [(c.name, contracts.duckdb_type(c.type)) for c in contracts.get(name).all_columns]


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A catalog built with relative paths from one folder, then used from another."""
    work = tmp_path / "work"
    make_lake(work / "lake")
    monkeypatch.chdir(work)
    db = build_catalog(lake="lake", db="warehouse.duckdb", views_dir=tmp_path / "no-views")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return db


def test_every_dataset_is_a_typed_view_from_any_directory(built: Path) -> None:
    assert built.is_absolute() and built.is_file()
    with connect(built) as con:
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        analysed = {n for n, d in contracts.DATASETS.items() if "analysis_id" in d.partition_by}
        assert views == set(contracts.DATASETS) | {f"{n}_all" for n in analysed}
        for name in contracts.DATASETS:
            assert describe(con, name) == contract_columns(name), name
            # a model's target shows its current analysis, not built on this lake: every
            # analysis is in <name>_all; a captured dataset shows each run's newest analysis
            shown = 0 if name in analysed and name != "geometry_state" else EXPECTED_ROWS[name]
            assert con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == shown, name
            if name in analysed:
                assert describe(con, f"{name}_all") == contract_columns(name), name
                assert con.execute(f'SELECT count(*) FROM "{name}_all"').fetchone()[0] == EXPECTED_ROWS[name], name


def test_empty_views_are_typed_and_empty(built: Path) -> None:
    with connect(built) as con:
        assert describe(con, "matches") == contract_columns("matches")
        assert con.execute("SELECT count(*) FROM matches").fetchone() == (0,)
        # Typed, not NULL-typed: arithmetic and list functions bind.
        assert con.execute("SELECT max(norm + 1), max(len(vector)) FROM signatures").fetchone() == (None, None)


def test_connect_is_read_only(built: Path) -> None:
    with connect(built) as con, pytest.raises(duckdb.Error):
        con.execute("CREATE TABLE t (a INTEGER)")


def test_partition_values_stay_strings(built: Path) -> None:
    with connect(built) as con:
        assert con.execute("SELECT DISTINCT run_id FROM checkpoints").fetchall() == [("0007",)]
        assert sorted(con.execute("SELECT run_id FROM runs").fetchall()) == [("0007",), ("0008",)]
        assert con.execute("SELECT DISTINCT analysis_id, run_id FROM probe_summaries_all").fetchall() == [("dis-a", "0007")]


def test_stray_folder_does_not_change_types_or_values(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    # checkpoints has no seed column; geometry_state has one (int32) inside its files.
    # Files below a stray folder are not at the dataset's partition depth: views skip them
    # (`warehouse check` reports them), so they can neither add rows nor override values.
    write_part(lake, "checkpoints", {"run_id": "0007"}, 2)
    write_part(lake, "checkpoints", {"run_id": "0007"}, 5, extra_dirs=("seed=3",), start=10)
    write_part(lake, "geometry_state", {"analysis_id": "a", "run_id": "0007"}, 2)
    write_part(lake, "geometry_state", {"analysis_id": "a", "run_id": "0007"}, 5, extra_dirs=("seed=3",), start=10)
    db = build_catalog(lake, tmp_path / "w.duckdb", views_dir=tmp_path / "no-views")
    with connect(db) as con:
        for name in ("checkpoints", "geometry_state"):
            assert describe(con, name) == contract_columns(name)
            assert con.execute(f"SELECT count(*) FROM {name}").fetchone() == (2,)
        assert con.execute("SELECT DISTINCT typeof(seed) FROM geometry_state").fetchall() == [("INTEGER",)]
        assert 3 not in [s for (s,) in con.execute("SELECT seed FROM geometry_state").fetchall()]


def test_comments_on_every_view_and_column(built: Path) -> None:
    with connect(built) as con:
        views = dict(con.execute("SELECT view_name, comment FROM duckdb_views() WHERE NOT internal").fetchall())
        columns = {
            (v, c): comment
            for v, c, comment in con.execute(
                "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE database_name = 'warehouse'"
            ).fetchall()
        }
        tables = dict(con.execute("SELECT table_name, comment FROM duckdb_tables()").fetchall())
    for d in contracts.DATASETS.values():
        assert views[d.name].startswith(f"{d.number} {d.name} ({d.kind}): {d.doc}")
        for c in d.all_columns:
            assert columns[(d.name, c.name)], (d.name, c.name)
    assert views["matches"].endswith("rebuild it to see new data.")
    assert "Allowed values: train, val, probe." in columns[("samples", "split")]
    assert "Nullable." in columns[("geometry_state", "sample_id")]
    assert "Nullable." not in columns[("geometry_state", "run_id")]
    assert "Partition column" in columns[("probe_summaries", "analysis_id")]
    assert tables["warehouse_datasets"]
    assert all(columns[(t, c)] for (t, c) in columns if t == "warehouse_datasets")


def test_datasets_table(built: Path) -> None:
    with connect(built) as con:
        rows = con.execute(
            "SELECT name, number, kind, schema_version, primary_key, partition_by, n_files, description "
            "FROM warehouse_datasets"
        ).fetchall()
    assert [r[0] for r in rows] == list(contracts.DATASETS)
    for name, number, kind, version, pk, parts, n_files, doc in rows:
        d = contracts.get(name)
        assert (number, kind, version, tuple(pk), tuple(parts), doc) == (
            d.number, d.kind, d.schema_version, d.primary_key, d.partition_by, d.doc,
        )
        assert n_files == len(FILLED.get(name, []))


def test_bi_views_with_header_comments(tmp_path: Path) -> None:
    lake = make_lake(tmp_path / "lake")
    views = tmp_path / "views"
    views.mkdir()
    (views / "10_run_overview.sql").write_text(EXAMPLE_VIEW)
    # Sorted order: this view builds on the one above.
    (views / "20_busy_runs.sql").write_text(
        "CREATE VIEW busy_runs AS SELECT run_id FROM run_overview WHERE n_checkpoints > 0\n"
    )
    db = build_catalog(lake, tmp_path / "w.duckdb", views_dir=views)
    with connect(db) as con:
        assert sorted(con.execute("SELECT * FROM run_overview").fetchall()) == [("0007", 3), ("0008", 0)]
        assert con.execute("SELECT * FROM busy_runs").fetchall() == [("0007",)]
        assert con.execute(
            "SELECT comment FROM duckdb_views() WHERE view_name = 'run_overview'"
        ).fetchone() == ("One row per run with its checkpoint count.",)
        assert dict(
            con.execute("SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'run_overview'").fetchall()
        ) == {"run_id": "The run.", "n_checkpoints": "Checkpoints recorded for the run."}


def test_parse_view_header_stops_at_sql() -> None:
    header = parse_view_header("-- name: v\n\n-- column a: x: y\nSELECT 1\n-- description: too late\n")
    assert (header.name, header.description, header.columns) == ("v", None, {"a": "x: y"})


@pytest.mark.parametrize(
    "sql, message",
    [
        ("CREATE VIEW broken AS SELEC 1", "broken.sql"),
        ("CREATE VIEW a AS SELECT 1; CREATE VIEW b AS SELECT 2", "exactly one CREATE VIEW"),
        ("CREATE OR REPLACE VIEW runs AS SELECT 1 AS x", "exactly one new view"),
        ("-- name: other\nCREATE VIEW mine AS SELECT 1 AS x", "creates view mine"),
        ("-- column nope: doc\nCREATE VIEW mine AS SELECT 1 AS x", "nope"),
    ],
)
def test_failed_build_keeps_the_old_catalog(tmp_path: Path, sql: str, message: str) -> None:
    lake = make_lake(tmp_path / "lake")
    db = build_catalog(lake, tmp_path / "w.duckdb", views_dir=tmp_path / "no-views")
    before = db.read_bytes()
    views = tmp_path / "views"
    views.mkdir()
    (views / "broken.sql").write_text(sql)
    with pytest.raises(WarehouseError, match="views file .*broken.sql") as info:
        build_catalog(lake, db, views_dir=views)
    assert message in str(info.value)
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "views", "w.duckdb"]


def test_swap_leaves_open_connections_working(tmp_path: Path) -> None:
    lake = make_lake(tmp_path / "lake")
    db = build_catalog(lake, tmp_path / "w.duckdb", views_dir=tmp_path / "no-views")
    old = connect(db)
    old_plain = duckdb.connect(str(db), read_only=True)  # as a BI tool would open it
    assert old.execute("SELECT count(*) FROM matches_all").fetchone() == (0,)
    write_part(lake, "matches", {"analysis_id": "m"}, 3)
    assert build_catalog(lake, db, views_dir=tmp_path / "no-views") == db
    # The old connections keep their file: the empty view they bound stays usable.
    for con in (old, old_plain):
        assert con.execute("SELECT count(*) FROM matches_all").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (2,)
    with connect(db) as new:
        assert new.execute("SELECT count(*) FROM matches_all").fetchone() == (3,)
    old.close()
    old_plain.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "w.duckdb"]


def test_paths_are_quoted(tmp_path: Path) -> None:
    lake = tmp_path / "o'brien lake"
    write_part(lake, "runs", {"run_id": "r1"}, 1)
    db = build_catalog(lake, tmp_path / "it's.duckdb", views_dir=tmp_path / "no-views")
    with connect(db) as con:
        assert con.execute("SELECT run_id FROM runs").fetchall() == [("r1",)]


def test_environment_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_lake(tmp_path / "lake")
    monkeypatch.setenv("SQUIGGLE_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("SQUIGGLE_DB", str(tmp_path / "env.duckdb"))
    monkeypatch.chdir(tmp_path)
    assert build_catalog(views_dir=tmp_path / "no-views") == tmp_path / "env.duckdb"
    with connect() as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (2,)


def test_connect_without_catalog(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="run `warehouse catalog`"):
        connect(tmp_path / "missing.duckdb")


def test_unreadable_dataset_fails_the_build_naming_it(tmp_path: Path) -> None:
    lake = make_lake(tmp_path / "lake")
    db = build_catalog(lake, tmp_path / "w.duckdb", views_dir=tmp_path / "no-views")
    before = db.read_bytes()
    # A file that is not Parquet at the dataset's depth: DuckDB cannot bind the view.
    (lake / "checkpoints" / "run_id=0009").mkdir(parents=True)
    (lake / "checkpoints" / "run_id=0009" / "part-bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(WarehouseError, match="dataset checkpoints"):
        build_catalog(lake, db, views_dir=tmp_path / "no-views")
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "w.duckdb"]


def test_refresh_rebuilds_only_when_something_changed(tmp_path: Path) -> None:
    lake = make_lake(tmp_path / "lake")
    views = tmp_path / "views"
    views.mkdir()
    db = tmp_path / "warehouse.duckdb"
    assert refresh_catalog(lake, db, views_dir=views) is True  # no catalog yet
    inode = db.stat().st_ino
    assert refresh_catalog(lake, db, views_dir=views) is False
    assert db.stat().st_ino == inode  # the same file, not rewritten

    write_part(lake, "metrics_scalar", {"run_id": "r9"}, 2)  # a new file
    assert refresh_catalog(lake, db, views_dir=views) is True
    (views / "run_overview.sql").write_text(EXAMPLE_VIEW)  # a new BI view
    assert refresh_catalog(lake, db, views_dir=views) is True
    assert refresh_catalog(lake, db, views_dir=views) is False
    con = connect(db)
    try:
        assert con.execute("SELECT count(*) FROM run_overview").fetchone()[0] >= 0
        (lake_row,) = con.execute("SELECT lake FROM warehouse_catalog").fetchall()
        assert lake_row[0] == str(lake.resolve())
    finally:
        con.close()


def test_refresh_replaces_a_catalog_without_fingerprint(tmp_path: Path) -> None:
    lake = make_lake(tmp_path / "lake")
    db = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(db)).close()  # an empty DuckDB file: not a catalog
    assert refresh_catalog(lake, db, views_dir=tmp_path / "no-views") is True
    con = connect(db)
    try:
        assert con.execute("SELECT count(*) FROM warehouse_catalog").fetchone()[0] == 1
    finally:
        con.close()
