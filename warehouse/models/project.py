"""The set of models under ``sql/models``: loading, the dependency graph and the lock file.

Dependencies are never declared by hand: a model depends on every dataset its SQL reads,
and on the model whose target that dataset is. ``sql/models.lock`` pins each model version
to its logic fingerprint, so a change of logic without a new version is caught.
"""

from __future__ import annotations

import graphlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from .. import contracts
from . import cache
from .compile import DIALECT, CompiledModel, check_columns, compile_model, contract_schema, jinja_environment
from .spec import ModelError, ModelSpec, parse_model_file

SQL_DIR = Path(__file__).resolve().parent.parent.parent / "sql"  # the repository's models


def default_sql_dir() -> Path:
    """Where the models are: ``$SQUIGGLE_SQL``, else the repository's ``sql/`` folder."""
    return Path(os.environ.get("SQUIGGLE_SQL") or SQL_DIR)
LOCK_FILE = "models.lock"
# Columns the engine adds to every lake model's output; the model's SQL must not produce them.
ENGINE_COLUMNS = ("analysis_id", "schema_version", "created_at_utc")
# what a ``merging`` model reads when it merges new runs into its last output
PREVIOUS_OUTPUT, ADDED_RUNS = "previous_output", "added_runs"


@dataclass
class Project:
    """All models of a ``sql/`` folder, compiled with their parameters, in build order."""

    sql_dir: Path
    models: dict[str, CompiledModel]
    order: list[str]

    def by_target(self) -> dict[str, str]:
        return {m.spec.target: name for name, m in self.models.items()}

    def parents(self, name: str) -> list[str]:
        targets = self.by_target()
        return [targets[d] for d in self.models[name].dependencies if d in targets]

    def downstream(self, name: str) -> list[str]:
        """``name`` and every model that depends on it, in build order."""
        found = {name}
        for other in self.order:
            if any(p in found for p in self.parents(other)):
                found.add(other)
        return [n for n in self.order if n in found]

    def select(self, selectors: list[str] | None) -> list[str]:
        """Models named by ``NAME`` or ``NAME+`` (with everything downstream), in build order."""
        if not selectors:
            return list(self.order)
        chosen: set[str] = set()
        for sel in selectors:
            name = sel.rstrip("+")
            if name not in self.models:
                raise ModelError(f"no model named {name!r}; models: {', '.join(self.order)}")
            chosen.update(self.downstream(name) if sel.endswith("+") else [name])
        return [n for n in self.order if n in chosen]


def load_project(sql_dir: Path | None = None, params: Mapping[str, Mapping[str, Any]] | None = None) -> Project:
    """Load, compile and check every model; fail before anything runs on any error.

    A project compiled and checked before from the same files and parameters comes from
    the cache (:mod:`.cache`) without parsing any SQL.
    """
    sql_dir = Path(sql_dir or default_sql_dir())
    params = params or {}
    specs = _load_specs(sql_dir)
    unknown = set(params) - set(specs)
    if unknown:
        raise ModelError(f"--param names unknown model(s): {', '.join(sorted(unknown))}")
    key = cache.project_key(sql_dir, params)
    entry = cache.load(key)
    if entry is not None and set(entry["models"]) == set(specs):
        models = {name: CompiledModel.from_cache_entry(specs[name], entry["models"][name]) for name in specs}
        return Project(sql_dir, models, entry["order"])
    env = jinja_environment(sql_dir)
    models = {name: compile_model(spec, params.get(name, {}), env) for name, spec in specs.items()}
    order = _build_order(models)
    project = Project(sql_dir, models, order)
    for name in order:
        _check_model(project, models[name])
    cache.save(key, {"models": {n: m.cache_entry() for n, m in models.items()}, "order": order})
    return project


def _load_specs(sql_dir: Path) -> dict[str, ModelSpec]:
    if not (sql_dir / "models").is_dir():
        raise ModelError(f"no models folder {sql_dir / 'models'}: --sql (or $SQUIGGLE_SQL) names a folder holding models/")
    specs: dict[str, ModelSpec] = {}
    for path in sorted((sql_dir / "models").glob("*.sql")):
        spec = parse_model_file(path)
        clash = next((s for s in specs.values() if s.target == spec.target), None)
        if clash:
            raise ModelError(f"{spec.where()} and {clash.where()} both write {spec.target}")
        specs[spec.name] = spec
    return specs


def _build_order(models: dict[str, CompiledModel]) -> list[str]:
    targets = {m.spec.target: name for name, m in models.items()}
    graph = {name: {targets[d] for d in m.dependencies if d in targets} for name, m in models.items()}
    try:
        return list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        files = ", ".join(f"{n} ({models[n].spec.path})" for n in dict.fromkeys(cycle))
        raise ModelError(f"models depend on each other in a cycle: {' -> '.join(cycle)}: {files}") from None


def input_schema(project: Project, table: str) -> dict[str, str]:
    """Column types of a table a model may read: a dataset, or another model's view."""
    if table in contracts.DATASETS:
        return contract_schema(contracts.DATASETS[table])
    raise KeyError(table)


