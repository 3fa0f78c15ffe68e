"""The detectors compared by the change-point evaluation, all behind one interface.

A detector is a function from a list of series to the predicted change indices of each
(``Detector``): the warehouse's models run once over all the series in one lake, the peers
series by series (``per_series`` adapts a function of one series). ``available()`` gives
those whose dependencies are installed, in table order. A warehouse version of the model is
one more entry: ``warehouse_detector(sql_dir=..., params=...)``.

- ``cpd@2`` and ``cpd@1``: the real events_candidates model, as the warehouse runs it:
  cpd@2 from the repository's ``sql/``, cpd@1 from a temporary copy of it in which the
  frozen ``tests/data/models/events_candidates_cpd1.sql`` replaces the model
  (``frozen_cpd1.sql_dir``). Each series is one run's pooled geometry_state series (layer
  0, module resid_post, its values as eff_rank, the other descriptors NULL, so they yield
  no series) in a temporary lake; the model runs through
  ``warehouse.models.run(selected=["events_candidates"])`` with its default parameters,
  and each change_point candidate of that metric gives the capture index of its step.
- ``no change``: reports nothing (the trivial baseline of the paper).
- ruptures peers (the ``eval`` extra), with ruptures' default ``min_size=2`` and ``jump=5``:
  ``PELT l2`` (``Pelt(model="l2")``), ``BinSeg l2`` (``Binseg(model="l2")``), both with the
  BIC-like penalty of ruptures' documentation, ``pen = log(n) * sigma^2 * dim`` (dim 1), sigma
  the noise scale estimated robustly from first differences (1.4826 * MAD(diff) / sqrt 2, the
  same estimate cpd@1 uses); and ``kernel rbf`` (``KernelCPD(kernel="rbf")``, ruptures' C
  implementation of kernel PELT, gamma by ruptures' median heuristic) with ``pen = log(n)``:
  the rbf feature map has unit norm, so a sample costs at most 1 and the BIC form's
  sigma^2 * dim is taken as 1. Binary segmentation with the rbf cost is left out: ruptures
  builds the full n x n Gram matrix for it (800 MB at 10,000 captures).
"""

from __future__ import annotations

import glob
import math
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

import frozen_cpd1
from cpd_eval_series import Series

Detector = Callable[[Sequence[Series]], list[list[int]]]
# a models folder, or a function laying one out in the folder it is given
SqlDir = Path | Callable[[Path], Path]
MODULE, DESCRIPTOR = "resid_post", "eff_rank"
ANALYSIS = "cpd-eval"


def per_series(detect: Callable[[Series], list[int]]) -> Detector:
    """A detector that looks at one series at a time."""
    return lambda series: [sorted(set(detect(s))) for s in series]


def no_change(series: Sequence[Series]) -> list[list[int]]:
    return [[] for _ in series]


# -- the warehouse's model ----------------------------------------------------------------


def geometry_table(series: Sequence[Series]) -> pa.Table:
    """The series as pooled geometry_state rows, run ``eval-<k>`` for the k-th series."""
    from warehouse.contracts import DESCRIPTORS

    runs, steps, values = [], [], []
    for k, s in enumerate(series):
        runs += [f"eval-{k:05d}"] * s.n
        steps.append(s.steps)
        values.append(s.values)
    total = len(runs)
    columns: dict[str, Any] = {
        "run_id": runs, "analysis_id": [ANALYSIS] * total,
        "step": np.concatenate(steps).astype(np.int64), "seed": np.zeros(total, np.int64),
        "sample_set": ["eval"] * total, "sample_id": pa.nulls(total, pa.string()),
        "layer": np.zeros(total, np.int32), "module": [MODULE] * total,
        "n_samples": np.full(total, 16, np.int32), "dim": np.full(total, 8, np.int32),
    }
    for d in DESCRIPTORS:
        columns[d] = np.concatenate(values).astype(np.float32) if d == DESCRIPTOR else pa.nulls(total, pa.float32())
    return pa.table(columns)


def runs_table(count: int) -> list[dict[str, Any]]:
    return [{"run_id": f"eval-{k:05d}", "seed": 0, "run_mode": "train_full", "model_id": "eval",
             "config_json": "{}", "config_hash": "eval", "status": "completed",
             "started_at_utc": "2026-01-01T00:00:00Z"} for k in range(count)]


