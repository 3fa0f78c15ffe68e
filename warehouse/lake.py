"""The lake on disk: where it is, how its folders are named, and atomic file publishing.

Layout: ``<root>/<dataset>/<key>=<value>/.../part-<sha256>.parquet``. Partition values are
identifiers checked against :data:`warehouse.contracts.IDENTIFIER_PATTERN` before any path
is built from them. Files appear only by an atomic rename of a fully written temporary file
(written in the lake's staging area), named by the hash of its bytes, so readers never see
half a file and publishing the same bytes twice is a no-op. A whole partition folder is
replaced by exchanging it with its successor in one step (:func:`replace_dir`).

A lake is a folder; :func:`init_lake` creates an empty one. :class:`Lake` knows where each
dataset's folders are: ``Lake(root).table("runs")`` is the :class:`Table` of one dataset,
with its partition folders, its files and its writer lock. Everything that reads or writes
a lake opens it with :func:`open_lake`, which refuses a root that does not exist unless the
caller asked to create it: a typo'd path must fail, not become a new, empty lake.

Every process that writes works in its own folder of the staging area
(:func:`scratch_dir`), locked for as long as the process lives: what a killed process left
there is told apart from a running one's work by that lock, and removed by the next
writer or build (:func:`reclaim_stale`).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping
from urllib.parse import unquote

from .contracts import DATASETS, IDENTIFIER_PATTERN, IDENTIFIER_RE, Dataset
from .errors import LakeNotFound, UnsafeIdentifier, WarehouseError

DEFAULT_LAKE = "lake"
DEFAULT_DB = "warehouse.duckdb"

# Folders at the lake root that are not datasets.
STAGING_DIR = ".staging"  # the work area of writers and builds (see scratch_dir)
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


def open_lake(path: str | os.PathLike | None = None, *, create: bool = False) -> Path:
    """The lake root (see :func:`lake_root`), which must exist as a folder unless ``create``.

    With ``create`` a missing lake is created empty (:func:`init_lake`). Without it a missing
    root raises :class:`~warehouse.errors.LakeNotFound` naming the path and how to create a
    lake, and nothing is created.
    """
    if create:
        return init_lake(path)
    root = lake_root(path)
    if not root.is_dir():
        raise LakeNotFound(_not_a_lake(root))
    return root


def init_lake(path: str | os.PathLike | None = None) -> Path:
    """Create an empty lake at ``path`` (its root and metadata folder); return its root.

    An existing lake is left as it is. A root that exists as a file is refused.
    """
    root = lake_root(path)
    if root.exists() and not root.is_dir():
        raise LakeNotFound(_not_a_lake(root))
    (root / META_DIR).mkdir(parents=True, exist_ok=True)
    return root


def _not_a_lake(root: Path) -> str:
    if root.exists():
        return f"lake root {root} is not a folder"
    return (
        f"lake root {root} does not exist (is the path right?); create an empty lake with "
        f"`warehouse init {root}`, or ingest with `--create`"
    )


def is_identifier(value: object) -> bool:
    return isinstance(value, str) and IDENTIFIER_RE.fullmatch(value) is not None


def check_identifier(value: object, column: str) -> str:
    """Return ``value`` if it is a safe path segment, else raise :class:`UnsafeIdentifier`."""
    if not is_identifier(value):
        raise UnsafeIdentifier(
            f"{column} {value!r} is not a safe identifier: it must match {IDENTIFIER_PATTERN}"
        )
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Lake:
    """A lake's root folder, and the folders of its datasets."""

    root: Path

    def table(self, dataset: Dataset | str) -> Table:
        """The folders and files of one dataset (a contract, or its name)."""
        return Table(self.root, DATASETS[dataset] if isinstance(dataset, str) else dataset)


