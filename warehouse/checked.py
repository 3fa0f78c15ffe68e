"""Partition folders known to be clean, so that a build checks only the folders that changed.

A folder is known clean by a stamp of its files (names, sizes and modification times, with
the dataset's contract and :data:`CHECKS_VERSION`): any change to its files, the contract or
the checks gives another stamp. Two sources vouch for stamps:

- a build: each unit of an analysis record lists, under ``checked``, the input folders it
  found clean. Records are written only by builds that completed their model, so an
  interrupted build leaves no verdict behind;
- the writer: it validates every row it publishes against the contract and the keys of the
  partition it publishes into (what the checks would find), so after a write it vouches
  for each folder it wrote that was empty or vouched for before, in
  ``_meta/checked/<dataset>.json``. A folder another tool wrote into is not vouched for
  until a build has checked it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from . import lake as lk
from .contracts import Dataset

if TYPE_CHECKING:
    from .models.state import AnalysisRecord

CHECKS_VERSION = 1  # raise when check_files judges files differently
VOUCHED_DIR = "checked"  # under _meta: the writer's stamps, one file per dataset


def stamp(dataset: Dataset, files: Iterable[Path]) -> str:
    """What identifies a folder's files as checked, without reading them."""
    lines = sorted(f"{f.name} {st.st_size} {st.st_mtime_ns}" for f in files for st in [f.stat()])
    text = "\n".join([f"{CHECKS_VERSION} {dataset!r}", *lines])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recorded_clean(records: Mapping[str, AnalysisRecord]) -> set[tuple[str, str]]:
    """Every (folder, stamp) some build record lists as found clean."""
    return {(folder, s) for r in records.values() for unit in r.units.values() for folder, s in unit.checked.items()}


def writer_clean(root: Path) -> set[tuple[str, str]]:
    """Every (folder, stamp) the writer vouches for (an unreadable file vouches for none)."""
    known = set()
    for path in sorted((root / lk.META_DIR / VOUCHED_DIR).glob("*.json")):
        known |= set(_read(path).items())
    return known


def vouch(root: Path, dataset: Dataset, before: dict[Path, str | None]) -> None:
    """After a write: vouch for each folder it published into (``before``: the folder's stamp
    before the write, None when it held no file) if it was empty or vouched for before.

    The caller holds the dataset's write lock, so no other writer changes the file meanwhile.
    """
    path = root / lk.META_DIR / VOUCHED_DIR / f"{dataset.name}.json"
    vouched = _read(path)
    for folder, old in before.items():
        rel = folder.relative_to(root).as_posix()
        if old is None or vouched.get(rel) == old:
            vouched[rel] = folder_stamp(dataset, folder)
        else:
            vouched.pop(rel, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    lk.write_bytes_atomic(path, json.dumps(vouched, sort_keys=True, indent=0).encode())


def folder_stamp(dataset: Dataset, folder: Path) -> str | None:
    """The stamp of a folder's published files, None if it holds none."""
    files = lk.published_files(folder)
    return stamp(dataset, files) if files else None


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
