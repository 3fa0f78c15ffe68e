"""A deterministic demo lake with planted geometry changes and planted probe-family effects.

``write_demo(lake, seed)`` writes every fact dataset plus geometry_state for
3 cohorts x 3 seeds of training runs and 6 probe families x 3 seeds of probe micro-finetune
runs, and saves the planted truth beside the lake under ``_meta/demo/``:

- ``planted_events.parquet``: level shifts on chosen (run, layer, ``<module>.<descriptor>``)
  series of the training runs; the planted step is the first capture at the new level.
- ``planted_families.parquet``: each probe family's post-minus-pre effect and the DIS rank
  that effect should earn.

Geometry is simulated in units of each series' noise sigma, then mapped to descriptor units.
Why the shapes are what they are: design.md's cpd@1 detector compares the medians of two
windows of 5 captures with the first-difference noise of the whole series, so any trend
whose change over 5 captures approaches that noise fires. Trends are therefore bounded in
slope per capture (``TREND_SLOPE``), the init state differs only at capture 0 (one outlier
never moves a median of 5), and planted shifts are 9-14 sigma.

Same seed, same bytes: every random draw comes from a generator keyed by (seed, names), and
every timestamp is fixed.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import contracts
from . import lake as lk
from .capture.descriptors import ANALYSIS_ID  # the demo's geometry stands for the capture library's
from .contracts import DESCRIPTORS
from .errors import WarehouseError
from .hashing import canonical_json, checksum, config_hash
from .lake import CAPTURES_DIR, META_DIR, lake_root

CREATED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
SAMPLE_SET = "fixed_v1"
PROBE_NAME = "math_probe"
N_LAYERS = 6
MODULES = ("resid_pre", "attn_out", "mlp_out", "resid_post")
SEEDS = (0, 1, 2)
N_CAPTURES = 64
MAX_STEP = 20_000
TOKENS = 32  # tokens per sample in a capture: a per-sample matrix has 32 rows
N_TRACKED = 8  # samples with per-sample geometry rows (s000..s007)
N_SAMPLES = 24  # samples of fixed_v1 (4 per family)
PROBE_STEPS = np.array([0, 2, 4, 6, 8, 10, 12, 14, 17, 20, 24, 28, 33, 38, 44, 50, 57, 64, 72, 80, 100, 125, 160, 200], dtype=np.int64)
BATCH, SEQ_LEN = 64, 256

TREND_SLOPE = 0.07  # largest trend change between consecutive captures, in noise sigmas
SHIFT_SIGMA = (9.0, 14.0)  # planted level shifts, in noise sigmas
SPIKE_SIGMA = 8.0  # one-capture spike of principal_angle_prev at a planted reorganisation
WINDOW = 5  # cpd@1's w: planted indices keep this distance from the ends

D = {name: i for i, name in enumerate(DESCRIPTORS)}
M = {name: i for i, name in enumerate(MODULES)}


@dataclass(frozen=True)
class Plant:
    """A level shift planted on ``metrics`` (``<module>.<descriptor>``) at ``layers``."""

    metrics: tuple[str, ...]
    layers: tuple[int, ...]
    index: int  # capture index of the first capture at the new level (before per-run jitter)
    sign: int


@dataclass(frozen=True)
class Cohort:
    cohort: str
    lr: float
    width: int
    shape: str  # trend shape shared by the cohort's series
    loss_floor: float
    plants: tuple[Plant, ...]
    jump: int  # the plant whose step the val_accuracy jump (and a loss drop) follows


COHORTS = (
    Cohort("c1", 3e-3, 128, "saturating", 2.05, (
        Plant(("resid_post.eff_rank", "resid_post.sv_entropy"), (2, 3, 4), 10, -1),
        Plant(("mlp_out.sparsity",), (3, 4, 5), 22, +1),
        Plant(("attn_out.principal_angle_init",), (0, 1, 2, 3), 34, +1),
        Plant(("resid_post.act_norm",), (4, 5), 47, +1),
    ), jump=0),
    Cohort("c2", 1e-3, 192, "bump", 2.15, (
        Plant(("attn_out.sv_entropy",), (0, 1), 16, -1),
        Plant(("resid_post.eff_rank", "resid_post.sv_entropy"), (1, 2, 3), 28, -1),
        Plant(("mlp_out.act_norm",), (2, 3, 4), 41, +1),
        Plant(("resid_pre.sparsity",), (4, 5), 53, +1),
    ), jump=1),
    Cohort("c3", 3e-4, 256, "late_sigmoid", 2.35, (
        Plant(("mlp_out.eff_rank",), (0, 1, 2), 20, +1),
        Plant(("resid_post.sv_entropy",), (3, 4, 5), 32, -1),
        Plant(("resid_pre.principal_angle_init",), (1, 2, 3), 44, +1),
        Plant(("attn_out.sparsity",), (0, 1), 56, -1),
    ), jump=2),
)


@dataclass(frozen=True)
class Family:
    family_id: str
    effect: float  # post-minus-pre shift of each planted descriptor, in noise sigmas
    layer: int
    tags: tuple[str, ...]
    template: str


# Each family moves the four A descriptors of resid_post at its own layer (a specialisation:
# rank and entropy fall, sparsity and the angle to the base model rise), so the families'
# DIS signatures point in different directions (dis@1's novelty) and their order follows
# the effect sizes alone (magnitude and coherence).
SPECIALISE = {"eff_rank": -1.0, "sv_entropy": -1.0, "sparsity": 1.0, "principal_angle_init": 0.7}
FAMILIES = (
    Family("algebra-lin", 32.0, 4, ("math", "algebra"), "Solve for x: {a}x + {b} = {c}."),
    Family("arith-add", 5.5, 0, ("math", "arithmetic"), "What is {a} + {b}?"),
    Family("arith-mul", 18.0, 1, ("math", "arithmetic"), "What is {a} * {b}?"),
    Family("fractions", 56.0, 5, ("math", "fractions"), "Simplify {a}/{c}."),
    Family("geometry-area", 10.0, 2, ("math", "geometry"), "A rectangle is {a} by {b}. What is its area?"),
    Family("word-problems", 2.0, 3, ("math", "word"), "Sam has {a} apples and buys {b} more. How many now?"),
)

PROBE_CONFIG = {
    "probe_name": PROBE_NAME,
    "sample_set": SAMPLE_SET,
    "optimizer": {"name": "adamw", "lr": 1e-4, "weight_decay": 0.0},
    "steps": int(PROBE_STEPS[-1]),
    "capture_steps": PROBE_STEPS.tolist(),
    "batch_size": 8,
}


# ---------------------------------------------------------------------------------------
# Randomness and small helpers


def _rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator keyed by the demo seed and names: adding a draw elsewhere moves nothing here."""
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in keys)])


