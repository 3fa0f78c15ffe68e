"""Summaries of every model output of a lake, to compare two engines' builds by, and the
script that writes the golden file ``tests/data/engine_equality.json``.

Run it with the engine the outputs are compared against on ``PYTHONPATH`` (a pristine
checkout of that commit, not a working tree others edit): it writes the demo lake and a
1M-row scale lake with that engine, builds every model and summarises the outputs.

    git -C REPO worktree add /tmp/eq/before f9664df
    cd /tmp/eq/before && PYTHONPATH=/tmp/eq/before REPO/.venv/bin/python \\
        REPO/tests/engine_equality_golden.py REPO/tests/data/engine_equality.json

A summary is order-free, exact wherever the data is exact, and ties every value to its
row's primary key, so that it catches rows that appear or vanish, values that move to
another row and list elements that change places, not only values that change. Per
dataset and analysis: the row count and a digest of the key tuples; per column its type
and, for

- text, integer, boolean columns and lists of them: a digest of (key, value);
- float columns: a digest of (key, null / nan / inf / finite), and over the finite values
  their count, sum, sum of absolute values, sum of squares, min, max and a sum weighted
  by a pseudo-random weight of the row's key (a value moved to another row changes it);
- lists of floats: a digest of (key, length), and the float statistics above over the
  elements, each weighted by its (key, position);
- JSON text (``*_json``, number maps): a digest of (key, entry, null or not) and the float
  statistics over the numbers, each weighted by its (key, entry).

Digests are ``sum(hash(...))`` as a HUGEINT, exact in any order; only the float sums may
change in their last bits with the order DuckDB adds in.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import duckdb

TARGETS = ("geometry_dynamics", "events_candidates", "events", "probe_events_candidates",
           "probe_summaries", "signatures", "matches")
SCALE_ROWS = 1_000_000
SKIPPED = {"created_at_utc", "analysis_id"}  # the build's time; the folder an analysis is in
FLOATS = {"FLOAT", "DOUBLE"}
REL = 1e-9  # a float statistic's tolerance, relative to its scale (see differences)
WEIGHTS = 1_048_573  # a prime: a row's weight is (hash of its key mod this + 1) / this

Summary = dict[str, dict[str, dict[str, Any]]]  # dataset -> analysis id -> summary


# -- building the lakes with the engine this interpreter imports ------------------------


def build_demo(root: Path) -> Path:
    """The demo lake (seed 0, as ``warehouse demo`` writes it) with every model built."""
    from warehouse import demo, models

    demo.write_demo(lake=root, seed=0)
    models.run(lake=root, report=lambda line: None)
    return root


def build_scale(root: Path, rows: int = SCALE_ROWS) -> Path:
    """A scale lake of about ``rows`` geometry_state rows (bench/scale_lake.py beside the
    ``warehouse`` package) with every model built."""
    import warehouse
    from warehouse import models

    bench = Path(warehouse.__file__).resolve().parents[1] / "bench"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))  # bench/ is a folder of scripts, not a package
    import scale_lake

    scale_lake.write_lake(root, rows=rows)
    models.run(lake=root, report=lambda line: None)
    return root


def primary_keys() -> dict[str, list[str]]:
    """Each model target's primary key, as the imported engine's contracts declare it."""
    from warehouse.contracts import DATASETS

    return {name: list(DATASETS[name].primary_key) for name in TARGETS}


# -- summaries ----------------------------------------------------------------------------


def summarise_lake(root: Path, keys: dict[str, list[str]]) -> Summary:
    """Per model target and per analysis folder of ``root``: its summary (module docstring)."""
    out: Summary = {}
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        for dataset in TARGETS:
            out[dataset] = {}
            for folder in sorted((root / dataset).glob("analysis_id=*")):
                files = sorted(str(f) for f in folder.rglob("*.parquet"))
                out[dataset][folder.name.split("=", 1)[1]] = summarise_files(con, files, keys[dataset])
    return out


def summarise_files(con: duckdb.DuckDBPyConnection, files: list[str], key: list[str]) -> dict[str, Any]:
    """The summary of one analysis: its files read as one table, partition columns included."""
    if not files:
        return {"rows": 0, "keys": None, "columns": {}}
    source = f"read_parquet({files!r}, hive_partitioning = true, hive_types_autocast = false)"
    key_hash = f"hash({', '.join(_q(k) for k in key)})"
    con.execute(f"CREATE OR REPLACE TEMP VIEW t AS SELECT *, {key_hash} AS _k,"
                f" ({key_hash} % {WEIGHTS} + 1)::DOUBLE / {WEIGHTS} AS _w FROM {source}")
    columns = [(n, t) for n, t, *_ in con.execute("DESCRIBE t").fetchall() if n not in SKIPPED | {"_k", "_w"}]
    rows, keys = con.execute("SELECT count(*), sum(_k)::HUGEINT::VARCHAR FROM t").fetchone()
    summary: dict[str, Any] = {"rows": rows, "keys": keys, "columns": {}}
    scalars = [(n, t) for n, t in columns if not _is_list(t) and not _is_json(n, t)]
    summary["columns"] |= _scalar_columns(con, scalars)
    for name, type_ in columns:
        if _is_json(name, type_):
            summary["columns"][name] = _json_column(con, name, type_)
        elif _is_list(type_):
            summary["columns"][name] = _list_column(con, name, type_)
    return summary


def _scalar_columns(con: duckdb.DuckDBPyConnection, columns: list[tuple[str, str]]) -> dict[str, dict]:
    """Every scalar column's statistics in one pass over the table (``geometry_dynamics``
    has thirty float columns and a million rows)."""
    parts: list[tuple[str, str, str, Callable[[Any], Any]]] = []  # column, statistic, SQL, to JSON
    for name, type_ in columns:
        if type_ in FLOATS:
            parts += [(name, stat, sql, conv) for stat, sql, conv in _float_stats(f"{_q(name)}::DOUBLE", "_k", "_w")]
        else:
            parts += [(name, "count", f"count({_q(name)})", int),
                      (name, "digest", f"sum(hash(_k, {_q(name)}))::HUGEINT::VARCHAR", str)]
    out = {name: {"type": type_} for name, type_ in columns}
    if parts:
        values = con.execute(f"SELECT {', '.join(sql for _, _, sql, _ in parts)} FROM t").fetchone()
        for (name, stat, _, conv), value in zip(parts, values):
            out[name][stat] = None if value is None else conv(value)
    return out


def _list_column(con: duckdb.DuckDBPyConnection, name: str, type_: str) -> dict[str, Any]:
    """A list of floats: its lengths and its elements, each tied to its key and position; any
    other list: a digest of (key, list), which keeps the elements' order."""
    if type_[:-2] not in FLOATS:
        sql = f"SELECT count({_q(name)}), sum(hash(_k, {_q(name)}))::HUGEINT::VARCHAR FROM t"
        count, digest = con.execute(sql).fetchone()
        return {"type": type_, "count": count, "digest": digest}
    lengths = con.execute(f"SELECT sum(hash(_k, len({_q(name)})))::HUGEINT::VARCHAR FROM t").fetchone()[0]
    elements = (f"SELECT hash(_k, i) AS k, (hash(_k, i) % {WEIGHTS} + 1)::DOUBLE / {WEIGHTS} AS w, v::DOUBLE AS v"
                f" FROM (SELECT _k, unnest({_q(name)}) AS v, generate_subscripts({_q(name)}, 1) AS i FROM t)")
    return {"type": type_, "lengths": lengths} | _stats_of(con, elements)


