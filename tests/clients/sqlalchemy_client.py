"""Open the catalog through SQLAlchemy and duckdb-engine, as Superset does; print one JSON result.

Config (JSON on stdin) ``mode``:

- ``reflect``: ``url``; reflect every view and table (``get_view_names``,
  ``get_table_names``, ``get_columns`` with comments, ``Table(autoload_with=...)``) and read
  each with ``pandas.read_sql_table``. Errors are recorded per object and step.
- ``pool``: ``url``, ``catalog``, ``engine`` ({"kwargs": create_engine keyword arguments,
  "connections": how many to hold at once, "attach": open each connection as an in-memory
  database that ATTACHes the catalog}). Prints the versions, then answers each ``count``
  line on stdin with the ``geometry_dynamics`` row count seen by every held connection
  (or its error), one JSON line each, until stdin closes. One engine per process: DuckDB
  shares an open database between the connections of a process.
"""

import json
import sys
import warnings

import duckdb
import duckdb_engine
import pandas
import sqlalchemy as sa

warnings.simplefilter("ignore")  # duckdb-engine warns about indexes and list types it does not map
config = json.loads(sys.stdin.readline())  # the first line; in pool mode, commands follow


def error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


def reflect(url: str) -> dict:
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    out = {"views": sorted(inspector.get_view_names()), "tables": sorted(inspector.get_table_names()),
           "columns": {}, "autoload": {}, "read_sql_table": {}, "errors": {}}
    for name in out["views"] + out["tables"]:
        steps = {
            "columns": lambda: [[c["name"], c.get("comment")] for c in sa.inspect(engine).get_columns(name)],
            "autoload": lambda: [c.name for c in sa.Table(name, sa.MetaData(), autoload_with=engine).columns],
            "read_sql_table": lambda: _read_rows(engine, name),
        }
        for step, run in steps.items():
            try:
                out[step][name] = run()
            except Exception as exc:  # noqa: BLE001 - every failing object and step is reported
                out["errors"][f"{step} {name}"] = error(exc)
    return out


def _read_rows(engine: sa.engine.Engine, name: str) -> int:
    with engine.connect() as con:
        return len(pandas.read_sql_table(name, con))


def pool(config: dict) -> None:
    """Answer each ``count`` line on stdin with the row counts seen by the held connections."""
    spec = config["engine"]
    engine = _engine(config, spec)
    for line in sys.stdin:
        if line.strip() != "count":
            raise SystemExit(f"unknown command {line!r}")
        held = [engine.connect() for _ in range(spec.get("connections", 1))]
        counts = []
        for con in held:
            try:
                counts.append(con.execute(sa.text("SELECT count(*) FROM geometry_dynamics")).scalar())
            except Exception as exc:  # noqa: BLE001 - the failure is what some settings show
                counts.append(error(exc))
        for con in held:
            con.close()  # back to the pool, which keeps it open
        print(json.dumps(counts), flush=True)


def _engine(config: dict, spec: dict) -> sa.engine.Engine:
    kwargs = dict(spec.get("kwargs", {}))
    if kwargs.get("poolclass") == "NullPool":
        kwargs["poolclass"] = sa.pool.NullPool
    if spec.get("attach"):
        def attach():
            con = duckdb.connect()  # a database of its own, not shared with other connections
            con.execute("ATTACH '" + config["catalog"].replace("'", "''") + "' AS warehouse (READ_ONLY)")
            con.execute("USE warehouse")
            return duckdb_engine.ConnectionWrapper(con)
        return sa.create_engine("duckdb://", creator=attach, **kwargs)
    return sa.create_engine(config["url"], **kwargs)


versions = {"sqlalchemy": sa.__version__, "duckdb_engine": duckdb_engine.__version__, "duckdb": duckdb.__version__,
            "pandas": pandas.__version__}
if config["mode"] == "reflect":
    print(json.dumps({**versions, **reflect(config["url"])}))
else:
    print(json.dumps(versions), flush=True)
    pool(config)
