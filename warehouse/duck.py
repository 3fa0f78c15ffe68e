"""DuckDB connections for the warehouse's own work (writes and model builds)."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from .sql import quote_literal


def work_connection(spill: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory connection that spills to ``spill`` and honours the resource settings.

    ``SQUIGGLE_MEMORY_LIMIT`` (e.g. ``2GB``) sets DuckDB's memory_limit and
    ``SQUIGGLE_THREADS`` its threads; unset, DuckDB's defaults apply.
    """
    con = duckdb.connect()
    con.execute(f"SET temp_directory = {quote_literal(str(spill))}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")  # a library must not draw on its caller's stdout
    if os.environ.get("SQUIGGLE_MEMORY_LIMIT"):
        con.execute(f"SET memory_limit = {quote_literal(os.environ['SQUIGGLE_MEMORY_LIMIT'])}")
    if os.environ.get("SQUIGGLE_THREADS"):
        con.execute(f"SET threads = {int(os.environ['SQUIGGLE_THREADS'])}")
    return con