def warehouse_detector(sql_dir: SqlDir = frozen_cpd1.REPO_SQL,
                       params: Mapping[str, Mapping[str, Any]] | None = None,
                       model: str = "events_candidates") -> Detector:
    """A detector running the warehouse's ``model`` from ``sql_dir`` (default the
    repository's; a function makes the folder in the run's temporary one) on all the
    series at once in a temporary lake."""

    def detect(series: Sequence[Series]) -> list[list[int]]:
        from warehouse import models, writer
        from warehouse.lake import init_lake

        with tempfile.TemporaryDirectory(prefix="cpd-eval-") as tmp:
            models_dir = sql_dir(Path(tmp) / "sql") if callable(sql_dir) else sql_dir
            lake = init_lake(Path(tmp) / "lake")
            writer.write("geometry_state", geometry_table(series), lake=lake)
            writer.write("runs", runs_table(len(series)), lake=lake)
            models.run(lake=lake, sql_dir=models_dir, selected=[model], params=params, report=lambda _: None)
            return read_candidates(lake, series, model)

    return detect


def read_candidates(lake: Path, series: Sequence[Series], model: str = "events_candidates") -> list[list[int]]:
    """The capture index of every change_point candidate on the analysed metric, per series."""
    import duckdb

    from warehouse import contracts, lake as lk
    from warehouse.scan import select_dataset

    dataset = contracts.DATASETS[model]
    # the files, not their glob: a build without any candidate writes none
    source = select_dataset(dataset, [Path(f) for f in sorted(glob.glob(lk.Lake(lake).table(dataset).glob))])
    rows = duckdb.sql(
        f"SELECT run_id, step FROM ({source}) WHERE event_type = 'change_point' AND metric = '{MODULE}.{DESCRIPTOR}'"
    ).fetchall()
    out: list[list[int]] = [[] for _ in series]
    for run, step in rows:
        k = int(run.removeprefix("eval-"))
        index = int(np.searchsorted(series[k].steps, step))
        if index >= series[k].n or series[k].steps[index] != step:
            raise ValueError(f"candidate of run {run} at step {step}: not a step of series {series[k].name}")
        out[k].append(index)
    return [sorted(set(p)) for p in out]


# -- ruptures ---------------------------------------------------------------------------


def noise_scale(values: np.ndarray) -> float:
    """Robust noise standard deviation from first differences (1.4826 * MAD / sqrt 2)."""
    d = np.diff(values)
    if len(d) == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def _ruptures(make: Callable[[Any], Any], penalty: Callable[[np.ndarray], float]) -> Detector:
    def detect(s: Series) -> list[int]:
        import ruptures as rpt

        signal = s.values.reshape(-1, 1).astype(np.float64)
        try:
            breaks = make(rpt).fit(signal).predict(pen=max(penalty(s.values), 1e-12))
        except rpt.exceptions.BadSegmentationParameters:
            return []  # too short for even one split
        return [int(b) for b in breaks if b < s.n]  # the last break is the end, n

    return per_series(detect)


def bic_l2(values: np.ndarray) -> float:
    return math.log(len(values)) * noise_scale(values) ** 2 * 1


def ruptures_detectors() -> dict[str, Detector]:
    return {
        "PELT l2": _ruptures(lambda rpt: rpt.Pelt(model="l2"), bic_l2),
        "BinSeg l2": _ruptures(lambda rpt: rpt.Binseg(model="l2"), bic_l2),
        "kernel rbf": _ruptures(lambda rpt: rpt.KernelCPD(kernel="rbf"), lambda v: math.log(len(v))),
    }


def available() -> dict[str, Detector]:
    """cpd@2, cpd@1, no change, and the ruptures peers where ruptures is installed."""
    detectors: dict[str, Detector] = {"cpd@2": warehouse_detector(), "cpd@1": warehouse_detector(frozen_cpd1.sql_dir),
                                      "no change": no_change}
    try:
        import ruptures  # noqa: F401
    except ImportError:
        return detectors
    return detectors | ruptures_detectors()
