"""A build: the selected models planned and run in order under the lake's lock.

One :class:`Build` holds what its models share: the lake, the analysis records, the input
listing made before the first model runs, and the plans made so far. Each model goes
through the same stages, each in its own module:

1. plan (:mod:`.plan`): its analysis id and the units to build, with reasons;
2. screen its inputs (:mod:`.inputs`): the files it will read, checked against their contracts;
3. compute (:mod:`.compute`): its SQL in DuckDB, batch by batch, into a staging folder;
4. publish (:mod:`.publish`): the staged output checked, then swapped into place;
5. record (:mod:`.record`): its analysis record, written last.

A failure anywhere leaves the lake as it was: staged output is discarded, and a record is
written only for a model whose output is in place.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from .. import contracts, lake as lk
from ..check import Problem
from ..checked import recorded_clean, writer_clean
from ..coverage import LeftOut, left_out
from . import compute, inputs, publish, record
from .current import expected_analyses
from .executors import Executor, RayExecutor
from .plan import ModelPlan, plan_model
from .project import Project
from .spec import ModelError
from .state import AnalysisRecord, build_lock, load_analyses, load_run_verdicts, remove_stale_records, save_run_verdicts

BUILD_STAGING_PREFIX = "build-"  # a build's own folders in the staging area


@dataclass
class ModelResult:
    plan: ModelPlan
    rows: int
    partitions: int
    seconds: float
    skipped: list[Problem] = field(default_factory=list)  # invalid inputs left out (skip_invalid)
    tasks: int | None = None  # batches computed as Ray tasks (None: the local executor)

    def describe(self) -> str:
        line = self.plan.describe()
        if self.plan.has_work:
            line += f": {self.rows:,} rows, {self.partitions} partitions, {self.seconds:.2f} s"
            if self.tasks is not None:
                line += f", {self.tasks} Ray tasks" if self.tasks else ", on the driver (one batch)"
        return "".join([line, *(f"\n  skipped invalid input {p}" for p in self.skipped)])


class Build:
    """One build of ``names`` (in build order) on the lake at ``root``; make it under the
    lake's build lock."""

    def __init__(
        self,
        project: Project,
        root: Path,
        names: list[str],
        *,
        chosen_inputs: Mapping[str, Mapping[str, str]] | None = None,
        full_refresh: bool = False,
        skip_invalid: bool = False,
        report: Callable[[str], None] = print,
        executor: Executor | None = None,
    ) -> None:
        self.project, self.root, self.names = project, root, names
        self.executor = executor
        self.chosen_inputs = chosen_inputs or {}
        self.full_refresh, self.skip_invalid, self.report = full_refresh, skip_invalid, report
        self.records: dict[str, AnalysisRecord] = load_analyses(root)
        self.expected = expected_analyses(project)
        self.listing = self._list_inputs()
        self._verdicts_before = copy.deepcopy(self.listing.run_verdicts)
        self.plans: dict[str, ModelPlan] = {}
        self.executed: set[str] = set()  # models computed and published (not planned only)
        self._said: set[LeftOut] = set()  # each left-out line once per build, whichever model meets it first

    def run(
        self,
        *,
        dry_run: bool = False,
        started: Callable[[ModelPlan], None] | None = None,
        progress: Callable[[compute.Progress], None] | None = None,
    ) -> list[ModelResult]:
        """Plan each model, and unless ``dry_run`` run it; one line per model to ``report``."""
        geometry = self.listing.files_by_analysis(lk.Lake(self.root).table(contracts.GEOMETRY_STATE).folder)
        for item in left_out(self.root, self._read_only_inputs(), geometry):
            self.report(f"left out: {item}")
        results = []
        for name in self.names:
            spec = self.project.models[name].spec
            if not spec.writes_lake:
                self.report(f"{name} {spec.version}: a view in the catalog, created by `warehouse catalog`")
                continue
            plan = self.plan(name)
            if dry_run:
                results.append(ModelResult(plan, 0, 0, 0.0))
                self.report(plan.describe())
                continue
            _refuse_unbuilt_inputs(plan)
            if started and plan.has_work:
                started(plan)
            result = self.execute(plan, progress)
            results.append(result)
            self.report(result.describe())
        if not dry_run and self.listing.run_verdicts != self._verdicts_before:
            save_run_verdicts(self.root, self.listing.run_verdicts)
        return results

    def plan(self, name: str) -> ModelPlan:
        """Plan ``name`` after the models it reads, and say what its inputs leave out."""
        upstream = {p: self.plans[p] for p in self.project.parents(name) if p in self.plans}
        plan = plan_model(
            self.project, name, self.root, upstream, self.records, executed=self.executed,
            chosen_inputs=self.chosen_inputs.get(name), full_refresh=self.full_refresh,
            listing=self.listing, expected=self.expected,
        )
        self.plans[name] = plan
        for item in inputs.left_out_by(plan, self.root, self.listing):
            if item not in self._said:
                self._said.add(item)
                self.report(f"left out: {item}")
        return plan

    def execute(self, plan: ModelPlan, progress: Callable[[compute.Progress], None] | None = None) -> ModelResult:
        """Screen the plan's inputs, compute its units, publish them and record the analysis."""
        try:
            result = self._execute(plan, progress)
        except OSError as exc:  # no space left, no permission: every partition stays old or new
            raise ModelError(
                f"{plan.model.spec.where()}: cannot write to the lake: {exc.strerror or exc} ({exc.filename}); each "
                "of its output partitions is complete, old or new, and the next build redoes this model"
            ) from exc
        self.plans[plan.name] = result.plan  # what was built: downstream plans compare with it
        self.executed.add(plan.name)
        return result

    def _execute(self, plan: ModelPlan, progress: Callable[[compute.Progress], None] | None) -> ModelResult:
        if not plan.has_work:
            return ModelResult(plan, 0, 0, 0.0)
        began = time.perf_counter()
        plan, skipped = inputs.screen(plan, self.root, self.listing, self._engine_outputs(plan),
                                      skip_invalid=self.skip_invalid)
        excluded = inputs.excluded_files(plan, self.root, skipped)
        if not plan.has_work:  # every unit to build was an unsafe input folder
            return ModelResult(plan, 0, 0, 0.0, skipped)
        previous = self.records.get(plan.analysis_id)
        with lk.scratch_dir(self.root, BUILD_STAGING_PREFIX) as staging:
            versions = record.input_versions(plan, self.records)
            splits: list[str] = []

            def say(line: str) -> None:  # a batch split: said now, and kept in the record
                splits.append(line.strip())
                self.report(line)

            ray = self.executor if isinstance(self.executor, RayExecutor) else None
            sent = len(ray.stats) if ray else 0
            staged = compute.compute(plan, staging, excluded, progress, versions, say, self.executor) if plan.build else {}
            tasks = len(ray.stats) - sent if ray else None
            publish.check_output(plan, staged)
            keeps = plan.model.spec.kind.keeps_unchanged_runs and plan.build
            contents = publish.run_contents(plan, staging / "out") if keeps else {}
            kept = publish.unchanged_runs(self.root, previous, contents)
            published = publish.publish(plan, self.root, staged, staging, kept)
            seconds = time.perf_counter() - began
            self.records[plan.analysis_id] = record.record_build(
                plan, self.root, previous, staged, published, seconds,
                inputs.skipped_by_unit(plan, self.root, skipped), inputs.checked_by_unit(plan, self.root, self.listing),
                contents, tuple(splits),
            )
        rows = sum(s.rows for s in staged.values())
        partitions = len({f.parent for s in staged.values() if s.rows for f in s.files})
        return ModelResult(plan, rows, partitions, seconds, skipped, tasks)

    def _engine_outputs(self, plan: ModelPlan) -> set[Path]:
        """The plan's input files that a build of this engine published (its records list them)."""
        return {self.root / f for inp in plan.inputs.values() if inp.analysis in self.records
                for f in self.records[inp.analysis].files}

    def _list_inputs(self) -> inputs.InputListing:
        """List, before any model runs, every input the build reads that none of its models writes."""
        listing = inputs.InputListing(recorded_clean(self.records) | writer_clean(self.root),
                                      load_run_verdicts(self.root))
        written = {self.project.models[n].spec.target for n in self.names}
        for name in self.names:
            model = self.project.models[name]
            for dataset in model.dependencies:
                if dataset not in written and dataset in contracts.DATASETS:
                    inputs.resolve_input(self.root, dataset, model, None, self.chosen_inputs.get(name, {}), listing,
                                         self.expected)
        return listing

    def _read_only_inputs(self) -> list[str]:
        """The datasets the build's models read and none of them writes, in a stable order."""
        written = {self.project.models[n].spec.target for n in self.names}
        read = {d for n in self.names for d in self.project.models[n].dependencies if d in contracts.DATASETS}
        return sorted(read - written)


