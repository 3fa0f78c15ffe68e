"""A full disk, a folder without write permission, a read-only lake: every write fails with
an error naming the cause, and leaves no partial file and every existing file as it was.

The full disk is a real tmpfs of a few MiB; the missing permission is real (a process
running as nobody, without capabilities); the read-only lake is a real read-only bind
mount. Those need root and are skipped elsewhere. Failures at a precise moment (the
second partition, the record) are injected where the file system cannot aim that well.
"""

from __future__ import annotations

import errno
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model_fixtures import CAPTURE, only_models_sql, read_rows, visible_files, write_runs
from reliability_fixtures import fill, read_only_view, run_unprivileged, sha256s, shared_folder, small_disk
from warehouse import build_catalog, check_lake, connect, contracts, lake as lk, models, writer
from warehouse.errors import LakeNotWritable, WarehouseError
from warehouse.models import ModelError
from warehouse.models.state import analyses_dir
from warehouse.lake import init_lake

DYN = "geometry_dynamics"
REPO = Path(__file__).resolve().parent.parent
STEPS = range(0, 100, 10)
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of no bytes


@pytest.fixture(scope="module")
def dyn_sql(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return only_models_sql(tmp_path_factory.mktemp("faults") / "sql", DYN)


@pytest.fixture(autouse=True)
def engine_sql(dyn_sql: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUIGGLE_SQL", str(dyn_sql))


def quiet(_: str) -> None:
    pass


def random_geometry(runs: list[str], rows_per_run: int, seed: int = 0) -> pa.Table:
    """geometry_state rows whose float descriptors are random: they do not compress."""
    rng = np.random.default_rng(seed)
    n = rows_per_run * len(runs)
    data = {
        "run_id": np.repeat(runs, rows_per_run), "analysis_id": [CAPTURE] * n,
        "step": np.tile(np.arange(rows_per_run, dtype=np.int64), len(runs)), "seed": np.zeros(n, np.int32),
        "sample_set": ["eval"] * n, "sample_id": [None] * n, "layer": np.zeros(n, np.int16),
        "module": ["resid_post"] * n, "n_samples": np.full(n, 16, np.int32), "dim": np.full(n, 8, np.int32),
    }
    for d in contracts.DESCRIPTORS:
        data[d] = rng.random(n).astype(np.float32)
    return pa.table(data)


def assert_no_leftovers(lake: Path) -> None:
    assert not (lake / lk.STAGING_DIR).exists()
    assert not [p for p in lake.rglob(f"{lk.TEMP_PREFIX}*")]


# ---------------------------------------------------------------------------------------
# The writer


def test_a_write_larger_than_the_free_space_fails_while_staging(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        lake = init_lake(disk / "lake")
        writer.write("checkpoints", [{"run_id": "r1", "step": 1, "train_loss": 0.5}], lake=lake)
        before = sha256s(lake)
        with pytest.raises(WarehouseError) as info:
            writer.write("geometry_state", random_geometry(["r1"], 100_000), lake=lake)
        message = str(info.value)
        assert "dataset geometry_state" in message and "No space left on device" in message
        assert message.endswith("nothing was written")
        assert sha256s(lake) == before
        assert_no_leftovers(lake)
        # the space is free again: a small write goes through
        assert writer.write("checkpoints", [{"run_id": "r1", "step": 2}], lake=lake).rows_written == 1


def staged_and_published_sizes(table: pa.Table, lake: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """The bytes a write of ``table`` stages and publishes, measured on a disk with room."""
    publish, sizes = lk.publish, []

    def measure(written: Path, folder: Path) -> Path:
        sizes.append(((written.parent / "input-0.parquet").stat().st_size, written.stat().st_size))
        return publish(written, folder)

    monkeypatch.setattr(lk, "publish", measure)
    writer.write("geometry_state", table, lake=lake, create=True)
    monkeypatch.setattr(lk, "publish", publish)
    (size,) = sizes
    return size


def test_a_write_whose_publish_finds_the_disk_full_fails_cleanly(tmp_path: Path, monkeypatch) -> None:
    table = random_geometry(["r1"], 40_000)
    staged, published = staged_and_published_sizes(table, tmp_path / "roomy", monkeypatch)
    # room for the staged copy and half the published one: staging fits, publishing does not
    with small_disk(tmp_path / "disk", str(staged + published // 2 + 64 * 1024)) as disk:
        lake = init_lake(disk / "lake")
        writer.write("checkpoints", [{"run_id": "r1", "step": 1}], lake=lake)
        before = sha256s(lake)
        with pytest.raises(WarehouseError, match="No space left on device; nothing was written"):
            writer.write("geometry_state", table, lake=lake)
        after = sha256s(lake)
        # the key check ran under the dataset's lock: its empty lock file is all that is new
        assert after.pop("_meta/locks/geometry_state.lock") == EMPTY_SHA256
        assert after == before
        assert_no_leftovers(lake)


def test_a_failure_after_some_partitions_says_which_and_a_rewrite_completes(tmp_path: Path, monkeypatch) -> None:
    lake = init_lake(tmp_path / "lake")
    table = random_geometry(["r1", "r2", "r3"], 100)
    publish, calls = lk.publish, []

    def second_fails(written: Path, folder: Path) -> Path:
        calls.append(folder)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(folder))
        return publish(written, folder)

    monkeypatch.setattr(lk, "publish", second_fails)
    with pytest.raises(WarehouseError, match=r"1 partition file\(s\) were published before the failure"):
        writer.write("geometry_state", table, lake=lake)
    monkeypatch.setattr(lk, "publish", publish)
    (only,) = visible_files(lake, "geometry_state")
    assert only.parent.name == "run_id=r1" and pq.read_table(only).num_rows == 100  # complete, never half
    assert_no_leftovers(lake)
    result = writer.write("geometry_state", table, lake=lake)
    assert (result.rows_written, result.rows_skipped) == (200, 100)
    assert len(read_rows(lake, "geometry_state")) == 300


def test_a_write_into_a_folder_it_may_not_write_fails_cleanly() -> None:
    with shared_folder() as shared:
        lake = init_lake(shared / "lake")
        writer.write("checkpoints", [{"run_id": "r1", "step": 1}], lake=lake)
        for p in [lake, *lake.rglob("*")]:
            p.chmod(0o777 if p.is_dir() else 0o666)
        (lake / "checkpoints" / "run_id=r1").chmod(0o555)  # the partition the write needs
        before = sha256s(lake)
        result = run_unprivileged(textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(REPO)!r})
            from warehouse import writer
            from warehouse.errors import WarehouseError
            try:
                writer.write("checkpoints", [{{"run_id": "r1", "step": 2}}], lake={str(lake)!r})
            except WarehouseError as exc:
                print(exc)
                sys.exit(2)
        """), cwd=shared)
        assert result.returncode == 2, result.stderr
        assert "Permission denied" in result.stdout and "nothing was written" in result.stdout
        assert sha256s(lake) == before
        assert_no_leftovers(lake)


# ---------------------------------------------------------------------------------------
# The model engine


def build(lake: Path) -> list:
    return models.run(lake=lake, report=quiet)


def clean_outputs(lake: Path, tmp_path: Path) -> list[tuple]:
    """The model's rows when built on a copy of ``lake``'s inputs, on a disk with room."""
    clean = tmp_path / "clean"
    shutil.copytree(lake / "geometry_state", clean / "geometry_state")
    build(clean)
    return read_rows(clean, DYN)


def test_a_build_on_a_full_disk_fails_cleanly_and_completes_once_there_is_room(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "8m") as disk:
        lake = init_lake(disk / "lake")
        write_runs(lake, {"r1": STEPS, "r2": STEPS})
        build(lake)
        write_runs(lake, {"r3": STEPS})
        filler = fill(disk)
        before = sha256s(lake)
        with pytest.raises(ModelError) as info:
            build(lake)
        assert f"model {DYN}" in str(info.value) and "No space left on device" in str(info.value)
        assert sha256s(lake) == before
        assert_no_leftovers(lake)
        filler.unlink()
        (result,) = build(lake)
        assert set(result.plan.build) == {"r3"}
        assert read_rows(lake, DYN) == clean_outputs(lake, tmp_path)


def test_a_record_that_cannot_be_written_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    lake = init_lake(tmp_path / "lake")
    write_runs(lake, {"r1": STEPS})
    (first,) = build(lake)
    record = analyses_dir(lake) / f"{first.plan.analysis_id}.json"
    old_record = record.read_bytes()
    write_runs(lake, {"r2": STEPS})
    write_text = Path.write_text

    def half_then_full(self: Path, text: str, *args, **kw) -> int:
        if self.parent == analyses_dir(lake):
            write_text(self, text[: len(text) // 2], *args, **kw)
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write_text(self, text, *args, **kw)

    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(ModelError, match="cannot write to the lake: No space left on device"):
        build(lake)
    monkeypatch.setattr(Path, "write_text", write_text)
    assert record.read_bytes() == old_record
    assert sorted(p.name for p in analyses_dir(lake).iterdir()) == [record.name]
    assert_no_leftovers(lake)
    # r2's output went in before the record failed; the next build redoes it from the record
    (again,) = build(lake)
    assert set(again.plan.build) == {"r2"}
    assert read_rows(lake, DYN) == clean_outputs(lake, tmp_path)


def test_a_build_that_may_not_write_its_output_folder_fails_cleanly() -> None:
    with shared_folder() as shared:
        lake = init_lake(shared / "lake")
        write_runs(lake, {"r1": STEPS})
        (first,) = build(lake)
        write_runs(lake, {"r2": STEPS})
        for p in [lake, *lake.rglob("*")]:
            p.chmod(0o777 if p.is_dir() else 0o666)
        (lake / DYN / f"analysis_id={first.plan.analysis_id}").chmod(0o555)
        sql = shared / "sql"
        only_models_sql(sql, DYN)
        before = sha256s(lake)
        result = run_unprivileged(textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(REPO)!r})
            from warehouse import models
            from warehouse.errors import WarehouseError
            try:
                models.run(lake={str(lake)!r}, sql_dir={str(sql)!r}, report=lambda _: None)
            except WarehouseError as exc:
                print(exc)
                sys.exit(2)
        """), cwd=shared)
        assert result.returncode == 2, result.stderr
        assert f"model {DYN}" in result.stdout and "Permission denied" in result.stdout
        assert sha256s(lake) == before
        assert_no_leftovers(lake)


# ---------------------------------------------------------------------------------------
# The catalog


def test_a_catalog_that_does_not_fit_keeps_the_old_one(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    write_runs(lake, {"r1": STEPS})
    build(lake)
    with small_disk(tmp_path / "disk", "16m") as disk:
        db = build_catalog(lake, disk / "w.duckdb")
        old = db.read_bytes()
        write_runs(lake, {"r2": STEPS})
        build(lake)
        filler = fill(disk)
        with pytest.raises(WarehouseError, match=f"cannot write the catalog {db}: .*; the old catalog is unchanged"):
            build_catalog(lake, db)
        assert db.read_bytes() == old
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "w.duckdb"]
        with connect(db) as con:
            assert con.execute(f"SELECT count(DISTINCT run_id) FROM {DYN}").fetchone() == (1,)
        filler.unlink()
        build_catalog(lake, db)
        with connect(db) as con:
            assert con.execute(f"SELECT count(DISTINCT run_id) FROM {DYN}").fetchone() == (2,)


# ---------------------------------------------------------------------------------------
# A read-only lake


def test_a_read_only_lake_is_checked_and_catalogued_and_refuses_writes(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    write_runs(lake, {"r1": STEPS, "r2": STEPS})
    build(lake)
    with read_only_view(lake, tmp_path / "ro") as ro:
        before = sha256s(ro)
        with pytest.raises(WarehouseError, match="Read-only file system; nothing was written"):
            writer.write("checkpoints", [{"run_id": "r1", "step": 1}], lake=ro)
        with pytest.raises(LakeNotWritable, match="Read-only file system"):
            build(ro)
        assert check_lake(ro) == []
        db = build_catalog(ro, tmp_path / "w.duckdb")  # nothing can change the lake: read live
        with connect(db) as con:
            assert con.execute(f"SELECT count(*) FROM {DYN}").fetchone() == (len(read_rows(lake, DYN)),)
            (sql,) = con.execute(f"SELECT sql FROM duckdb_views() WHERE view_name = '{DYN}'").fetchone()
        assert f"'{ro}/{DYN}/" in sql
        assert sha256s(ro) == before
