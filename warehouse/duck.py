"""DuckDB connections for the warehouse's own work (writes and model builds)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb

from .sql import quote_literal


def work_connection(spill: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory connection that spills to ``spill`` and honours the resource settings.

    ``SQUIGGLE_MEMORY_LIMIT`` (e.g. ``2GB``) sets DuckDB's memory_limit and
    ``SQUIGGLE_THREADS`` its threads; unset, DuckDB's defaults apply.
    ``SQUIGGLE_TEMP_DIRECTORY`` moves the spill files out of ``spill`` (see
    :func:`spill_directory`).
    """
    con = duckdb.connect()
    con.execute(f"SET temp_directory = {quote_literal(str(spill_directory(spill)))}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")  # a library must not draw on its caller's stdout
    if os.environ.get("SQUIGGLE_MEMORY_LIMIT"):
        con.execute(f"SET memory_limit = {quote_literal(os.environ['SQUIGGLE_MEMORY_LIMIT'])}")
    if os.environ.get("SQUIGGLE_THREADS"):
        con.execute(f"SET threads = {int(os.environ['SQUIGGLE_THREADS'])}")
    return con


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
