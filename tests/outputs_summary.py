"""A summary of every model output of a lake that two builds can be compared by, and the two
lakes the engine's outputs are pinned on (the demo lake and a 1M-row scale lake).

The summary is order-free and tolerant only where DuckDB's parallel aggregation may change
the last bits of a float: per dataset and analysis, its rows, an exact digest of its keys
and of every text column, and per numeric column (or list of numbers, element-wise) the
count, sum, sum of absolute values, sum of squares, min and max of its finite values and
the count of the others. The JSON diagnostics of a composite event are compared by their
keys (exactly) and their numbers (as numbers).

Run as a script, it writes the pinned summary with the engine on ``PYTHONPATH``:

    git archive REV | tar -x -C /tmp/before
    cd /tmp/before && PYTHONPATH=/tmp/before python /path/to/tests/outputs_summary.py OUT.json
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import duckdb

MODEL_TARGETS = ("geometry_dynamics", "events_candidates", "events", "probe_events_candidates",
                 "probe_summaries", "signatures", "matches")
SKIPPED = {"created_at_utc", "analysis_id"}  # a build's time; the folder the analysis is in
NUMBER = ("FLOAT", "DOUBLE", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
SCALE_ROWS = 1_000_000
STATS = ("finite", "other", "sum", "sum_abs", "sum_sq", "min", "max")


def build_lakes(folder: Path, repo: Path) -> dict[str, Path]:
    """The demo lake and a scale lake of :data:`SCALE_ROWS` rows, written and built with the
    ``warehouse`` package this interpreter imports (the scale lake by ``repo``'s bench/)."""
    demo, scale = folder / "demo", folder / "scale"
    _run([sys.executable, "-m", "warehouse.cli", "demo", "--lake", str(demo)], folder)
    _run([sys.executable, str(repo / "bench" / "scale_lake.py"), "--rows", str(SCALE_ROWS), "--lake", str(scale)], folder)
    for lake in (demo, scale):
        _run([sys.executable, "-m", "warehouse.cli", "models", "run", "--lake", str(lake)], folder)
    return {"demo": demo, "scale": scale}


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


def summarise(lake: Path) -> dict[str, dict]:
    """Per model dataset, per analysis: its summary (see the module docstring)."""
    con = duckdb.connect()
    out: dict[str, dict] = {}
    for dataset in MODEL_TARGETS:
        out[dataset] = {}
        for folder in sorted((lake / dataset).glob("analysis_id=*")):
            files = sorted(str(f) for f in folder.rglob("*.parquet"))
            if files:
                out[dataset][folder.name.split("=", 1)[1]] = _summarise_files(con, dataset, files)
    return out


def _summarise_files(con: duckdb.DuckDBPyConnection, dataset: str, files: list[str]) -> dict:
    con.execute(f"CREATE OR REPLACE VIEW t AS SELECT * FROM read_parquet({files!r}, hive_partitioning = true)")
    columns = [(name, type_) for name, type_, *_ in con.execute("DESCRIBE t").fetchall() if name not in SKIPPED]
    summary: dict = {"rows": con.execute("SELECT count(*) FROM t").fetchone()[0], "columns": {}}
    for name, type_ in columns:
        summary["columns"][name] = _summarise_column(con, dataset, name, type_)
    return summary


def _summarise_column(con: duckdb.DuckDBPyConnection, dataset: str, name: str, type_: str) -> dict:
    column = f'"{name}"'
    if type_.endswith("[]") and type_[:-2] in NUMBER:
        return _number_stats(con, f"SELECT unnest({column})::DOUBLE AS v FROM t") | {
            "lengths": con.execute(f"SELECT sum(len({column}))::BIGINT FROM t").fetchone()[0]}
    if type_ in NUMBER:
        return _number_stats(con, f"SELECT {column}::DOUBLE AS v FROM t")
    if dataset == "events_candidates" and name.endswith("_json"):
        as_map = f"{column}::JSON::MAP(VARCHAR, DOUBLE)"
        keys = con.execute(f"SELECT sum(hash(map_keys({as_map})))::HUGEINT::VARCHAR FROM t").fetchone()[0]
        return _number_stats(con, f"SELECT unnest(map_values({as_map})) AS v FROM t") | {"keys": keys}
    return {"digest": con.execute(f"SELECT sum(hash({column}))::HUGEINT::VARCHAR FROM t").fetchone()[0]}


def _number_stats(con: duckdb.DuckDBPyConnection, values: str) -> dict:
    row = con.execute(
        "SELECT count(v) FILTER (WHERE isfinite(v)), count(*) FILTER (WHERE v IS NULL OR NOT isfinite(v)),"
        " sum(v) FILTER (WHERE isfinite(v)), sum(abs(v)) FILTER (WHERE isfinite(v)),"
        " sum(v * v) FILTER (WHERE isfinite(v)), min(v) FILTER (WHERE isfinite(v)), max(v) FILTER (WHERE isfinite(v))"
        f" FROM ({values})"
    ).fetchone()
    return dict(zip(STATS, row))


def differences(expected: dict, got: dict, where: str, rel: float = 1e-6) -> list[str]:
    """Where ``got`` differs from ``expected``: counts, digests and keys exactly; sums within
    ``rel`` of the sum of absolute values, min and max within ``rel`` of their size."""
    if not isinstance(expected, dict) or not isinstance(got, dict):
        return [] if _close(expected, got, rel) else [f"{where}: expected {expected!r}, got {got!r}"]
    out = [f"{where}: {key} is missing" for key in expected if key not in got]
    out += [f"{where}: {key} is new" for key in got if key not in expected]
    scale = abs(expected.get("sum_abs") or 0.0)
    for key in expected.keys() & got.keys():
        e, g = expected[key], got[key]
        if key == "sum" and isinstance(e, float) and isinstance(g, float):
            ok = abs(e - g) <= rel * max(scale, abs(e), 1e-12)
            out += [] if ok else [f"{where}.{key}: expected {e!r}, got {g!r}"]
        else:
            out += differences(e, g, f"{where}.{key}", rel)
    return out


def _close(e: object, g: object, rel: float) -> bool:
    if isinstance(e, float) and isinstance(g, float):
        return (math.isnan(e) and math.isnan(g)) or abs(e - g) <= rel * max(abs(e), abs(g), 1e-12)
    return e == g


if __name__ == "__main__":
    import tempfile

    target = Path(sys.argv[1]).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        lakes = build_lakes(Path(tmp), Path.cwd())
        target.write_text(json.dumps({name: summarise(lake) for name, lake in lakes.items()}, indent=1, sort_keys=True))
    print(f"wrote {target}")