def _json_column(con: duckdb.DuckDBPyConnection, name: str, type_: str) -> dict[str, Any]:
    """A JSON map of numbers (the diagnostics of a composite event): its entries tied to the
    row's key exactly, its numbers as floats (their text changes with their last bit)."""
    present = con.execute(f"SELECT sum(hash(_k, {_q(name)} IS NULL))::HUGEINT::VARCHAR FROM t").fetchone()[0]
    entries = (f"SELECT hash(_k, e.key) AS k, (hash(_k, e.key) % {WEIGHTS} + 1)::DOUBLE / {WEIGHTS} AS w,"
               f" e.value::DOUBLE AS v FROM t, json_each(t.{_q(name)}) AS e")
    return {"type": type_, "present": present} | _stats_of(con, entries)


def _stats_of(con: duckdb.DuckDBPyConnection, values: str) -> dict[str, Any]:
    """The float statistics of ``values`` (columns k: key, w: weight, v: value)."""
    stats = _float_stats("v", "k", "w")
    row = con.execute(f"SELECT {', '.join(sql for _, sql, _ in stats)} FROM ({values})").fetchone()
    return {stat: None if value is None else conv(value) for (stat, _, conv), value in zip(stats, row)}


def _float_stats(v: str, k: str, w: str) -> list[tuple[str, str, Callable[[Any], Any]]]:
    """(statistic, SQL aggregate, conversion) of float values ``v`` with keys ``k`` and weights ``w``."""
    finite = f"FILTER (WHERE isfinite({v}))"
    kind = f"CASE WHEN {v} IS NULL THEN 'null' WHEN isfinite({v}) THEN 'finite' ELSE {v}::VARCHAR END"
    return [
        ("shape", f"sum(hash({k}, {kind}))::HUGEINT::VARCHAR", str),  # which rows are null / nan / inf
        ("finite", f"count({v}) {finite}", int),
        ("sum", f"fsum({v}) {finite}", float),
        ("sum_abs", f"fsum(abs({v})) {finite}", float),
        ("sum_sq", f"fsum({v} * {v}) {finite}", float),
        ("min", f"min({v}) {finite}", float),
        ("max", f"max({v}) {finite}", float),
        ("weighted", f"fsum({v} * {w}) {finite}", float),  # a value moved to another row changes it
    ]


