"""Inputs: which files each model reads, listed once per build and screened against their contracts.

A build lists every input folder before its first model runs (:class:`InputListing`), so
all its models read the lake as one state; a writer that publishes meanwhile is seen by the
next build. Before a model computes, the files it is about to read are checked (each
partition folder once per build, and not at all when an earlier build or the writer found
it clean as it is): an invalid file fails the model, naming it, or with ``skip_invalid`` is
left out, with the units it touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from .. import contracts, lake as lk
from ..check import Problem, check_files
from ..checked import stamp
from ..coverage import LeftOut, min_series_captures, older_analyses, outside_analysis, short_series
from ..errors import ModelError
from .current import NEWEST_PER_RUN, newest_per_run
from .kinds import WHOLE

if TYPE_CHECKING:
    from .compile import CompiledModel
    from .plan import ModelPlan

@dataclass(frozen=True)
class Input:
    """One dataset a model reads: which analysis, and its files per run (or all at WHOLE).

    A captured dataset (analysis-partitioned, written by no model) is read per run from
    that run's newest analysis unless one is pinned: ``analysis`` is then
    :data:`NEWEST_PER_RUN` and ``sources`` names the analysis each run was read from.
    """

    dataset: contracts.Dataset
    analysis: str | None
    files: Mapping[str, list[Path]]
    sources: Mapping[str, str] = field(default_factory=dict)
    unbuilt: bool = False  # the analysis its model defines is not in the lake (not in this build either)
    pinned: bool = False  # the analysis was chosen with ``--input``

    @property
    def by_run(self) -> bool:
        return "run_id" in self.dataset.partition_by

    def files_for(self, units: list[str]) -> list[Path]:
        if not self.by_run or WHOLE in units:
            return [p for files in self.files.values() for p in files]
        return [p for u in units for p in self.files.get(u, [])]

    def of_runs(self, keep: set[str]) -> Input:
        """This input with only the files of the ``keep`` runs (unchanged if not by run)."""
        return replace(self, files={r: fs for r, fs in self.files.items() if r in keep}) if self.by_run else self


class InputListing:
    """Input folders listed (and checked) once per build, so that all its models read the
    lake as one state. A writer may publish while a build runs: what it adds is left for the
    next build.
    """

    def __init__(
        self, known_clean: set[tuple[str, str]] | None = None, run_verdicts: dict[str, dict[str, list]] | None = None
    ) -> None:
        self._files: dict[Path, dict[str, list[Path]]] = {}
        self._newest: dict[Path, str | None] = {}
        self._per_run: dict[Path, tuple[dict[str, list[Path]], dict[str, str]]] = {}
        self._by_analysis: dict[Path, dict[str, dict[str, list[Path]]]] = {}
        self._screened: dict[Path, list[Problem]] = {}
        self._known_clean = known_clean or set()  # (folder, stamp) found clean by earlier builds
        self.clean: dict[Path, str] = {}  # folder -> stamp, found clean by this build or before
        # runs condition -> run -> [digest of its runs files, chosen], found by earlier builds or this one
        self.run_verdicts: dict[str, dict[str, list]] = run_verdicts or {}

    def files_by_run(self, base: Path, contract: contracts.Dataset) -> dict[str, list[Path]]:
        if base not in self._files:
            self._files[base] = files_by_run(base, contract)
        return self._files[base]

    def newest_analysis(self, base: Path, contract: contracts.Dataset) -> str | None:
        if base not in self._newest:
            self._newest[base] = _newest_analysis(base, contract)
        return self._newest[base]

    def newest_per_run(self, base: Path) -> tuple[dict[str, list[Path]], dict[str, str]]:
        if base not in self._per_run:
            self._per_run[base] = newest_per_run(base, self.files_by_analysis(base))
        return self._per_run[base]

    def files_by_analysis(self, base: Path) -> dict[str, dict[str, list[Path]]]:
        """Per analysis, each run's files below a dataset's folder (listed once per build:
        what the models read, what they leave out and the checks all see the same files)."""
        if base not in self._by_analysis:
            self._by_analysis[base] = lk.run_files_by_analysis(base)
        return self._by_analysis[base]

    def screen(self, root: Path, dataset: contracts.Dataset, files: list[Path]) -> list[Problem]:
        """The problems of these input files as :func:`check_files` finds them. Each folder is
        checked once per build, and not at all if an earlier build found it clean as it is
        (duplicate keys can only meet within a partition folder)."""
        folders: dict[Path, list[Path]] = {}
        for f in files:
            folders.setdefault(f.parent, []).append(f)
        for folder, fs in folders.items():
            if folder in self._screened:
                continue
            current = stamp(dataset, fs)
            if (self._rel(root, folder), current) in self._known_clean:
                self._screened[folder], self.clean[folder] = [], current
        todo = [f for folder, fs in folders.items() if folder not in self._screened for f in fs]
        found = check_files(root, dataset, todo, nonfinite_is_null=True) if todo else []
        for folder in {f.parent for f in todo}:
            rels = [self._rel(root, f) for f in folders[folder]]
            self._screened[folder] = [p for p in found if any(p.involves(r) for r in rels)]
            if not self._screened[folder]:
                self.clean[folder] = stamp(dataset, folders[folder])
        return list(dict.fromkeys(p for folder in folders for p in self._screened[folder]))

    @staticmethod
    def _rel(root: Path, path: Path) -> str:
        return path.relative_to(root).as_posix()


def resolve_input(
    root: Path,
    dataset: str,
    model: CompiledModel,
    producer: ModelPlan | None,
    chosen: Mapping[str, str],
    listing: InputListing,
    expected: Mapping[str, str],
) -> Input:
    """What ``model`` reads of ``dataset``: a pinned analysis (``--input``), else the
    analysis its ``producer`` makes in this build or, outside the build, the one the project
    defines (``expected``); a captured dataset each run's newest analysis."""
    contract = contracts.DATASETS[dataset]
    table = lk.Lake(root).table(contract)
    if "analysis_id" not in contract.partition_by:
        return Input(contract, None, listing.files_by_run(table.folder, contract))
    analysis = chosen.get(dataset) or (producer.analysis_id if producer else expected.get(dataset))
    if chosen.get(dataset):
        lk.check_identifier(analysis, "analysis_id")
        if not table.analysis(analysis).is_dir():
            raise ModelError(f"{model.spec.where()}: {dataset} has no analysis {analysis!r}")
        return Input(contract, analysis, listing.files_by_run(table.analysis(analysis), contract), pinned=True)
    if analysis and not producer and not table.analysis(analysis).is_dir():
        return Input(contract, analysis, {}, unbuilt=True)
    if analysis:
        return Input(contract, analysis, listing.files_by_run(table.analysis(analysis), contract))
    if "run_id" in contract.partition_by:
        files, sources = listing.newest_per_run(table.folder)
        return Input(contract, NEWEST_PER_RUN, files, sources)
    analysis = listing.newest_analysis(table.folder, contract)
    return Input(contract, analysis, listing.files_by_run(table.analysis(analysis), contract) if analysis else {})


