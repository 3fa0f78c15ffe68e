"""Model kinds: the one ``-- kind:`` header line, its options, its errors, and the
fingerprints it leaves as they were."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model_fixtures import REPO_SQL, cli, copy_sql, edit_model, model_path
from warehouse.models import ModelError, load_project
from warehouse.models.kinds import KINDS, Grouped, Kind, Merging, PerRun, Table, TableByRun, View, parse_kind
from warehouse.models.project import read_lock
from warehouse.models.spec import parse_model_file

WHERE = "sql/models/m.sql"
MATCHES_GROUPS = ("signatures", ("kind", "scope", "vector_layout"))


@pytest.mark.parametrize(
    "text, kind, header",
    [
        ("per_run", PerRun(), "per_run"),
        ("table", Table(), "table"),
        ("table_by_run", TableByRun(), "table_by_run"),
        ("view", View(), "view"),
        ("grouped (groups = signatures(kind, scope, vector_layout))", Grouped(MATCHES_GROUPS),
         "grouped (groups = signatures(kind, scope, vector_layout))"),
        ("grouped(groups=signatures(kind,scope,vector_layout))", Grouped(MATCHES_GROUPS),
         "grouped (groups = signatures(kind, scope, vector_layout))"),
        ("merging (runs = events_candidates)", Merging("events_candidates"), "merging (runs = events_candidates)"),
        ("merging (runs = signatures, groups = signatures(kind, scope, vector_layout))",
         Merging("signatures", MATCHES_GROUPS),
         "merging (runs = signatures, groups = signatures(kind, scope, vector_layout))"),
        # options in any order, spread over lines (a continued header line), written back canonically
        ("merging (groups = signatures( kind ,\n  scope ), runs = signatures )", Merging("signatures", ("signatures", ("kind", "scope"))),
         "merging (runs = signatures, groups = signatures(kind, scope))"),
        ("merging (pairwise = true, runs = signatures, groups = signatures(kind))",
         Merging("signatures", ("signatures", ("kind",)), True),
         "merging (runs = signatures, groups = signatures(kind), pairwise = true)"),
        ("merging (runs = signatures, pairwise = false)", Merging("signatures", None, False),
         "merging (runs = signatures, pairwise = false)"),
        ("table ()", Table(), "table"),
    ],
)
def test_parse_each_kind_and_its_options(text: str, kind: Kind, header: str) -> None:
    parsed = parse_kind(text, WHERE)
    assert parsed == kind and type(parsed) is type(kind)
    assert parsed.header == header and str(parsed) == header
    assert parse_kind(parsed.header, WHERE) == parsed  # the canonical spelling reads back the same


def test_options_are_typed_fields() -> None:
    grouped = parse_kind("grouped (groups = signatures(kind, scope))", WHERE)
    assert isinstance(grouped, Grouped) and grouped.groups == ("signatures", ("kind", "scope"))
    merging = parse_kind("merging (runs = events_candidates)", WHERE)
    assert isinstance(merging, Merging) and merging.runs == "events_candidates" and merging.groups is None
    with pytest.raises(AttributeError):
        merging.runs = "signatures"  # frozen


@pytest.mark.parametrize(
    "kind, materialization, incremental",
    [
        (PerRun(), "lake", "run_id"),
        (Table(), "lake", "full"),
        (TableByRun(), "lake", "full"),
        (Grouped(MATCHES_GROUPS), "lake", "full"),
        (Merging("signatures"), "lake", "full"),
        (Merging("signatures", MATCHES_GROUPS), "lake", "full"),
        (View(), "view", "full"),
    ],
)
def test_legacy_strings_of_each_kind(kind: Kind, materialization: str, incremental: str) -> None:
    assert (kind.materialization, kind.incremental) == (materialization, incremental)


def test_every_kind_is_a_kind() -> None:
    assert list(KINDS) == ["per_run", "table", "table_by_run", "grouped", "merging", "view"]
    assert all(issubclass(k, Kind) and k.name == name for name, k in KINDS.items())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("by_run", "unknown kind 'by_run'; the kinds are per_run, table, table_by_run, grouped, merging, view"),
        ("lake", "unknown kind 'lake'; the kinds are per_run, table, table_by_run, grouped, merging, view"),
        ("", "cannot read kind ''; write `-- kind: NAME` or `-- kind: NAME (OPTION = VALUE, ...)`"),
        ("per run", "cannot read kind 'per run'"),
        ("grouped (groups = signatures(kind)", "cannot read kind 'grouped (groups = signatures(kind)'"),
        ("grouped", "kind grouped needs the option groups; write `-- kind: grouped (groups = DATASET(COLUMN, ...))`"),
        ("merging", "kind merging needs the option runs; write "
                    "`-- kind: merging (runs = DATASET[, groups = DATASET(COLUMN, ...)][, pairwise = true])`"),
        ("merging (groups = signatures(kind))", "kind merging needs the option runs"),
        ("grouped (groups = signatures[kind])",
         "cannot read groups 'signatures[kind]' of kind grouped; write `groups = DATASET(COLUMN, ...)`"),
        ("grouped (groups = signatures())", "cannot read groups 'signatures()' of kind grouped"),
        ("grouped (groups = signatures(kind,))", "cannot read groups 'signatures(kind,)' of kind grouped"),
        ("merging (runs = signatures(kind))", "cannot read runs 'signatures(kind)' of kind merging; write `runs = DATASET`"),
        ("merging (runs)", "cannot read the option 'runs' of kind merging; write "
                           "`-- kind: merging (runs = DATASET[, groups = DATASET(COLUMN, ...)][, pairwise = true])`"),
        ("merging (runs = )", "cannot read the option 'runs =' of kind merging"),
        ("merging (runs = signatures, runs = events_candidates)", "kind merging gives the option runs twice"),
        ("merging (runs = signatures, group = signatures(kind))",
         "kind merging has no option 'group' (its options are runs, groups, pairwise)"),
        ("table (runs = signatures)", "kind table has no option 'runs' (it takes no options); write `-- kind: table`"),
        ("per_run (groups = geometry_state(layer))", "kind per_run has no option 'groups' (it takes no options)"),
        ("merging (runs = signatures, pairwise = yes)",
         "cannot read pairwise 'yes' of kind merging; write `pairwise = true`"),
    ],
)
def test_kind_errors_name_the_file(text: str, expected: str) -> None:
    with pytest.raises(ModelError) as err:
        parse_kind(text, WHERE)
    assert str(err.value).startswith(f"{WHERE}: ")
    assert expected in str(err.value)


# -- a kind against its target's contract ---------------------------------------------------


def write_model(folder: Path, name: str, target: str, kind_lines: str) -> Path:
    path = folder / "models" / f"{name}.sql"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"-- name: {name}\n-- version: {name.replace('_', '')}@1\n-- target: {target}\n{kind_lines}"
                    f"-- description: a test model.\nSELECT 1 AS x\n")
    return path


@pytest.mark.parametrize(
    "target, kind, expected",
    [
        ("events", "per_run", "kind per_run needs a target partitioned by run_id; events is not: "
                              "write `-- kind: table`"),
        ("geometry_dynamics", "table", "kind table is for a target not partitioned by run_id; geometry_dynamics is: "
                                       "write `-- kind: table_by_run`"),
        ("matches", "table_by_run", "kind table_by_run needs a target partitioned by run_id; matches is not: "
                                    "write `-- kind: table`"),
        ("runs", "per_run", "a model of kind per_run writes to the lake: its target must be an interpretation "
                            "dataset, not 'runs'"),
        ("pooled_steps", "table", "its target must be an interpretation dataset, not 'pooled_steps' "
                                  "(`-- kind: view` makes a view in the catalog)"),
        ("events", "view", "a view model's target must not be a dataset name ('events')"),
        ("matches", "merging (runs = families)", "kind merging: runs must name a dataset partitioned by run, "
                                                 "not 'families'"),
        ("matches", "merging (runs = signature)", "runs must name a dataset partitioned by run, not 'signature'"),
        ("matches", "merging (runs = signatures, groups = signature(kind))",
         "kind merging: groups names unknown dataset 'signature'"),
        ("matches", "grouped (groups = signatures(kind, colour))",
         "kind grouped: groups names columns signatures does not have: colour"),
        # blocks of pairs are blocks of the merged dataset's runs, within a group of its rows
        ("matches", "merging (runs = signatures, pairwise = true)",
         "kind merging: pairwise = true needs groups over the runs dataset: `groups = signatures(COLUMN, ...)`"),
        ("matches", "merging (runs = signatures, groups = runs(config_hash), pairwise = true)",
         "kind merging: pairwise = true needs groups over the runs dataset: `groups = signatures(COLUMN, ...)`"),
    ],
)
def test_kind_against_the_target_contract(tmp_path: Path, target: str, kind: str, expected: str) -> None:
    path = write_model(tmp_path, "model_a", target, f"-- kind: {kind}\n")
    with pytest.raises(ModelError) as err:
        parse_model_file(path)
    assert expected in str(err.value)
    assert f"model model_a ({path})" in str(err.value)


@pytest.mark.parametrize(
    "target, kind",
    [
        ("geometry_dynamics", "per_run"),
        ("events", "table"),
        ("probe_summaries", "table_by_run"),
        ("matches", "grouped (groups = signatures(kind, scope, vector_layout))"),
        ("events", "merging (runs = events_candidates)"),
        ("pooled_steps", "view"),
    ],
)
def test_kind_fits_its_target(tmp_path: Path, target: str, kind: str) -> None:
    spec = parse_model_file(write_model(tmp_path, "model_a", target, f"-- kind: {kind}\n"))
    assert spec.kind.header == kind


# -- the older keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, old, expected",
    [
        ("matches",
         "-- materialization: lake\n-- incremental: full\n-- batch_by: signatures(kind, scope, vector_layout)\n"
         "-- additions: signatures\n",
         "`materialization`, `incremental`, `batch_by` and `additions` are replaced by one `kind:` line; write "
         "`-- kind: merging (runs = signatures, groups = signatures(kind, scope, vector_layout))`"),
        ("events", "-- materialization: lake\n-- incremental: full\n-- additions: events_candidates\n",
         "`materialization`, `incremental` and `additions` are replaced by one `kind:` line; write "
         "`-- kind: merging (runs = events_candidates)`"),
        ("geometry_dynamics", "-- materialization: lake\n-- incremental: run_id\n",
         "`materialization` and `incremental` are replaced by one `kind:` line; write `-- kind: per_run`"),
        ("probe_summaries", "-- materialization: lake\n-- incremental: full\n",
         "`materialization` and `incremental` are replaced by one `kind:` line; write `-- kind: table_by_run`"),
        ("events", "-- materialization: lake\n-- incremental: full\n",
         "`materialization` and `incremental` are replaced by one `kind:` line; write `-- kind: table`"),
        ("matches", "-- materialization: lake\n-- incremental: full\n-- batch_by: signatures(kind,scope)\n",
         "`materialization`, `incremental` and `batch_by` are replaced by one `kind:` line; write "
         "`-- kind: grouped (groups = signatures(kind, scope))`"),
        ("pooled_steps", "-- materialization: view\n-- incremental: full\n",
         "`materialization` and `incremental` are replaced by one `kind:` line; write `-- kind: view`"),
        ("matches", "-- batch_by: signatures(kind)\n-- additions: signatures\n",
         "`batch_by` and `additions` are replaced by one `kind:` line; write "
         "`-- kind: merging (runs = signatures, groups = signatures(kind))`"),
        ("geometry_dynamics", "-- kind: per_run\n-- incremental: run_id\n",
         "`incremental` is replaced by one `kind:` line; write `-- kind: per_run` in place of it and of the `kind:` line "
         "already there"),
    ],
)
def test_old_header_is_refused_with_the_new_line(tmp_path: Path, target: str, old: str, expected: str) -> None:
    path = write_model(tmp_path, "old_model", target, old)
    with pytest.raises(ModelError) as err:
        parse_model_file(path)
    assert str(err.value) == f"{path}: {expected}"


def test_old_repo_header_is_refused_by_load_project(tmp_path: Path) -> None:
    sql = copy_sql(tmp_path)
    path = edit_model(sql, "matches",
                      "-- kind: merging (runs = signatures, groups = signatures(kind, scope, vector_layout), pairwise = true)",
                      "-- materialization: lake\n-- incremental: full\n-- batch_by: signatures(kind, scope, vector_layout)"
                      "\n-- additions: signatures")
    with pytest.raises(ModelError) as err:
        load_project(sql)
    assert str(err.value) == (
        f"{path}: `materialization`, `incremental`, `batch_by` and `additions` are replaced by one `kind:` line; "
        "write `-- kind: merging (runs = signatures, groups = signatures(kind, scope, vector_layout))`"
    )


# -- the repository's models ------------------------------------------------------------

COHORTS = ("runs", ("config_hash",))
REPO_KINDS = {
    "events": (Merging("events_candidates", COHORTS), "lake", "full", COHORTS, "events_candidates"),
    "events_candidates": (PerRun(), "lake", "run_id", None, None),
    "geometry_dynamics": (PerRun(), "lake", "run_id", None, None),
    "matches": (Merging("signatures", MATCHES_GROUPS, True), "lake", "full", MATCHES_GROUPS, "signatures"),
    "probe_events_candidates": (PerRun(), "lake", "run_id", None, None),
    "probe_summaries": (TableByRun(), "lake", "full", None, None),
    "signatures": (PerRun(), "lake", "run_id", None, None),
}


def test_repo_models_kinds_and_the_spec_attributes_they_give() -> None:
    project = load_project(REPO_SQL)
    assert set(project.models) == set(REPO_KINDS)
    for name, (kind, materialization, incremental, batch_by, additions) in REPO_KINDS.items():
        spec = project.models[name].spec
        assert spec.kind == kind, name
        assert (spec.kind.materialization, spec.kind.incremental, getattr(spec.kind, "groups", None),
                getattr(spec.kind, "runs", None)) == (
            materialization, incremental, batch_by, additions), name
        header = re.search(r"^-- kind: (.*)$", model_path(REPO_SQL, name).read_text(), re.M)[1]
        assert header == kind.header, name  # every header is written canonically


def test_repo_logic_fingerprints_match_the_lock() -> None:
    """The kinds hash as materialization and incremental did: no analysis id changed."""
    lock = read_lock(REPO_SQL)
    project = load_project(REPO_SQL)
    assert set(lock) == set(project.models)
    for name, model in project.models.items():
        assert lock[name] == {"version": model.spec.version, "fingerprint": model.logic_fingerprint}, name
    r = cli("models", "check", env={"SQUIGGLE_SQL": str(REPO_SQL)})
    assert r.returncode == 0 and "models match sql/models.lock" in r.stdout
