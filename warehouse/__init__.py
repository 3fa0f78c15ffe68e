"""Squiggle warehouse: a DuckDB-backed analytical warehouse for training-dynamics Parquet."""

from .catalog import build_catalog, connect

__version__ = "0.1.0"
__all__ = ["build_catalog", "connect"]