def _newest_analysis(base: Path, contract: contracts.Dataset) -> str | None:
    """The analysis whose newest file is newest: 'the newest analysis' of a dataset."""
    newest = None, -1.0
    for analysis, folder in lk.partition_folders(base, "analysis_id").items():
        mtimes = [p.stat().st_mtime for files in files_by_run(folder, contract).values() for p in files]
        if mtimes and max(mtimes) > newest[1]:
            newest = analysis, max(mtimes)
    return newest[0]


def files_by_run(base: Path, contract: contracts.Dataset) -> dict[str, list[Path]]:
    """The published files below ``base`` (a dataset's or an analysis's folder) by run, at
    exactly the dataset's partition depth, as the catalog's views read them."""
    if "run_id" not in contract.partition_by:
        pattern = "/".join([f"{k}=*" for k in contract.partition_by if k != "analysis_id"] + ["*.parquet"])
        return {WHOLE: sorted(p for p in base.glob(pattern) if not p.name.startswith(".")) if base.is_dir() else []}
    runs = {run: lk.published_files(folder) for run, folder in sorted(lk.partition_folders(base, "run_id").items())}
    return {run: files for run, files in runs.items() if files}


# -- screening: the files a plan is about to read ------------------------------------------


def screen(
    plan: ModelPlan, root: Path, listing: InputListing, trusted: set[Path], *, skip_invalid: bool
) -> tuple[ModelPlan, list[Problem]]:
    """The plan left to build after checking its input files, and their problems; fail
    naming them unless ``skip_invalid``.

    Files this engine published (``trusted``) are not checked again: they were checked as
    they were made. NaN and infinity pass: the models read them as NULL
    (``finite_or_null``), as the design says. Skipping drops the units whose input folder is
    not a safe run id: they have no safe output folder either.
    """
    units = sorted(plan.build)
    problems = list(dict.fromkeys(
        p for inp in plan.inputs.values()
        for p in listing.screen(root, inp.dataset, [f for f in inp.files_for(units) if f not in trusted])
    ))
    if problems and not skip_invalid:
        listed = "\n".join(f"  {p}" for p in problems)
        raise ModelError(
            f"{plan.model.spec.where()}: {len(problems)} problem(s) in its input files; this model wrote nothing:\n"
            f"{listed}\nFix or remove them (`warehouse check` lists every problem of the lake), "
            "or pass --skip-invalid to build without them"
        )
    safe = {u: r for u, r in plan.build.items() if u == WHOLE or lk.is_identifier(u)}
    return replace(plan, build=safe), problems


