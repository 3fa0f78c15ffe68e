"""The matchers compared by the matching evaluation, all behind one interface.

A matcher takes the training runs, their labels and the test runs, and predicts a label per
test run (``Matcher``): 1-NN, the label of the training run it matches best (None where it
finds no training partner at all, scored as an error). ``available()`` gives those whose
dependencies are installed, in table order. Another version of the warehouse's models is
one more entry: ``warehouse_matcher(sql_dir=..., params=...)``.

- ``sig@1 + match@1`` (``warehouse_matcher``): the real models. Every run, training and
  test, is written to a temporary lake as pooled geometry_state rows of module resid_post,
  its values as eff_rank (the other descriptors NULL), one layer per channel (layer k holds
  channel k, so a multichannel run is a multi-layer run and its run signature concatenates
  the channels, each z-normalised on its own), at the run's own steps, with a runs row each
  (one config_hash), one lake per set. matches and every model it reads from, directly or
  not (events_candidates, geometry_dynamics, probe_summaries, signatures today), run
  through ``warehouse.models.run`` with matches' ``top_k`` at the number of runs, so every
  run keeps every partner of its layout; each test run's trajectory signature of scope
  ``run`` takes the label of its best-ranked (smallest ``rank_a``) training run.
  ``WarehouseMatcher.last`` keeps each model's seconds of the last set.
- ``ED``: Euclidean distance between the runs resampled to a common length and z-normalised
  (``prepare``), plain numpy.
- ``DTW learned band`` and ``DTW 10% band``: dynamic time warping of the same prepared runs,
  aeon's ``dtw_pairwise_distance`` (the ``eval`` extra; multichannel runs: dependent DTW,
  one warping path for all channels; the sum of squared differences along the path) with
  a Sakoe-Chiba band; ``DTWMatcher.last`` keeps the band of the last set. The learned band is the UCR
  archive's "DTW, learned window": the band of ``BANDS`` (0 to 20% of the length) with the
  fewest leave-one-out 1-NN errors on the training runs, the narrowest on a tie.

``prepare``: per run and channel, linear interpolation at ``length`` evenly spaced points of
normalised time (step - first step) / (last - first step), as the warehouse's signatures
read a run, then z-normalisation (population std; a flat channel becomes zeros). ``length``
is the longest run of the set (at most ``MAX_LENGTH``): no run loses detail.
"""

from __future__ import annotations

import glob
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from cpd_eval_detectors import ANALYSIS, DESCRIPTOR, MODULE, SqlDir, runs_table
from frozen_cpd1 import REPO_SQL
from match_eval_sets import Series

Matcher = Callable[[Sequence[Series], Sequence[str], Sequence[Series]], list["str | None"]]
BANDS = tuple(round(0.02 * k, 2) for k in range(11))  # 0, 2%, ..., 20% of the length
MAX_LENGTH = 512


def nearest_labels(distances: np.ndarray, train_labels: Sequence[str]) -> list[str]:
    """1-NN: per row (a test run) the label of the column (a training run) at the smallest
    distance, the first such column on a tie."""
    return [train_labels[int(j)] for j in np.argmin(distances, axis=1)]


def error_rate(predicted: Sequence[str | None], truth: Sequence[str]) -> float:
    """The share of test runs whose predicted label is not their own (None counts as wrong)."""
    if len(predicted) != len(truth) or not truth:
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} test runs")
    return sum(p != t for p, t in zip(predicted, truth)) / len(truth)


# -- the peers -----------------------------------------------------------------------------


def resample(s: Series, length: int) -> np.ndarray:
    """The run's channels at ``length`` evenly spaced points of its normalised time."""
    u = (s.steps - s.steps[0]) / max(s.steps[-1] - s.steps[0], 1)
    grid = np.linspace(0.0, 1.0, length)
    return np.stack([np.interp(grid, u, channel) for channel in s.values])


