"""Squiggle warehouse: a DuckDB-backed analytical warehouse for training-dynamics Parquet.

The Python API mirrors the ``warehouse`` command:

- :func:`write` / :func:`ingest_files`: validate data (rows, columns, Arrow, pandas or
  polars frames; files) against a dataset contract and write it to an existing lake, or
  to a new one with ``create=True`` (``warehouse ingest``, ``warehouse init``);
- :func:`check_lake`: report every problem of a lake (``warehouse check``);
- :func:`build_catalog`: write the DuckDB catalog (``warehouse catalog``);
- :func:`connect`: a read-only DuckDB connection to the catalog, for notebooks;
- :mod:`warehouse.models`: plan and run the SQL models (``warehouse models``);
- :mod:`warehouse.plots`: figures of the catalog for notebooks, and
  :func:`warehouse.report.write_report`, the offline HTML report (``warehouse report``);
- :mod:`warehouse.capture`: descriptors of activations and a capture session that writes
  a training run to the lake.
"""

from importlib import metadata as _metadata

from .catalog import build_catalog, connect
from .check import check_lake
from .writer import ingest_files, write

try:  # the installed package's version; a source tree that was never installed has none
    __version__ = _metadata.version("squiggle-warehouse")
except _metadata.PackageNotFoundError:
    __version__ = "0.1.0"
__all__ = ["build_catalog", "check_lake", "connect", "ingest_files", "write"]
