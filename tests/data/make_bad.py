"""Write the hostile-input corpus of ``tests/data/bad/``: files another tool could drop into a lake.

    python tests/data/make_bad.py [--out tests/data/bad]

Every file holds geometry_state rows with every contract column (as a producer's output
would), except where breaking that is the point. ``good.parquet`` (runs r1 and r2) is the
lake the tests start from; ``r3.parquet`` is a valid run to place under hostile folder
names. The hostile files hold run r1 rows, each at steps of its own (1000 on for the first,
2000 on for the next, ...), so that no two share a key, except ``duplicate_keys.parquet``,
which repeats good run r1's keys with other values. ``manifest.json`` lists each file with
what is wrong with it.

The 100 MB string is not stored: :func:`write_huge_string` writes it where a test wants it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
OUT = HERE / "bad"
ANALYSIS = "capture-v1"
CREATED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
GOOD_STEPS = range(0, 100, 10)
DESCRIPTORS = ("eff_rank", "sv_entropy", "sparsity", "principal_angle_prev", "principal_angle_init", "act_norm")
# Identifiers that must never become a path segment or reach SQL as anything but a literal.
HOSTILE_IDS = {
    "dotdot": "../x",
    "slash": "a/b",
    "equals": "a=b",
    "quote": "it's",
    "double_quote": 'a"b',
    "injection": "'; DROP TABLE runs; --",
}
HUGE_CHARS = 100 * 1024 * 1024

SCHEMA = pa.schema(
    [("run_id", pa.string()), ("analysis_id", pa.string()), ("step", pa.int64()), ("seed", pa.int32()),
     ("sample_set", pa.string()), ("sample_id", pa.string()), ("layer", pa.int16()), ("module", pa.string()),
     ("n_samples", pa.int32()), ("dim", pa.int32())]
    + [(d, pa.float32()) for d in DESCRIPTORS]
    + [("schema_version", pa.string()), ("created_at_utc", pa.timestamp("us", tz="UTC"))]
)


def rows(run: str, steps: range, seed: int = 0) -> dict[str, list]:
    """Geometry rows of one run: two layers, a pooled and a per-sample series, smooth values."""
    out: dict[str, list] = {name: [] for name in SCHEMA.names}
    for step in steps:
        for layer in (0, 1):
            for k, sample in enumerate((None, "s0")):
                x = step / 10 + layer + k
                values = {
                    "run_id": run, "analysis_id": ANALYSIS, "step": step, "seed": seed, "sample_set": "eval",
                    "sample_id": sample, "layer": layer, "module": "resid_post", "n_samples": 16, "dim": 8,
                    "eff_rank": 4.0 + math.sin(x), "sv_entropy": 0.6 + 0.05 * math.cos(x),
                    "sparsity": 0.3 + 0.01 * math.sin(2 * x),
                    "principal_angle_prev": None if step == steps.start else 0.1 + 0.01 * math.cos(x),
                    "principal_angle_init": 0.02 * x, "act_norm": 10.0 + math.cos(x / 3),
                    "schema_version": "geometry_state@2.0", "created_at_utc": CREATED,
                }
                for name, value in values.items():
                    out[name].append(value)
    return out


def table(data: dict[str, list], schema: pa.Schema = SCHEMA) -> pa.Table:
    return pa.table({name: data[name] for name in schema.names}, schema=schema)


def steps_of(n: int) -> range:
    """The steps of the n-th hostile file (from 1): ten captures from n * 1000."""
    return range(n * 1000, n * 1000 + 100, 10)


def hostile(n: int, edit: Callable[[dict[str, list]], None] = lambda data: None, schema: pa.Schema = SCHEMA) -> pa.Table:
    """The n-th hostile file's rows of run r1, changed by ``edit``."""
    data = rows("r1", steps_of(n))
    edit(data)
    return table(data, schema)


