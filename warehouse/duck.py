"""DuckDB connections for the warehouse's own work (writes and model builds)."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import duckdb

from .errors import WarehouseError
from .sql import quote_literal


def work_connection(spill: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory connection that spills to ``spill`` and honours the resource settings.

    Its memory_limit is :func:`memory_limit` (``SQUIGGLE_MEMORY_LIMIT``, else the
    warehouse's default) and ``SQUIGGLE_THREADS`` its threads (unset: one per core).
    ``SQUIGGLE_TEMP_DIRECTORY`` moves the spill files out of ``spill`` (see
    :func:`spill_directory`).
    """
    con = duckdb.connect()
    try:
        con.execute(f"SET temp_directory = {quote_literal(str(spill_directory(spill)))}")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")  # a library must not draw on its caller's stdout
        apply_resource_settings(con)
    except BaseException:
        con.close()
        raise
    return con


def bounded_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory connection within the warehouse's memory limit and threads, for work
    that needs no spill folder of its own (it spills where DuckDB's default puts it)."""
    con = duckdb.connect()
    try:
        apply_resource_settings(con)
    except BaseException:
        con.close()
        raise
    return con


def apply_resource_settings(con: duckdb.DuckDBPyConnection) -> None:
    """The memory limit (:func:`memory_limit`) and ``SQUIGGLE_THREADS`` on ``con``: every
    connection the warehouse opens for its own work (writes, builds, checks) stays within them."""
    limit, threads = memory_limit(), os.environ.get("SQUIGGLE_THREADS")
    if limit != DUCKDB_DEFAULT:
        try:
            con.execute(f"SET memory_limit = {quote_literal(limit)}")
        except duckdb.Error as exc:
            raise WarehouseError(
                f"SQUIGGLE_MEMORY_LIMIT={limit!r} is not a memory size (e.g. 2GB) nor {DUCKDB_DEFAULT!r}:"
                f" {str(exc).splitlines()[0]}"
            ) from None
    if threads:
        if not (threads.isdigit() and int(threads) >= 1):
            raise WarehouseError(f"SQUIGGLE_THREADS={threads!r} is not a number of threads (1 or more)")
        con.execute(f"SET threads = {int(threads)}")


# DuckDB alone would take 80% of RAM, beside the notebooks and BI tools that read the same
# lake: the warehouse's own work takes a quarter of the memory it may use, at most 4 GiB
# (enough for the default batches of every model; a larger limit buys little speed).
DEFAULT_MEMORY_SHARE = 4
DEFAULT_MEMORY_CAP = 4 * 2**30
DUCKDB_DEFAULT = "duckdb"  # SQUIGGLE_MEMORY_LIMIT=duckdb: DuckDB's own default


def memory_limit() -> str:
    """The memory_limit of the warehouse's DuckDB connections: ``$SQUIGGLE_MEMORY_LIMIT``
    (a size such as ``2GB``, or ``duckdb`` for DuckDB's own default), else
    :func:`default_memory_limit`."""
    return os.environ.get("SQUIGGLE_MEMORY_LIMIT", "").strip() or default_memory_limit()


def default_memory_limit() -> str:
    """A quarter of the memory this process may use (the machine's RAM, or its container's
    limit when lower), at most 4 GiB, in MiB as DuckDB reads it."""
    return f"{min(available_memory() // DEFAULT_MEMORY_SHARE, DEFAULT_MEMORY_CAP) // 2**20}MiB"


def available_memory() -> int:
    """Bytes of RAM this process may use: physical memory, or the cgroup's limit when lower."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" (v2) means none
            return min(physical, int(text))
    return physical


def spill_directory(default: Path) -> Path:
    """Where a connection spills: ``default``, or a folder of its own in ``$SQUIGGLE_TEMP_DIRECTORY``.

    The folder of its own keeps connections of concurrent processes apart (older DuckDB
    versions name their spill files alike); DuckDB creates it on the first spill and
    removes it when the connection closes. The directory named by the variable is created
    when missing, since DuckDB creates only the last level of a path.
    """
    base = os.environ.get("SQUIGGLE_TEMP_DIRECTORY")
    if not base:
        return default
    Path(base).mkdir(parents=True, exist_ok=True)
    return Path(base).resolve() / f"squiggle-spill-{uuid.uuid4().hex}"


_MEMORY_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
                 "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def memory_bytes(text: str) -> int:
    """A memory size as DuckDB reads or shows it (``2GB`` is 10^9 bytes, ``1.8 GiB`` 2^30) in bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _MEMORY_UNITS:
        raise ValueError(f"not a memory size: {text!r} (e.g. 2GB, 1.5GiB)")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).upper()])