@dataclass(frozen=True)
class Table:
    """One dataset of a lake: its folder, partition folders, published files and writer lock."""

    root: Path
    dataset: Dataset

    @property
    def folder(self) -> Path:
        return self.root / self.dataset.name

    def partition(self, values: Mapping[str, str]) -> Path:
        """The folder of one partition; ``values`` gives every partition column of the dataset."""
        path = self.folder
        for key in self.dataset.partition_by:
            path = path / f"{key}={check_identifier(values[key], key)}"
        return path

    def analysis(self, analysis_id: str) -> Path:
        """The folder of one analysis of an analysis-partitioned dataset."""
        return self.folder / f"analysis_id={analysis_id}"

    def files(self) -> list[Path]:
        """Every published Parquet file of the dataset, sorted by path."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob(file_pattern(self.dataset)) if not p.name.startswith("."))

    def files_by_analysis(self) -> dict[str, dict[str, list[Path]]]:
        """Per analysis, each run's published files (see :func:`run_files_by_analysis`)."""
        return run_files_by_analysis(self.folder)

    @property
    def glob(self) -> str:
        """The absolute glob a reader uses for the dataset's files."""
        return str(self.folder / file_pattern(self.dataset))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the dataset's write lock while a writer compares keys and publishes.

        Two writers of the same dataset would otherwise both find a key new and both publish it.
        """
        with _locked(self.root / META_DIR / "locks" / f"{self.dataset.name}.lock", fcntl.LOCK_EX):
            yield


def file_pattern(dataset: Dataset) -> str:
    """The glob of a dataset's data files below its folder, at exactly its partition depth.

    An exact depth keeps stray folders (``run_id=r/seed=3/``) from leaking into readers.
    """
    return "/".join([f"{key}=*" for key in dataset.partition_by] + ["*.parquet"])


def published_files(folder: Path) -> list[Path]:
    """The published Parquet files directly in one partition folder, sorted (none if no folder)."""
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if _is_published(e.name) and e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [folder / name for name in names]  # a child path: cheaper than parsing each whole path


def _is_published(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith(".")


def partition_value(folder: Path) -> str:
    """The value of a ``key=value`` folder (DuckDB's partitioned writes escape the value)."""
    return unquote(folder.name.split("=", 1)[1])


def partition_folders(folder: Path, key: str) -> dict[str, Path]:
    """The ``key=value`` folders directly in ``folder``, by value (none if no folder)."""
    prefix = f"{key}="
    try:
        with os.scandir(folder) as entries:
            return {e.name[len(prefix):]: folder / e.name for e in entries if e.name.startswith(prefix) and e.is_dir()}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def run_files_by_analysis(base: Path) -> dict[str, dict[str, list[Path]]]:
    """Below the folder of a dataset partitioned by analysis and run: per analysis, each
    run's published files (runs without any are left out), sorted by analysis and run."""
    out: dict[str, dict[str, list[Path]]] = {}
    for analysis, folder in sorted(partition_folders(base, "analysis_id").items()):
        runs = {run: published_files(f) for run, f in sorted(partition_folders(folder, "run_id").items())}
        out[analysis] = {run: files for run, files in runs.items() if files}
    return out


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

    ``written`` must be on the same file system as ``folder`` (a file in the lake's staging
    area). If a file with the same content is already there, the new copy is dropped and
    the existing path returned.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{DATA_PREFIX}{file_sha256(written)[:32]}.parquet"
    if final.exists():
        written.unlink()
        return final
    fsync(written)
    os.replace(written, final)
    fsync(folder)
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


def replace_dir(fresh: Path, target: Path, trash: Path) -> None:
    """Put the folder ``fresh`` at ``target``; the folder that was there, if any, ends at ``trash``.

    On Linux both folders are exchanged in one atomic step (``renameat2`` with
    ``RENAME_EXCHANGE``): a reader listing ``target`` finds the old folder or the new one,
    never neither, and a process killed at any moment leaves one of them in place. Where the
    exchange is not available the old folder is moved out, then the new one in. The caller
    flushes ``target``'s parent folder (:func:`fsync`) to make the exchange durable.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.rename(fresh, target)
    elif _exchange(fresh, target):
        os.rename(fresh, trash)  # ``fresh`` now names the old folder
    else:
        os.rename(target, trash)
        os.rename(fresh, target)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# The kernel or file system cannot exchange: fall back to two renames.
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def _load_renameat2():
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or a C library older than glibc 2.28
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two existing paths; False when this system cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(b))


# ---------------------------------------------------------------------------------------
# Locks and the staging area


@contextmanager
def _locked(path: Path, mode: int) -> Iterator[None]:
    """Hold ``flock`` ``mode`` on the lock file ``path`` (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, mode)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def _staging_area(root: Path, *, exclusive: bool, create: bool) -> Iterator[Path | None]:
    """The staging folder, locked (``flock`` on the folder itself): shared while a process
    creates and locks its own folder inside, exclusive while stale entries are looked for and
    the empty area is removed. So a folder is never judged between its creation and its lock,
    and no lock file is left in the lake. Yields None when the area is missing (``create`` off).
    """
    area = root / STAGING_DIR
    while True:
        if create:
            area.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(area, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if create:
                continue  # removed between mkdir and open: make it again
            yield None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            if os.fstat(fd).st_nlink == 0:
                continue  # removed, being empty, while this process waited for the lock
            yield area
            return
        finally:
            os.close(fd)  # closing releases the lock


@contextmanager
def scratch_dir(root: Path, prefix: str = "") -> Iterator[Path]:
    """A private folder in the lake's staging area, for the caller's lifetime.

    The folder stays locked (``flock``) while its owner lives, even if the owner is killed
    before it can clean up: the kernel then drops the lock, which marks the folder stale.
    It is removed when the block ends, and the staging area with it when it is left empty.
    """
    with _staging_area(root, exclusive=False, create=True) as area:
        folder = area / f"{prefix}{uuid.uuid4().hex}"
        folder.mkdir()
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)
        with _staging_area(root, exclusive=True, create=False) as area:
            if area is not None:
                remove_if_empty(area)


def reclaim_stale(root: Path) -> list[Path]:
    """Remove what killed processes left in the staging area; return what was removed.

    Only entries no live process holds are removed: a running writer or build keeps its own.
    """
    removed = []
    with _staging_area(root, exclusive=True, create=False) as area:
        if area is None:
            return []
        for entry in sorted(area.iterdir()):
            with _try_lock(entry, fcntl.LOCK_EX) as free:
                if free:
                    _remove_entry(entry)
                    removed.append(entry)
        remove_if_empty(area)
    return removed


def is_stale(entry: Path) -> bool:
    """Whether no live process holds ``entry`` of the staging area; changes nothing."""
    with _try_lock(entry, fcntl.LOCK_SH) as free:
        return free


@contextmanager
def _try_lock(path: Path, mode: int) -> Iterator[bool]:
    """Try ``flock`` on ``path`` without waiting; True when taken (or nothing can hold it)."""
    try:
        # No following links and no waiting on a FIFO: the staging area may hold anything.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        yield False  # removed meanwhile by its owner
        return
    except OSError:
        yield True  # a link or an unopenable entry: no process holds a lock on it
        return
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _remove_entry(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        remove_quietly([entry])


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


def fsync(path: Path) -> None:
    """Flush a file's bytes, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
