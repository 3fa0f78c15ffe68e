"""The README's command lines against the real parser, and `models render` against a build."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import duckdb
import pytest

from model_fixtures import REPO, cli
from picture_fixtures import built_demo
from warehouse.cli import MODELS_EXAMPLES, _parser

README = (REPO / "README.md").read_text(encoding="utf-8")


def readme_commands() -> list[list[str]]:
    """Every `warehouse ...` line of the README's shell blocks, as arguments (comments cut)."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("warehouse "):
                found.append(shlex.split(line, comments=True)[1:])
    return found


@pytest.mark.parametrize("args", readme_commands(), ids=lambda a: " ".join(a)[:60])
def test_every_readme_command_line_parses(args: list[str]) -> None:
    try:
        _parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"README: `warehouse {' '.join(args)}` does not parse (exit {exc.code})")


def test_every_command_and_models_action_is_in_the_readme() -> None:
    commands = next(a for a in _parser()._actions if a.dest == "command").choices
    for name in commands:
        assert f"warehouse {name}" in README or f"`{name}`" in README, name
    for action in MODELS_EXAMPLES:
        assert f"warehouse models {action}" in README, action


@pytest.mark.parametrize("action", sorted(MODELS_EXAMPLES))
def test_each_models_action_has_its_own_help_with_examples(action: str) -> None:
    done = cli("models", action, "--help")
    assert done.returncode == 0 and "example" in done.stdout
    for line in MODELS_EXAMPLES[action][1].strip().splitlines()[1:]:
        _parser().parse_args(shlex.split(line, comments=True)[1:])  # the examples parse too


def test_an_option_of_another_action_is_refused() -> None:
    done = cli("models", "check", "--db", "x.duckdb")
    assert done.returncode == 2 and "unrecognized arguments: --db" in done.stderr


def test_render_prints_the_sql_that_computes_the_models_output(tmp_path: Path) -> None:
    lake, _ = built_demo(tmp_path)
    done = cli("models", "render", "geometry_dynamics", "--param", "volatility_window=5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("-- geometry_dynamics dyn@1 -> geometry_dynamics\n-- parameters: volatility_window=5")
    con = duckdb.connect()
    con.execute(f"CREATE VIEW geometry_state AS SELECT * FROM read_parquet('{lake}/geometry_state/**/*.parquet', "
                "hive_partitioning = true)")
    con.execute("SET VARIABLE analysis_id = 'x'")
    ours = con.execute(f"SELECT count(*), sum(drift_velocity), sum(eff_rank_velocity) FROM ({done.stdout})").fetchone()
    built = con.execute(f"SELECT count(*), sum(drift_velocity), sum(eff_rank_velocity) FROM read_parquet("
                        f"'{lake}/geometry_dynamics/**/*.parquet', hive_partitioning = true)").fetchone()
    assert ours[0] == built[0] > 0
    assert ours[1:] == pytest.approx(built[1:], rel=1e-5)


@pytest.mark.parametrize(("args", "said"), [
    (["nope"], "no model named 'nope'; models: events_candidates"),
    (["geometry_dynamics", "--merging"], "does not merge new runs"),
    (["events_candidates", "--param", "alpha=-1"], "parameter alpha = -1.0 is outside its range"),
    (["events_candidates", "--param", "alpha"], "write KEY=VALUE"),
])
def test_render_refuses_bad_input_clearly(args: list[str], said: str) -> None:
    done = cli("models", "render", *args)
    assert done.returncode == 2 and said in done.stderr
