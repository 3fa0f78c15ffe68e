"""Open the catalog as a notebook with this environment's DuckDB does; print one JSON result.

Config (JSON on stdin): ``catalog`` (path), ``queries`` (SQL texts), ``block_pytz``
(import fails as if pytz were not installed), ``describe`` (also every object's row count,
column types and the number of objects and columns without a comment).

Every view and table (listed from ``duckdb_views()`` / ``duckdb_tables()``) is read with
``SELECT * ... LIMIT 5`` and ``.fetchall()``; each error is recorded, not raised, so that
one run reports every object that fails.
"""

import importlib.util
import json
import sys

config = json.load(sys.stdin)
has_pytz = importlib.util.find_spec("pytz") is not None
if config.get("block_pytz"):
    sys.modules["pytz"] = None  # `import pytz` now raises ImportError

import duckdb  # noqa: E402


def error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


con = duckdb.connect(config["catalog"], read_only=True)
objects = con.execute(
    "SELECT view_name, 'view' FROM duckdb_views() WHERE NOT internal AND database_name = current_database() "
    "UNION ALL SELECT table_name, 'table' FROM duckdb_tables() WHERE NOT internal AND database_name = current_database() "
    "ORDER BY 1"
).fetchall()
result = {"version": duckdb.__version__, "pytz": has_pytz, "objects": {}, "queries": []}
for name, kind in objects:
    try:
        rows = con.execute(f"SELECT * FROM {q(name)} LIMIT 5").fetchall()
        result["objects"][name] = {"kind": kind, "rows": len(rows)}
    except Exception as exc:  # noqa: BLE001 - reported per object
        result["objects"][name] = {"kind": kind, "error": error(exc)}
for sql in config.get("queries", []):
    try:
        result["queries"].append({"rows": len(con.execute(sql).fetchall())})
    except Exception as exc:  # noqa: BLE001
        result["queries"].append({"error": error(exc)})
if config.get("describe"):
    result["counts"] = {n: con.execute(f"SELECT count(*) FROM {q(n)}").fetchone()[0] for n, _ in objects}
    result["types"] = {n: [[r[0], r[1]] for r in con.execute(f"DESCRIBE {q(n)}").fetchall()] for n, _ in objects}
    result["uncommented"] = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() AND comment IS NULL"
    ).fetchone()[0] + con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE NOT internal AND database_name = current_database() AND comment IS NULL"
    ).fetchone()[0]
print(json.dumps(result))
