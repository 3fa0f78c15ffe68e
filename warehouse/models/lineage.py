"""Column lineage: which input columns a model's output column is computed from.

sqlglot traces the column through the model's CTEs down to the tables it reads; where such
a table is itself another model's target, the trace continues into that model, until it
reaches datasets no model writes (the facts and the producers' analyses). Each model's
line is followed by the CTEs the column passes through, each with the line of the model
file that defines it.
"""

from __future__ import annotations

import re
from pathlib import Path

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
    ctes = {cte.alias for cte in model.tree.find_all(exp.CTE)}
    path = _cte_path(root, ctes, model.spec.path)
    if path:
        lines.append(f"{'  ' * (depth + 1)}computed in: {path}")
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


def _cte_path(root: Node, ctes: set[str], model_file: Path) -> str:
    """The CTEs a column passes through, nearest the output first, as ``name (file:line)``.

    CTEs reached at the same depth are listed together (``a, b``); each is named once, at
    the depth where the trace first reaches it. Subquery aliases are not CTEs: left out.
    """
    depth_of: dict[str, int] = {}
    level, depth = [root], 0
    while level:
        for node in level:
            name = node.reference_node_name
            if name in ctes and name not in depth_of:
                depth_of[name] = depth
        level, depth = [child for node in level for child in node.downstream], depth + 1
    text = model_file.read_text(encoding="utf-8").splitlines()
    steps = []
    for d in sorted(set(depth_of.values())):
        steps.append(", ".join(_where(name, text, model_file) for name in sorted(n for n, x in depth_of.items() if x == d)))
    return " <- ".join(steps)


def _where(cte: str, text: list[str], model_file: Path) -> str:
    """``cte (file:line)`` at the line that opens its definition, or the name alone (a CTE made by a loop)."""
    opening = re.compile(rf"^\s*(WITH\s+)?{re.escape(cte)}\s+AS\s+(MATERIALIZED\s+)?\(", re.IGNORECASE)
    for number, line in enumerate(text, 1):
        if opening.match(line):
            return f"{cte} ({model_file.name}:{number})"
    return cte


def _sources(node: Node) -> set[tuple[str, str]]:
    """The (table, column) leaves of a lineage tree."""
    found = set()
    for n in node.walk():
        if not n.downstream and isinstance(n.expression, exp.Table):
            found.add((n.expression.name, n.name.split(".")[-1]))
    return found
