"""DuckDB connections for the warehouse's own work (writes and model builds)."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from .errors import WarehouseError
from .sql import quote_literal


def work_connection(spill: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory connection that spills to ``spill`` and honours the resource settings.

    ``SQUIGGLE_MEMORY_LIMIT`` (e.g. ``2GB``) sets DuckDB's memory_limit and
    ``SQUIGGLE_THREADS`` its threads; unset, DuckDB's defaults apply.
    """
    con = duckdb.connect()
    try:
        con.execute(f"SET temp_directory = {quote_literal(str(spill))}")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")  # a library must not draw on its caller's stdout
        _resource_settings(con)
    except BaseException:
        con.close()
        raise
    return con


def _resource_settings(con: duckdb.DuckDBPyConnection) -> None:
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
