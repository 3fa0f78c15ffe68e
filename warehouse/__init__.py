"""Squiggle warehouse: a DuckDB-backed analytical warehouse for training-dynamics Parquet."""

__version__ = "0.1.0"