def _is_list(type_: str) -> bool:
    return type_.endswith("[]")


def _is_json(name: str, type_: str) -> bool:
    return type_ == "VARCHAR" and name.endswith("_json")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- comparison ---------------------------------------------------------------------------


def differences(expected: Summary, got: Summary, lake: str, rel: float = REL) -> list[str]:
    """Every difference of ``got`` from ``expected``, each naming lake / dataset / analysis
    / column: ids, counts, types and digests exactly; float statistics within ``rel`` of
    their scale (a sum's: the sum of absolute values; the others': their own size)."""
    out: list[str] = []
    for dataset in sorted(expected.keys() | got.keys()):
        want, have = expected.get(dataset, {}), got.get(dataset, {})
        if sorted(want) != sorted(have):
            out.append(f"{lake} / {dataset}: analysis ids {sorted(have)}, expected {sorted(want)}")
        for analysis in sorted(want.keys() & have.keys()):
            out += _analysis_differences(want[analysis], have[analysis], f"{lake} / {dataset} / {analysis}", rel)
    return out


def _analysis_differences(want: dict, have: dict, where: str, rel: float) -> list[str]:
    out = [f"{where}: {field} {have[field]!r}, expected {want[field]!r}"
           for field in ("rows", "keys") if want[field] != have[field]]
    columns_want, columns_have = want["columns"], have["columns"]
    out += [f"{where} / {c}: column missing" for c in sorted(columns_want.keys() - columns_have.keys())]
    out += [f"{where} / {c}: column not expected" for c in sorted(columns_have.keys() - columns_want.keys())]
    for column in sorted(columns_want.keys() & columns_have.keys()):
        out += _column_differences(columns_want[column], columns_have[column], f"{where} / {column}", rel)
    return out


def _column_differences(want: dict, have: dict, where: str, rel: float) -> list[str]:
    out = []
    for stat in sorted(want.keys() | have.keys()):
        e, g = want.get(stat), have.get(stat)
        if isinstance(e, float) and isinstance(g, float):
            scale = max(abs(e), abs(want.get("sum_abs") or 0.0)) if stat in ("sum", "weighted") else abs(e)
            if abs(e - g) > rel * scale:
                out.append(f"{where}: {stat} {g!r}, expected {e!r} (tolerance {rel:g} of {scale!r})")
        elif e != g:
            out.append(f"{where}: {stat} {g!r}, expected {e!r}")
    return out


# -- the golden file ----------------------------------------------------------------------


def write_golden(target: Path) -> None:
    """Build both lakes with the imported engine and write their summaries to ``target``."""
    keys = primary_keys()
    with tempfile.TemporaryDirectory() as tmp:
        lakes = {"demo": build_demo(Path(tmp) / "demo"), "scale": build_scale(Path(tmp) / "scale")}
        summaries = {name: summarise_lake(root, keys) for name, root in lakes.items()}
    target.write_text(json.dumps({"primary_keys": keys, "lakes": summaries}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    import warehouse

    print(f"engine: {Path(warehouse.__file__).parent}")
    write_golden(Path(sys.argv[1]).resolve())
    print(f"wrote {sys.argv[1]}")
