"""A built demo catalog for the tests of the pictures (report and plot functions)."""

from __future__ import annotations

from pathlib import Path

from warehouse import build_catalog, demo, models


def built_demo(root: Path) -> tuple[Path, Path]:
    """The demo lake with every model built and its catalog: (lake, catalog file)."""
    lake, db = root / "lake", root / "warehouse.duckdb"
    demo.write_demo(lake=lake, seed=0)
    models.run(lake=lake, report=lambda line: None)
    build_catalog(lake=lake, db=db)
    return lake, db
