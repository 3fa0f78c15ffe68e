"""Planning: what one model would do, as data you can print.

A model's unit of work is a run or, for a model computed as one table, the whole table
(:data:`WHOLE`). A unit is rebuilt when its analysis is new (changed logic, version,
parameters or input analysis), when its run is new, when the files it was computed from
changed, or when its output went missing. A :class:`ModelPlan` names each unit to build
with its reason; it is made once, before the model runs, and never changed (screening the
inputs gives a new plan).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Collection, Mapping

import duckdb

from .. import contracts, lake as lk
from ..duck import bounded_connection
from ..scan import select_dataset
from .compile import CompiledModel, analysis_id as make_analysis_id, fingerprint
from .inputs import Input, InputListing, resolve_input
from .kinds import WHOLE
from .project import Project
from .state import AnalysisRecord, UnitRecord, digest


@dataclass(frozen=True)
class ModelPlan:
    """What one model would do: its analysis id and the units to (re)build, each with a reason."""

    model: CompiledModel
    analysis_id: str
    fingerprint: str
    inputs: Mapping[str, Input]
    digests: Mapping[str, str]  # unit -> digest of its input files
    build: Mapping[str, str] = field(default_factory=dict)  # unit -> reason
    drop: tuple[str, ...] = ()  # units whose inputs are gone
    added: tuple[str, ...] = ()  # new runs merged into the previous output (a merging model)
    previous_files: tuple[Path, ...] = ()  # that output
    run_scope: Mapping[str, list] | None = None  # per run: [digest of its runs files, chosen by ``runs``]
    # a merging model: the digest of each run's input files, and of the other inputs' files
    input_digests: tuple[Mapping[str, str], str] | None = None

    @property
    def name(self) -> str:
        return self.model.spec.name

    @property
    def has_work(self) -> bool:
        return bool(self.build or self.drop)

    @property
    def no_input(self) -> bool:
        """Whether the data it analyses (captures, other models' outputs) holds no file yet:
        an empty lake, or one holding only runs. Facts alone give it nothing to compute."""
        return not any(files for d in self._analysed_inputs() for files in self.inputs[d].files.values())

    def output_dir(self, root: Path, unit: str) -> Path:
        """The folder a unit's output is published in."""
        folder = lk.Lake(root).table(self.model.spec.contract).analysis(self.analysis_id)
        return folder if unit == WHOLE else folder / f"run_id={unit}"

    def describe(self) -> str:
        head = f"{self.name} {self.model.spec.version} -> {self.analysis_id}"
        unbuilt = [f"{d} analysis {i.analysis}" for d, i in self.inputs.items() if i.unbuilt]
        if unbuilt:
            return f"{head}: waits for {', '.join(unbuilt)} (not built)"
        if not self.has_work and self.no_input and self.run_scope:
            return f"{head}: nothing to do (no run satisfies its runs condition: {self.model.spec.runs})"
        if not self.has_work and self.no_input:
            return f"{head}: nothing to do (no {' or '.join(self._analysed_inputs())} files yet)"
        if not self.has_work:
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
        return self.model.spec.kind.unit_word(n)


def plan_model(
    project: Project,
    name: str,
    root: Path,
    upstream: Mapping[str, ModelPlan],
    records: Mapping[str, AnalysisRecord],
    *,
    executed: Collection[str] = (),
    chosen_inputs: Mapping[str, str] | None = None,
    full_refresh: bool = False,
    listing: InputListing,
    expected: Mapping[str, str],
) -> ModelPlan:
    """Plan one model; ``upstream`` holds the plans of the models it reads, already made,
    ``executed`` the names of those that have run (a dry run runs none).

    ``listing`` holds the input files as the build found them when it began; ``expected``
    the analysis each model target has by the project.
    """
    model = project.models[name]
    producers = {p.model.spec.target: p for p in upstream.values()}
    inputs = {d: resolve_input(root, d, model, producers.get(d), chosen_inputs or {}, listing, expected)
              for d in model.dependencies}
    fp = fingerprint(model, {d: i.analysis for d, i in inputs.items()})
    analysis = make_analysis_id(model, fp)
    record = records.get(analysis)
    scope = None
    if model.spec.runs:
        inputs, scope = _scope_runs(model, inputs, root, record, listing)
    plan = ModelPlan(model, analysis, fp, inputs, _digests(model, inputs, root), run_scope=scope,
                     input_digests=_run_digests(inputs, root) if model.spec.kind.merges else None)
    if record is None and plan.no_input:
        return plan  # nothing to compute, and no earlier output to remove
    if record is None:
        reason = _new_analysis_reason(model, records)
        return replace(plan, build={unit: reason for unit in plan.digests})
    rebuilt = [p for p in upstream.values() if p.model.spec.target in inputs]
    build = {}
    for unit, d in plan.digests.items():
        reason = _unit_reason(plan, unit, d, record.units.get(unit), root, rebuilt, executed, full_refresh)
        if reason:
            build[unit] = reason
    plan = replace(plan, build=build, drop=tuple(sorted(set(record.units) - set(plan.digests))))
    if model.spec.kind.merges and build.get(WHOLE) in ("changed input", "upstream changed"):
        return _merging(plan, record.units[WHOLE], root)
    return plan


def _scope_runs(
    model: CompiledModel, inputs: dict[str, Input], root: Path, record: AnalysisRecord | None, listing: InputListing
) -> tuple[dict[str, Input], dict[str, list] | None]:
    """The by-run inputs cut to the runs the model's ``runs`` condition chooses, and each
    run's verdict with a digest of its runs files (for the analysis record: a later build
    asks the condition again only of the runs whose files are new or changed).

    If the runs files cannot be read, every run is kept (the input checks then name the
    broken file) and the verdicts are None.
    """
    files = inputs["runs"].files
    digests = {run: digest(fs, root) for run, fs in files.items()}
    # what this model's last build found, else what another model with the same condition
    # found in this build (a model with nothing to build has no record to keep its verdicts)
    recorded = ((record.run_scope if record else None) or {}) | listing.run_verdicts.get(model.spec.runs, {})
    verdicts = {r: v for r, v in recorded.items() if v[0] == digests.get(r)}
    todo = [f for run in digests if run not in verdicts for f in files[run]]
    if todo:
        try:
            with bounded_connection() as con:
                chosen = {r for (r,) in con.execute(
                    f"SELECT run_id FROM ({select_dataset(contracts.RUNS, todo)}) WHERE {model.spec.runs}"
                ).fetchall()}
        except duckdb.Error:
            return inputs, None
        verdicts |= {run: [digests[run], run in chosen] for run in digests if run not in verdicts}
    listing.run_verdicts[model.spec.runs] = verdicts
    keep = {run for run, (_, chosen) in verdicts.items() if chosen}
    return {d: inp.of_runs(keep) for d, inp in inputs.items()}, verdicts


def _merging(plan: ModelPlan, done: UnitRecord, root: Path) -> ModelPlan:
    """Merge new runs into the last output when they are all that changed: every run seen
    then is there with the same files, as is every input not partitioned by run."""
    runs, now_shared = plan.input_digests
    previous = tuple(root / f for f in done.files)
    seen = done.input_runs
    if seen is None or done.input_shared != now_shared or any(runs.get(r) != d for r, d in seen.items()):
        return plan
    added = tuple(sorted(set(runs) - set(seen)))
    if not added or not all(f.is_file() for f in previous):
        return plan
    n = len(added)
    build = {**plan.build, WHOLE: f"{n} new run{'s' if n != 1 else ''} merged in"}
    return replace(plan, build=build, added=added, previous_files=previous)


def _digests(model: CompiledModel, inputs: Mapping[str, Input], root: Path) -> dict[str, str]:
    """The digest of each unit's input files: the files of its runs, and every input not
    partitioned by run."""
    kind = model.spec.kind
    runs = {r for i in inputs.values() if i.by_run for r in i.files}
    files = {unit: [p for i in inputs.values() if not i.by_run for p in i.files_for([WHOLE])] for unit in kind.units(runs)}
    for inp in inputs.values():
        if inp.by_run:
            for run, fs in inp.files.items():
                files[kind.unit_of(run)] += fs
    return {unit: digest(fs, root) for unit, fs in files.items()}


def _run_digests(inputs: Mapping[str, Input], root: Path) -> tuple[dict[str, str], str]:
    """The digest of each run's input files, and of the inputs not partitioned by run."""
    by_run = [i for i in inputs.values() if i.by_run]
    runs = sorted({r for i in by_run for r in i.files})
    shared = [p for i in inputs.values() if not i.by_run for p in i.files_for([WHOLE])]
    return {r: digest([p for i in by_run for p in i.files.get(r, [])], root) for r in runs}, digest(shared, root)


def _new_analysis_reason(model: CompiledModel, records: Mapping[str, AnalysisRecord]) -> str:
    earlier = [r for r in records.values() if r.model == model.spec.name]
    if not earlier:
        return "first build"
    last = max(earlier, key=lambda r: r.updated_at)
    if last.version != model.spec.version:
        return f"new version (was {last.version})"
    if last.logic_fingerprint != model.logic_fingerprint:
        return "changed fingerprint"
    if last.params != model.params:
        return "new parameters"
    return "changed input analysis"


def _unit_reason(
    plan: ModelPlan, unit: str, d: str, done: UnitRecord | None, root: Path,
    upstream: list[ModelPlan], executed: Collection[str], full_refresh: bool,
) -> str | None:
    if full_refresh:
        return "full refresh"
    if done is None:
        return "new run" if unit != WHOLE else "first build"
    rebuilt = [p for p in upstream if unit in p.build or WHOLE in p.build]
    # Before an upstream model has run (a dry run) its new files are unknown: assume they
    # change this unit. After, the digest tells, and an upstream unit whose output came out
    # the same kept its files, so nothing downstream of it is redone.
    if any(p.name not in executed for p in rebuilt):
        return "upstream changed"
    if done.digest != d:
        return "upstream changed" if rebuilt else "changed input"
    if done.rows and not _all_there(root, done.files):
        return "missing output"
    return None


def _all_there(root: Path, files: Collection[str]) -> bool:
    """Whether every file a unit published is still in the lake (none removed by hand).
    Plain string paths: a no-op build asks this of every run of every model."""
    base = str(root)
    return all(os.path.isfile(os.path.join(base, f)) for f in files)