def parquet_bytes(t: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(t, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _set(column: str, row: int, value) -> Callable[[dict[str, list]], None]:
    def edit(data: dict[str, list]) -> None:
        data[column][row] = value
    return edit


def _fill(column: str, value) -> Callable[[dict[str, list]], None]:
    def edit(data: dict[str, list]) -> None:
        data[column] = [value] * len(data[column])
    return edit


def _without(column: str) -> pa.Schema:
    return pa.schema([f for f in SCHEMA if f.name != column])


def _as_text(column: str) -> Callable[[dict[str, list]], None]:
    def edit(data: dict[str, list]) -> None:
        data[column] = [f"{column}-{v}" for v in data[column]]
    return edit


def _duplicate_keys() -> pa.Table:
    data = rows("r1", GOOD_STEPS)
    data["eff_rank"] = [v + 1.0 for v in data["eff_rank"]]
    return table(data)


def _extra_column(n: int) -> pa.Table:
    t = hostile(n)
    return t.append_column("favourite_colour", pa.array(["teal"] * t.num_rows))


def _runs_injection() -> pa.Table:
    started = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return pa.table({
        "run_id": [HOSTILE_IDS["injection"]], "seed": pa.array([0], pa.int32()), "run_mode": ["train_full"],
        "model_id": ["m"], "config_json": ["{}"], "config_hash": ["c"], "status": ["completed"],
        "started_at_utc": pa.array([started], pa.timestamp("us", tz="UTC")),
    })


def corpus() -> dict[str, tuple[str, str, bytes]]:
    """Every case: name -> (file name, what is wrong with it, bytes)."""
    r1, r2 = rows("r1", GOOD_STEPS), rows("r2", GOOD_STEPS, seed=1)
    good = parquet_bytes(table({k: r1[k] + r2[k] for k in SCHEMA.names}))
    one = parquet_bytes(hostile(1))
    text_step = SCHEMA.set(SCHEMA.get_field_index("step"), pa.field("step", pa.string()))
    cases = {
        "good": ("good.parquet", "valid rows of runs r1 and r2: the lake the tests start from", good),
        "r3": ("r3.parquet", "valid rows of run r3, placed under hostile folder names",
               parquet_bytes(table(rows("r3", GOOD_STEPS, seed=2)))),
        "truncated": ("truncated.parquet", "a valid file cut in half", one[: len(one) // 2]),
        "wrong_magic": ("wrong_magic.parquet", "a valid file whose closing magic bytes PAR1 read PARX",
                        parquet_bytes(hostile(2))[:-4] + b"PARX"),
        "empty": ("empty.parquet", "zero bytes", b""),
        "zero_rows": ("zero_rows.parquet", "a valid schema and no rows", parquet_bytes(SCHEMA.empty_table())),
        "missing_column": ("missing_column.parquet", "no module column (required)",
                           parquet_bytes(hostile(3, schema=_without("module")))),
        "extra_column": ("extra_column.parquet", "an extra column favourite_colour", parquet_bytes(_extra_column(4))),
        "changed_type": ("changed_type.parquet", "step stored as text ('step-5000')",
                         parquet_bytes(hostile(5, _as_text("step"), text_step))),
        "duplicate_keys": ("duplicate_keys.parquet", "run r1's keys of good.parquet again, eff_rank + 1",
                           parquet_bytes(_duplicate_keys())),
        "nan": ("nan.parquet", "eff_rank NaN in row 3", parquet_bytes(hostile(6, _set("eff_rank", 2, float("nan"))))),
        "infinity": ("infinity.parquet", "act_norm +infinity in row 5",
                     parquet_bytes(hostile(7, _set("act_norm", 4, float("inf"))))),
        "misspelled_enum": ("misspelled_enum.parquet", "module 'resid_psot' in row 2",
                            parquet_bytes(hostile(8, _set("module", 1, "resid_psot")))),
        "runs_injection": ("runs_injection.parquet", "a runs row whose run_id is an SQL injection",
                           parquet_bytes(_runs_injection())),
    }
    for n, (name, value) in enumerate(HOSTILE_IDS.items(), start=9):
        cases[f"id_{name}"] = (f"id_{name}.parquet", f"sample_set {value!r} in every row",
                               parquet_bytes(hostile(n, _fill("sample_set", value))))
    return cases


def write_corpus(out: Path = OUT) -> list[Path]:
    """Write every case and the manifest into ``out``; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written, manifest = [], {}
    for case, (name, what, data) in corpus().items():
        (out / name).write_bytes(data)
        written.append(out / name)
        manifest[case] = {"file": name, "what": what}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return written + [out / "manifest.json"]


def write_huge_string(path: Path) -> Path:
    """Hostile rows of run r1 with a 100 MB sample_set in row 1 (a valid Parquet file)."""
    pq.write_table(hostile(99, _set("sample_set", 0, "x" * HUGE_CHARS)), path, compression="zstd")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    for path in write_corpus(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
