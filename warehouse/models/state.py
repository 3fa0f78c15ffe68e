"""What the engine remembers between builds, kept in the lake under ``_meta/``.

- ``_meta/analyses/<analysis_id>.json``: one :class:`AnalysisRecord` per analysis: model,
  version, fingerprints, parameters, the analyses it read, and per unit of work (a run, or
  the whole table) a :class:`UnitRecord`: the digest of the input files it was computed
  from, its rows and files. Code outside this module reads records through these classes.
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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Mapping

from .. import lake as lk
from ..errors import LakeNotWritable, LockBusy, WarehouseError

ANALYSES_DIR = "analyses"


@dataclass(frozen=True)
class UnitRecord:
    """What the last build of one unit (a run, or the whole table) computed it from and wrote."""

    digest: str  # of the input files it was computed from
    rows: int
    files: tuple[str, ...]  # lake-relative paths of the files it published
    checked: Mapping[str, str] = field(default_factory=dict)  # input folder -> stamp, found clean
    skipped: tuple[str, ...] = ()  # invalid inputs left out (``--skip-invalid``)
    runs: Mapping[str, str] | None = None  # a table by run: per run, a key of its rows' content
    # a merging model: the digest of each run's input files, and of the inputs not by run
    input_runs: Mapping[str, str] | None = None
    input_shared: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UnitRecord:
        return cls(data["digest"], data["rows"], tuple(data["files"]), data.get("checked", {}),
                   tuple(data.get("skipped", ())), data.get("runs"), data.get("input_runs"), data.get("input_shared"))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"digest": self.digest, "rows": self.rows, "files": list(self.files),
                               "checked": dict(self.checked)}
        if self.skipped:
            out["skipped"] = list(self.skipped)
        if self.runs:
            out["runs"] = dict(self.runs)
        if self.input_runs is not None:
            out["input_runs"], out["input_shared"] = dict(self.input_runs), self.input_shared
        return out


@dataclass(frozen=True)
class AnalysisRecord:
    """One analysis of one model, as its builds recorded it."""

    analysis_id: str
    model: str
    version: str
    target: str
    fingerprint: str
    logic_fingerprint: str
    params: Mapping[str, Any]
    inputs: Mapping[str, str | None]  # input dataset -> the analysis read (None for facts)
    # what "newest per run" chose: per input, the analyses read with their runs' count
    input_sources: Mapping[str, Mapping[str, int]]
    created_at: str
    updated_at: str
    units: Mapping[str, UnitRecord]
    last_build_seconds: float
    last_build_units: int
    # a model with a `runs:` condition: per run, [digest of its runs files, whether chosen]
    run_scope: Mapping[str, list] | None = None
    # what the last build said of each batch that ran out of memory and was split
    last_build_splits: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return sum(u.rows for u in self.units.values())

    @property
    def files(self) -> list[str]:
        """Every file the analysis published, lake-relative."""
        return [f for unit in self.units.values() for f in unit.files]

    @property
    def skipped(self) -> list[str]:
        """The invalid inputs its units were built without, each once."""
        return sorted({line for unit in self.units.values() for line in unit.skipped})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnalysisRecord:
        units = {u: UnitRecord.from_json(v) for u, v in data["units"].items()}
        return cls(data["analysis_id"], data["model"], data["version"], data["target"], data["fingerprint"],
                   data["logic_fingerprint"], data["params"], data["inputs"], data.get("input_sources", {}),
                   data["created_at"], data["updated_at"], units, data["last_build_seconds"],
                   data["last_build_units"], data.get("run_scope"), tuple(data.get("last_build_splits", ())))

    def to_json(self) -> dict[str, Any]:
        optional = ("run_scope", "last_build_splits")  # kept only when there is something to keep
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("units", *optional)}
        out |= {"units": {u: r.to_json() for u, r in self.units.items()}, "rows": self.rows}
        if self.run_scope:
            out["run_scope"] = dict(self.run_scope)
        if self.last_build_splits:
            out["last_build_splits"] = list(self.last_build_splits)
        return out



def analyses_dir(root: Path) -> Path:
    return root / lk.META_DIR / ANALYSES_DIR


def load_analyses(root: Path) -> dict[str, AnalysisRecord]:
    """Every analysis record of the lake, by analysis id."""
    folder = analyses_dir(root)
    if not folder.is_dir():
        return {}
    records = (AnalysisRecord.from_json(json.loads(p.read_text())) for p in sorted(folder.glob("*.json")))
    return {r.analysis_id: r for r in records}


def save_analysis(root: Path, record: AnalysisRecord) -> None:
    """Write an analysis record atomically (temporary file, flushed, then renamed).

    On any failure (a full disk) the temporary file is removed and the old record stays.
    """
    folder = analyses_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{lk.check_identifier(record.analysis_id, 'analysis_id')}.json"
    temp = folder / f"{lk.TEMP_PREFIX}{os.getpid()}-{final.name}.partial"
    try:
        temp.write_text(json.dumps(record.to_json(), indent=2, sort_keys=True, default=str))
        lk.fsync(temp)
        os.replace(temp, final)
    except BaseException:
        lk.remove_quietly([temp])
        raise
    lk.fsync(folder)


RUN_VERDICTS = "run_verdicts.json"


def load_run_verdicts(root: Path) -> dict[str, dict[str, list]]:
    """What earlier builds found of each ``runs`` condition: per condition's SQL, per run,
    [digest of its runs files, chosen]. Kept apart from the analysis records for the models
    whose condition chooses no run (they have no record); a missing or unreadable file only
    makes the next build ask the conditions again."""
    try:
        data = json.loads((root / lk.META_DIR / RUN_VERDICTS).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_run_verdicts(root: Path, verdicts: Mapping[str, Mapping[str, list]]) -> None:
    lk.write_bytes_atomic(root / lk.META_DIR / RUN_VERDICTS, json.dumps(verdicts, sort_keys=True).encode())


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
