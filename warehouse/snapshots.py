"""Snapshots of the model outputs a catalog reads: hard links that no build ever changes.

A build replaces the partition folders of its models' outputs. A reader that listed a
folder's files just before the swap would then open a file that is gone, and fail; so a
catalog never reads those folders directly. Before it is built, every published file of
the datasets the models write is hard-linked (no copy: the same bytes) into
``_meta/snapshots/<id>/`` under its lake-relative path, and the catalog's views of those
datasets read the snapshot. A snapshot never changes: each query of a catalog sees, for
every model, exactly the outputs of the builds completed when the catalog was made.

A snapshot is kept while a catalog may still read it: a superseded one (a newer snapshot
exists) is removed ``SQUIGGLE_SNAPSHOT_HOURS`` hours (default 24) after the newer one was
made. Datasets the warehouse only appends to (facts, captures) are read live: no process
removes or replaces their files.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

from . import lake as lk
from .contracts import Dataset
from .errors import WarehouseError

SNAPSHOTS_DIR = "snapshots"
COMPLETE = ".complete"  # written last: a snapshot without it was interrupted
RETENTION_ENV = "SQUIGGLE_SNAPSHOT_HOURS"
DEFAULT_RETENTION_HOURS = 24.0


def snapshots_dir(root: Path) -> Path:
    return root / lk.META_DIR / SNAPSHOTS_DIR


def take_snapshot(root: Path, datasets: list[Dataset]) -> tuple[Path, bool]:
    """A complete snapshot of ``datasets``' published files, and whether it was made now (the
    newest snapshot is used again when it holds the same files).

    Call it under the lake's build lock, so that no build swaps folders meanwhile.
    """
    files = sorted(f.relative_to(root) for d in datasets for f in lk.Lake(root).table(d).files())
    newest = _complete(root)[-1:]
    if newest and _files_of(newest[0]) == files:
        return newest[0], False
    snapshot = snapshots_dir(root) / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
    try:
        for rel in files:
            (snapshot / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(root / rel, snapshot / rel)
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / COMPLETE).touch()
        lk.fsync(snapshot)
    except BaseException:
        shutil.rmtree(snapshot, ignore_errors=True)
        raise
    return snapshot, True


def discard(snapshot: Path) -> None:
    """Remove a snapshot no catalog reads (its catalog failed to build)."""
    shutil.rmtree(snapshot, ignore_errors=True)


def retire_snapshots(root: Path, current: Path, hours: float) -> list[Path]:
    """Remove interrupted snapshots, and those superseded more than ``hours`` ago.

    Call it under the lake's build lock, after the catalog reading ``current`` is in place.
    """
    folder = snapshots_dir(root)
    complete = _complete(root)
    removed = [p for p in sorted(folder.iterdir()) if p not in complete and p != current] if folder.is_dir() else []
    now = time.time_ns()
    for older, newer in zip(complete, complete[1:]):
        if older != current and now - _made_at(newer) > hours * 3600e9:
            removed.append(older)
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def retention() -> float:
    """Hours a superseded snapshot is kept: ``$SQUIGGLE_SNAPSHOT_HOURS``, else 24."""
    text = os.environ.get(RETENTION_ENV)
    if not text:
        return DEFAULT_RETENTION_HOURS
    try:
        hours = float(text)
    except ValueError:
        hours = -1.0
    if not hours >= 0:  # also refuses nan
        raise WarehouseError(f"{RETENTION_ENV}={text!r}: give the hours as a number >= 0")
    return hours


def _complete(root: Path) -> list[Path]:
    """The complete snapshots, oldest first."""
    folder = snapshots_dir(root)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if (p / COMPLETE).is_file()), key=_made_at)


def _made_at(snapshot: Path) -> int:
    return int(snapshot.name.split("-", 1)[0])


def _files_of(snapshot: Path) -> list[Path]:
    return sorted(p.relative_to(snapshot) for p in snapshot.rglob("*") if p.is_file() and p.name != COMPLETE)
