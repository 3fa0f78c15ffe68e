"""Logic fingerprints and sql/models.lock: what changes a fingerprint and what the lock catches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine_fixtures import dyn_sql, engine_sql, label_sql  # noqa: F401 (fixtures; engine_sql is autouse)
from engine_fixtures import DYN, assert_names, in_process_cli
from model_fixtures import (
    REPO_SQL,
    cli,
    copy_sql,
    edit_model,
    model_path,
)
from warehouse.models import ModelError, load_project, lock_problems, write_lock


def _fingerprint(sql: Path) -> str:
    return load_project(sql).models[DYN].logic_fingerprint


def _split(text: str) -> tuple[str, str]:
    head, sep, body = text.partition("{% import")
    return head, sep + body


LAYOUT_EDITS = {
    "sql comments": lambda t: t.replace("WITH captures AS (", "-- a new comment\nWITH captures AS ( -- trailing\n")
    .replace("FROM drift", "/* block\n comment */ FROM drift -- the end"),
    "jinja comment": lambda t: t.replace("WITH captures AS (", "{# a Jinja comment #}\nWITH captures AS ("),
    "indentation and blank lines": lambda t: _split(t)[0]
    + "\n\n".join("\t" + line.strip() for line in _split(t)[1].splitlines()) + "\n\n\n",
    "keyword case": lambda t: t.replace("FROM drift", "from drift").replace("WINDOW by_step AS", "window by_step as"),
    "description": lambda t: t.replace("-- description: Layer B dynamics", "-- description: The Layer B dynamics"),
}


@pytest.mark.parametrize("edit", sorted(LAYOUT_EDITS))
def test_fingerprint_ignores_comments_and_layout(tmp_path: Path, edit: str) -> None:
    sql = copy_sql(tmp_path)
    original = _fingerprint(sql)
    path = model_path(sql, DYN)
    edited = LAYOUT_EDITS[edit](path.read_text())
    assert edited != path.read_text()
    path.write_text(edited)
    assert _fingerprint(sql) == original
    assert lock_problems(sql) == []


@pytest.mark.parametrize(
    "where, old, new",
    [
        ("model", "1.4826 * mad", "1.5 * mad"),
        ("model", "stddev_samp(", "stddev_pop("),
        ("model", "-- param volatility_window: int = 5", "-- param volatility_window: int = 6"),
        ("model", "-- kind: per_run", "-- kind: table_by_run"),
        ("macro", "CASE WHEN isfinite({{ column }}) THEN {{ column }} END",
         "CASE WHEN isfinite({{ column }}) AND {{ column }} > 0 THEN {{ column }} END"),
    ],
)
def test_fingerprint_changes_with_logic(tmp_path: Path, where: str, old: str, new: str) -> None:
    sql = copy_sql(tmp_path)
    original = _fingerprint(sql)
    path = model_path(sql, DYN) if where == "model" else sql / "macros" / "series.sql"
    assert path.read_text().count(old) == 1
    path.write_text(path.read_text().replace(old, new))
    assert _fingerprint(sql) != original


def test_parameter_values_do_not_change_the_logic_fingerprint() -> None:
    default = load_project().models[DYN]
    seven = load_project(params={DYN: {"volatility_window": 7}}).models[DYN]
    assert seven.logic_fingerprint == default.logic_fingerprint
    assert seven.sql != default.sql


def test_repo_lock_is_current(tmp_path: Path) -> None:
    assert lock_problems(REPO_SQL) == []
    # writing the lock again gives the same file
    sql = tmp_path / "sql"
    shutil.copytree(REPO_SQL, sql)
    write_lock(sql)
    assert (sql / "models.lock").read_bytes() == (REPO_SQL / "models.lock").read_bytes()
    r = cli("models", "check", env={"SQUIGGLE_SQL": str(REPO_SQL)})
    assert r.returncode == 0 and "models match sql/models.lock" in r.stdout


def test_lock_catches_logic_change_without_version_bump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    sql = copy_sql(tmp_path)
    path = edit_model(sql, DYN, "1.4826 * mad", "1.5 * mad")
    problems = lock_problems(sql)
    assert len(problems) == 1
    assert_names(problems[0], DYN, path)
    assert "logic changed" in problems[0] and "dyn@1" in problems[0] and "bump the header's version" in problems[0]

    capsys.readouterr()
    assert in_process_cli(monkeypatch, sql, "models", "check") == 1
    out = capsys.readouterr()
    assert "bump the header's version" in out.err and "1 model(s) out of step" in out.out

    # the lock will not re-pin a recorded version to new logic, which would hide the change
    with pytest.raises(ModelError, match="bump the header's version") as info:
        write_lock(sql)
    assert_names(str(info.value), DYN, path)
    assert in_process_cli(monkeypatch, sql, "models", "lock") == 2
    write_lock(sql, force=True)  # only for a version that was never released
    assert lock_problems(sql) == []
    assert in_process_cli(monkeypatch, sql, "models", "check") == 0


def test_lock_after_version_bump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sql = copy_sql(tmp_path)
    edit_model(sql, DYN, "1.4826 * mad", "1.5 * mad")
    path = edit_model(sql, DYN, "-- version: dyn@1", "-- version: dyn@2")
    problems = lock_problems(sql)
    assert len(problems) == 1 and "version dyn@2 is not recorded" in problems[0]
    assert_names(problems[0], DYN, path)
    assert in_process_cli(monkeypatch, sql, "models", "lock") == 0
    assert json.loads((sql / "models.lock").read_text())[DYN]["version"] == "dyn@2"
    assert lock_problems(sql) == []


def test_lock_names_new_and_removed_models(tmp_path: Path, label_sql: Path) -> None:
    problems = lock_problems(label_sql)
    assert len(problems) == 1 and "label_probe" in problems[0] and "not in sql/models.lock" in problems[0]
    write_lock(label_sql)
    model_path(label_sql, "label_probe").unlink()
    problems = lock_problems(label_sql)
    assert len(problems) == 1 and "'label_probe', which no longer exists" in problems[0]
