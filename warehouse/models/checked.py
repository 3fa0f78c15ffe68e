"""Input folders a build found clean, so that later builds check only the folders that changed.

Each unit of an analysis record lists, under ``checked``, the input folders (lake-relative)
it was built from that were found clean, with a stamp of their files: names, sizes and
modification times, and the fingerprint of the dataset's contract and of the checks
(:data:`CHECKS_VERSION`). A folder whose stamp is in some record is not checked again; one
whose files, contract or checks changed in any way is. Records are written only by builds
that completed their model, so an interrupted build leaves no verdict behind.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable

from ..contracts import Dataset

CHECKS_VERSION = 1  # raise when check_files judges files differently


def stamp(dataset: Dataset, files: Iterable[Path]) -> str:
    """What identifies a folder's files as checked, without reading them."""
    lines = sorted(f"{f.name} {st.st_size} {st.st_mtime_ns}" for f in files for st in [f.stat()])
    text = "\n".join([f"{CHECKS_VERSION} {dataset!r}", *lines])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recorded_clean(records: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    """Every (folder, stamp) some record lists as found clean."""
    return {(folder, s) for r in records.values() for unit in r.get("units", {}).values()
            for folder, s in unit.get("checked", {}).items()}
