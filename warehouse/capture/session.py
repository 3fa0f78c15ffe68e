"""A capture session: the rows of one training run, written to the lake in batches.

    with CaptureSession("run-7", config, model_id="tiny-2l", lake="lake") as session:
        for step in range(steps):
            ...train...
            if step in capture_steps:
                session.log(step, 0, "resid_post", activations, sample_ids=probe_ids)
                session.log_metrics(step, {"accuracy": acc}, split="val")
                session.checkpoint(step, train_loss=loss)

Every call checks its input at once and buffers rows; when rows of a new step arrive and
``flush_every`` steps are buffered, the session flushes them through the lake writer
(:func:`warehouse.write`), which publishes each file atomically. Leaving the ``with``
block flushes what is buffered and writes the run's ``runs`` row with its final status:
``completed``, ``interrupted`` (KeyboardInterrupt, SystemExit) or ``failed`` (any other
exception). Lake rows are immutable, so the runs row is written once, at the end: a
process killed outright (SIGKILL) leaves the steps flushed so far and no runs row.

Per (layer, module) series the session keeps the first and the previous capture's
subspace for the principal angles. Captures are reduced to sketches of at most 64
features (:mod:`.projection`): one capture file per step, indexed in
``probe_captures_index`` with its size and checksum, and optionally ``embeddings`` rows.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import contracts
from .. import lake as lk
from ..errors import CaptureError
from ..hashing import canonical_json, checksum, config_hash
from ..readers import rows_to_table
from ..validate import conform
from ..writer import write
from .descriptors import ANALYSIS_ID, Descriptors, Subspace, descriptors
from .projection import MAX_DIM, Sketcher, array_name, capture_file_bytes

# Facts first, captures before the index that points at them.
FLUSH_ORDER = ("samples", "checkpoints", "metrics_scalar", "geometry_state", "embeddings", "probe_captures_index")
CAPTURE_TYPE = "activations_sketch"
EMBEDDINGS = ("pooled", "samples")  # one vector per capture (mean of the sketches), or one per sample
INT16_MAX = 32767


@dataclass(frozen=True)
class _Series:
    """What a (layer, module) series needs from earlier captures."""

    initial: Subspace
    previous: Subspace
    step: int


class CaptureSession:
    """Turns one run's activations, metrics and checkpoints into lake rows.

    ``config`` is the run's configuration (JSON-serialisable); its ``config_hash``, the
    cohort key, leaves out the top-level ``seed``. The seed is ``config["seed"]`` or the
    ``seed`` argument. All captures use one fixed probe set, ``sample_set``. The other
    keyword arguments fill the run's ``runs`` row, or set how captures are kept:
    ``flush_every`` (steps per write), ``embeddings`` (None, "pooled" or "samples"),
    ``projection_dim`` and ``projection_seed`` (the sketches), ``capture_files``. A session
    starts a run, so it creates the lake if it does not exist yet.
    """

    def __init__(
        self,
        run_id: str,
        config: Mapping[str, Any],
        *,
        model_id: str,
        lake: str | Path | None = None,
        seed: int | None = None,
        sample_set: str = "probe",
        analysis_id: str = ANALYSIS_ID,
        run_mode: str = "train_full",
        family_id: str | None = None,
        probe_name: str | None = None,
        probe_config_hash: str | None = None,
        base_checkpoint: str | None = None,
        code_version: str | None = None,
        notes: str | None = None,
        flush_every: int = 10,
        embeddings: str | None = None,
        projection_dim: int = MAX_DIM,
        projection_seed: int = 0,
        capture_files: bool = True,
    ) -> None:
        self.root = lk.lake_root(lake)
        self.run_id, self.sample_set, self.analysis_id = run_id, sample_set, analysis_id
        self.seed = _seed(config, seed)
        self.flush_every = _positive(flush_every, "flush_every")
        self.embeddings = _choice(embeddings, EMBEDDINGS, "embeddings")
        self.capture_files = capture_files
        self.sketcher = Sketcher(projection_dim, projection_seed)
        self.capture_name = probe_name or sample_set  # probe_captures_index needs a probe name
        self.capture_config_hash = probe_config_hash or config_hash({
            "capture_type": CAPTURE_TYPE, "sample_set": sample_set, "analysis_id": analysis_id,
            "projection_dim": projection_dim, "projection_seed": projection_seed,
        })
        self.started_at = dt.datetime.now(dt.timezone.utc)
        self._run = {
            "run_id": run_id, "seed": self.seed, "run_mode": run_mode, "model_id": model_id,
            "base_checkpoint": base_checkpoint, "family_id": family_id, "probe_name": probe_name,
            "probe_config_hash": probe_config_hash, "config_json": _config_json(config),
            "config_hash": config_hash(config), "code_version": code_version, "notes": notes,
            "started_at_utc": self.started_at,
        }
        self._check_identifiers()
        self._refuse_existing_run()
        lk.init_lake(self.root)  # once the arguments are known good: recording a run may start a lake
        self._clock = time.monotonic()
        self._rows: dict[str, list[dict]] = {name: [] for name in FLUSH_ORDER}
        self._sketches: dict[int, dict[str, np.ndarray]] = {}  # step -> capture file arrays
        self._steps: set[int] = set()  # steps with buffered rows
        self._series: dict[tuple[int, str], _Series] = {}
        self._sample_ids: tuple[str, ...] | None = None
        self._metric_keys: set[tuple] = set()
        self._checkpoint_steps: set[int] = set()
        self._described: set[str] = set()  # sample ids given to samples()
        self._files_per_step: Counter[int] = Counter()
        self.status: str | None = None  # set when the session is closed

    # -- the training loop's calls ------------------------------------------------------

    def log(self, step: int, layer: int, module: str, activations: Any, *, sample_ids: Sequence[str]) -> Descriptors:
        """Compute and buffer the descriptors of one capture (samples x features); return them."""
        self._check_open()
        step, layer = _step(step), _layer(layer)
        where = f"capture at step {step}, layer {layer}, module {module}"
        _choice(module, contracts.MODULES, f"{where}: module")
        ids = self._checked_sample_ids(sample_ids, where)
        x = _as_array(activations)
        if x.ndim == 2 and x.shape[0] != len(ids):
            raise CaptureError(f"{where}: {x.shape[0]} activation rows but {len(ids)} sample_ids")
        series = self._series.get((layer, module))
        if series is not None and step <= series.step:
            raise CaptureError(f"{where}: steps of a series must increase; "
                               f"the previous capture was at step {series.step}")
        previous, initial = (series.previous, series.initial) if series else (None, None)
        d = descriptors(x, previous, initial, step=step, layer=layer, module=module)
        self._start_rows_of(step)
        self._series[(layer, module)] = _Series(d.subspace if initial is None else initial, d.subspace, step)
        self._rows["geometry_state"].append(self._geometry_row(step, layer, module, d))
        if self.capture_files or self.embeddings:
            self._keep_sketch(step, layer, module, self.sketcher(x), self.sketcher.method(d.dim))
        return d

    def log_metrics(
        self, step: int, metrics: Mapping[str, float], *, split: str | None = None, sample_set: str | None = None
    ) -> None:
        """Buffer scalar metrics (``metrics_scalar`` rows) of one step."""
        self._check_open()
        step = _step(step)
        _choice(split, contracts.SPLITS, "split")
        if sample_set is not None:
            lk.check_identifier(sample_set, "sample_set")
        rows = []
        for name, value in metrics.items():
            key = (name, split, sample_set, step)
            if not isinstance(name, str) or not name:
                raise CaptureError(f"metric name must be a non-empty string, not {name!r}")
            if key in self._metric_keys:
                raise CaptureError(f"metric {name} (split {split}, sample_set {sample_set}) "
                                   f"already logged at step {step}")
            rows.append({"run_id": self.run_id, "step": step, "metric_name": name, "split": split,
                         "sample_set": sample_set, "value": _finite(value, f"metric {name} at step {step}")})
        self._start_rows_of(step)
        self._rows["metrics_scalar"] += rows
        self._metric_keys.update((r["metric_name"], split, sample_set, step) for r in rows)

    def checkpoint(
        self,
        step: int,
        *,
        train_loss: float | None = None,
        val_loss: float | None = None,
        tokens_seen: int | None = None,
        checkpoint_path: str | None = None,
        wall_time_s: float | None = None,
    ) -> None:
        """Buffer the ``checkpoints`` row of one step; wall time defaults to the session's age."""
        self._check_open()
        step = _step(step)
        if step in self._checkpoint_steps:
            raise CaptureError(f"checkpoint of step {step} already logged")
        if wall_time_s is None:
            wall_time_s = round(time.monotonic() - self._clock, 6)
        row = {
            "run_id": self.run_id, "step": step, "checkpoint_path": checkpoint_path,
            "train_loss": _optional_finite(train_loss, f"train_loss at step {step}"),
            "val_loss": _optional_finite(val_loss, f"val_loss at step {step}"),
            "tokens_seen": None if tokens_seen is None else _step(tokens_seen),
            "wall_time_s": _finite(wall_time_s, f"wall_time_s at step {step}"),
        }
        self._start_rows_of(step)
        self._rows["checkpoints"].append(row)
        self._checkpoint_steps.add(step)

    def samples(
        self,
        sample_ids: Sequence[str],
        *,
        split: str = "probe",
        texts: Sequence[str] | None = None,
        family_ids: Sequence[str] | None = None,
        payloads: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Buffer the ``samples`` rows describing the probe set (written with the next flush)."""
        self._check_open()
        _choice(split, contracts.SPLITS, "split")
        ids = list(sample_ids)
        for name, values in (("texts", texts), ("family_ids", family_ids), ("payloads", payloads)):
            if values is not None and len(values) != len(ids):
                raise CaptureError(f"samples: {len(values)} {name} for {len(ids)} sample_ids")
        seen = set(self._described)
        for sample_id in ids:
            if sample_id in seen:
                raise CaptureError(f"samples: sample_id {sample_id!r} is described twice")
            seen.add(sample_id)
        rows = [{
            "sample_set": self.sample_set, "sample_id": sample_id, "split": split,
            "text": texts[i] if texts is not None else None,
            "family_id": family_ids[i] if family_ids is not None else None,
            "payload_json": _config_json(payloads[i], "a payload") if payloads is not None else None,
        } for i, sample_id in enumerate(ids)]
        # Checked against the contract now: a bad row would otherwise fail a later flush.
        conform(contracts.SAMPLES, rows_to_table(rows, contracts.SAMPLES), source=f"capture session {self.run_id}")
        self._rows["samples"] += rows
        self._described.update(ids)

    # -- writing -------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every buffered row (and capture file) to the lake now.

        A dataset's buffer is emptied only once its write succeeded, so a failed flush can
        be retried: rows already written are recognised and skipped.
        """
        self._write_capture_files()
        for name in FLUSH_ORDER:
            if self._rows[name]:
                write(name, self._rows[name], lake=self.root, source=f"capture session {self.run_id}")
                self._rows[name] = []
        self._steps.clear()

    def close(self, status: str = "completed") -> None:
        """Flush, then write the run's ``runs`` row with ``status``; later calls do nothing."""
        if self.status is not None:
            return
        _choice(status, contracts.RUN_STATUSES, "status")
        self.flush()
        ended = dt.datetime.now(dt.timezone.utc)
        write("runs", [{**self._run, "status": status, "ended_at_utc": ended}], lake=self.root,
              source=f"capture session {self.run_id}")
        self.status = status

    def __enter__(self) -> CaptureSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.close("completed")
        elif issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            self.close("interrupted")
        else:
            self.close("failed")

    # -- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.status is not None:
            raise CaptureError(f"capture session of run {self.run_id} is closed ({self.status})")

    def _check_identifiers(self) -> None:
        """Refuse a bad runs row (identifiers, enums) now rather than when the run ends."""
        lk.check_identifier(self.run_id, "run_id")
        lk.check_identifier(self.sample_set, "sample_set")
        lk.check_identifier(self.analysis_id, "analysis_id")
        lk.check_identifier(self.capture_name, "probe_name")
        row = {**self._run, "status": "running"}
        conform(contracts.RUNS, rows_to_table([row], contracts.RUNS), source=f"capture session {self.run_id}")

    def _refuse_existing_run(self) -> None:
        """A session starts a run: refuse a run_id that already has rows in this lake."""
        for name in ("runs", *FLUSH_ORDER[1:]):
            contract = contracts.get(name)
            folder = lk.Lake(self.root).table(contract).partition({"run_id": self.run_id, "analysis_id": self.analysis_id})
            if folder.is_dir() and any(not p.name.startswith(".") for p in folder.glob("*.parquet")):
                raise CaptureError(f"run {self.run_id} already has {name} rows in the lake {self.root}; "
                                   "a capture session records a new run: choose another run_id")

    def _checked_sample_ids(self, sample_ids: Sequence[str], where: str) -> tuple[str, ...]:
        """The probe set is fixed: every capture of the session has the same sample ids in the same order."""
        ids = tuple(sample_ids)
        if self._sample_ids is None:
            if not all(isinstance(i, str) and i for i in ids):
                raise CaptureError(f"{where}: sample_ids must be non-empty strings")
            if len(set(ids)) != len(ids):
                dup = next(i for i in ids if ids.count(i) > 1)
                raise CaptureError(f"{where}: sample_id {dup!r} appears more than once")
            self._sample_ids = ids
        elif ids != self._sample_ids:
            raise CaptureError(f"{where}: sample_ids differ from the earlier captures' (the probe set "
                               f"{self.sample_set} is fixed for a session)")
        return ids

    def _start_rows_of(self, step: int) -> None:
        """Flush before buffering a new step once ``flush_every`` steps are buffered."""
        if step not in self._steps and len(self._steps) >= self.flush_every:
            self.flush()
        self._steps.add(step)

    def _geometry_row(self, step: int, layer: int, module: str, d: Descriptors) -> dict:
        return {
            "run_id": self.run_id, "analysis_id": self.analysis_id, "step": step, "seed": self.seed,
            "sample_set": self.sample_set, "sample_id": None, "layer": layer, "module": module,
            "n_samples": d.n_samples, "dim": d.dim, **d.values(),
        }

    def _keep_sketch(self, step: int, layer: int, module: str, sketch: np.ndarray, method: str) -> None:
        if self.capture_files:
            self._sketches.setdefault(step, {})[array_name(layer, module)] = sketch
        if self.embeddings == "pooled":
            vectors, ids = sketch.mean(axis=0, keepdims=True), [None]
        elif self.embeddings == "samples":
            vectors, ids = sketch, list(self._sample_ids or ())
        else:
            return
        for sample_id, vector in zip(ids, vectors):
            self._rows["embeddings"].append({
                "run_id": self.run_id, "step": step, "sample_set": self.sample_set, "sample_id": sample_id,
                "layer": layer, "module": module, "method": method, "dim": len(vector),
                "vector": vector.astype(np.float32).tolist(),
            })

    def _write_capture_files(self) -> None:
        """Write the buffered steps' capture files, then buffer their index rows."""
        files, index = {}, []
        for step, sketches in sorted(self._sketches.items()):
            part = self._files_per_step[step]  # a step flushed half way gets a second file
            shard_id = f"step-{step:06d}" + (f"-{part}" if part else "")
            path = lk.capture_path(self.run_id, self.capture_name, f"{shard_id}.npz")
            files[path] = capture_file_bytes(self._sample_ids or (), sketches)
            index.append({
                "run_id": self.run_id, "probe_name": self.capture_name, "probe_config_hash": self.capture_config_hash,
                "capture_type": CAPTURE_TYPE, "step": step, "shard_id": shard_id, "path": path,
                "bytes": len(files[path]), "checksum": checksum(files[path]),
            })
        lk.refuse_changed_files(self.root, files)
        for path, data in files.items():
            lk.write_bytes_atomic(self.root / path, data)
        self._files_per_step.update(self._sketches.keys())
        self._rows["probe_captures_index"] += index
        self._sketches.clear()


# ---------------------------------------------------------------------------------------
# Checks of single values: each error names the value and what it should be.


def _as_array(activations: Any) -> np.ndarray:
    """A numpy array of ``activations``; a PyTorch tensor (any device, any float type, with
    or without gradients) is detached and copied as float32, without importing torch."""
    if all(hasattr(activations, a) for a in ("detach", "cpu", "float", "numpy")):
        return activations.detach().float().cpu().numpy()
    return np.asarray(activations)


def _seed(config: Mapping[str, Any], seed: int | None) -> int:
    in_config = config.get("seed") if isinstance(config, Mapping) else None
    if seed is not None and in_config is not None and seed != in_config:
        raise CaptureError(f"seed {seed} differs from the config's seed {in_config}")
    value = seed if seed is not None else in_config
    if not _is_int(value) or not -(2**31) <= value < 2**31:
        raise CaptureError(f"the run's seed must be an int32, given as config['seed'] or seed=; got {value!r}")
    return int(value)


def _config_json(config: Mapping[str, Any], what: str = "config") -> str:
    if not isinstance(config, Mapping):
        raise CaptureError(f"{what} must be a mapping, not {type(config).__name__}")
    try:
        return canonical_json(config)
    except (TypeError, ValueError) as exc:
        raise CaptureError(f"{what} must be JSON-serialisable without NaN or infinity: {exc}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _step(value: object) -> int:
    if not _is_int(value) or value < 0:
        raise CaptureError(f"a step (or token count) must be a non-negative integer, not {value!r}")
    return int(value)


def _layer(value: object) -> int:
    if not _is_int(value) or not 0 <= value <= INT16_MAX:
        raise CaptureError(f"a layer must be an integer from 0 to {INT16_MAX}, not {value!r}")
    return int(value)


def _positive(value: object, name: str) -> int:
    if not _is_int(value) or value < 1:
        raise CaptureError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def _choice(value: Any, allowed: tuple[str, ...], name: str) -> Any:
    if value is not None and value not in allowed:
        raise CaptureError(f"{name} {value!r} is not one of {', '.join(allowed)}")
    return value


def _finite(value: object, what: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CaptureError(f"{what} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise CaptureError(f"{what} is {number}: the lake holds finite numbers only")
    return number


def _optional_finite(value: object, what: str) -> float | None:
    return None if value is None else _finite(value, what)
