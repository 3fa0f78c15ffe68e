"""Recording: what a model's build computed, kept as its analysis record (written last, so
an interrupted build leaves the last record standing and redoes its work next time)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Mapping

from .compute import Staged
from .kinds import WHOLE
from .plan import ModelPlan
from .state import AnalysisRecord, UnitRecord, save_analysis


def record_build(
    plan: ModelPlan,
    root: Path,
    record: AnalysisRecord | None,
    staged: Staged,
    published: Mapping[str, list[Path]],
    seconds: float,
    skipped: Mapping[str, list[str]],
    checked: Mapping[str, dict[str, str]],
    contents: Mapping[str, str],
    splits: tuple[str, ...] = (),
) -> AnalysisRecord:
    """The plan's analysis record after its build (``record``: the one before, if any), saved;
    ``splits``: what the build said of each batch that ran out of memory and was split."""
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    units = {u: r for u, r in (record.units if record else {}).items() if u not in plan.drop}
    for unit in plan.build:
        files = tuple(sorted(f.relative_to(root).as_posix() for f in published.get(unit, [])))
        runs, shared = plan.input_digests or (None, None)
        units[unit] = UnitRecord(
            plan.digests[unit], staged[unit].rows if unit in staged else 0, files, checked.get(unit, {}),
            tuple(skipped.get(unit, ())), contents if contents and unit == WHOLE else None, runs, shared,
        )
    model = plan.model
    new = AnalysisRecord(
        analysis_id=plan.analysis_id,
        model=model.spec.name,
        version=model.spec.version,
        target=model.spec.target,
        fingerprint=plan.fingerprint,
        logic_fingerprint=model.logic_fingerprint,
        params=model.params,
        inputs={d: i.analysis for d, i in plan.inputs.items()},
        input_sources={d: dict(sorted(Counter(i.sources.values()).items())) for d, i in plan.inputs.items() if i.sources},
        created_at=record.created_at if record else now,
        updated_at=now,
        units=units,
        last_build_seconds=round(seconds, 3),
        last_build_units=len(plan.build),
        run_scope=plan.run_scope,
        last_build_splits=splits,
    )
    save_analysis(root, new)
    return new


def input_versions(plan: ModelPlan, records: Mapping[str, AnalysisRecord]) -> dict[str, str]:
    """The version of the model that wrote each input analysis the plan reads, from that
    analysis's record: inputs without one (captures, an analysis written outside the
    engine) are left out."""
    return {d: records[i.analysis].version for d, i in sorted(plan.inputs.items()) if i.analysis in records}
