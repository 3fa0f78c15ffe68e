"""Publishing: staged output checked against its contract, then each output partition
folder exchanged with the old one in one step.

Each unit's new folder is assembled in staging and swapped into place whole, so every
partition is old or new, never half of each. A model written as one table with a folder
per run keeps the files of each run whose rows came out the same, so the models that read
it see nothing new there.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import lake as lk
from ..duck import bounded_connection
from ..scan import read_parquet
from ..sql import quote_identifier as qi, quote_literal as ql
from .compute import Staged
from .kinds import WHOLE
from .plan import ModelPlan
from .spec import ModelError
from .state import AnalysisRecord

PUBLISH_THREADS = 8


def check_output(plan: ModelPlan, staged: Staged) -> None:
    """Refuse output that breaks the target contract's NULL and enum rules, before publishing."""
    contract = plan.model.spec.contract
    files = [f for unit in staged.values() for f in unit.files]
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
    with bounded_connection() as con:
        row = con.execute(f"SELECT {counts} FROM {read_parquet(files)}").fetchone()
    broken = [f"{name} ({n} rows)" for name, n in zip(rules, row) if n]
    if broken:
        raise ModelError(
            f"{plan.model.spec.where()}: output breaks the {contract.name} contract"
            f" (NULL in a non-nullable column or a value outside its enum): {', '.join(broken)}; nothing was written"
        )


def run_contents(plan: ModelPlan, out: Path) -> dict[str, str]:
    """Per staged run folder, a key of its rows' content: their count and an order-free sum
    of row hashes over every column but created_at_utc (which differs in every build)."""
    contract = plan.model.spec.contract
    columns = ", ".join(qi(c.name) for c in contract.file_columns if c.name != "created_at_utc")
    staged = read_parquet(str(out / "run_id=*" / "*.parquet"), partitions=("run_id",), union=False)
    with bounded_connection() as con:
        rows = con.execute(
            f"SELECT run_id, count(*), sum(hash({columns})::HUGEINT) FROM {staged} GROUP BY run_id"
        ).fetchall() if any(out.glob("run_id=*/*.parquet")) else []
    return {run: f"{n}:{total}" for run, n, total in rows}


def unchanged_runs(root: Path, record: AnalysisRecord | None, contents: dict[str, str]) -> dict[str, list[Path]]:
    """The runs whose new output equals what the last build published, with those files:
    they are kept under their names, so the models reading them see nothing new."""
    old = record.units.get(WHOLE) if record else None
    if old is None:
        return {}
    old_files: dict[str, list[Path]] = {}
    for rel in old.files:
        path = root / rel
        old_files.setdefault(lk.partition_value(path.parent), []).append(path)
    return {
        run: old_files[run] for run, key in contents.items()
        if (old.runs or {}).get(run) == key and run in old_files and all(f.is_file() for f in old_files[run])
    }


def publish(plan: ModelPlan, root: Path, staged: Staged, staging: Path, kept: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """Swap each unit's folder into place: build it in staging, then exchange it with the old one.

    ``kept``: runs of a table by run whose files stay as they are (hard links into the new
    folder). Returns the files each unit published, where they are now. The units' folders
    are assembled by several threads (hashing and flushing files to disk, which many small
    runs make the larger part of publishing; flushes issued together share the disk's
    writes); the exchanges follow one by one, and each parent folder is flushed once after
    them, before the build is recorded.
    """
    trash = staging / "trash"
    trash.mkdir()
    units = sorted(plan.build) + list(plan.drop)

    def assemble(unit: str) -> tuple[Path, list[Path]]:
        fresh = staging / "publish" / uuid.uuid4().hex
        fresh.mkdir(parents=True)
        files = staged[unit].files if unit in staged else []
        return fresh, plan.model.spec.kind.stage(staging / "out", fresh, files, kept)

    with ThreadPoolExecutor(PUBLISH_THREADS) as pool:
        assembled = dict(zip(units, pool.map(assemble, units)))
    published, parents = {}, set()
    for unit, (fresh, moved) in assembled.items():
        target = plan.output_dir(root, unit)
        published[unit] = [target / f.relative_to(fresh) for f in moved]
        if moved:
            lk.replace_dir(fresh, target, trash / uuid.uuid4().hex)
        elif target.exists():
            os.rename(target, trash / uuid.uuid4().hex)
        parents.add(target.parent)
    for parent in sorted(p for p in parents if p.exists()):
        lk.fsync(parent)
    return published
