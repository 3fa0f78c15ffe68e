"""Plan and run models: work out what is stale, compute it in DuckDB, publish it atomically.

A model's unit of work is a run (``incremental: run_id``) or the whole table (``full``).
A unit is rebuilt when its analysis is new (changed logic, version, parameters or input
analysis), when its run is new, when the files it was computed from changed, or when its
output partition went missing. Nothing else runs, so a rebuild with nothing new does no
model work.

Each model runs in its own DuckDB connection over views of exactly the input files it
needs, after checking those files against their contracts (an invalid one fails the model,
naming it, or with ``skip_invalid`` is left out and listed). The output is written by
``COPY`` into a staging folder inside the lake, then each output partition folder is
exchanged with the old one in one step. A failure anywhere leaves the lake as it was:
staged output is discarded, and analysis records are written last.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote

import duckdb
import pyarrow.parquet as pq

from .. import contracts, lake as lk
from ..checked import recorded_clean, stamp, writer_clean
from ..check import Problem, check_files
from ..coverage import LeftOut, left_out, min_series_captures, older_analyses, outside_analysis, short_series
from ..duck import memory_bytes, work_connection
from ..scan import read_parquet, select_dataset
from ..sql import quote_identifier as qi, quote_literal as ql
from .compile import CompiledModel, analysis_id as make_analysis_id, fingerprint, sql_literal
from .current import NEWEST_PER_RUN, expected_analyses, newest_per_run
from .project import ADDED_RUNS, ENGINE_COLUMNS, PREVIOUS_OUTPUT, Project
from .spec import ModelError
from .state import build_lock, digest, load_analyses, remove_stale_records, save_analysis

WHOLE = "*"  # the unit of a full model
BUILD_STAGING_PREFIX = "build-"  # a build's own folders in the staging area


@dataclass
class Input:
    """One dataset a model reads: which analysis, and its files per run (or all at WHOLE).

    A captured dataset (analysis-partitioned, written by no model) is read per run from
    that run's newest analysis unless one is pinned: ``analysis`` is then
    :data:`NEWEST_PER_RUN` and ``sources`` names the analysis each run was read from.
    """

    dataset: contracts.Dataset
    analysis: str | None
    files: dict[str, list[Path]]
    sources: dict[str, str] = field(default_factory=dict)
    unbuilt: bool = False  # the analysis its model defines is not in the lake (not in this build either)
    pinned: bool = False  # the analysis was chosen with ``--input``

    @property
    def by_run(self) -> bool:
        return "run_id" in self.dataset.partition_by

    def files_for(self, units: list[str]) -> list[Path]:
        if not self.by_run or WHOLE in units:
            return [p for files in self.files.values() for p in files]
        return [p for u in units for p in self.files.get(u, [])]


@dataclass
class ModelPlan:
    """What one model would do: its analysis id and the units to (re)build, each with a reason."""

    model: CompiledModel
    analysis_id: str
    fingerprint: str
    inputs: dict[str, Input]
    digests: dict[str, str]
    build: dict[str, str] = field(default_factory=dict)  # unit -> reason
    drop: list[str] = field(default_factory=list)  # units whose inputs are gone
    executed: bool = False  # its units were computed and published (not a dry run)
    added: list[str] = field(default_factory=list)  # new runs merged into the previous output
    previous_files: list[Path] = field(default_factory=list)  # that output (``additions``)
    run_scope: dict[str, list] | None = None  # per run: [digest of its runs files, chosen by ``runs``]
    # ``additions``: the digest of each run's input files, and of the other inputs' files
    input_digests: tuple[dict[str, str], str] | None = None

    @property
    def name(self) -> str:
        return self.model.spec.name

    @property
    def no_input(self) -> bool:
        """Whether the data it analyses (captures, other models' outputs) holds no file yet:
        an empty lake, or one holding only runs. Facts alone give it nothing to compute."""
        return not any(files for d in self._analysed_inputs() for files in self.inputs[d].files.values())

    def describe(self) -> str:
        head = f"{self.name} {self.model.spec.version} -> {self.analysis_id}"
        unbuilt = [f"{d} analysis {i.analysis}" for d, i in self.inputs.items() if i.unbuilt]
        if unbuilt:
            return f"{head}: waits for {', '.join(unbuilt)} (not built)"
        if not self.build and not self.drop and self.no_input and self.run_scope:
            return f"{head}: nothing to do (no run satisfies its runs condition: {self.model.spec.runs})"
        if not self.build and not self.drop and self.no_input:
            return f"{head}: nothing to do (no {' or '.join(self._analysed_inputs())} files yet)"
        if not self.build and not self.drop:
            return f"{head}: up to date ({len(self.digests)} {self._unit_word(len(self.digests))})"
        reasons: dict[str, list[str]] = {}
        for unit, reason in sorted(self.build.items()):
            reasons.setdefault(reason, []).append(unit)
        parts = [f"{len(units)} {self._unit_word(len(units))} ({reason})" for reason, units in reasons.items()]
        if self.drop:
            parts.append(f"{len(self.drop)} removed")
        return f"{head}: " + ", ".join(parts)

    def _analysed_inputs(self) -> list[str]:
        return [d for d, i in self.inputs.items() if "analysis_id" in i.dataset.partition_by] or list(self.inputs)

    def _unit_word(self, n: int = 2) -> str:
        if self.model.spec.incremental == "full":
            return "table"
        return "run" if n == 1 else "runs"


@dataclass
class ModelResult:
    plan: ModelPlan
    rows: int
    partitions: int
    seconds: float
    skipped: list[Problem] = field(default_factory=list)  # invalid inputs left out (skip_invalid)

    def describe(self) -> str:
        line = self.plan.describe()
        if self.plan.build or self.plan.drop:
            line += f": {self.rows:,} rows, {self.partitions} partitions, {self.seconds:.2f} s"
        return "".join([line, *(f"\n  skipped invalid input {p}" for p in self.skipped)])


@dataclass(frozen=True)
class Progress:
    """How far a model's computation is: ``done`` of its ``total`` batches written, the rows
    they wrote and the seconds since the first began."""

    plan: ModelPlan
    done: int
    total: int
    rows: int
    seconds: float

    def describe(self) -> str:
        """``batch 3/10, 52,000 rows/s, 0:21 left`` (the time left at the batches' mean pace)."""
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        left = round(self.seconds / self.done * (self.total - self.done))
        return f"batch {self.done}/{self.total}, {rate:,.0f} rows/s, {left // 60}:{left % 60:02d} left"


# -- planning ----------------------------------------------------------------------------


def plan_model(
    project: Project,
    name: str,
    root: Path,
    upstream: dict[str, ModelPlan],
    records: dict[str, dict[str, Any]],
    *,
    chosen_inputs: dict[str, str] | None = None,
    full_refresh: bool = False,
    listing: InputListing | None = None,
    expected: Mapping[str, str] | None = None,
) -> ModelPlan:
    """Plan one model; ``upstream`` holds the plans of the models it reads, already made.

    ``listing`` holds the input files as the build found them when it began (default: now);
    ``expected`` the analysis each model target has by the project (default: computed).
    """
    model = project.models[name]
    listing = listing or InputListing()
    expected = expected_analyses(project) if expected is None else expected
    inputs = {d: _input(root, d, model, upstream, chosen_inputs or {}, listing, expected) for d in model.dependencies}
    fp = fingerprint(model, {d: i.analysis for d, i in inputs.items()})
    analysis = make_analysis_id(model, fp)
    record = records.get(analysis)
    scope = _scope_runs(model, inputs, root, record) if model.spec.runs else None
    plan = ModelPlan(model, analysis, fp, inputs, _digests(model, inputs, root), run_scope=scope)
    if model.spec.additions:
        plan.input_digests = _run_digests(plan, root)
    if record is None and plan.no_input:
        return plan  # nothing to compute, and no earlier output to remove
    if record is None:
        reason = _new_analysis_reason(model, plan, records)
        plan.build = {unit: reason for unit in plan.digests}
        return plan
    done = record.get("units", {})
    for unit, d in plan.digests.items():
        plan.build[unit] = _unit_reason(plan, unit, d, done.get(unit), root, upstream, full_refresh) or ""
    plan.build = {u: r for u, r in plan.build.items() if r}
    plan.drop = sorted(set(done) - set(plan.digests))
    if model.spec.additions and plan.build.get(WHOLE) in ("changed input", "upstream changed"):
        _plan_additions(plan, done[WHOLE], root)
    return plan


def _scope_runs(
    model: CompiledModel, inputs: dict[str, Input], root: Path, record: dict | None
) -> dict[str, list] | None:
    """Keep only the runs the model's ``runs`` condition chooses in its by-run inputs.

    Returns each run's verdict with a digest of its runs files, for the analysis record: a
    later build asks the condition again only of the runs whose files are new or changed.
    If the runs files cannot be read, every run is kept (the input checks then name the
    broken file) and None is returned.
    """
    files = inputs["runs"].files
    digests = {run: digest(fs, root) for run, fs in files.items()}
    verdicts = {r: v for r, v in ((record or {}).get("run_scope") or {}).items() if v[0] == digests.get(r)}
    todo = [f for run in digests if run not in verdicts for f in files[run]]
    if todo:
        try:
            with duckdb.connect() as con:
                chosen = {r for (r,) in con.execute(
                    f"SELECT run_id FROM ({select_dataset(contracts.RUNS, todo)}) WHERE {model.spec.runs}"
                ).fetchall()}
        except duckdb.Error:
            return None
        verdicts |= {run: [digests[run], run in chosen] for run in digests if run not in verdicts}
    keep = {run for run, (_, chosen) in verdicts.items() if chosen}
    for inp in inputs.values():
        if inp.by_run:
            inp.files = {r: fs for r, fs in inp.files.items() if r in keep}
    return verdicts


def _plan_additions(plan: ModelPlan, done: dict, root: Path) -> None:
    """Merge new runs into the last output when they are all that changed: every run seen
    then is there with the same files, as is every input not partitioned by run."""
    seen, shared = done.get("input_runs"), done.get("input_shared")
    runs, now_shared = plan.input_digests
    previous = [root / f for f in done.get("files", [])]
    if seen is None or shared != now_shared or any(runs.get(r) != d for r, d in seen.items()):
        return
    if not all(f.is_file() for f in previous):
        return
    plan.added = sorted(set(runs) - set(seen))
    if not plan.added:
        return
    plan.previous_files = previous
    n = len(plan.added)
    plan.build[WHOLE] = f"{n} new run{'s' if n != 1 else ''} merged in"


class InputListing:
    """Input folders listed (and checked) once per build, so that all its models read the
    lake as one state. A writer may publish while a build runs: what it adds is left for the
    next build.
    """

    def __init__(self, known_clean: set[tuple[str, str]] | None = None) -> None:
        self._files: dict[Path, dict[str, list[Path]]] = {}
        self._newest: dict[Path, str | None] = {}
        self._per_run: dict[Path, tuple[dict[str, list[Path]], dict[str, str]]] = {}
        self._screened: dict[Path, list[Problem]] = {}
        self._known_clean = known_clean or set()  # (folder, stamp) found clean by earlier builds
        self.clean: dict[Path, str] = {}  # folder -> stamp, found clean by this build or before

    def files_by_run(self, base: Path, contract: contracts.Dataset) -> dict[str, list[Path]]:
        if base not in self._files:
            self._files[base] = _files_by_run(base, contract)
        return self._files[base]

    def newest_analysis(self, base: Path, contract: contracts.Dataset) -> str | None:
        if base not in self._newest:
            self._newest[base] = _newest_analysis(base, contract)
        return self._newest[base]

    def newest_per_run(self, base: Path) -> tuple[dict[str, list[Path]], dict[str, str]]:
        if base not in self._per_run:
            self._per_run[base] = newest_per_run(base)
        return self._per_run[base]

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


def _input(
    root: Path,
    dataset: str,
    model: CompiledModel,
    upstream: dict[str, ModelPlan],
    chosen: dict[str, str],
    listing: InputListing,
    expected: Mapping[str, str],
) -> Input:
    """What ``model`` reads of ``dataset``: a pinned analysis (``--input``), else the
    analysis its producer makes in this build or, outside the build, the one the project
    defines (``expected``); a captured dataset each run's newest analysis."""
    contract = contracts.DATASETS[dataset]
    base = lk.dataset_dir(root, contract)
    if "analysis_id" not in contract.partition_by:
        return Input(contract, None, listing.files_by_run(base, contract))
    producer = next((p for p in upstream.values() if p.model.spec.target == dataset), None)
    analysis = chosen.get(dataset) or (producer.analysis_id if producer else expected.get(dataset))
    if chosen.get(dataset):
        lk.check_identifier(analysis, "analysis_id")
        if not (base / f"analysis_id={analysis}").is_dir():
            raise ModelError(f"{model.spec.where()}: {dataset} has no analysis {analysis!r}")
        return Input(contract, analysis, listing.files_by_run(base / f"analysis_id={analysis}", contract), pinned=True)
    if analysis and not producer and not (base / f"analysis_id={analysis}").is_dir():
        return Input(contract, analysis, {}, unbuilt=True)
    if analysis:
        return Input(contract, analysis, listing.files_by_run(base / f"analysis_id={analysis}", contract))
    if "run_id" in contract.partition_by:
        files, sources = listing.newest_per_run(base)
        return Input(contract, NEWEST_PER_RUN, files, sources)
    analysis = listing.newest_analysis(base, contract)
    return Input(contract, analysis, listing.files_by_run(base / f"analysis_id={analysis}", contract) if analysis else {})


def _newest_analysis(base: Path, contract: contracts.Dataset) -> str | None:
    """The analysis whose newest file is newest: 'the newest analysis' of a dataset."""
    newest = None, -1.0
    for analysis, folder in lk.partition_folders(base, "analysis_id").items():
        mtimes = [p.stat().st_mtime for files in _files_by_run(folder, contract).values() for p in files]
        if mtimes and max(mtimes) > newest[1]:
            newest = analysis, max(mtimes)
    return newest[0]


def _files_by_run(base: Path, contract: contracts.Dataset) -> dict[str, list[Path]]:
    """The published files below ``base`` (a dataset's or an analysis's folder) by run, at
    exactly the dataset's partition depth, as the catalog's views read them."""
    if "run_id" not in contract.partition_by:
        pattern = "/".join([f"{k}=*" for k in contract.partition_by if k != "analysis_id"] + ["*.parquet"])
        return {WHOLE: sorted(p for p in base.glob(pattern) if not p.name.startswith(".")) if base.is_dir() else []}
    runs = {run: lk.published_files(folder) for run, folder in sorted(lk.partition_folders(base, "run_id").items())}
    return {run: files for run, files in runs.items() if files}


def _digests(model: CompiledModel, inputs: dict[str, Input], root: Path) -> dict[str, str]:
    """The digest of each unit's input files. A run's unit also sees every non-run input."""
    shared = [p for i in inputs.values() if not i.by_run for p in i.files_for([WHOLE])]
    if model.spec.incremental == "full":
        every = shared + [p for i in inputs.values() if i.by_run for p in i.files_for([WHOLE])]
        return {WHOLE: digest(every, root)}
    runs = sorted({r for i in inputs.values() if i.by_run for r in i.files})
    return {r: digest(shared + [p for i in inputs.values() if i.by_run for p in i.files.get(r, [])], root) for r in runs}


def _run_digests(plan: ModelPlan, root: Path) -> tuple[dict[str, str], str]:
    """The digest of each run's input files, and of the inputs not partitioned by run."""
    by_run = [i for i in plan.inputs.values() if i.by_run]
    runs = sorted({r for i in by_run for r in i.files})
    shared = [p for i in plan.inputs.values() if not i.by_run for p in i.files_for([WHOLE])]
    return {r: digest([p for i in by_run for p in i.files.get(r, [])], root) for r in runs}, digest(shared, root)


def _new_analysis_reason(model: CompiledModel, plan: ModelPlan, records: dict[str, dict]) -> str:
    earlier = [r for r in records.values() if r["model"] == model.spec.name]
    if not earlier:
        return "first build"
    last = max(earlier, key=lambda r: r["updated_at"])
    if last["version"] != model.spec.version:
        return f"new version (was {last['version']})"
    if last["logic_fingerprint"] != model.logic_fingerprint:
        return "changed fingerprint"
    if last["params"] != model.params:
        return "new parameters"
    return "changed input analysis"


def _unit_reason(
    plan: ModelPlan, unit: str, d: str, done: dict | None, root: Path, upstream: dict[str, ModelPlan], full_refresh: bool
) -> str | None:
    if full_refresh:
        return "full refresh"
    if done is None:
        return "new run" if unit != WHOLE else "first build"
    rebuilt = [p for p in upstream.values() if p.model.spec.target in plan.inputs and (unit in p.build or WHOLE in p.build)]
    # Before an upstream model has run (a dry run) its new files are unknown: assume they
    # change this unit. After, the digest tells, and an upstream unit whose output came out
    # the same kept its files, so nothing downstream of it is redone.
    if any(not p.executed for p in rebuilt):
        return "upstream changed"
    if done["digest"] != d:
        return "upstream changed" if rebuilt else "changed input"
    if done["rows"] and not _has_files(_output_dir(root, plan, unit), plan.model.spec.contract, unit):
        return "missing output"
    return None


def _has_files(folder: Path, contract: contracts.Dataset, unit: str) -> bool:
    """Whether a unit's output folder holds a published Parquet file (one emptied by hand does not)."""
    if unit != WHOLE:
        return bool(lk.published_files(folder))
    return any(_files_by_run(folder, contract).values())


def _output_dir(root: Path, plan: ModelPlan, unit: str) -> Path:
    contract = plan.model.spec.contract
    folder = lk.dataset_dir(root, contract) / f"analysis_id={plan.analysis_id}"
    return folder if unit == WHOLE else folder / f"run_id={unit}"


# -- running -----------------------------------------------------------------------------


def run_models(
    project: Project,
    root: Path,
    *,
    selected: list[str] | None = None,
    chosen_inputs: dict[str, dict[str, str]] | None = None,
    full_refresh: bool = False,
    dry_run: bool = False,
    wait: bool = False,
    skip_invalid: bool = False,
    report: Callable[[str], None] = print,
    started: Callable[[ModelPlan], None] | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> list[ModelResult]:
    """Plan (and unless ``dry_run``, run) the selected models in build order under the lake's lock.

    ``report`` receives one line per model when it is done (and one per skipped input);
    ``started``, if given, each plan with work before it runs (a terminal shows it while
    the model computes); ``progress``, if given, a :class:`Progress` after each batch a
    model writes. ``skip_invalid`` builds without the input files that break their
    contract instead of failing.
    """
    with build_lock(root, wait=wait):
        lk.reclaim_stale(root)  # what killed builds and writers left: safe, their locks are gone
        remove_stale_records(root)
        records = load_analyses(root)
        chosen_inputs = chosen_inputs or {}
        names = project.select(selected)
        expected = expected_analyses(project)
        listing = _list_inputs(project, names, root, chosen_inputs, records, expected)
        for item in left_out(root, _read_only_inputs(project, names)):
            report(f"left out: {item}")
        plans: dict[str, ModelPlan] = {}
        results = []
        said: set[LeftOut] = set()  # each left-out line once per build, whichever model meets it first
        for name in names:
            spec = project.models[name].spec
            if spec.materialization == "view":
                report(f"{name} {spec.version}: a view in the catalog, created by `warehouse catalog`")
                continue
            upstream = {p: plans[p] for p in project.parents(name) if p in plans}
            plan = plan_model(
                project, name, root, upstream, records,
                chosen_inputs=chosen_inputs.get(name), full_refresh=full_refresh, listing=listing, expected=expected,
            )
            plans[name] = plan
            for item in _pinned_left_out(plan, root) + _older_left_out(plan, root) + _short_left_out(plan, root):
                if item not in said:
                    said.add(item)
                    report(f"left out: {item}")
            if dry_run:
                results.append(ModelResult(plan, 0, 0, 0.0))
                report(plan.describe())
                continue
            _refuse_unbuilt_inputs(plan)
            if started and (plan.build or plan.drop):
                started(plan)
            try:
                result = execute(plan, root, records, listing, skip_invalid=skip_invalid, progress=progress)
            except OSError as exc:  # no space left, no permission: every partition stays old or new
                raise ModelError(
                    f"{spec.where()}: cannot write to the lake: {exc.strerror or exc} ({exc.filename}); each of its "
                    "output partitions is complete, old or new, and the next build redoes this model"
                ) from exc
            plan.executed = True
            record = load_analyses(root).get(plan.analysis_id)
            if record is not None:  # nothing is recorded when there was nothing to build
                records[plan.analysis_id] = record
            results.append(result)
            report(result.describe())
        return results


def _read_only_inputs(project: Project, names: list[str]) -> list[str]:
    """The datasets the build's models read and none of them writes, in a stable order."""
    written = {project.models[n].spec.target for n in names}
    read = {d for n in names for d in project.models[n].dependencies if d in contracts.DATASETS}
    return sorted(read - written)


def _pinned_left_out(plan: ModelPlan, root: Path) -> list[LeftOut]:
    """The runs a pinned captured input (``--input``) leaves out of the plan."""
    return [
        item for inp in plan.inputs.values()
        if inp.pinned and inp.by_run
        for item in outside_analysis(root, inp.dataset, inp.analysis, plan.name)
    ]


def _older_left_out(plan: ModelPlan, root: Path) -> list[LeftOut]:
    """The older analyses of runs that a plan reads newest per run."""
    return [item for inp in plan.inputs.values() if inp.analysis == NEWEST_PER_RUN
            for item in older_analyses(root, inp.dataset, inp.sources)]


def _short_left_out(plan: ModelPlan, root: Path) -> list[LeftOut]:
    """The series of the runs this build computes that are too short for the model to test."""
    floor = min_series_captures(plan.name, plan.model.params)
    inp = plan.inputs.get("geometry_state")
    if floor is None or inp is None or not inp.by_run:
        return []
    runs = inp.files if WHOLE in plan.build else {r: inp.files[r] for r in plan.build if r in inp.files}
    return short_series(root, runs, floor, str(plan.model.params.get("sample_set", "")))


def _refuse_unbuilt_inputs(plan: ModelPlan) -> None:
    """A model outside the build must have built its current analysis before another reads it."""
    for dataset, inp in plan.inputs.items():
        if inp.unbuilt:
            raise ModelError(
                f"{plan.model.spec.where()}: reads {dataset} analysis {inp.analysis}, the one its model defines "
                "now, which is not built: build that model too (leave out --select), or pin another analysis "
                f"with --input {plan.name}.{dataset}=ANALYSIS"
            )


def _list_inputs(
    project: Project,
    names: list[str],
    root: Path,
    chosen: dict[str, dict[str, str]],
    records: dict[str, dict],
    expected: Mapping[str, str],
) -> InputListing:
    """List, before any model runs, every input the build reads that none of its models writes."""
    listing = InputListing(recorded_clean(records) | writer_clean(root))
    written = {project.models[n].spec.target for n in names}
    for name in names:
        model = project.models[name]
        for dataset in model.dependencies:
            if dataset not in written and dataset in contracts.DATASETS:
                _input(root, dataset, model, {}, chosen.get(name, {}), listing, expected)
    return listing


def execute(
    plan: ModelPlan, root: Path, records: dict[str, dict], listing: InputListing, *, skip_invalid: bool = False,
    progress: Callable[[Progress], None] | None = None,
) -> ModelResult:
    """Check the plan's input files, compute its units and publish them; then record the analysis."""
    if not plan.build and not plan.drop:
        return ModelResult(plan, 0, 0, 0.0)
    record = records.get(plan.analysis_id)
    started = time.perf_counter()
    skipped = _screen_inputs(plan, root, skip_invalid, listing, _engine_outputs(plan, records, root))
    excluded = _excluded_files(plan, root, skipped)
    if not plan.build and not plan.drop:  # every unit to build was an unsafe input folder
        return ModelResult(plan, 0, 0, 0.0, skipped)
    with lk.scratch_dir(root, BUILD_STAGING_PREFIX) as staging:
        units = sorted(plan.build)
        staged = _compute(plan, units, staging, excluded, progress, input_versions(plan, records)) if units else {}
        _check_output(plan, staged)
        contents = _run_contents(plan, staging / "out") if _runs_in_one_unit(plan) and units else {}
        kept = _unchanged_runs(plan, root, record, contents)
        published = _publish(plan, root, units, staged, staging, kept)
        seconds = time.perf_counter() - started
        rows = sum(n for n, _ in staged.values())
        _record(plan, root, record, staged, published, seconds, _skipped_by_unit(plan, root, skipped),
                _checked_by_unit(plan, root, listing), contents)
        partitions = len({f.parent for n, files in staged.values() if n for f in files})
        return ModelResult(plan, rows, partitions, seconds, skipped)


def input_versions(plan: ModelPlan, records: Mapping[str, dict]) -> dict[str, str]:
    """The version of the model that wrote each input analysis the plan reads, from that
    analysis's record: inputs without one (captures, an analysis written outside the
    engine) are left out."""
    return {d: records[i.analysis]["version"] for d, i in sorted(plan.inputs.items()) if i.analysis in records}


def _engine_outputs(plan: ModelPlan, records: dict[str, dict], root: Path) -> set[Path]:
    """The plan's input files that a build of this engine published (its records list them)."""
    return {root / f for inp in plan.inputs.values() if inp.analysis in records
            for unit in records[inp.analysis].get("units", {}).values() for f in unit.get("files", [])}


def _screen_inputs(
    plan: ModelPlan, root: Path, skip_invalid: bool, listing: InputListing, trusted: set[Path]
) -> list[Problem]:
    """The problems of the input files the plan reads; fail naming them unless ``skip_invalid``.

    Files this engine published are not checked again (they were checked as they were
    made). NaN and infinity pass: the models read them as NULL (``finite_or_null``), as the
    design says. Skipping drops the units whose input folder is not a safe run id: they
    have no safe output folder either.
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
    plan.build = {u: r for u, r in plan.build.items() if u == WHOLE or lk.is_identifier(u)}
    return problems


def _excluded_files(plan: ModelPlan, root: Path, problems: list[Problem]) -> set[Path]:
    """The input files the problems involve: the model reads every other one."""
    if not problems:
        return set()
    every = {f for inp in plan.inputs.values() for f in inp.files_for([WHOLE])}
    return {f for f in every if any(p.involves(f.relative_to(root).as_posix()) for p in problems)}


def _checked_by_unit(plan: ModelPlan, root: Path, listing: InputListing) -> dict[str, dict[str, str]]:
    """Per unit built, its input folders found clean, with their stamps (for its record)."""
    out = {}
    for unit in plan.build:
        folders = {f.parent for inp in plan.inputs.values() for f in inp.files_for([unit])}
        out[unit] = {f.relative_to(root).as_posix(): listing.clean[f] for f in sorted(folders) if f in listing.clean}
    return out


def _skipped_by_unit(plan: ModelPlan, root: Path, problems: list[Problem]) -> dict[str, list[str]]:
    """Per unit built, the skipped problems that touched its input files (for its record)."""
    out = {}
    for unit in plan.build:
        rels = [f.relative_to(root).as_posix() for inp in plan.inputs.values() for f in inp.files_for([unit])]
        touched = [str(p) for p in problems if any(p.involves(r) for r in rels)]
        if touched:
            out[unit] = touched
    return out


def _check_output(plan: ModelPlan, staged: dict[str, tuple[int, list[Path]]]) -> None:
    """Refuse output that breaks the target contract's NULL and enum rules, before publishing."""
    contract = plan.model.spec.contract
    files = [f for _, unit_files in staged.values() for f in unit_files]
    rules = {
        c.name: " OR ".join(
            ([] if c.nullable else [f"{qi(c.name)} IS NULL"])
            + ([f"{qi(c.name)} NOT IN ({', '.join(ql(v) for v in c.enum)})"] if c.enum else [])
        )
        for c in contract.file_columns
        if not c.nullable or c.enum
    }
    if not files or not rules:
        return
    counts = ", ".join(f"count(*) FILTER ({rule}) AS {qi(name)}" for name, rule in rules.items())
    with duckdb.connect() as con:
        row = con.execute(f"SELECT {counts} FROM {read_parquet(files)}").fetchone()
    broken = [f"{name} ({n} rows)" for name, n in zip(rules, row) if n]
    if broken:
        raise ModelError(
            f"{plan.model.spec.where()}: output breaks the {contract.name} contract"
            f" (NULL in a non-nullable column or a value outside its enum): {', '.join(broken)}; nothing was written"
        )


def output_sql(plan: ModelPlan, created_at: dt.datetime) -> str:
    """The model's query (its merging variant when the plan adds runs) wrapped to give the
    target's columns, types and engine columns."""
    contract = plan.model.spec.contract
    engine = {
        "analysis_id": ql(plan.analysis_id),
        "schema_version": ql(contract.schema_version),
        "created_at_utc": f"{ql(created_at.isoformat())}::TIMESTAMPTZ",
    }
    columns = [c for c in contract.all_columns if c.name not in contract.partition_by or c.name == "run_id"]
    select = ",\n    ".join(
        f"CAST({engine[c.name] if c.name in ENGINE_COLUMNS else 'model_output.' + qi(c.name)}"
        f" AS {contracts.duckdb_type(c.type)}) AS {qi(c.name)}"
        for c in columns
    )
    return f"SELECT\n    {select}\nFROM (\n{_model_sql(plan)}\n) AS model_output"


def _model_sql(plan: ModelPlan) -> str:
    return plan.model.additions_sql if plan.added else plan.model.sql


def _compute(
    plan: ModelPlan, units: list[str], staging: Path, excluded: set[Path],
    progress: Callable[[Progress], None] | None = None, versions: Mapping[str, str] | None = None,
) -> dict[str, tuple[int, list[Path]]]:
    """Run the model for ``units`` into ``staging/out`` without the ``excluded`` input files;
    rows and files per unit. ``versions``: the model version behind each input analysis
    (:func:`input_versions`), for the SQL to read.

    A ``run_id`` model computes each run from that run's inputs alone, so its runs are
    computed in batches whose input files stay within a share of DuckDB's memory limit
    (:func:`batch_bytes`): the memory a build needs is bounded by the batch, not the lake.
    A full model with ``batch_by`` is computed one group of its input at a time when that
    input is larger than a batch. ``progress`` hears of each batch written.
    """
    spec = plan.model.spec
    out = staging / "out"
    by_run = "run_id" in spec.contract.partition_by
    options = "FORMAT parquet, COMPRESSION zstd" + (", PARTITION_BY (run_id)" if by_run else "")
    out.mkdir(parents=True, exist_ok=True)
    con = work_connection(staging / "spill")
    try:
        # Ids the SQL may need (e.g. inside stable hashes) but cannot hold as text: they
        # derive from its fingerprint. It reads them with getvariable('analysis_id').
        con.execute(f"SET VARIABLE analysis_id = {ql(plan.analysis_id)}")
        # The version of the model behind each input analysis, which the SQL cannot know
        # either: getvariable('input_versions')['events_candidates'] (NULL for an input
        # without one). Not part of the SQL, so an upstream version leaves the logic as it is.
        pairs = ", ".join(f"{ql(d)}: {ql(v)}" for d, v in (versions or {}).items())
        con.execute(f"SET VARIABLE input_versions = MAP {{{pairs}}}::MAP(VARCHAR, VARCHAR)")
        query = output_sql(plan, dt.datetime.now(dt.timezone.utc))
        budget = batch_bytes(con, spec.batch_divisor)
        if by_run and spec.incremental == "run_id":
            steps = [(batch, None) for batch in _batches(plan, units, excluded, budget)]
        elif plan.added:
            _create_previous(plan, con)
            steps = [(units, None)]
        else:
            steps = [(units, group) for group in _groups(plan, con, excluded, budget)]
        began, rows = time.perf_counter(), 0
        for i, (batch, group) in enumerate(steps):
            for name, inp in plan.inputs.items():
                # exact: every file left has the contract's columns (screened, vouched for or ours)
                select = select_dataset(inp.dataset, [f for f in inp.files_for(batch) if f not in excluded], exact=True)
                if group and name == spec.batch_by[0]:
                    select = f"SELECT * FROM ({select}) WHERE {group}"
                con.execute(f"CREATE OR REPLACE VIEW {qi(name)} AS {select}")
            if i == 0:
                _check_types(plan, con, query)
            # a partitioned target takes later batches' run folders beside the first's
            target = ql(str(out)) if by_run else ql(str(out / f"data-{i}.parquet"))
            written = con.execute(f"COPY (\n{query}\n) TO {target} ({options}{', APPEND' if i and by_run else ''})")
            if progress:
                rows += written.fetchone()[0]
                progress(Progress(plan, i + 1, len(steps), rows, time.perf_counter() - began))
    except duckdb.Error as exc:
        raise ModelError(f"{spec.where()}: the SQL failed: {exc}\n--- rendered SQL ---\n{_model_sql(plan)}") from None
    finally:
        con.close()
    return _staged_units(out, units, by_run)


def _create_previous(plan: ModelPlan, con: duckdb.DuckDBPyConnection) -> None:
    """The views a merging build reads besides its inputs: its last output and the new runs."""
    previous = select_dataset(plan.model.spec.contract, plan.previous_files, exact=True)
    con.execute(f"CREATE VIEW {PREVIOUS_OUTPUT} AS {previous}")
    runs = ", ".join(ql(r) for r in plan.added)
    con.execute(f"CREATE VIEW {ADDED_RUNS} AS SELECT CAST(unnest([{runs}]) AS VARCHAR) AS run_id")


def _groups(plan: ModelPlan, con: duckdb.DuckDBPyConnection, excluded: set[Path], budget: int) -> list[str | None]:
    """The filters of a ``batch_by`` model's groups, one per batch, if its grouped input's
    files exceed ``budget`` bytes; else ``[None]``, one batch of everything."""
    if not plan.model.spec.batch_by:
        return [None]
    dataset, columns = plan.model.spec.batch_by
    files = [f for f in plan.inputs[dataset].files_for([WHOLE]) if f not in excluded]
    if sum(f.stat().st_size for f in files) <= budget:
        return [None]
    keys = con.execute(
        f"SELECT DISTINCT {', '.join(qi(c) for c in columns)}"
        f" FROM ({select_dataset(plan.inputs[dataset].dataset, files, exact=True)})"
        " ORDER BY ALL"
    ).fetchall()
    return [
        " AND ".join(f"{qi(c)} IS NOT DISTINCT FROM {'NULL' if v is None else sql_literal(v)}" for c, v in zip(columns, key))
        for key in keys
    ] or [None]


def batch_bytes(con: duckdb.DuckDBPyConnection, divisor: int = 32) -> int:
    """The input bytes (Parquet on disk) a batch of runs may read: ``$SQUIGGLE_BATCH_BYTES``,
    else the connection's memory limit / ``divisor`` (the model's ``batch_divisor``, 32 by
    default). Decoded, sorted and widened by a window over every lag a model needs, a batch's
    input takes up to about 16 times its size on disk."""
    if os.environ.get("SQUIGGLE_BATCH_BYTES"):
        value = os.environ["SQUIGGLE_BATCH_BYTES"]
        if not value.isdigit() or int(value) < 1:
            raise ModelError(f"SQUIGGLE_BATCH_BYTES={value!r} is not a number of bytes (1 or more)")
        return int(value)
    return memory_bytes(con.execute("SELECT current_setting('memory_limit')").fetchone()[0]) // divisor


def _batches(plan: ModelPlan, units: list[str], excluded: set[Path], budget: int) -> list[list[str]]:
    """Consecutive runs grouped so that each group's own input files total at most ``budget``
    bytes (a run larger than that is a batch of its own)."""
    batches: list[list[str]] = [[]]
    size = 0
    for unit in units:
        files = [f for inp in plan.inputs.values() if inp.by_run for f in inp.files.get(unit, []) if f not in excluded]
        unit_size = sum(f.stat().st_size for f in files)
        if batches[-1] and size + unit_size > budget:
            batches.append([])
            size = 0
        batches[-1].append(unit)
        size += unit_size
    return batches


def _check_types(plan: ModelPlan, con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Compare the model's own output types with the contract before anything is written."""
    described = con.execute(f"DESCRIBE {_model_sql(plan)}").fetchall()
    contract = plan.model.spec.contract
    for name, type_, *_ in described:
        expected = contracts.duckdb_type(contract.column(name).type)
        if type_ != expected:
            raise ModelError(
                f"{plan.model.spec.where()}: output column {name} is {type_}, the {contract.name} contract says {expected}"
            )


def _staged_units(out: Path, units: list[str], by_run: bool) -> dict[str, tuple[int, list[Path]]]:
    staged: dict[str, tuple[int, list[Path]]] = {u: (0, []) for u in units}
    if not by_run:
        staged[WHOLE] = _rows_and_files(sorted(out.glob("*.parquet")))
        return staged
    for folder in out.glob("run_id=*"):
        run = _run_of(folder)
        staged[run] = _rows_and_files(sorted(folder.glob("*.parquet")))
    if WHOLE in units:  # a full model partitioned by run: its runs make up its one unit
        staged = {WHOLE: (sum(n for n, _ in staged.values()), [f for _, fs in staged.values() for f in fs])}
    return staged


def _run_of(folder: Path) -> str:
    """The run of a ``run_id=...`` folder (DuckDB's partitioned writes escape the value)."""
    return unquote(folder.name.split("=", 1)[1])


def _rows_and_files(files: list[Path]) -> tuple[int, list[Path]]:
    """Rows of staged output files, and the files that hold rows (an empty file is never published)."""
    counts = [(pq.ParquetFile(f).metadata.num_rows, f) for f in files]
    return sum(n for n, _ in counts), [f for n, f in counts if n]


def _runs_in_one_unit(plan: ModelPlan) -> bool:
    """A full model partitioned by run: one unit (the table) holding a folder per run."""
    return plan.model.spec.incremental == "full" and "run_id" in plan.model.spec.contract.partition_by


def _run_contents(plan: ModelPlan, out: Path) -> dict[str, str]:
    """Per staged run folder, a key of its rows' content: their count and an order-free sum
    of row hashes over every column but created_at_utc (which differs in every build)."""
    contract = plan.model.spec.contract
    columns = ", ".join(qi(c.name) for c in contract.file_columns if c.name != "created_at_utc")
    staged = read_parquet(str(out / "run_id=*" / "*.parquet"), partitions=("run_id",), union=False)
    with duckdb.connect() as con:
        rows = con.execute(
            f"SELECT run_id, count(*), sum(hash({columns})::HUGEINT) FROM {staged} GROUP BY run_id"
        ).fetchall() if any(out.glob("run_id=*/*.parquet")) else []
    return {run: f"{n}:{total}" for run, n, total in rows}


def _unchanged_runs(plan: ModelPlan, root: Path, record: dict | None, contents: dict[str, str]) -> dict[str, list[Path]]:
    """The runs whose new output equals what the last build published, with those files:
    they are kept under their names, so the models reading them see nothing new."""
    old = (record or {}).get("units", {}).get(WHOLE, {})
    old_files: dict[str, list[Path]] = {}
    for rel in old.get("files", []):
        path = root / rel
        old_files.setdefault(_run_of(path.parent), []).append(path)
    return {
        run: old_files[run] for run, key in contents.items()
        if old.get("runs", {}).get(run) == key and run in old_files and all(f.is_file() for f in old_files[run])
    }


def _publish(
    plan: ModelPlan, root: Path, units: list[str], staged: dict, staging: Path, kept: dict[str, list[Path]]
) -> dict[str, list[Path]]:
    """Swap each unit's folder into place: build it in staging, then exchange it with the old one.

    ``kept``: runs of a full model whose files stay as they are (hard links into the new
    folder). Returns the files each unit published, where they are now.
    """
    trash = staging / "trash"
    trash.mkdir()
    published = {}
    for unit in units + plan.drop:
        target = _output_dir(root, plan, unit)
        fresh = staging / "publish" / uuid.uuid4().hex
        fresh.mkdir(parents=True)
        _, files = staged.get(unit, (0, []))
        if _runs_in_one_unit(plan):
            moved = _move_runs(staging / "out", fresh, kept)
        else:
            moved = [lk.publish(f, fresh) for f in files]
        published[unit] = [target / f.relative_to(fresh) for f in moved]
        if moved:
            lk.replace_dir(fresh, target, trash / uuid.uuid4().hex)
        elif target.exists():
            os.rename(target, trash / uuid.uuid4().hex)
    return published


def _move_runs(out: Path, fresh: Path, kept: dict[str, list[Path]]) -> list[Path]:
    """A full model partitioned by run: every staged run folder goes under the new analysis
    folder, or for a ``kept`` run, links to its old files."""
    moved = []
    for folder in out.glob("run_id=*"):
        run = lk.check_identifier(_run_of(folder), "run_id")
        target = fresh / f"run_id={run}"
        if run in kept:
            target.mkdir()
            for old in kept[run]:
                os.link(old, target / old.name)
                moved.append(target / old.name)
        else:
            moved += [lk.publish(f, target) for f in sorted(folder.glob("*.parquet"))]
    return moved


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return dict(sorted(counts.items()))


def _record(
    plan: ModelPlan,
    root: Path,
    record: dict | None,
    staged: dict,
    published: dict[str, list[Path]],
    seconds: float,
    skipped: dict[str, list[str]],
    checked: dict[str, dict[str, str]],
    contents: dict[str, str],
) -> None:
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    units = dict((record or {}).get("units", {}))
    for unit in plan.drop:
        units.pop(unit, None)
    for unit in plan.build:
        files = sorted(f.relative_to(root).as_posix() for f in published.get(unit, []))
        units[unit] = {"digest": plan.digests[unit], "rows": staged.get(unit, (0, []))[0], "files": files,
                       "checked": checked.get(unit, {})}
        if unit in skipped:
            units[unit]["skipped"] = skipped[unit]
        if contents and unit == WHOLE:
            units[unit]["runs"] = contents
        if plan.input_digests:
            units[unit]["input_runs"], units[unit]["input_shared"] = plan.input_digests
    model = plan.model
    save_analysis(root, {
        "analysis_id": plan.analysis_id,
        "model": model.spec.name,
        "version": model.spec.version,
        "target": model.spec.target,
        "fingerprint": plan.fingerprint,
        "logic_fingerprint": model.logic_fingerprint,
        "params": model.params,
        "inputs": {d: i.analysis for d, i in plan.inputs.items()},
        # what "newest per run" chose: the analyses read, with their runs' count
        "input_sources": {d: _count(i.sources.values()) for d, i in plan.inputs.items() if i.sources},
        "created_at": (record or {}).get("created_at", now),
        "updated_at": now,
        "units": units,
        "rows": sum(u["rows"] for u in units.values()),
        "last_build_seconds": round(seconds, 3),
        "last_build_units": len(plan.build),
        **({"run_scope": plan.run_scope} if plan.run_scope else {}),
    })
