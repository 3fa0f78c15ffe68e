"""What the models cannot read of a lake, and why: every build says it, and so does ``warehouse check``.

Three things keep captured data out of the models without any file being invalid:

- a folder in a dataset's partition levels that is not ``key=value`` with the dataset's
  keys in order (``geometry_state/run_id=r1/analysis_id=a/`` instead of
  ``geometry_state/analysis_id=a/run_id=r1/``): no reader's glob reaches its files;
- geometry of a run that has no ``runs`` row: its cohort is unknown, so the cross-run
  models (consensus events) and the views joining ``runs`` cannot place it;
- series too short for the change-point model (``events_candidates`` tests a series only
  from 4 x ``min_scale`` captures on): they can give no change point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import duckdb

from . import contracts, lake as lk
from .duck import bounded_connection
from .scan import select_dataset
from .sql import quote_literal


@dataclass(frozen=True)
class LeftOut:
    """Data the models do not read: where (lake-relative), which runs if known, and why."""

    dataset: str
    path: str
    reason: str
    runs: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def left_out(
    root: Path, datasets: Iterable[str], geometry: Mapping[str, Mapping[str, object]] | None = None
) -> list[LeftOut]:
    """What of ``datasets`` (and of geometry_state's runs) the models leave out of the lake at
    ``root``; ``geometry``: geometry_state's runs per analysis, if listed already."""
    found = [item for name in datasets for item in misplaced(root, contracts.DATASETS[name])]
    if "geometry_state" in datasets:
        found += runs_without_runs_row(root, geometry)
    return found


def misplaced(root: Path, dataset: contracts.Dataset) -> list[LeftOut]:
    """The folders and files at a dataset's partition levels that are not its ``key=value`` folders."""
    found: list[LeftOut] = []
    level = [lk.Lake(root).table(dataset).folder]
    for depth, key in enumerate(dataset.partition_by):
        expected = "/".join(f"{k}=*" for k in dataset.partition_by)
        below: list[Path] = []
        for folder in level:
            for entry in _entries(folder):
                if entry.name.startswith("."):
                    continue  # a writer's temporary file, never read
                if entry.is_dir() and entry.name.startswith(f"{key}="):
                    below.append(Path(entry.path))
                    continue
                rel = Path(entry.path).relative_to(root).as_posix()
                found.append(LeftOut(dataset.name, rel, (
                    f"not in the layout of {dataset.name} ({dataset.name}/{expected}/*.parquet): "
                    f"no model or view reads it; move its files under {key}=<value>/"
                ), _runs_named(rel)))
        level = below
    return found


def runs_without_runs_row(root: Path, geometry: Mapping[str, Mapping[str, object]] | None = None) -> list[LeftOut]:
    """Runs with geometry_state files but no ``runs`` partition: the models cannot place them
    in a cohort. ``geometry``: geometry_state's runs per analysis, if listed already."""
    captured: dict[str, list[str]] = {}
    if geometry is None:
        geometry = lk.Lake(root).table(contracts.GEOMETRY_STATE).files_by_analysis()
    for analysis, runs in geometry.items():
        for run in runs:
            if lk.is_identifier(run):  # an unsafe one is a problem of its own
                captured.setdefault(run, []).append(analysis)
    registered = {r for r, f in lk.partition_folders(lk.Lake(root).table(contracts.RUNS).folder, "run_id").items()
                  if lk.published_files(f)}
    return [
        LeftOut("geometry_state", f"geometry_state/analysis_id={captured[run][-1]}/run_id={run}", (
            f"run {run} has geometry but no runs row: its cohort is unknown, so events (consensus across seeds) "
            "and the views joining runs leave it out; write its runs row (`warehouse schema runs`)"
        ), (run,))
        for run in sorted(set(captured) - registered)
    ]


def outside_analysis(
    dataset: contracts.Dataset, analysis: str, model: str, by_analysis: Mapping[str, Mapping[str, object]]
) -> list[LeftOut]:
    """The runs of a dataset that ``model`` does not read because it is pinned to ``analysis``
    and they were captured only under others; ``by_analysis``: the dataset's runs per
    analysis (:meth:`warehouse.lake.Table.files_by_analysis`)."""
    pinned = set(by_analysis.get(analysis, {}))
    others: dict[str, str] = {}
    for other, runs in by_analysis.items():
        for run in runs:
            if run not in pinned:
                others.setdefault(run, other)
    return [
        LeftOut(dataset.name, f"{dataset.name}/analysis_id={others[run]}/run_id={run}", (
            f"model {model} reads only {dataset.name} analysis {analysis} (--input), which does not hold run {run}"
        ), (run,))
        for run in sorted(others)
    ]


def older_analyses(
    dataset: contracts.Dataset, read: Mapping[str, str], by_analysis: Mapping[str, Mapping[str, object]]
) -> list[LeftOut]:
    """The analyses of a run that the models do not read because ``read`` (run -> analysis)
    chose a newer one of that run; ``by_analysis`` as for :func:`outside_analysis`."""
    return [
        LeftOut(dataset.name, f"{dataset.name}/analysis_id={analysis}/run_id={run}", (
            f"an older capture of run {run}: the models read each run's newest analysis ({read[run]}); "
            f"pin this one with --input MODEL.{dataset.name}={analysis}"
        ), (run,))
        for analysis, runs in by_analysis.items()
        for run in runs if read.get(run, analysis) != analysis
    ]


def min_series_captures(model: str, params: Mapping[str, object]) -> int | None:
    """The captures below which ``model`` cannot test a geometry series, for the models that
    have such a floor: the change-point model from cpd@2 on, 4 x its smallest scale (a
    version without ``min_scale`` declares none)."""
    return 4 * int(params["min_scale"]) if model == "events_candidates" and "min_scale" in params else None


def short_series(
    root: Path, files_by_run: Mapping[str, Sequence[Path]], min_captures: int, sample_set: str = ""
) -> list[LeftOut]:
    """The runs with <module>.<descriptor> series too short for the change-point model: fewer
    than ``min_captures`` finite captures in the sample set it reads (``sample_set``, else
    the alphabetically first with pooled rows, else the first with per-sample rows, whose
    steps count once). One item per run; a descriptor a run never fills is no series."""
    files = [f for run in sorted(files_by_run) for f in files_by_run[run]]
    if not files or min_captures <= 1:
        return []
    try:
        counts = _short_series_counts(files, min_captures, sample_set)
    except duckdb.Error:
        return []  # an unreadable or drifted file: the build's input check and `warehouse check` name it
    found = []
    for run, short, total, fewest in counts:
        found.append(LeftOut("geometry_state", files_by_run[run][0].parent.relative_to(root).as_posix(), (
            f"{short} of run {run}'s {total} series have fewer than {min_captures} captures (the shortest: "
            f"{fewest}): events_candidates tests a series only from 4 x min_scale = {min_captures} captures on, so "
            "they give no change point (a smaller --param events_candidates.min_scale tests shorter series)"
        ), (run,)))
    return found


def _short_series_counts(files: list[Path], min_captures: int, sample_set: str) -> list[tuple[str, int, int, int]]:
    """Per run with a short series: (run, short series, series, captures of the shortest)."""
    wanted = quote_literal(sample_set)
    descriptors = ", ".join(contracts.DESCRIPTORS)
    query = f"""
WITH geometry AS ({select_dataset(contracts.GEOMETRY_STATE, files)}),
chosen_sets AS (
    -- the chosen set (else the first with pooled rows, else the first), and whether its
    -- series are its pooled rows or the medians of its per-sample rows
    SELECT
        run_id,
        coalesce(min(sample_set) FILTER (WHERE sample_id IS NULL), min(sample_set)) AS sample_set,
        count(*) FILTER (WHERE sample_id IS NULL) > 0 AS pooled
    FROM geometry
    WHERE {wanted} = '' OR sample_set = {wanted}
    GROUP BY run_id
),
chosen_values AS (
    UNPIVOT (
        SELECT g.run_id, g.layer, g.module, g.step, {descriptors}
        FROM geometry AS g
        JOIN chosen_sets AS c ON g.run_id = c.run_id AND g.sample_set = c.sample_set AND (g.sample_id IS NULL) = c.pooled
    ) ON {descriptors} INTO NAME descriptor VALUE x
),
series AS (
    -- captures per series: steps with a finite value (a per-sample step counts once)
    SELECT run_id, layer, module, descriptor, count(DISTINCT step) FILTER (WHERE isfinite(x)) AS n
    FROM chosen_values
    GROUP BY run_id, layer, module, descriptor
)
SELECT run_id, count(*) FILTER (WHERE n < {int(min_captures)}), count(*), min(n)
FROM series
WHERE n > 0
GROUP BY run_id
HAVING min(n) < {int(min_captures)}
ORDER BY run_id
"""
    with bounded_connection() as con:
        return [tuple(row) for row in con.execute(query).fetchall()]


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _runs_named(rel: str) -> tuple[str, ...]:
    return tuple(part[len("run_id="):] for part in rel.split("/") if part.startswith("run_id="))