def excluded_files(plan: ModelPlan, root: Path, problems: list[Problem]) -> set[Path]:
    """The input files the problems involve: the model reads every other one."""
    if not problems:
        return set()
    every = {f for inp in plan.inputs.values() for f in inp.files_for([WHOLE])}
    return {f for f in every if any(p.involves(f.relative_to(root).as_posix()) for p in problems)}


def checked_by_unit(plan: ModelPlan, root: Path, listing: InputListing) -> dict[str, dict[str, str]]:
    """Per unit built, its input folders found clean, with their stamps (for its record)."""
    out = {}
    for unit in plan.build:
        folders = {f.parent for inp in plan.inputs.values() for f in inp.files_for([unit])}
        out[unit] = {f.relative_to(root).as_posix(): listing.clean[f] for f in sorted(folders) if f in listing.clean}
    return out


def skipped_by_unit(plan: ModelPlan, root: Path, problems: list[Problem]) -> dict[str, list[str]]:
    """Per unit built, the skipped problems that touched its input files (for its record)."""
    out = {}
    for unit in plan.build:
        rels = [f.relative_to(root).as_posix() for inp in plan.inputs.values() for f in inp.files_for([unit])]
        touched = [str(p) for p in problems if any(p.involves(r) for r in rels)]
        if touched:
            out[unit] = touched
    return out


# -- what a plan leaves out ------------------------------------------------------------------


def left_out_by(plan: ModelPlan, root: Path, listing: InputListing) -> list[LeftOut]:
    """What the plan's inputs leave out: the runs outside a pinned captured analysis, the
    older analyses of runs read newest per run, and the series too short for the model."""
    return _pinned_left_out(plan, root, listing) + _older_left_out(plan, root, listing) + _short_left_out(plan, root)


def _pinned_left_out(plan: ModelPlan, root: Path, listing: InputListing) -> list[LeftOut]:
    return [
        item for inp in plan.inputs.values()
        if inp.pinned and inp.by_run
        for item in outside_analysis(inp.dataset, inp.analysis, plan.name, _by_analysis(root, inp, listing))
    ]


def _older_left_out(plan: ModelPlan, root: Path, listing: InputListing) -> list[LeftOut]:
    return [item for inp in plan.inputs.values() if inp.analysis == NEWEST_PER_RUN
            for item in older_analyses(inp.dataset, inp.sources, _by_analysis(root, inp, listing))]


def _by_analysis(root: Path, inp: Input, listing: InputListing) -> dict[str, dict[str, list[Path]]]:
    return listing.files_by_analysis(lk.Lake(root).table(inp.dataset).folder)


def _short_left_out(plan: ModelPlan, root: Path) -> list[LeftOut]:
    """The series of the runs this build computes that are too short for the model to test."""
    floor = min_series_captures(plan.name, plan.model.params)
    inp = plan.inputs.get("geometry_state")
    if floor is None or inp is None or not inp.by_run:
        return []
    runs = inp.files if WHOLE in plan.build else {r: inp.files[r] for r in plan.build if r in inp.files}
    return short_series(root, runs, floor, str(plan.model.params.get("sample_set", "")))