def _refuse_unbuilt_inputs(plan: ModelPlan) -> None:
    """A model outside the build must have built its current analysis before another reads it."""
    for dataset, inp in plan.inputs.items():
        if inp.unbuilt:
            raise ModelError(
                f"{plan.model.spec.where()}: reads {dataset} analysis {inp.analysis}, the one its model defines "
                "now, which is not built: build that model too (leave out --select), or pin another analysis "
                f"with --input {plan.name}.{dataset}=ANALYSIS"
            )


def run_models(
    project: Project,
    root: Path,
    *,
    selected: list[str] | None = None,
    chosen_inputs: Mapping[str, Mapping[str, str]] | None = None,
    full_refresh: bool = False,
    dry_run: bool = False,
    wait: bool = False,
    skip_invalid: bool = False,
    report: Callable[[str], None] = print,
    started: Callable[[ModelPlan], None] | None = None,
    progress: Callable[[compute.Progress], None] | None = None,
    executor: Executor | None = None,
) -> list[ModelResult]:
    """Plan (and unless ``dry_run``, run) the selected models in build order under the lake's lock.

    ``report`` receives one line per model when it is done (and one per skipped input);
    ``started``, if given, each plan with work before it runs (a terminal shows it while
    the model computes); ``progress``, if given, a :class:`~.compute.Progress` after each
    batch a model writes. ``skip_invalid`` builds without the input files that break their
    contract instead of failing. ``executor``: a connected :class:`~.executors.RayExecutor`
    to compute the batches on a Ray cluster (None: here, :class:`~.executors.LocalExecutor`).
    """
    with build_lock(root, wait=wait):
        lk.reclaim_stale(root)  # what killed builds and writers left: safe, their locks are gone
        remove_stale_records(root)
        build = Build(project, root, project.select(selected), chosen_inputs=chosen_inputs,
                      full_refresh=full_refresh, skip_invalid=skip_invalid, report=report, executor=executor)
        return build.run(dry_run=dry_run, started=started, progress=progress)
