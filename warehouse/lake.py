"""The lake on disk: where it is, how its folders are named, and atomic file publishing.

Layout: ``<root>/<dataset>/<key>=<value>/.../part-<sha256>.parquet``. Partition values are
identifiers checked against :data:`warehouse.contracts.IDENTIFIER_PATTERN` before any path
is built from them. Files appear only by an atomic rename of a fully written temporary file
in the same folder, named by the hash of its bytes, so readers never see half a file and
publishing the same bytes twice is a no-op.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from .contracts import IDENTIFIER_PATTERN, IDENTIFIER_RE, Dataset
from .errors import UnsafeIdentifier, WarehouseError

DEFAULT_LAKE = "lake"
DEFAULT_DB = "warehouse.duckdb"

# Folders at the lake root that are not datasets.
STAGING_DIR = ".staging"  # a writer's work area; anything left there is from a crashed writer
CAPTURES_DIR = "captures"  # raw capture files referenced by probe_captures_index
META_DIR = "_meta"  # lake-level metadata (e.g. the demo's planted truth)
RESERVED_DIRS = (STAGING_DIR, CAPTURES_DIR, META_DIR)

TEMP_PREFIX = ".tmp-"
DATA_PREFIX = "part-"


def lake_root(path: str | os.PathLike | None = None) -> Path:
    """The lake root: ``path``, else ``$SQUIGGLE_LAKE``, else ``./lake``; always absolute."""
    return Path(path or os.environ.get("SQUIGGLE_LAKE") or DEFAULT_LAKE).resolve()


def db_path(path: str | os.PathLike | None = None) -> Path:
    """The catalog file: ``path``, else ``$SQUIGGLE_DB``, else ``./warehouse.duckdb``."""
    return Path(path or os.environ.get("SQUIGGLE_DB") or DEFAULT_DB).resolve()


def is_identifier(value: object) -> bool:
    return isinstance(value, str) and IDENTIFIER_RE.fullmatch(value) is not None


def check_identifier(value: object, column: str) -> str:
    """Return ``value`` if it is a safe path segment, else raise :class:`UnsafeIdentifier`."""
    if not is_identifier(value):
        raise UnsafeIdentifier(
            f"{column} {value!r} is not a safe identifier: it must match {IDENTIFIER_PATTERN}"
        )
    return value  # type: ignore[return-value]


def dataset_dir(root: Path, dataset: Dataset) -> Path:
    return root / dataset.name


def partition_dir(root: Path, dataset: Dataset, values: Mapping[str, str]) -> Path:
    """The folder of one partition; ``values`` gives every partition column of the dataset."""
    path = dataset_dir(root, dataset)
    for key in dataset.partition_by:
        path = path / f"{key}={check_identifier(values[key], key)}"
    return path


def file_pattern(dataset: Dataset) -> str:
    """The glob of a dataset's data files below its folder, at exactly its partition depth.

    An exact depth keeps stray folders (``run_id=r/seed=3/``) from leaking into readers.
    """
    return "/".join([f"{key}=*" for key in dataset.partition_by] + ["*.parquet"])


def data_files(root: Path, dataset: Dataset) -> list[Path]:
    """Every published Parquet file of a dataset, sorted by path."""
    folder = dataset_dir(root, dataset)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(file_pattern(dataset)) if not p.name.startswith("."))


def published_files(folder: Path) -> list[Path]:
    """The published Parquet files directly in one partition folder, sorted (none if no folder)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(Path(e.path) for e in entries if _is_published(e.name) and e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_published(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith(".")


def partition_folders(folder: Path, key: str) -> dict[str, Path]:
    """The ``key=value`` folders directly in ``folder``, by value (none if no folder)."""
    prefix = f"{key}="
    try:
        with os.scandir(folder) as entries:
            return {e.name[len(prefix):]: Path(e.path) for e in entries if e.name.startswith(prefix) and e.is_dir()}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def parquet_glob(root: Path, dataset: Dataset) -> str:
    """The absolute glob a reader uses for a dataset's files."""
    return str(dataset_dir(root, dataset) / file_pattern(dataset))


def temp_path(folder: Path) -> Path:
    """A fresh hidden name in ``folder`` that no reader's glob matches."""
    return folder / f"{TEMP_PREFIX}{uuid.uuid4().hex}.parquet.partial"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish(written: Path, folder: Path) -> Path:
    """Move a fully written file into ``folder`` under its content-hash name.

    ``written`` must be on the same file system as ``folder`` (a temporary file inside it,
    or in the lake's staging area). If a file with the same content is already there, the
    new copy is dropped and the existing path returned.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{DATA_PREFIX}{file_sha256(written)[:32]}.parquet"
    if final.exists():
        written.unlink()
        return final
    _fsync(written)
    os.replace(written, final)
    _fsync(folder)
    return final


def capture_path(run_id: str, probe_name: str, file_name: str) -> str:
    """The lake-relative path of a capture file, as ``probe_captures_index.path`` records it."""
    run, probe = check_identifier(run_id, "run_id"), check_identifier(probe_name, "probe_name")
    return f"{CAPTURES_DIR}/{run}/{probe}/{file_name}"


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary name in the same folder and a rename.

    A file already holding exactly ``data`` is left alone.
    """
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}.partial"
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def refuse_changed_files(root: Path, files: Mapping[str, bytes], hint: str = "") -> None:
    """Capture files are immutable facts: refuse, before writing any, to replace one with other bytes."""
    for rel, data in files.items():
        path = root / rel
        if path.exists() and path.read_bytes() != data:
            raise WarehouseError(f"{path} already exists with other content{hint}")


@contextmanager
def dataset_lock(root: Path, dataset: Dataset) -> Iterator[None]:
    """Hold a dataset's write lock while a writer compares keys and publishes.

    Two writers of the same dataset would otherwise both find a key new and both publish it.
    """
    path = root / META_DIR / "locks" / f"{dataset.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def remove_quietly(paths: Iterable[Path]) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _fsync(path: Path) -> None:
    """Flush a file's bytes, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
