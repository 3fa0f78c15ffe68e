"""Small lakes, copies of ``sql/`` and lake snapshots for the model engine's tests."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import duckdb
import pyarrow as pa

from warehouse import contracts, writer
from warehouse.models.project import ENGINE_COLUMNS, default_sql_dir
from warehouse.scan import select_dataset

REPO = Path(__file__).resolve().parent.parent
REPO_SQL = REPO / "sql"
CLI = Path(sys.executable).parent / "warehouse"
CAPTURE = "capture-v1"
BUILD_LOCK = Path("_meta") / "build.lock"


# -- inputs -------------------------------------------------------------------------------


def geometry_rows(
    run: str,
    steps: Iterable[int],
    *,
    seed: int = 0,
    layers: Iterable[int] = (0, 1),
    samples: Iterable[str | None] = (None, "s0"),
    act_norm: float | None = None,
) -> list[dict[str, Any]]:
    """Deterministic geometry_state rows of one run (pooled and per-sample series)."""
    phase = sum(map(ord, run)) % 7
    out = []
    for step in steps:
        for layer in layers:
            for k, sample in enumerate(samples):
                x = step / 10 + phase + layer + k
                out.append({
                    "run_id": run, "analysis_id": CAPTURE, "step": step, "seed": seed,
                    "sample_set": "eval", "sample_id": sample, "layer": layer, "module": "resid_post",
                    "n_samples": 16, "dim": 8,
                    "eff_rank": 4.0 + math.sin(x), "sv_entropy": 0.6 + 0.05 * math.cos(x),
                    "sparsity": 0.3 + 0.01 * math.sin(2 * x),
                    "principal_angle_prev": None if step == 0 else 0.1 + 0.01 * math.cos(x),
                    "principal_angle_init": 0.02 * x,
                    "act_norm": act_norm if act_norm is not None else 10.0 + math.cos(x / 3),
                })
    return out


def write_runs(lake: Path, runs: Mapping[str, Iterable[int]], **kw: Any) -> None:
    """One geometry_state write per run (analysis capture-v1), and a runs row for each run
    that has none yet (a run without one is a problem ``warehouse check`` reports); the lake
    is created if missing."""
    for i, (run, steps) in enumerate(runs.items()):
        writer.write("geometry_state", geometry_rows(run, steps, seed=i, **kw), lake=lake, create=True)
        if not (lake / "runs" / f"run_id={run}").is_dir():
            writer.write("runs", [run_row(run, seed=i)], lake=lake)


def run_row(run: str, *, seed: int = 0, cohort: str = "cohort-a") -> dict[str, Any]:
    """A completed training run's ``runs`` row."""
    return {"run_id": run, "seed": seed, "run_mode": "train_full", "model_id": "m", "config_json": "{}",
            "config_hash": cohort, "status": "completed", "started_at_utc": "2026-01-01T00:00:00Z"}


# -- sql folders ----------------------------------------------------------------------------


def copy_sql(tmp_path: Path, name: str = "sql") -> Path:
    """A private copy of the engine's default ``sql/`` folder that a test may edit."""
    target = tmp_path / name
    shutil.copytree(default_sql_dir(), target)
    return target


def only_models_sql(target: Path, *keep: str) -> Path:
    """A copy of the repository's ``sql/`` at ``target`` holding only the models ``keep``.

    Every other model's target is then read as producer data, so a test can write the
    inputs of the models it tests by hand.
    """
    shutil.copytree(REPO_SQL, target)
    for path in (target / "models").glob("*.sql"):
        if path.stem not in keep:
            path.unlink()
    lock = json.loads((target / "models.lock").read_text())
    (target / "models.lock").write_text(json.dumps({m: lock[m] for m in keep if m in lock}, indent=2) + "\n")
    return target


def model_path(sql_dir: Path, model: str) -> Path:
    return sql_dir / "models" / f"{model}.sql"


def edit_model(sql_dir: Path, model: str, old: str, new: str, count: int = 1) -> Path:
    """Replace ``old`` by ``new`` in a model file (``old`` must occur exactly ``count`` times)."""
    path = model_path(sql_dir, model)
    text = path.read_text()
    assert text.count(old) == count, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))
    return path


