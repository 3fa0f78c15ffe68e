"""The model engine: versioned Jinja + SQL models, planned and run incrementally in DuckDB.

Python API (the ``warehouse models`` command mirrors it):

- :func:`run` plans and runs the models (``dry_run=True`` only plans), here or on a Ray
  cluster (``executor="ray"``);
- :func:`lock_problems` and :func:`write_lock` keep ``sql/models.lock`` in step;
- :func:`lineage` traces a model column back to the datasets it comes from;
- :func:`render` gives a model's SQL as it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from .. import lake as lk
from .lineage import lineage
from .project import Project, load_project, lock_problems
from .project import write_lock as _write_lock
from .build import ModelResult, run_models
from .compute import Progress
from .executors import RayExecutor, executor_from
from .plan import ModelPlan
from .spec import ModelError

__all__ = ["ModelError", "Progress", "Project", "load_project", "lineage", "lock_problems", "render", "run",
           "write_lock"]


def run(
    *,
    lake: str | Path | None = None,
    sql_dir: str | Path | None = None,
    selected: list[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    inputs: Mapping[str, Mapping[str, str]] | None = None,
    full_refresh: bool = False,
    dry_run: bool = False,
    wait: bool = False,
    skip_invalid: bool = False,
    report: Callable[[str], None] = print,
    started: Callable[[ModelPlan], None] | None = None,
    progress: Callable[[Progress], None] | None = None,
    executor: str | None = None,
    address: str | None = None,
) -> list[ModelResult]:
    """Plan and run the models on an existing lake; see :func:`build.run_models` (``progress``
    hears of each batch a model writes).

    ``executor``: ``local`` (here) or ``ray`` (each batch a task on the Ray cluster at
    ``address``, else ``$SQUIGGLE_RAY_ADDRESS``, else a Ray instance started for the build);
    default ``$SQUIGGLE_EXECUTOR``, else ``local``. Ray is joined, and every node checked
    to see the lake, before anything is written.
    """
    project = load_project(Path(sql_dir) if sql_dir else None, params)
    root = lk.open_lake(lake)

    def build(ray: RayExecutor | None = None) -> list[ModelResult]:
        return run_models(
            project, root, selected=selected, chosen_inputs={k: dict(v) for k, v in (inputs or {}).items()},
            full_refresh=full_refresh, dry_run=dry_run, wait=wait, skip_invalid=skip_invalid, report=report,
            started=started, progress=progress, executor=ray,
        )

    if executor_from(executor, address) == "local" or dry_run:
        return build()
    with RayExecutor(root, address) as ray:
        return build(ray)


def write_lock(sql_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """Record every model's version and logic fingerprint in ``sql/models.lock``."""
    return _write_lock(load_project(Path(sql_dir) if sql_dir else None), force=force)


def render(
    model: str,
    *,
    sql_dir: str | Path | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    merging: bool = False,
) -> str:
    """``model``'s SQL as the engine runs it: rendered with ``params`` (else its defaults).

    The engine runs it with each input dataset as a view of that name (the files of the
    batch), ``getvariable('analysis_id')`` and ``getvariable('input_versions')`` set, and
    casts its columns to the target's contract. ``merging`` gives the SQL that merges new
    runs into the last build (views ``previous_output`` and ``added_runs`` besides).
    """
    project = load_project(Path(sql_dir) if sql_dir else None, params)
    if model not in project.models:
        raise ModelError(f"no model named {model!r}; models: {', '.join(project.order)}")
    compiled = project.models[model]
    if merging and not compiled.additions_sql:
        raise ModelError(f"model {model} does not merge new runs (its kind is {compiled.spec.kind}, not merging): "
                         "drop --merging")
    spec = compiled.spec
    values = ", ".join(f"{k}={v!r}" for k, v in compiled.params.items()) or "none"
    header = (f"-- {spec.name} {spec.version} -> {spec.target}{' (merging new runs)' if merging else ''}\n"
              f"-- parameters: {values}\n"
              f"-- inputs (views of the batch's files): {', '.join(compiled.dependencies)}\n")
    return header + (compiled.additions_sql if merging else compiled.sql).strip() + "\n"
