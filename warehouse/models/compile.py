"""Render a model with Jinja2 and analyse it with sqlglot.

Parameters reach the SQL only as literals that sqlglot builds from their typed values, so
no parameter value can change the statement's structure. The rendered SQL is parsed in
the DuckDB dialect to find the tables it reads (its dependencies), to resolve every column
against the schemas of its inputs, and to give a canonical form (comments and layout
removed) whose hash is the model's logic fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import jinja2
import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError
from sqlglot.optimizer.qualify import qualify

from .. import contracts
from ..sql import sql_literal
from .spec import ModelError, ModelSpec

DIALECT = "duckdb"


@dataclass(frozen=True)
class CompiledModel:
    """A model rendered with concrete parameters and parsed."""

    spec: ModelSpec
    params: dict[str, Any]
    sql: str
    dependencies: tuple[str, ...]
    # Hash of what the model computes at its default parameters: canonical SQL, target,
    # kind (as its older spelling: materialization, incremental). Comments and layout do not
    # change it; parameter values do not either.
    logic_fingerprint: str
    output_columns: tuple[str, ...]
    # rendered with `adding` true: merges new runs into the previous output (a ``merging`` model)
    additions_sql: str | None = None

    @cached_property
    def tree(self) -> exp.Query:
        """The parsed SQL (parsed on first use when the model came from the cache)."""
        return _parse(self.spec, self.sql)

    @cached_property
    def additions_tree(self) -> exp.Query | None:
        return _parse(self.spec, self.additions_sql) if self.additions_sql else None

    def cache_entry(self) -> dict[str, Any]:
        return {"params": self.params, "sql": self.sql, "dependencies": list(self.dependencies),
                "logic_fingerprint": self.logic_fingerprint, "output_columns": list(self.output_columns),
                "additions_sql": self.additions_sql}

    @classmethod
    def from_cache_entry(cls, spec: ModelSpec, entry: Mapping[str, Any]) -> CompiledModel:
        return cls(spec, entry["params"], entry["sql"], tuple(entry["dependencies"]),
                   entry["logic_fingerprint"], tuple(entry["output_columns"]), entry["additions_sql"])


def jinja_environment(sql_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(sql_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.globals.update(descriptors=list(contracts.DESCRIPTORS), modules=list(contracts.MODULES),
                       dis_features=list(contracts.DIS_FEATURES), diagnostics=list(contracts.DIAGNOSTICS),
                       diagnostic_json=dict(contracts.DIAGNOSTIC_JSON), refuse=_refuse)
    return env


class _Refused(jinja2.TemplateError):
    """A template's own refusal of its parameters (``refuse('...')``)."""


def _refuse(message: str) -> None:
    """Lets a template refuse a combination of parameters that no single range can express."""
    raise _Refused(message)


def compile_model(spec: ModelSpec, params: Mapping[str, Any], env: jinja2.Environment) -> CompiledModel:
    """Render ``spec`` with ``params`` (defaults filled in) and parse the result."""
    values = {name: p.default for name, p in spec.params.items()}
    for name, value in params.items():
        if name not in spec.params:
            known = ", ".join(spec.params) or "none"
            raise ModelError(f"{spec.where()}: unknown parameter {name!r} (parameters: {known})")
        values[name] = spec.params[name].parse(value, spec.name)
    sql = _render(spec, values, env)
    tree = _parse(spec, sql)
    defaults = {name: p.default for name, p in spec.params.items()}
    default_tree = tree if values == defaults else _parse(spec, _render(spec, defaults, env))
    # the kind as materialization and incremental, as before kinds: analysis ids stay as they were
    logic = [spec.target, spec.kind.materialization, spec.kind.incremental, canonical(default_tree)]
    if spec.runs:
        logic.append(spec.runs)
    additions_sql = additions_tree = None
    if spec.kind.merges:
        additions_sql = _render(spec, values, env, adding=True)
        additions_tree = _parse(spec, additions_sql)
        default_additions = (
            additions_tree if values == defaults else _parse(spec, _render(spec, defaults, env, adding=True))
        )
        logic.append(canonical(default_additions))
    model = CompiledModel(spec, values, sql, _dependencies(tree), _hash(logic), tuple(tree.named_selects), additions_sql)
    vars(model).update(tree=tree, additions_tree=additions_tree)  # already parsed: seed the cached properties
    return model


def canonical(tree: exp.Expression) -> str:
    """The SQL without comments, in sqlglot's normalised layout."""
    return tree.sql(dialect=DIALECT, comments=False, normalize=True)


def _render(spec: ModelSpec, values: Mapping[str, Any], env: jinja2.Environment, *, adding: bool = False) -> str:
    # `{{ name }}` is the SQL literal; `params.name` the typed value, for Jinja control flow
    # (loops, conditions). Text parameters stay out of `params`: pasting one raw would
    # bypass the literal.
    typed = {k: v for k, v in values.items() if not isinstance(v, str)}
    context = {k: sql_literal(v) for k, v in values.items()} | {"params": typed, "adding": adding}
    try:
        return env.from_string(spec.template).render(**context)
    except _Refused as exc:
        raise ModelError(f"model {spec.name}: {exc}") from None
    except jinja2.TemplateError as exc:
        raise ModelError(f"{spec.where()}: cannot render the template: {exc}") from None


def _parse(spec: ModelSpec, sql: str) -> exp.Query:
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as exc:
        raise ModelError(f"{spec.where()}: SQL does not parse: {exc}") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise ModelError(f"{spec.where()}: the SQL must be exactly one SELECT query")
    return statements[0]


def _dependencies(tree: exp.Query) -> tuple[str, ...]:
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    tables = {t.name.lower() for t in tree.find_all(exp.Table) if t.name and not isinstance(t.this, exp.Func)}
    return tuple(sorted(tables - ctes))


def check_columns(
    model: CompiledModel, schemas: Mapping[str, Mapping[str, str]], tree: exp.Query | None = None
) -> None:
    """Resolve every column of ``model`` (or of its ``tree``) against its inputs' schemas;
    fail naming the column."""
    try:
        qualify(
            (tree or model.tree).copy(),
            schema={name: dict(cols) for name, cols in schemas.items()},
            dialect=DIALECT,
            validate_qualify_columns=True,
            quote_identifiers=False,
        )
    except OptimizeError as exc:
        raise ModelError(f"{model.spec.where()}: {exc} (inputs: {', '.join(model.dependencies)})") from None


def contract_schema(dataset: contracts.Dataset) -> dict[str, str]:
    return {c.name: contracts.duckdb_type(c.type) for c in dataset.all_columns}


def _hash(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(model: CompiledModel, inputs: Mapping[str, str | None]) -> str:
    """The model's full fingerprint: its version, logic, parameters and chosen inputs.

    ``inputs`` maps each input dataset to the analysis it reads (the upstream model's
    analysis id, or a producer's analysis) or None for fact datasets.
    """
    return _hash([model.spec.version, model.logic_fingerprint, model.params, dict(inputs)])


def analysis_id(model: CompiledModel, full_fingerprint: str) -> str:
    """An identifier that names the version and is unique to the fingerprint, e.g. dyn1-3f2a9c1b7d0e."""
    return f"{model.spec.version.replace('@', '').replace('.', '_')}-{full_fingerprint[:12]}"
