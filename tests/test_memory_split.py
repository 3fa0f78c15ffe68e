"""A batch of n runs that runs out of DuckDB's memory is computed again, with the batches after
it, in batches of at most n // 2 runs, down to a run alone: the output is the one a build of
one run per batch gives, and the split is said, recorded and noted by ``warehouse check``. A
single run out of memory fails the build as before, with nothing published."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from model_fixtures import only_models_sql, read_rows, snapshot, write_runs
from warehouse import models
from warehouse.check import memory_split_notes
from warehouse.models import ModelError, executors
from warehouse.models.state import load_analyses

DYN = "geometry_dynamics"
RUNS = {f"r{i}": range(0, 100, 10) for i in range(5)}


class RunsAtMost:
    """A DuckDB connection whose ``COPY`` runs out of memory when its batch reads more than
    ``most`` runs (``most`` = 0: always), as a real one does past its memory limit."""

    def __init__(self, con: duckdb.DuckDBPyConnection, most: int) -> None:
        self.con, self.most = con, most

    def execute(self, sql: str, *args: object) -> duckdb.DuckDBPyConnection:
        if sql.startswith("COPY"):
            runs = self.con.execute("SELECT count(DISTINCT run_id) FROM geometry_state").fetchone()[0]
            if runs > self.most:
                raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block (injected)")
        return self.con.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.con, name)


@pytest.fixture
def lakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("SQUIGGLE_SQL", str(only_models_sql(tmp_path / "sql", DYN)))
    lake = tmp_path / "lake"
    write_runs(lake, RUNS)
    twin = tmp_path / "twin"
    shutil.copytree(lake, twin)
    return lake, twin


def limit_runs(monkeypatch: pytest.MonkeyPatch, most: int) -> None:
    """Batches computed here (the local executor's connection) run out of memory past ``most`` runs."""
    connect = executors.work_connection
    monkeypatch.setattr(executors, "work_connection", lambda spill: RunsAtMost(connect(spill), most))


def test_a_batch_out_of_memory_is_split_until_it_fits(lakes: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    lake, twin = lakes
    monkeypatch.setenv("SQUIGGLE_BATCH_BYTES", "1")  # the reference: every run a batch of its own
    models.run(lake=twin, report=lambda _: None)
    monkeypatch.setenv("SQUIGGLE_BATCH_BYTES", str(10**9))  # all five runs in one batch
    unlimited = executors.work_connection
    limit_runs(monkeypatch, 2)
    said: list[str] = []
    [result] = models.run(lake=lake, report=said.append)
    # 5 -> 2 + 2 + 1: one split, said with the memory error
    splits = [line for line in said if "ran out of memory" in line]
    assert splits == [f"  {DYN}: 5 runs together ran out of memory (Out of Memory Error: could not allocate block"
                      " (injected)); computing them and the batches after them in batches of at most 2 runs"]
    assert result.rows == len(read_rows(twin, DYN))
    assert sorted(read_rows(lake, DYN), key=repr) == sorted(read_rows(twin, DYN), key=repr)
    assert sorted(p.name for p in (lake / DYN).glob("analysis_id=*/run_id=*")) == [f"run_id={r}" for r in RUNS]
    # kept in the analysis record, and a note of `warehouse check` until a build needs no split
    [record] = load_analyses(lake).values()
    assert record.last_build_splits == tuple(s.strip() for s in splits)
    [note] = memory_split_notes(lake)
    assert note.startswith(f"{DYN}/analysis_id={record.analysis_id} ({DYN} ") and "split 1 batch of runs that ran out of memory into smaller ones" in note
    monkeypatch.setattr(executors, "work_connection", unlimited)
    models.run(lake=lake, full_refresh=True, report=lambda _: None)
    assert memory_split_notes(lake) == []


def test_a_single_run_out_of_memory_fails_the_build_and_publishes_nothing(
    lakes: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    lake, _ = lakes
    monkeypatch.setenv("SQUIGGLE_BATCH_BYTES", str(10**9))
    limit_runs(monkeypatch, 0)
    before = snapshot(lake)
    said: list[str] = []
    with pytest.raises(ModelError, match=r"model geometry_dynamics .*the SQL failed: Out of Memory Error"):
        models.run(lake=lake, report=said.append)
    # 5 runs, then batches of at most 2, then of 1, the first of which still fails
    assert [line.split("at most ")[1] for line in said if "ran out of memory" in line] == ["2 runs", "1 run"]
    assert snapshot(lake) == before