def _check_model(project: Project, model: CompiledModel) -> None:
    where = model.spec.where()
    schemas = {}
    for table in model.dependencies:
        if table == model.spec.target:
            raise ModelError(f"{where}: reads its own target {table}")
        try:
            schemas[table] = input_schema(project, table)
        except KeyError:
            known = ", ".join(sorted(contracts.DATASETS))
            raise ModelError(f"{where}: reads unknown table {table!r}; known datasets: {known}") from None
    check_columns(model, schemas)
    model.spec.kind.check_reads(model.dependencies, where)
    if model.spec.kind.merges:
        _check_additions(model, schemas)
    if model.spec.runs:
        _check_run_scope(model)
    contract = model.spec.contract
    if contract is not None:
        expected = [c for c in contract.column_names if c not in ENGINE_COLUMNS]
        got = model.output_columns
        missing = [c for c in expected if c not in got]
        extra = [c for c in got if c not in expected]
        if missing or extra:
            raise ModelError(
                f"{where}: output columns differ from the {contract.name} contract"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; not in the contract: {', '.join(extra)}" if extra else "")
            )


def _check_additions(model: CompiledModel, schemas: dict[str, dict[str, str]]) -> None:
    """The variant that merges new runs reads what the full one reads, plus its previous
    output and the added runs, and gives the same columns."""
    where = model.spec.where()
    extra = {PREVIOUS_OUTPUT: contract_schema(model.spec.contract), ADDED_RUNS: {"run_id": "VARCHAR"}}
    check_columns(model, schemas | extra, model.additions_tree)
    if tuple(model.additions_tree.named_selects) != model.output_columns:
        raise ModelError(f"{where}: with `adding` true it must give the same columns as without")


def _check_run_scope(model: CompiledModel) -> None:
    """The ``runs`` condition is one expression on the columns of the runs the model reads."""
    where = model.spec.where()
    if "runs" not in model.dependencies:
        raise ModelError(f"{where}: a runs condition needs a model that reads runs")
    try:
        tree = sqlglot.parse_one(f"SELECT run_id FROM runs WHERE {model.spec.runs}", read=DIALECT)
    except ParseError as exc:
        raise ModelError(f"{where}: cannot read the runs condition {model.spec.runs!r}: {exc}") from None
    condition = tree.args.get("where") if isinstance(tree, exp.Select) else None
    if condition is None or {k for k, v in tree.args.items() if v} - {"expressions", "from_", "where"} or condition.find(exp.Query):
        raise ModelError(f"{where}: the runs condition {model.spec.runs!r} must be one expression on runs' columns")
    check_columns(model, {"runs": contract_schema(contracts.RUNS)}, tree)


# -- the lock file ----------------------------------------------------------------------


def read_lock(sql_dir: Path) -> dict[str, dict[str, str]]:
    path = sql_dir / LOCK_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def write_lock(project: Project, *, force: bool = False) -> Path:
    """Record every model's version and logic fingerprint (at default parameters).

    A recorded version keeps its fingerprint: new logic needs a new version, unless
    ``force`` (for a version that was never released).
    """
    defaults = load_project(project.sql_dir)
    old = read_lock(project.sql_dir)
    for name, m in sorted(defaults.models.items()):
        entry = old.get(name)
        if not force and entry and entry["version"] == m.spec.version and entry["fingerprint"] != m.logic_fingerprint:
            raise ModelError(
                f"{m.spec.where()}: version {m.spec.version} is recorded with other logic; "
                f"bump the header's version (or pass --force for a version never released)"
            )
    lock = {
        name: {"version": m.spec.version, "fingerprint": m.logic_fingerprint}
        for name, m in sorted(defaults.models.items())
    }
    path = project.sql_dir / LOCK_FILE
    path.write_text(json.dumps(lock, indent=2) + "\n")
    return path


def lock_problems(sql_dir: Path | None = None) -> list[str]:
    """Every model whose logic changed without a new version, or that the lock lacks."""
    project = load_project(sql_dir)
    lock = read_lock(project.sql_dir)
    problems = []
    for name, model in sorted(project.models.items()):
        entry = lock.get(name)
        where = model.spec.where()
        if entry is None:
            problems.append(f"{where}: not in sql/{LOCK_FILE}; run `warehouse models lock` to record it")
        elif entry["version"] == model.spec.version and entry["fingerprint"] != model.logic_fingerprint:
            problems.append(
                f"{where}: its logic changed but its version is still {model.spec.version}; "
                f"bump the header's version (outputs of the old logic keep their analysis ids), "
                f"then run `warehouse models lock`"
            )
        elif entry["version"] != model.spec.version:
            problems.append(f"{where}: version {model.spec.version} is not recorded; run `warehouse models lock`")
    for name in sorted(set(lock) - set(project.models)):
        problems.append(f"sql/{LOCK_FILE} names model {name!r}, which no longer exists; run `warehouse models lock`")
    return problems
