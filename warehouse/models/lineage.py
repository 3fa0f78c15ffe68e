"""Column lineage: which input columns a model's output column is computed from.

sqlglot traces the column through the model's CTEs down to the tables it reads; where such
a table is itself another model's target, the trace continues into that model, until it
reaches datasets no model writes (the facts and the producers' analyses).
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.lineage import Node, lineage as sqlglot_lineage

from .compile import DIALECT, contract_schema
from .project import ENGINE_COLUMNS, Project, load_project
from .spec import ModelError

from .. import contracts


def lineage(column: str, project: Project | None = None) -> str:
    """The lineage of ``MODEL.COLUMN`` as an indented tree, down to source datasets."""
    project = project or load_project()
    model_name, _, col = column.partition(".")
    if model_name not in project.models or not col:
        raise ModelError(f"lineage takes MODEL.COLUMN; models: {', '.join(project.order)}")
    lines: list[str] = []
    _trace(project, model_name, col, 0, lines)
    return "\n".join(lines)


def _trace(project: Project, model_name: str, col: str, depth: int, lines: list[str]) -> None:
    model = project.models[model_name]
    if col not in model.output_columns:
        raise ModelError(f"{model.spec.where()}: has no output column {col!r}")
    schema = {d: contract_schema(contracts.DATASETS[d]) for d in model.dependencies}
    root = sqlglot_lineage(col, model.sql, schema=schema, dialect=DIALECT)
    lines.append(f"{'  ' * depth}{model.spec.target}.{col}  ({model_name} {model.spec.version})")
    producers = project.by_target()
    for table, source_col in sorted(_sources(root)):
        if table in producers and producers[table] != model_name and source_col not in ENGINE_COLUMNS:
            _trace(project, producers[table], source_col, depth + 1, lines)
        elif table in producers:
            # analysis_id and the like: the engine writes them into every row of the model
            lines.append(f"{'  ' * (depth + 1)}{table}.{source_col}  (written by the engine)")
        else:
            kind = contracts.DATASETS[table].kind if table in contracts.DATASETS else "table"
            lines.append(f"{'  ' * (depth + 1)}{table}.{source_col}  ({kind})")


def _sources(node: Node) -> set[tuple[str, str]]:
    """The (table, column) leaves of a lineage tree."""
    found = set()
    for n in node.walk():
        if not n.downstream and isinstance(n.expression, exp.Table):
            found.add((n.expression.name, n.name.split(".")[-1]))
    return found
