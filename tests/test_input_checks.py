"""How a build checks its input files: once per folder, again only when the folder changed,
never for the files the engine itself published (its records list them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model_fixtures import contract_model, only_models_sql, write_runs
from warehouse import models
from warehouse.models import ModelError, inputs
from warehouse.models.state import load_analyses

DYN = "geometry_dynamics"
STEPS = range(0, 100, 10)
R = "geometry_state/analysis_id=capture-v1/run_id={}"
BAD = Path(__file__).resolve().parent / "data" / "bad"


@pytest.fixture
def sql(tmp_path: Path) -> Path:
    """geometry_dynamics, and a model reading its output."""
    sql = only_models_sql(tmp_path / "sql", DYN)
    contract_model(sql, "downstream", "events_candidates", DYN,
                   {"metric": "'drift'", "step": "step", "magnitude": "drift_velocity::FLOAT"},
                   where="WHERE sample_id IS NULL")
    return sql


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The folders of each call of check_files a build makes."""
    calls: list[list[str]] = []
    check_files = inputs.check_files

    def spy(root: Path, dataset, paths, **kw):
        calls.append(sorted({p.parent.relative_to(root).as_posix() for p in paths}))
        return check_files(root, dataset, paths, **kw)

    monkeypatch.setattr(inputs, "check_files", spy)
    return calls


def build(lake: Path, sql: Path) -> list:
    return models.run(lake=lake, sql_dir=sql, report=lambda _: None)


def forget_the_writer(lake: Path) -> None:
    """As if another tool had written the lake: nothing vouched for by the writer."""
    shutil.rmtree(lake / "_meta" / "checked")


def test_each_folder_is_checked_once_then_only_when_it_changes(tmp_path: Path, sql: Path, checked) -> None:
    lake = tmp_path / "lake"
    write_runs(lake, {"r1": STEPS, "r2": STEPS})
    forget_the_writer(lake)
    build(lake, sql)
    # both models' inputs: geometry_state checked once for the two; the engine's own output not at all
    assert checked == [[R.format("r1"), R.format("r2")]]
    checked.clear()
    copy_in(lake, "r3", "r1")  # another tool's new folder
    build(lake, sql)
    assert checked == [[R.format("r3")]]
    checked.clear()
    write_runs(lake, {"r1": range(100, 120, 10)})  # our writer, into a folder it did not vouch for
    build(lake, sql)
    assert checked == [[R.format("r1")]]
    checked.clear()
    models.run(lake=lake, sql_dir=sql, report=lambda _: None, full_refresh=True)
    assert checked == []  # every folder is as it was found clean


def copy_in(lake: Path, run: str, like: str) -> None:
    """``like``'s file copied into ``run``'s folder (its run_id is the folder's), as a tool
    other than ours would write it."""
    (part, *_) = sorted((lake / R.format(like)).glob("*.parquet"))
    folder = lake / R.format(run)
    folder.mkdir(exist_ok=True)
    shutil.copy(part, folder / "part-other-tool.parquet")


def test_what_the_writer_wrote_is_not_checked_again(tmp_path: Path, sql: Path, checked) -> None:
    """The writer validated every row it published: the folders it vouches for are not
    checked; a file another tool adds to one makes it a folder to check."""
    lake = tmp_path / "lake"
    write_runs(lake, {"r1": STEPS, "r2": STEPS})
    build(lake, sql)
    write_runs(lake, {"r3": STEPS, "r1": range(100, 120, 10)})
    build(lake, sql)
    assert checked == []
    copy_in(lake, "r2", "r2")  # the same rows again, by another tool
    with pytest.raises(ModelError, match="(?s)duplicate_key.*part-other-tool.parquet"):
        build(lake, sql)
    assert checked == [[R.format("r2")]]


def test_the_records_list_the_files_the_engine_published(tmp_path: Path, sql: Path) -> None:
    lake = tmp_path / "lake"
    write_runs(lake, {"r1": STEPS, "r2": STEPS})
    results = build(lake, sql)
    for result in results:
        record = load_analyses(lake)[result.plan.analysis_id]
        listed = sorted(f for unit in record.units.values() for f in unit.files)
        target = lake / result.plan.model.spec.target / f"analysis_id={result.plan.analysis_id}"
        assert listed == sorted(p.relative_to(lake).as_posix() for p in target.rglob("*.parquet"))
        assert listed


def test_a_file_dropped_into_a_model_output_is_checked_by_the_model_reading_it(tmp_path: Path, sql: Path) -> None:
    lake = tmp_path / "lake"
    write_runs(lake, {"r1": STEPS})
    (dyn, _) = build(lake, sql)
    dropped = lake / DYN / f"analysis_id={dyn.plan.analysis_id}" / "run_id=r1" / "part-dropped.parquet"
    dropped.write_bytes((BAD / "truncated.parquet").read_bytes())
    with pytest.raises(ModelError, match=r"(?s)model downstream .*part-dropped.parquet: unreadable"):
        build(lake, sql)


def test_a_file_changed_in_place_is_checked_again(tmp_path: Path, sql: Path, checked) -> None:
    lake = tmp_path / "lake"
    write_runs(lake, {"r1": STEPS})
    build(lake, sql)
    (record,) = [r for r in load_analyses(lake).values() if r.model == DYN]
    assert list(record.units["r1"].checked) == [R.format("r1")]
    (part,) = (lake / R.format("r1")).glob("*.parquet")
    part.write_bytes((BAD / "truncated.parquet").read_bytes())  # same name, other bytes
    checked.clear()
    with pytest.raises(ModelError, match=f"{part.name}: unreadable"):
        models.run(lake=lake, sql_dir=sql, report=lambda _: None, full_refresh=True)
    assert checked == [[R.format("r1")]]