def _run_id(cohort: str, seed: int) -> str:
    return f"{cohort}-s{seed}"


def _probe_run_id(family_id: str, seed: int) -> str:
    return f"p-{family_id}-s{seed}"


def _sample_ids(n: int = N_SAMPLES) -> list[str]:
    return [f"s{i:03d}" for i in range(n)]


def _ts(hours: float) -> dt.datetime:
    return CREATED_AT + dt.timedelta(hours=hours)


def _table(dataset: str, columns: dict[str, object], n: int) -> pa.Table:
    """A table with exactly ``dataset``'s contract schema; scalars are repeated, NaN is NULL."""
    contract = contracts.get(dataset)
    defaults = {"schema_version": contract.schema_version, "created_at_utc": CREATED_AT}
    arrays = []
    for f in contract.schema:
        value = columns.get(f.name, defaults.get(f.name))
        arrays.append(_array(value, f.type, n))
    return pa.Table.from_arrays(arrays, schema=contract.schema)


def _array(value: object, type_: pa.DataType, n: int) -> pa.Array:
    if isinstance(value, pa.Array):
        return value.cast(type_)
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            value = value.astype(type_.to_pandas_dtype()) if pa.types.is_floating(type_) else value
            return pa.array(value, type_, mask=np.isnan(value))
        return pa.array(value, type_)
    if isinstance(value, list):
        return pa.array(value, type_)
    return pa.array([value] * n, type_)


def _take(values: list, index: np.ndarray) -> pa.Array:
    """``values[index]`` as an Arrow array, without a Python loop over the rows."""
    return pa.array(values, pa.string()).take(pa.array(index))


# ---------------------------------------------------------------------------------------
# Capture grids and trend shapes


def capture_grid(rng: np.random.Generator, n: int = N_CAPTURES, max_step: int = MAX_STEP) -> np.ndarray:
    """Irregular capture steps from 0 to ``max_step``: denser early, each gap jittered +-25%."""
    base = max_step * (np.arange(n) / (n - 1)) ** 1.7
    steps = np.concatenate([[0.0], np.cumsum(np.diff(base) * rng.uniform(0.75, 1.25, n - 1))])
    steps = np.round(steps * max_step / steps[-1]).astype(np.int64)
    # Strictly increasing even if rounding made two steps equal.
    return np.maximum.accumulate(steps - np.arange(n)) + np.arange(n)


def trend_shape(name: str, n: int) -> np.ndarray:
    """A trend over capture positions, scaled so its largest change per capture is 1."""
    s = np.linspace(0.0, 1.0, n)
    shapes = {
        "linear": s,
        "saturating": 1 - np.exp(-s / 0.45),
        "bump": np.sin(np.pi * s),
        "late_sigmoid": 1 / (1 + np.exp(-(s - 0.6) / 0.12)),
    }
    y = shapes[name]
    return y / np.abs(np.diff(y)).max()


# ---------------------------------------------------------------------------------------
# Descriptor levels and noise (descriptor units), per (layer, module, descriptor)


