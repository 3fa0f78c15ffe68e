"""The analysis each model's file and parameters define, known before anything is built.

A model's analysis id hashes its version, logic, parameters and the analysis it reads of
each input. Those inputs are either another model's output (whose id follows the same rule,
in build order), a captured dataset read per run from its newest analysis
(:data:`NEWEST_PER_RUN`), or a fact dataset. So the ids follow from the ``sql/`` folder
alone: at default parameters they name the *current* analysis of every model, which the
catalog's dataset views show, and a build that does not run a model reads that model's
output under this id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from .. import contracts, lake as lk
from .compile import analysis_id, fingerprint
from .project import Project

# What a model reads of a captured dataset unless an analysis is pinned (``--input``):
# each run's newest analysis. It stands in the fingerprint for the rule, not the ids it
# picks, so a new capture of one run rebuilds that run, not the whole analysis.
NEWEST_PER_RUN = "newest per run"


def analysed(dataset: str) -> bool:
    """Whether a dataset holds analyses side by side (``analysis_id`` partitions)."""
    contract = contracts.DATASETS.get(dataset)
    return contract is not None and "analysis_id" in contract.partition_by


def per_run(dataset: str) -> bool:
    """Whether a dataset is partitioned by run, so that each run can come from its own analysis."""
    return "run_id" in contracts.DATASETS[dataset].partition_by


def expected_analyses(project: Project) -> dict[str, str]:
    """Per lake model target, the analysis id the project's models and parameters define.

    A model reading an analysed dataset that no model writes and that is not partitioned
    by run reads its newest analysis, known only from the lake: it and what depends on it
    are left out.
    """
    targets = project.by_target()
    ids: dict[str, str] = {}
    for name in project.order:
        model = project.models[name]
        if not model.spec.writes_lake:
            continue
        inputs = {}
        for dataset in model.dependencies:
            if dataset in targets and analysed(dataset):
                inputs[dataset] = ids.get(dataset)
            elif analysed(dataset):
                inputs[dataset] = NEWEST_PER_RUN if per_run(dataset) else None
            else:
                inputs[dataset] = None
        if all(inputs[d] is not None for d in model.dependencies if analysed(d)):
            ids[model.spec.target] = analysis_id(model, fingerprint(model, inputs))
    return ids


def newest_per_run(
    base: Path, by_analysis: Mapping[str, Mapping[str, list[Path]]] | None = None
) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Below a captured dataset's folder ``base``: each run's files in its newest analysis
    (the one holding the run's newest file; ties by analysis id), and that analysis per run.
    ``by_analysis``: the folder's files as :func:`~warehouse.lake.run_files_by_analysis`
    lists them, when the caller has listed them already."""
    newest: dict[str, tuple[float, str, list[Path]]] = {}
    for analysis, runs in (lk.run_files_by_analysis(base) if by_analysis is None else by_analysis).items():
        for run, files in runs.items():
            key = (max(p.stat().st_mtime for p in files), analysis, files)
            if run not in newest or key[:2] > newest[run][:2]:
                newest[run] = key
    runs = sorted(newest)
    return {r: newest[r][2] for r in runs}, {r: newest[r][1] for r in runs}
