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

    ``SQUIGGLE_MEMORY_LIMIT`` (e.g. ``2GB``) sets DuckDB's memory_limit and
    ``SQUIGGLE_THREADS`` its threads; unset, DuckDB's defaults apply.
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


def apply_resource_settings(con: duckdb.DuckDBPyConnection) -> None:
    """``SQUIGGLE_MEMORY_LIMIT`` and ``SQUIGGLE_THREADS`` on ``con``: every connection the
    warehouse opens for its own work (writes, builds, checks) stays within them."""
    limit, threads = os.environ.get("SQUIGGLE_MEMORY_LIMIT"), os.environ.get("SQUIGGLE_THREADS")
    if limit:
        try:
            con.execute(f"SET memory_limit = {quote_literal(limit)}")
        except duckdb.Error as exc:
            raise WarehouseError(
                f"SQUIGGLE_MEMORY_LIMIT={limit!r} is not a memory size (e.g. 2GB): {str(exc).splitlines()[0]}"
            ) from None
    if threads:
        if not (threads.isdigit() and int(threads) >= 1):
            raise WarehouseError(f"SQUIGGLE_THREADS={threads!r} is not a number of threads (1 or more)")
        con.execute(f"SET threads = {int(threads)}")


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
