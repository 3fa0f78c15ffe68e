"""What the engine remembers between builds, kept in the lake under ``_meta/``.

- ``_meta/analyses/<analysis_id>.json``: one record per analysis: model, version,
  fingerprints, parameters, the analyses it read, and per unit of work (a run, or the whole
  table) the digest of the input files it was computed from, its rows and partitions.
- ``_meta/build.lock``: held (flock) by the build that is running.

Input digests are cheap and exact because published file names are hashes of their bytes:
the sorted list of an input partition's file names changes exactly when its content does.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .. import lake as lk
from ..errors import LakeNotWritable, LockBusy, WarehouseError

ANALYSES_DIR = "analyses"


def analyses_dir(root: Path) -> Path:
    return root / lk.META_DIR / ANALYSES_DIR


def load_analyses(root: Path) -> dict[str, dict[str, Any]]:
    """Every analysis record of the lake, by analysis id."""
    folder = analyses_dir(root)
    if not folder.is_dir():
        return {}
    records = (json.loads(p.read_text()) for p in sorted(folder.glob("*.json")))
    return {r["analysis_id"]: r for r in records}


def save_analysis(root: Path, record: dict[str, Any]) -> None:
    """Write an analysis record atomically (temporary file, flushed, then renamed).

    On any failure (a full disk) the temporary file is removed and the old record stays.
    """
    folder = analyses_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{lk.check_identifier(record['analysis_id'], 'analysis_id')}.json"
    temp = folder / f"{lk.TEMP_PREFIX}{os.getpid()}-{final.name}.partial"
    try:
        temp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
        lk.fsync(temp)
        os.replace(temp, final)
    except BaseException:
        lk.remove_quietly([temp])
        raise
    lk.fsync(folder)


def remove_stale_records(root: Path) -> None:
    """Remove temporary record files a killed build left (call under the build lock)."""
    lk.remove_quietly(analyses_dir(root).glob(f"{lk.TEMP_PREFIX}*.partial"))


def digest(paths: list[Path], root: Path) -> str:
    """A digest of a set of input files, by their lake-relative names."""
    # string slicing, not Path.relative_to: planning a large lake digests every input file
    prefix = len(str(root)) + 1
    names = sorted(str(p)[prefix:] for p in paths)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


@contextmanager
def build_lock(root: Path, *, wait: bool = False, holder: str = "models run") -> Iterator[None]:
    """Hold the lake's build lock; refuse (or wait) when another build holds it.

    ``holder`` says who holds it (a build, or a catalog being made) in the refusal message.
    """
    path = root / lk.META_DIR / "build.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        error = LakeNotWritable if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else WarehouseError
        raise error(f"cannot take the build lock of the lake {root}: {exc.strerror} ({exc.filename})") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            other = _holder_note(fd)
            raise LockBusy(
                f"another build is running on {root} ({other}); wait for it to finish, "
                f"or pass --wait to queue behind it"
            ) from None
        _note_holder(fd, f"{holder}, pid {os.getpid()}, started {time.strftime('%Y-%m-%dT%H:%M:%S')}")
        try:
            yield
        finally:
            _note_holder(fd, "")
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _note_holder(fd: int, text: str) -> None:
    """Say who holds the lock, for the refusal message (unbuffered: a full disk only loses the note).

    Written over the old note, then cut to length: a reader never sees it empty meanwhile.
    """
    data = text.encode()
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    except OSError:
        pass


def _holder_note(fd: int) -> str:
    """Who holds the lock. A build that has just taken it writes its note a moment later."""
    for _ in range(50):
        note = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if note:
            return note
        time.sleep(0.01)
    return "another process"