def znorm(x: np.ndarray) -> np.ndarray:
    """Each row minus its mean over its population std; a row of std below 1e-12 is zeros."""
    std = x.std(axis=-1, keepdims=True)
    return np.where(std < 1e-12, 0.0, (x - x.mean(axis=-1, keepdims=True)) / np.where(std < 1e-12, 1.0, std))


def common_length(runs: Sequence[Series]) -> int:
    return min(max(s.n for s in runs), MAX_LENGTH)


def prepare(runs: Sequence[Series], length: int) -> np.ndarray:
    """The runs as one (runs, channels, length) array: resampled, then z-normalised."""
    return np.stack([znorm(resample(s, length)) for s in runs])


def squared_euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances between every run of ``a`` and of ``b`` (both runs x channels x length)."""
    fa, fb = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return np.maximum((fa**2).sum(1)[:, None] + (fb**2).sum(1)[None, :] - 2 * fa @ fb.T, 0.0)


def euclidean(train: Sequence[Series], train_labels: Sequence[str], test: Sequence[Series]) -> list[str | None]:
    length = common_length([*train, *test])
    return nearest_labels(squared_euclidean(prepare(test, length), prepare(train, length)), train_labels)


def dtw(a: np.ndarray, b: np.ndarray | None, band: float) -> np.ndarray:
    from aeon.distances import dtw_pairwise_distance  # the eval extra

    return dtw_pairwise_distance(a, b, window=band)


def loo_errors(distances: np.ndarray, labels: Sequence[str]) -> int:
    """Leave-one-out 1-NN errors of the training runs among themselves."""
    d = distances.astype(np.float64, copy=True)
    np.fill_diagonal(d, np.inf)
    return sum(p != t for p, t in zip(nearest_labels(d, labels), labels))


def learned_band(train: np.ndarray, labels: Sequence[str], bands: Sequence[float] = BANDS) -> float:
    """The band with the fewest leave-one-out errors on the training runs, the narrowest on a tie."""
    errors = [loo_errors(dtw(train, None, band), labels) for band in bands]
    return bands[int(np.argmin(errors))]


class DTWMatcher:
    """1-NN DTW with a fixed Sakoe-Chiba ``band`` (a fraction of the length), or with the band
    learned per set when ``band`` is None; ``last`` holds the band of the last call."""

    def __init__(self, band: float | None = None) -> None:
        self.band = band
        self.last: dict[str, Any] = {}

    def __call__(self, train: Sequence[Series], train_labels: Sequence[str], test: Sequence[Series]) -> list[str | None]:
        length = common_length([*train, *test])
        a, b = prepare(train, length), prepare(test, length)
        band = self.band if self.band is not None else learned_band(a, train_labels)
        self.last = {"band": band}
        return nearest_labels(dtw(b, a, band), train_labels)


# -- the warehouse's models ------------------------------------------------------------------


def geometry_table(runs: Sequence[Series]) -> pa.Table:
    """The runs as pooled geometry_state rows, run ``eval-<k>`` for the k-th, layer c for channel c."""
    from warehouse.contracts import DESCRIPTORS

    ids, steps, layers, values = [], [], [], []
    for k, s in enumerate(runs):
        ids += [f"eval-{k:05d}"] * (s.n * s.channels)
        steps += [s.steps] * s.channels
        layers += [np.full(s.n, c, np.int32) for c in range(s.channels)]
        values += list(s.values)
    total = len(ids)
    columns: dict[str, Any] = {
        "run_id": ids, "analysis_id": [ANALYSIS] * total,
        "step": np.concatenate(steps).astype(np.int64), "seed": np.zeros(total, np.int64),
        "sample_set": ["eval"] * total, "sample_id": pa.nulls(total, pa.string()),
        "layer": np.concatenate(layers), "module": [MODULE] * total,
        "n_samples": np.full(total, 16, np.int32), "dim": np.full(total, 8, np.int32),
    }
    for d in DESCRIPTORS:
        columns[d] = np.concatenate(values).astype(np.float32) if d == DESCRIPTOR else pa.nulls(total, pa.float32())
    return pa.table(columns)


def upstream(sql_dir: Path, params: Mapping[str, Mapping[str, Any]] | None, model: str = "matches") -> list[str]:
    """``model`` and every model it reads from, directly or not."""
    from warehouse.models import load_project

    project = load_project(sql_dir, params)
    found, todo = set(), [model]
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo += project.parents(name)
    return [n for n in project.order if n in found]


class WarehouseMatcher:
    """1-NN by the warehouse's matches from ``sql_dir`` (the repository's by default; a function
    makes the folder in the run's temporary one) with ``params`` (matches' ``top_k`` defaults
    to the number of runs); ``last`` holds each model's seconds in the last call."""

    def __init__(self, sql_dir: SqlDir = REPO_SQL, params: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.sql_dir, self.params = sql_dir, params
        self.last: dict[str, Any] = {}

    def __call__(self, train: Sequence[Series], train_labels: Sequence[str], test: Sequence[Series]) -> list[str | None]:
        from warehouse import models, writer
        from warehouse.lake import init_lake

        runs = [*train, *test]
        chosen = {m: dict(p) for m, p in (self.params or {}).items()}
        chosen.setdefault("matches", {}).setdefault("top_k", len(runs))
        with tempfile.TemporaryDirectory(prefix="match-eval-") as tmp:
            models_dir = self.sql_dir(Path(tmp) / "sql") if callable(self.sql_dir) else self.sql_dir
            lake = init_lake(Path(tmp) / "lake")
            writer.write("geometry_state", geometry_table(runs), lake=lake)
            writer.write("runs", runs_table(len(runs)), lake=lake)
            results = models.run(lake=lake, sql_dir=models_dir, selected=upstream(models_dir, chosen), params=chosen,
                                 report=lambda _: None)
            best = best_training_partners(lake, len(train))
        self.last = {"model_seconds": {r.plan.name: r.seconds for r in results}}
        return [train_labels[best[k]] if k in best else None for k in range(len(train), len(runs))]


def warehouse_matcher(sql_dir: SqlDir = REPO_SQL, params: Mapping[str, Mapping[str, Any]] | None = None) -> Matcher:
    """The warehouse's models from ``sql_dir`` with ``params`` as a matcher (``WarehouseMatcher``)."""
    return WarehouseMatcher(sql_dir, params)


def _files(lake: Path, name: str) -> str:
    from warehouse import contracts, lake as lk
    from warehouse.scan import select_dataset

    dataset = contracts.DATASETS[name]
    return select_dataset(dataset, [Path(f) for f in sorted(glob.glob(lk.Lake(lake).table(dataset).glob))])


def best_training_partners(lake: Path, n_train: int) -> dict[int, int]:
    """Per run index of a test run (>= n_train): the training run its run-scope trajectory
    signature ranks first among its training partners."""
    import duckdb

    rows = duckdb.sql(f"""
        SELECT m.run_id_a, arg_min(m.run_id_b, m.rank_a)
        FROM ({_files(lake, "matches")}) AS m
        JOIN ({_files(lake, "signatures")}) AS s ON s.signature_id = m.signature_id_a
        WHERE s.kind = 'trajectory' AND s.scope = 'run'
            AND m.run_id_a >= 'eval-{n_train:05d}' AND m.run_id_b < 'eval-{n_train:05d}'
        GROUP BY m.run_id_a
    """).fetchall()
    return {int(a.removeprefix("eval-")): int(b.removeprefix("eval-")) for a, b in rows}


def available() -> dict[str, Matcher]:
    """sig@1 + match@1 and ED, and the DTW peers where aeon is installed."""
    matchers: dict[str, Matcher] = {"sig@1 + match@1": warehouse_matcher(), "ED": euclidean}
    try:
        import aeon  # noqa: F401
    except ImportError:
        return matchers
    return matchers | {"DTW learned band": DTWMatcher(), "DTW 10% band": DTWMatcher(0.1)}