def _levels(width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled levels and noise sigmas of the six descriptors, shape (layer, module, 6)."""
    layer = np.arange(N_LAYERS)[:, None]
    ones = np.ones((N_LAYERS, len(MODULES)))
    rank_frac = np.array([0.28, 0.22, 0.18, 0.26]) * (1 - 0.05 * layer)
    norm = np.sqrt(width) * np.array([0.6, 0.35, 0.5, 0.75]) * (1 + 0.35 * layer)
    level = np.stack([
        width * rank_frac,
        (0.78 - np.array([0.0, 0.03, 0.05, 0.01]) - 0.01 * layer) * ones,
        (np.array([0.30, 0.36, 0.55, 0.32]) + 0.01 * layer) * ones,
        (0.12 + 0.02 * layer) * ones,
        (0.35 + 0.05 * layer) * ones,
        norm,
    ], axis=-1)
    sigma = np.stack([
        0.01 * level[..., 0], 0.004 * ones, 0.004 * ones, 0.008 * ones, 0.012 * ones, 0.012 * level[..., 5],
    ], axis=-1)
    return level, sigma


def _sample_levels(level: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample levels and sigmas, shape (layer, module, sample, 6): a 32-token matrix has a
    lower rank, larger angles and its own offsets."""
    lv = level[:, :, None, :].repeat(N_TRACKED, axis=2).copy()
    sd = sigma[:, :, None, :].repeat(N_TRACKED, axis=2) * 1.5
    lv[..., 0] = 8 + 0.15 * lv[..., 0]
    sd[..., 0] = 0.3
    lv[..., 3:5] *= 1.6
    lv += rng.normal(0, 4, lv.shape) * sd
    return lv, sd


def _clip(values: np.ndarray, dim: int, n: int) -> np.ndarray:
    """Keep every descriptor in its valid range (a safety net: the levels stay well inside)."""
    lo = np.array([1.0, 1e-3, 0.0, 0.0, 0.0, 1e-3])
    hi = np.array([min(dim, n - 1), 1.0, 1.0, np.pi / 2, np.pi / 2, np.inf])
    return np.clip(values, lo, hi)


# ---------------------------------------------------------------------------------------
# Training runs


@dataclass
class _Run:
    """One simulated run: its steps and geometry in descriptor units."""

    run_id: str
    seed: int
    steps: np.ndarray
    pooled: np.ndarray  # (capture, layer, module, 6)
    per_sample: np.ndarray | None  # (capture, layer, module, sample, 6)
    dim: int
    events: list[dict] = field(default_factory=list)
    jump_index: int = 0


def _trend_amplitudes(cohort: Cohort, rng: np.random.Generator) -> np.ndarray:
    """Signed trend amplitudes (noise sigmas, per unit of ``trend_shape``), cohort-wide."""
    amp = TREND_SLOPE * rng.uniform(0.6, 1.0, (N_LAYERS, len(MODULES), len(DESCRIPTORS)))
    sign = rng.choice([-1.0, 1.0], amp.shape)
    sign[..., D["principal_angle_init"]] = 1.0  # subspaces drift away from init
    sign[..., D["principal_angle_prev"]] = -1.0  # and settle as learning slows
    return amp * sign


def _plant_sizes(cohort: Cohort, rng: np.random.Generator) -> list[np.ndarray]:
    """Shift sizes (noise sigmas) per plant, shape (layers, metrics), cohort-wide."""
    return [p.sign * rng.uniform(*SHIFT_SIGMA, (len(p.layers), len(p.metrics))) for p in cohort.plants]


def simulate_training_run(cohort: Cohort, seed: int, demo_seed: int) -> _Run:
    """Geometry of one training run: trend + init outlier + planted shifts + noise."""
    crng, rng = _rng(demo_seed, "cohort", cohort.cohort), _rng(demo_seed, "run", cohort.cohort, seed)
    amp, sizes = _trend_amplitudes(cohort, crng), _plant_sizes(cohort, crng)
    n, run_id = N_CAPTURES, _run_id(cohort.cohort, seed)
    steps = capture_grid(rng)
    shape = trend_shape(cohort.shape, n)
    monotone = trend_shape("linear" if cohort.shape == "bump" else cohort.shape, n)
    signal = amp[None] * shape[:, None, None, None]
    for d in ("principal_angle_init", "principal_angle_prev"):
        signal[..., D[d]] = amp[None, ..., D[d]] * monotone[:, None, None]
    # The init state (capture 0, step 0) is more isotropic, denser and smaller.
    signal[0] += rng.uniform(15, 30, signal.shape[1:]) * np.array([1, 1, -1, 0, 0, -1])
    level, sigma = _levels(cohort.width)
    cohort_id = config_hash(training_config(cohort, seed))
    events, jump_index = _plant(cohort, cohort_id, run_id, sizes, signal, steps, sigma, rng)
    slevel, ssigma = _sample_levels(level, sigma, rng)
    pooled = level + sigma * (signal + rng.normal(0, 1, signal.shape))
    per_sample = slevel + ssigma * (signal[:, :, :, None, :] + rng.normal(0, 1, (n, *slevel.shape)))
    for d, dim_n in ((pooled, N_SAMPLES * TOKENS), (per_sample, TOKENS)):
        d[:] = _clip(d, cohort.width, dim_n)
        d[0, ..., D["principal_angle_prev"]] = np.nan  # no previous capture
        d[0, ..., D["principal_angle_init"]] = 0.0  # the first capture is the init reference
    return _Run(run_id, seed, steps, pooled, per_sample, cohort.width, events, jump_index)


def _plant(
    cohort: Cohort, cohort_id: str, run_id: str, sizes: list[np.ndarray], signal: np.ndarray,
    steps: np.ndarray, sigma: np.ndarray, rng: np.random.Generator,
) -> tuple[list[dict], int]:
    """Add the cohort's level shifts (per-run jitter 0-1 capture, size +-8%) to ``signal``;
    return the planted events (sizes in descriptor units of the pooled series) and the
    capture index of the val_accuracy jump."""
    events, jump_index = [], 0
    for p_i, (plant, size) in enumerate(zip(cohort.plants, sizes)):
        k = plant.index + int(rng.integers(0, 2))
        assert WINDOW <= k <= N_CAPTURES - WINDOW, plant
        jump_index = k if p_i == cohort.jump else jump_index
        for l_i, layer in enumerate(plant.layers):
            for m_i, metric in enumerate(plant.metrics):
                module, descriptor = metric.split(".")
                z = size[l_i, m_i] * rng.uniform(0.92, 1.08)
                signal[k:, layer, M[module], D[descriptor]] += z
                events.append(dict(run_id=run_id, cohort_id=cohort_id, layer=layer, metric=metric, step=int(steps[k]),
                                   capture_index=k, size=float(z * sigma[layer, M[module], D[descriptor]])))
            # A reorganisation also shows as a one-capture jump of the angle to the previous capture.
            signal[k, layer, M[plant.metrics[0].split(".")[0]], D["principal_angle_prev"]] += SPIKE_SIGMA
    return events, jump_index


# ---------------------------------------------------------------------------------------
# Probe micro-finetune runs


def simulate_probe_run(family: Family, seed: int, demo_seed: int) -> _Run:
    """Geometry of one probe run: small drift + noise, plus the family's effect on resid_post."""
    rng = _rng(demo_seed, "probe", family.family_id, seed)
    n, width = len(PROBE_STEPS), COHORTS[0].width
    drift = _rng(demo_seed, "probe-drift").uniform(-1, 1, (N_LAYERS, len(MODULES), len(DESCRIPTORS)))
    signal = drift[None] * np.linspace(0, 1, n)[:, None, None, None]
    # Fine-tuning moves fast at first, then settles: a saturating ramp from pre to post.
    ramp = 1 - np.exp(-PROBE_STEPS / 60.0)
    ramp /= ramp[-1]
    for d, sign in SPECIALISE.items():
        signal[:, family.layer, M["resid_post"], D[d]] += sign * family.effect * ramp
    level, sigma = _levels(width)
    pooled = _clip(level + sigma * (signal + rng.normal(0, 1, signal.shape)), width, N_SAMPLES * TOKENS)
    pooled[0, ..., D["principal_angle_prev"]] = np.nan
    pooled[0, ..., D["principal_angle_init"]] = 0.0
    return _Run(_probe_run_id(family.family_id, seed), seed, PROBE_STEPS.copy(), pooled, None, width)


# ---------------------------------------------------------------------------------------
# Tables


def geometry_table(run: _Run) -> pa.Table:
    """geometry_state rows of a run: pooled rows (sample_id NULL) and per-sample rows."""
    parts = [_geometry_part(run, run.pooled, None)]
    if run.per_sample is not None:
        parts.append(_geometry_part(run, run.per_sample, N_TRACKED))
    return pa.concat_tables(parts)


def _geometry_part(run: _Run, values: np.ndarray, n_tracked: int | None) -> pa.Table:
    shape = values.shape[:-1]
    idx = np.indices(shape).reshape(len(shape), -1)
    n = idx.shape[1]
    if n_tracked is None:
        sample_id, n_rows = pa.nulls(n, pa.string()), N_SAMPLES * TOKENS
    else:
        sample_id, n_rows = _take(_sample_ids(n_tracked), idx[3]), TOKENS
    cols = {
        "run_id": run.run_id, "analysis_id": ANALYSIS_ID, "step": run.steps[idx[0]], "seed": run.seed,
        "sample_set": SAMPLE_SET, "sample_id": sample_id, "layer": idx[1].astype(np.int16),
        "module": _take(list(MODULES), idx[2]), "n_samples": n_rows, "dim": run.dim,
    }
    flat = values.reshape(n, len(DESCRIPTORS))
    cols.update({d: flat[:, i] for i, d in enumerate(DESCRIPTORS)})
    return _table("geometry_state", cols, n)


def training_config(cohort: Cohort, seed: int) -> dict:
    return {
        "model": {"arch": "gpt2-tiny", "n_layers": N_LAYERS, "d_model": cohort.width, "n_heads": 4,
                  "vocab_size": 50257},
        "optimizer": {"name": "adamw", "lr": cohort.lr, "betas": [0.9, 0.95], "weight_decay": 0.1,
                      "warmup_steps": 200},
        "data": {"dataset": "tinystories-math-mix", "seq_len": SEQ_LEN, "batch_size": BATCH},
        "max_steps": MAX_STEP,
        "capture": {"analysis_id": ANALYSIS_ID, "sample_set": SAMPLE_SET, "layers": list(range(N_LAYERS)),
                    "modules": list(MODULES)},
        "seed": seed,
    }


def _probe_config(family: Family, seed: int) -> dict:
    return {"base_checkpoint": _base_checkpoint(), "family_id": family.family_id, "probe": PROBE_CONFIG, "seed": seed}


def _base_checkpoint() -> str:
    return f"{_run_id(COHORTS[0].cohort, 0)}/step-{MAX_STEP:06d}"


def _model_id(width: int) -> str:
    return f"squiggle-tiny-{N_LAYERS}l-d{width}"


def _losses(cohort: Cohort, run: _Run, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Noisy decreasing losses, the accuracy with its jump, tokens and wall time per capture."""
    steps, n = run.steps.astype(float), len(run.steps)
    after = (np.arange(n) >= run.jump_index).astype(float)
    s = np.linspace(0, 1, n)
    tau = 2e-4 / cohort.lr * 400
    train = cohort.loss_floor + (10.8 - cohort.loss_floor) * (1 + steps / tau) ** -0.7 - 0.15 * after
    train = train * (1 + rng.normal(0, 0.01, n))
    val = train + 0.04 + 0.06 * s + rng.normal(0, 0.01, n)
    acc = 0.12 + 0.2 * (1 - np.exp(-s / 0.3)) + 0.35 * after + rng.normal(0, 0.01, n)
    sec_per_step = 0.02 * cohort.width / 128
    wall = np.cumsum(np.diff(steps, prepend=0) * sec_per_step * rng.uniform(0.9, 1.1, n) + 4.0)
    return {"train": train, "val": val, "acc": np.clip(acc, 0, 1), "wall": wall}


def training_tables(demo_seed: int) -> tuple[dict[str, list[pa.Table]], list[dict]]:
    """runs, checkpoints, metrics_scalar, geometry_state, attention_summary and embeddings
    of the training runs, and the planted events."""
    out: dict[str, list[pa.Table]] = {}
    planted: list[dict] = []
    for c_i, cohort in enumerate(COHORTS):
        for seed in SEEDS:
            run = simulate_training_run(cohort, seed, demo_seed)
            planted += run.events
            for name, table in _training_run_tables(cohort, run, _ts(24 * c_i + 2 * seed), demo_seed).items():
                _add(out, name, table)
    return out, planted


def training_run_row(cohort: Cohort, run: _Run, start: dt.datetime, seconds: float) -> pa.Table:
    """The runs row of a training run that started at ``start`` and ran ``seconds``."""
    cfg = training_config(cohort, run.seed)
    return _table("runs", {
        "run_id": run.run_id, "seed": run.seed, "run_mode": "train_full", "model_id": _model_id(cohort.width),
        "config_json": canonical_json(cfg), "config_hash": config_hash(cfg),
        "code_version": "squiggle-train@0.3.1", "status": "completed", "started_at_utc": start,
        "ended_at_utc": start + dt.timedelta(seconds=seconds),
        "notes": f"demo cohort {cohort.cohort}: lr {cohort.lr:g}, width {cohort.width}",
    }, 1)


def _training_run_tables(cohort: Cohort, run: _Run, start: dt.datetime, demo_seed: int) -> dict[str, pa.Table]:
    rng = _rng(demo_seed, "scalars", run.run_id)
    loss = _losses(cohort, run, rng)
    n = len(run.steps)
    return {
        "runs": training_run_row(cohort, run, start, float(np.round(loss["wall"][-1]))),
        "checkpoints": _table("checkpoints", {
            "run_id": run.run_id, "step": run.steps, "train_loss": loss["train"], "val_loss": loss["val"],
            "tokens_seen": run.steps * BATCH * SEQ_LEN, "wall_time_s": np.round(loss["wall"], 3),
        }, n),
        "metrics_scalar": _metrics(run, {"val_loss": loss["val"], "val_accuracy": loss["acc"]}, "val", None),
        "geometry_state": geometry_table(run),
        "attention_summary": attention_table(run, rng),
        "embeddings": embeddings_table(run, rng),
    }


def _add(out: dict[str, list[pa.Table]], name: str, table: pa.Table) -> None:
    out.setdefault(name, []).append(table)


def _metrics(run: _Run, values: dict[str, np.ndarray], split: str, sample_set: str | None) -> pa.Table:
    """Long-form metrics at every captured step of ``run``."""
    names, steps = list(values), run.steps
    which = np.repeat(np.arange(len(names)), len(steps))
    return _table("metrics_scalar", {
        "run_id": run.run_id, "step": np.tile(steps, len(names)), "metric_name": _take(names, which),
        "value": np.round(np.concatenate([values[k] for k in names]), 6), "split": split, "sample_set": sample_set,
    }, len(which))


def attention_table(run: _Run, rng: np.random.Generator, heads: int = 4, every: int = 8) -> pa.Table:
    """Head summaries every ``every``-th capture: heads sharpen; head 0 of layers >= 1
    becomes a previous-token head."""
    ci = np.arange(0, len(run.steps), every)
    c, layer, head = np.indices((len(ci), N_LAYERS, heads)).reshape(3, -1)
    prog = 1 - np.exp(-ci[c] / (len(run.steps) / 4))
    sharpen = 0.25 + 0.1 * head + 0.05 * layer
    prev_head = (head == 0) & (layer >= 1)
    n = len(c)
    return _table("attention_summary", {
        "run_id": run.run_id, "step": run.steps[ci[c]], "sample_set": SAMPLE_SET, "layer": layer.astype(np.int16),
        "head": head.astype(np.int16),
        "entropy_mean": np.log(SEQ_LEN) * (0.97 - sharpen * prog) + rng.normal(0, 0.03, n),
        "entropy_std": 0.2 + 0.6 * prog * sharpen + np.abs(rng.normal(0, 0.02, n)),
        "max_attn_mean": 0.05 + 0.6 * prog * sharpen + np.abs(rng.normal(0, 0.01, n)),
        "prev_token_score": np.clip(0.03 + np.where(prev_head, 0.8, 0.05) * prog + rng.normal(0, 0.01, n), 0, 1),
    }, n)


def embeddings_table(run: _Run, rng: np.random.Generator, dim: int = 16) -> pa.Table:
    """Pooled resid_post vectors (random projection, 16 dims) at the first, middle and last capture."""
    ci = np.array([0, len(run.steps) // 2, len(run.steps) - 1])
    start, end = rng.normal(0, 1, (2, N_LAYERS, dim))
    frac = (ci / ci[-1])[:, None, None]
    vectors = ((1 - frac) * start + frac * end).astype(np.float32)  # (capture, layer, dim)
    c, layer = np.indices((len(ci), N_LAYERS)).reshape(2, -1)
    n = len(c)
    offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32))
    return _table("embeddings", {
        "run_id": run.run_id, "step": run.steps[ci[c]], "sample_set": SAMPLE_SET, "sample_id": pa.nulls(n, pa.string()),
        "layer": layer.astype(np.int16), "module": "resid_post", "method": "random_projection", "dim": dim,
        "vector": pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1))),
    }, n)


def probe_tables(demo_seed: int) -> tuple[dict[str, list[pa.Table]], dict[str, bytes]]:
    """runs, checkpoints, metrics_scalar, geometry_state and probe_captures_index of the probe
    runs, and the capture files (lake-relative path -> bytes)."""
    out: dict[str, list[pa.Table]] = {}
    files: dict[str, bytes] = {}
    for f_i, family in enumerate(FAMILIES):
        for seed in SEEDS:
            run = simulate_probe_run(family, seed, demo_seed)
            start = _ts(24 * len(COHORTS) + f_i + 0.25 * seed)
            tables, shards = _probe_run_tables(family, run, start, demo_seed)
            for name, table in tables.items():
                _add(out, name, table)
            files.update(shards)
    return out, files


def probe_run_row(family: Family, run: _Run, start: dt.datetime, seconds: float) -> pa.Table:
    """The runs row of a probe run of ``family`` that started at ``start`` and ran ``seconds``."""
    cfg = _probe_config(family, run.seed)
    return _table("runs", {
        "run_id": run.run_id, "seed": run.seed, "run_mode": "probe_micro_finetune",
        "model_id": _model_id(run.dim), "base_checkpoint": _base_checkpoint(), "family_id": family.family_id,
        "probe_name": PROBE_NAME, "probe_config_hash": config_hash(PROBE_CONFIG), "config_json": canonical_json(cfg),
        "config_hash": config_hash(cfg), "code_version": "squiggle-probe@0.2.0", "status": "completed",
        "started_at_utc": start, "ended_at_utc": start + dt.timedelta(seconds=seconds),
        "notes": f"demo probe micro-finetune on family {family.family_id}",
    }, 1)


def _probe_run_tables(
    family: Family, run: _Run, start: dt.datetime, demo_seed: int
) -> tuple[dict[str, pa.Table], dict[str, bytes]]:
    rng = _rng(demo_seed, "probe-scalars", run.run_id)
    probe_hash, n = config_hash(PROBE_CONFIG), len(run.steps)
    loss = 1.2 + 1.0 * np.exp(-run.steps / 50) * (1 + 0.02 * family.effect) + rng.normal(0, 0.01, n)
    wall = np.round(run.steps * 0.05 + 3.0 * np.arange(1, n + 1), 3)
    index, shards = captures(run, probe_hash, rng)
    return {
        "runs": probe_run_row(family, run, start, float(wall[-1])),
        "checkpoints": _table("checkpoints", {
            "run_id": run.run_id, "step": run.steps, "train_loss": loss, "val_loss": loss + 0.05,
            "tokens_seen": run.steps * PROBE_CONFIG["batch_size"] * SEQ_LEN, "wall_time_s": wall,
        }, n),
        "metrics_scalar": _metrics(run, {"probe_loss": loss}, "probe", SAMPLE_SET),
        "geometry_state": geometry_table(run),
        "probe_captures_index": index,
    }, shards


def captures(run: _Run, probe_hash: str, rng: np.random.Generator) -> tuple[pa.Table, dict[str, bytes]]:
    """One activation-sketch shard per captured step: float32 (layer, tracked sample, 16)."""
    sketch = rng.normal(0, 1, (N_LAYERS, N_TRACKED, 16)).astype(np.float32)
    move = rng.normal(0, 0.05, (len(run.steps), N_LAYERS, N_TRACKED, 16)).astype(np.float32).cumsum(axis=0)
    shards = {}
    for i, step in enumerate(run.steps):
        buf = io.BytesIO()
        np.save(buf, sketch + move[i], allow_pickle=False)
        shards[lk.capture_path(run.run_id, PROBE_NAME, f"step-{step:06d}.npy")] = buf.getvalue()
    paths = list(shards)
    n = len(paths)
    table = _table("probe_captures_index", {
        "run_id": run.run_id, "probe_name": PROBE_NAME, "probe_config_hash": probe_hash,
        "capture_type": "activations_sketch", "step": run.steps, "shard_id": [Path(p).stem for p in paths],
        "path": paths, "bytes": np.array([len(shards[p]) for p in paths], dtype=np.int64),
        "checksum": [checksum(shards[p]) for p in paths],
    }, n)
    return table, shards


def samples_table(demo_seed: int) -> pa.Table:
    """fixed_v1: 24 short probe prompts, families interleaved so s000..s007 cover all six."""
    rng = _rng(demo_seed, "samples")
    a, b = rng.integers(2, 40, (2, N_SAMPLES))
    texts, payloads, fams = [], [], []
    for i in range(N_SAMPLES):
        family = FAMILIES[i % len(FAMILIES)]
        c = int(a[i]) * 3 + int(b[i])
        texts.append(family.template.format(a=int(a[i]), b=int(b[i]), c=c))
        payloads.append(canonical_json({"template": family.template, "a": int(a[i]), "b": int(b[i]), "c": c}))
        fams.append(family.family_id)
    return _table("samples", {
        "sample_set": SAMPLE_SET, "sample_id": _sample_ids(), "split": "probe", "family_id": fams,
        "text": texts, "payload_json": payloads,
    }, N_SAMPLES)


def families_table(families: tuple[Family, ...] = FAMILIES) -> pa.Table:
    return _table("families", {
        "family_id": [f.family_id for f in families], "family_version": "v1", "source": "squiggle-demo-generator",
        "tags": [list(f.tags) for f in families],
        "notes": [f"demo family: {f.template}" for f in families],
    }, len(families))


def planted_families_table(families: tuple[Family, ...] = FAMILIES) -> pa.Table:
    """The families' planted effects and the DIS rank they should earn (1 = largest effect)."""
    order = sorted(families, key=lambda f: -f.effect)
    rank = {f.family_id: i + 1 for i, f in enumerate(order)}
    return pa.table({
        "family_id": [f.family_id for f in families],
        "effect": pa.array([f.effect for f in families], pa.float32()),
        "expected_rank": pa.array([rank[f.family_id] for f in families], pa.int32()),
        "layer": pa.array([f.layer for f in families], pa.int16()),
        "module": ["resid_post"] * len(families),
        "descriptors": [list(SPECIALISE)] * len(families),
    })


def planted_events_table(events: list[dict]) -> pa.Table:
    schema = pa.schema([
        ("run_id", pa.string()), ("cohort_id", pa.string()), ("layer", pa.int16()), ("metric", pa.string()),
        ("step", pa.int64()), ("capture_index", pa.int32()), ("size", pa.float32()),
    ])
    return pa.Table.from_pylist(events, schema=schema)


# ---------------------------------------------------------------------------------------
# The demo


@dataclass
class Demo:
    """Everything the demo writes, built in memory (pure: no file is touched)."""

    tables: dict[str, pa.Table]
    capture_files: dict[str, bytes]
    planted_events: pa.Table
    planted_families: pa.Table


def build_demo(seed: int = 0) -> Demo:
    """The demo's tables, capture files and planted truth for ``seed`` (deterministic)."""
    if not isinstance(seed, int) or seed < 0:
        raise WarehouseError(f"demo seed must be a non-negative integer, not {seed!r}")
    train, planted = training_tables(seed)
    probe, files = probe_tables(seed)
    tables = {"families": families_table(), "samples": samples_table(seed)}
    for part in (train, probe):
        for name, pieces in part.items():
            tables[name] = pa.concat_tables(([tables[name]] if name in tables else []) + pieces)
    return Demo(tables, files, planted_events_table(planted), planted_families_table())


# Facts first, captures before the index that points at them.
WRITE_ORDER = ("families", "samples", "runs", "checkpoints", "metrics_scalar", "geometry_state",
               "attention_summary", "embeddings", "probe_captures_index")


@dataclass
class DemoSummary:
    """What ``write_demo`` made and where."""

    lake: Path
    seed: int
    rows: dict[str, int]
    rows_written: dict[str, int]
    training_runs: list[str]
    probe_runs: list[str]
    capture_files: int
    planted_events: int

    @property
    def meta_dir(self) -> Path:
        return self.lake / META_DIR / "demo"

    def __str__(self) -> str:
        width = max(map(len, self.rows))
        events, families = self.meta_dir / "planted_events.parquet", self.meta_dir / "planted_families.parquet"
        cohorts = ", ".join(f"{c.cohort}: lr {c.lr:g}, width {c.width}" for c in COHORTS)
        # the catalog that `make models` writes: named when it is not ./warehouse.duckdb
        db = str(lk.db_path()) if lk.db_path() != lk.db_path(lk.DEFAULT_DB) else ""
        query = (
            "select run_id, layer, module, step, drift_velocity from geometry_dynamics"
            " where sample_id is null order by drift_velocity desc limit 10"
        )
        return "\n".join([
            f"Demo lake (seed {self.seed}) at {self.lake}",
            f"  training runs: {len(self.training_runs)} = {len(COHORTS)} cohorts ({cohorts}) x {len(SEEDS)} seeds,"
            f" e.g. {self.training_runs[0]}; {N_CAPTURES} captures each on an irregular grid up to step {MAX_STEP}",
            f"  probe runs: {len(self.probe_runs)} = {len(FAMILIES)} families x {len(SEEDS)} seeds of {PROBE_NAME},"
            f" e.g. {self.probe_runs[0]}; {self.capture_files} capture files under {self.lake / CAPTURES_DIR}",
            f"  geometry: analysis_id {ANALYSIS_ID}, sample_set {SAMPLE_SET}, layers 0-{N_LAYERS - 1}"
            f" x {', '.join(MODULES)}; pooled rows and {N_TRACKED} per-sample series in training runs",
            "  rows per dataset (written now / in the demo):",
            *(f"    {name:<{width}}  {self.rows_written.get(name, 0):>7} / {n}" for name, n in self.rows.items()),
            "  planted truth:",
            f"    {events}  ({self.planted_events} level shifts: run, layer, metric, step)",
            f"    {families}  (effect and expected DIS rank per family)",
            f"  next (make demo does the first step for you{_activate_note()}):",
            "    make models" + ("" if self.lake == lake_root(None) else f" LAKE={self.lake}") + (f" DB={db}" if db else ""),
            f"    {_python()} -c \"import warehouse; print(warehouse.connect({repr(db) if db else ''}).sql('{query}'))\"",
            f"    {_python()} -c \"import duckdb; print(duckdb.read_parquet('{events}'))\"",
        ])


def _python() -> str:
    """The interpreter running this, as a command that works without activating its virtual
    environment: relative when it lies below the working folder (``.venv/bin/python``)."""
    path = os.path.relpath(sys.executable)
    return sys.executable if path.startswith("..") else path


def _activate_note() -> str:
    activate = Path(_python()).parent / "activate"
    return f"; after `. {activate}` the commands are `warehouse` and `python`" if activate.exists() else ""


def write_demo(lake: str | os.PathLike | None = None, seed: int = 0) -> DemoSummary:
    """Write the demo into ``lake`` (default ``$SQUIGGLE_LAKE`` or ``./lake``), created if missing; idempotent."""
    from .writer import write

    root = lk.open_lake(lake, create=True)  # the demo makes its own lake
    demo = build_demo(seed)
    lk.refuse_changed_files(root, demo.capture_files, " (a demo of another seed?); use an empty lake")
    written = {}
    for name in WRITE_ORDER:
        if name == "probe_captures_index":
            for rel, data in demo.capture_files.items():
                lk.write_bytes_atomic(root / rel, data)
        result = write(name, demo.tables[name], lake=root, source=f"demo seed {seed}", created_at=CREATED_AT)
        written[name] = result.rows_written
    meta = root / META_DIR / "demo"
    lk.write_bytes_atomic(meta / "planted_events.parquet", _parquet_bytes(demo.planted_events))
    lk.write_bytes_atomic(meta / "planted_families.parquet", _parquet_bytes(demo.planted_families))
    runs = demo.tables["runs"]
    modes = runs.column("run_mode").to_pylist()
    ids = runs.column("run_id").to_pylist()
    return DemoSummary(
        lake=root, seed=seed, rows={n: demo.tables[n].num_rows for n in WRITE_ORDER}, rows_written=written,
        training_runs=[r for r, m in zip(ids, modes) if m == "train_full"],
        probe_runs=[r for r, m in zip(ids, modes) if m == "probe_micro_finetune"],
        capture_files=len(demo.capture_files), planted_events=demo.planted_events.num_rows,
    )


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue().to_pybytes()