def contract_model(
    sql_dir: Path,
    name: str,
    target: str,
    source: str,
    exprs: Mapping[str, str] | None = None,
    *,
    params: Iterable[str] = (),
    version: str | None = None,
    kind: str = "per_run",
    where: str = "",
) -> Path:
    """Write a lake model selecting every column of ``target``'s contract from ``source``.

    ``exprs`` gives SQL for some columns; every other column is a typed NULL where the
    contract allows it and a valid constant where it does not, except ``run_id``, taken
    from the source.
    """
    exprs = {"run_id": "run_id", **(exprs or {})}
    contract = contracts.get(target)
    select = ",\n    ".join(
        f"{exprs.get(c.name, _filler(c))} AS {c.name}" for c in contract.all_columns if c.name not in ENGINE_COLUMNS
    )
    header = [
        f"-- name: {name}",
        f"-- version: {version or name.replace('_', '') + '@1'}",
        f"-- target: {target}",
        f"-- kind: {kind}",
        *(f"-- param {p}" for p in params),
        f"-- description: a test model writing {target} from {source}.",
    ]
    path = model_path(sql_dir, name)
    path.write_text("\n".join(header) + f"\nSELECT\n    {select}\nFROM {source}\n{where}\n")
    return path


def _filler(column: contracts.Column) -> str:
    """A typed constant the contract accepts for ``column``."""
    if column.nullable:
        value = "NULL"
    elif column.enum:
        value = f"'{column.enum[0]}'"
    elif column.type == pa.string():
        value = "'x'"
    elif pa.types.is_list(column.type):
        value = "[]"
    else:
        value = "0"
    return f"CAST({value} AS {contracts.duckdb_type(column.type)})"


# -- looking at a lake --------------------------------------------------------------------


def snapshot(lake: Path, *, content: bool = False) -> dict[str, tuple]:
    """Every file of the lake (but the build lock) with its mtime and size (and bytes' hash)."""
    out = {}
    for p in sorted(lake.rglob("*")):
        rel = p.relative_to(lake)
        if p.is_dir() or rel == BUILD_LOCK:
            continue
        st = p.stat()
        out[str(rel)] = (st.st_mtime_ns, st.st_size) + ((hashlib.sha256(p.read_bytes()).hexdigest(),) if content else ())
    return out


def changed(before: Mapping[str, tuple], after: Mapping[str, tuple]) -> set[str]:
    """Files added, removed or modified between two snapshots."""
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def visible_files(lake: Path, dataset: str, analysis: str | None = None) -> list[Path]:
    """The Parquet files a reader of ``dataset`` sees (no hidden or temporary names)."""
    base = lake / dataset / (f"analysis_id={analysis}" if analysis else "")
    return sorted(
        p for p in base.rglob("*.parquet")
        if not any(part.startswith(".") for part in p.relative_to(lake).parts)
    )


def row_columns(dataset: str, *, drop: Iterable[str] = ("created_at_utc",)) -> list[str]:
    """The columns of the tuples :func:`read_rows` returns."""
    return [c for c in contracts.get(dataset).column_names if c not in set(drop)]


def read_rows(lake: Path, dataset: str, analysis: str | None = None, *, drop: Iterable[str] = ("created_at_utc",)) -> list[tuple]:
    """Sorted rows of a dataset (or one analysis of it) without the columns in ``drop``."""
    contract = contracts.get(dataset)
    files = visible_files(lake, dataset, analysis)
    cols = ", ".join(f'"{c}"' for c in row_columns(dataset, drop=drop))
    with duckdb.connect() as con:
        return con.execute(f"SELECT {cols} FROM ({select_dataset(contract, files)}) ORDER BY ALL").fetchall()


def output_runs(lake: Path, dataset: str, analysis: str) -> dict[str, list[Path]]:
    """The output files of each run partition of one analysis."""
    base = lake / dataset / f"analysis_id={analysis}"
    return {d.name.split("=", 1)[1]: sorted(d.glob("*.parquet")) for d in sorted(base.glob("run_id=*"))}


def cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess:
    """Run the ``warehouse`` command."""
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=timeout, cwd=kw.pop("cwd", REPO),
        env={**os.environ, **(env or {})}, **kw,
    )
