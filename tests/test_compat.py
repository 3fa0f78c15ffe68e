"""The catalog opens in the oldest DuckDB the project supports (1.4), as a BI driver would.

Installs duckdb 1.4.4 from the package index into a throwaway venv cached under
``<repo>/.cache/duckdb-1.4`` (git-ignored), then opens the catalog from that interpreter.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from lake_fixtures import write_part
from warehouse import build_catalog, contracts

pytestmark = pytest.mark.compat

OLD_DUCKDB = "1.4.4"
REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".cache" / "duckdb-1.4"
READY = VENV / ".ready"  # written last: a half-built venv is rebuilt

OLD_CLIENT = """
import json, sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
print(json.dumps({
    "version": duckdb.__version__,
    "counts": {v: con.execute(f'SELECT count(*) FROM "{v}"').fetchone()[0] for v in views},
    "types": {v: [[r[0], r[1]] for r in con.execute(f'DESCRIBE "{v}"').fetchall()] for v in views},
    "uncommented": con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() AND comment IS NULL"
    ).fetchone()[0] + con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE NOT internal AND comment IS NULL"
    ).fetchone()[0],
}))
"""


def old_python() -> Path:
    """The cached venv's interpreter, creating the venv (under a lock) if needed."""
    python = VENV / "bin" / "python"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "duckdb-1.4.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs must not build it twice
        if not READY.exists():
            shutil.rmtree(VENV, ignore_errors=True)
            venv.create(VENV, with_pip=True)
            pip = subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"duckdb=={OLD_DUCKDB}"],
                capture_output=True, text=True, timeout=600,
            )
            if pip.returncode != 0:
                pytest.fail(f"could not install duckdb=={OLD_DUCKDB}:\n{pip.stderr}")
            READY.write_text(OLD_DUCKDB)
    return python


def test_catalog_opens_in_duckdb_1_4(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    expected = {name: 0 for name in contracts.DATASETS}
    for dataset, partition, n in [
        ("runs", {"run_id": "0007"}, 2),
        ("families", {}, 3),
        ("geometry_state", {"analysis_id": "a", "run_id": "0007"}, 4),
        ("probe_summaries", {"analysis_id": "a", "run_id": "0007"}, 1),
        ("signatures", {"analysis_id": "a", "run_id": "0007"}, 5),
    ]:
        write_part(lake, dataset, partition, n)
        expected[dataset] = n
    views = tmp_path / "views"
    views.mkdir()
    (views / "run_seeds.sql").write_text(
        "-- description: Seeds of the runs.\n-- column run_id: The run.\n-- column seed: The seed.\nCREATE VIEW run_seeds AS SELECT run_id, seed FROM runs\n"
    )
    expected["run_seeds"] = 2
    expected["warehouse_latest_analyses"] = 0  # no model has run on this lake
    db = build_catalog(lake, tmp_path / "warehouse.duckdb", views_dir=views)

    result = subprocess.run(
        [str(old_python()), "-c", OLD_CLIENT, str(db)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["version"] == OLD_DUCKDB
    assert seen["counts"] == expected
    for name in contracts.DATASETS:
        assert seen["types"][name] == [[c.name, contracts.duckdb_type(c.type)] for c in contracts.get(name).all_columns]
    assert seen["uncommented"] == 0
