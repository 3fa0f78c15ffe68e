"""The dataset contracts: the single source of truth for every dataset in the lake.

Each :class:`Dataset` states its number and folder name, whether it holds facts or
interpretations, its exact Arrow schema (names, types, nullability, order), primary key,
hive partition columns, enums and schema version. The writer, the validator, the catalog's
views and comments, and the data dictionary in the README are all derived from here.

Tables 03, 12, 13, 14 and 22 follow the user's specification column for column
(``tests/test_contracts.py`` parses that document to keep them in step).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from .errors import UnknownDataset

Kind = Literal["fact", "interpretation"]

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$"
IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)

SPLITS = ("train", "val", "probe")
MODULES = ("resid_pre", "attn_out", "mlp_out", "resid_post", "logits")
RUN_MODES = ("probe_micro_finetune", "train_full", "eval_only")
RUN_STATUSES = ("running", "completed", "failed", "interrupted")

# The six Layer A descriptors, in the order every table and model lists them.
DESCRIPTORS = (
    "eff_rank",
    "sv_entropy",
    "sparsity",
    "principal_angle_prev",
    "principal_angle_init",
    "act_norm",
)

# The single-metric diagnostics of an events_candidates row, each with the column that
# holds it per metric, as JSON, on a composite event: the models read them as the Jinja
# globals `diagnostics` and `diagnostic_json`.
DIAGNOSTIC_JSON = {
    "metric_size": "metric_sizes_json",
    "metric_z": "metric_z_json",
    "baseline_median": "baseline_median_json",
    "baseline_mad": "baseline_mad_json",
    "volatility_event": "volatility_event_json",
    "volatility_baseline": "volatility_baseline_json",
    "volatility_ratio": "volatility_ratio_json",
}
DIAGNOSTICS = tuple(DIAGNOSTIC_JSON)

# The dis@1 features of one layer (probe_summaries columns), in the order a probe signature
# lists them: the models read them as the Jinja global `dis_features`.
DIS_FEATURES = (
    "A_eff_rank_delta",
    "A_sv_entropy_delta",
    "A_sparsity_delta",
    "A_principal_angle_post_vs_pre",
    "B_drift_velocity_by_layer",
    "B_volatility_by_layer",
)

TIMESTAMP = pa.timestamp("us", tz="UTC")

# Columns that become (or may become) path segments, checked against IDENTIFIER_PATTERN.
IDENTIFIER_COLUMNS = frozenset({"run_id", "analysis_id", "family_id", "probe_name", "sample_set"})

# Columns every file holds but the writer fills in when an input leaves them out.
WRITER_FILLED = ("schema_version", "created_at_utc")


@dataclass(frozen=True)
class Column:
    """One column of a dataset: its Arrow type, nullability, allowed values and meaning."""

    name: str
    type: pa.DataType
    nullable: bool = False
    doc: str = ""
    enum: tuple[str, ...] | None = None

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable)

    @property
    def is_identifier(self) -> bool:
        return self.name in IDENTIFIER_COLUMNS

    @property
    def required(self) -> bool:
        """Whether an input must give this column, non-NULL, in every row."""
        return not self.nullable and self.name not in WRITER_FILLED


@dataclass(frozen=True)
class Dataset:
    """The contract of one dataset of the lake."""

    number: str
    name: str
    kind: Kind
    schema_version: str
    doc: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    partition_by: tuple[str, ...]
    # Partition columns that live only in the folder names, not in the table's columns.
    path_columns: tuple[Column, ...] = field(default=())

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of a batch written to this dataset (path columns included)."""
        return pa.schema([c.field for c in self.all_columns])

    @property
    def all_columns(self) -> tuple[Column, ...]:
        """The table's columns followed by its path-only partition columns: the view's columns."""
        return self.columns + self.path_columns

    @property
    def file_columns(self) -> tuple[Column, ...]:
        """The columns stored inside each Parquet file (partition columns live in the path)."""
        return tuple(c for c in self.all_columns if c.name not in self.partition_by)

    def column(self, name: str) -> Column:
        for c in self.all_columns:
            if c.name == name:
                return c
        raise KeyError(f"dataset {self.name!r} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.all_columns]


# ---------------------------------------------------------------------------------------
# Column builders. Descriptions of the spine keys are shared; a table may override a doc.

_COMMON_DOCS = {
    "run_id": "Stable ID of a training run.",
    "analysis_id": "ID of the versioned analysis (model version and parameters) that produced the row.",
    "schema_version": "Table schema version identifier, e.g. runs@2.0.",
    "created_at_utc": "When this row was written (UTC).",
    "step": "Optimizer step.",
    "seed": "Run seed.",
    "sample_id": "Stable ID of an evaluation sample.",
    "sample_set": "Name of a fixed probe set, e.g. fixed_v1.",
    "split": "Data split: train, val or probe.",
    "layer": "Transformer layer index.",
    "module": "Canonical module location: resid_pre, attn_out, mlp_out, resid_post or logits.",
    "family_id": "Probe-family identifier (the Math Corpus selection unit).",
    "probe_name": "Name of the probe.",
    "probe_config_hash": "Hash of the probe configuration.",
    "model_id": "Identifier of the model architecture or release.",
    "base_checkpoint": "Checkpoint the run started from.",
    "run_mode": "probe_micro_finetune, train_full or eval_only.",
    "event_id": "Stable hash identifying the event.",
    "event_type": "Kind of event.",
    "metric": "Metric the event was found on, <module>.<descriptor> or __composite__.",
}

_ENUMS = {"split": SPLITS, "module": MODULES, "run_mode": RUN_MODES}


def _col(name: str, type_: pa.DataType, nullable: bool = False, doc: str = "", enum=None) -> Column:
    return Column(name, type_, nullable, doc or _COMMON_DOCS.get(name, ""), enum or _ENUMS.get(name))


def s(name, nullable=False, doc="", enum=None):
    return _col(name, pa.string(), nullable, doc, enum)


def i16(name, nullable=False, doc=""):
    return _col(name, pa.int16(), nullable, doc)


def i32(name, nullable=False, doc=""):
    return _col(name, pa.int32(), nullable, doc)


def i64(name, nullable=False, doc=""):
    return _col(name, pa.int64(), nullable, doc)


def f32(name, nullable=False, doc=""):
    return _col(name, pa.float32(), nullable, doc)


def f64(name, nullable=False, doc=""):
    return _col(name, pa.float64(), nullable, doc)


def ts(name, nullable=False, doc=""):
    return _col(name, TIMESTAMP, nullable, doc)


def lst(name, item: pa.DataType, nullable=False, doc=""):
    return _col(name, pa.list_(item), nullable, doc)


def _trailer() -> tuple[Column, ...]:
    return (s("schema_version"), ts("created_at_utc"))


_DESCRIPTOR_DOCS = {
    "eff_rank": "Effective rank exp(H(p)) of the centred activations' singular values.",
    "sv_entropy": "Normalised entropy of the squared singular values, H(q) / log(r).",
    "sparsity": "Mean Hoyer sparsity of the activation rows.",
    "principal_angle_prev": "Mean principal angle (radians) to the previous capture's top-k subspace.",
    "principal_angle_init": "Mean principal angle (radians) to the first capture's top-k subspace.",
    "act_norm": "Mean L2 norm of the activation rows.",
}

_GEOMETRY_KEYS = (
    s("run_id"),
    s("analysis_id"),
    i64("step"),
    i32("seed"),
    s("sample_set"),
    s("sample_id", nullable=True, doc="Stable eval sample ID; NULL means pooled over the whole sample set."),
    i16("layer"),
    s("module"),
)
_GEOMETRY_PK = ("run_id", "analysis_id", "step", "sample_set", "sample_id", "layer", "module")


def _dynamics_columns() -> tuple[Column, ...]:
    per_descriptor = []
    for d in DESCRIPTORS:
        per_descriptor += [
            f32(f"{d}_delta", True, f"Change of {d} since the previous capture."),
            f32(f"{d}_velocity", True, f"{d}_delta divided by the steps since the previous capture."),
            f32(f"{d}_accel", True, f"Change of {d}_velocity divided by the steps since the previous capture."),
            f32(f"{d}_volatility", True, f"Sample std of {d}_velocity over the volatility window."),
        ]
    return tuple(per_descriptor) + (
        f32("drift_velocity", True, "Norm of the scale-normalised velocities of eff_rank, sv_entropy, sparsity, act_norm."),
        f32("drift_accel", True, "Change of drift_velocity divided by the steps since the previous capture."),
        f32("drift_from_init", True, "Norm of the scale-normalised change since the first capture."),
        f32("alignment_velocity", True, "principal_angle_prev divided by the steps since the previous capture."),
        i16("volatility_window", doc="Number of captures in the volatility window."),
    )


# ---------------------------------------------------------------------------------------
# The sixteen datasets.

RUNS = Dataset(
    "00", "runs", "fact", "runs@2.0",
    "Run metadata: configuration, environment and model (one row per run).",
    (
        s("run_id"),
        i32("seed"),
        s("run_mode"),
        s("model_id"),
        s("base_checkpoint", nullable=True),
        s("family_id", nullable=True),
        s("probe_name", nullable=True),
        s("probe_config_hash", nullable=True),
        s("config_json", doc="The run's full configuration as JSON."),
        s("config_hash", doc="Hash of the configuration without the seed: the cohort key."),
        s("code_version", nullable=True, doc="Version of the training code (e.g. a git commit)."),
        s("status", doc="running, completed, failed or interrupted.", enum=RUN_STATUSES),
        ts("started_at_utc", doc="When the run started (UTC)."),
        ts("ended_at_utc", nullable=True, doc="When the run ended (UTC)."),
        s("notes", nullable=True, doc="Free-form notes."),
    ) + _trailer(),
    primary_key=("run_id",),
    partition_by=("run_id",),
)

CHECKPOINTS = Dataset(
    "01", "checkpoints", "fact", "checkpoints@2.0",
    "Checkpoint index: one row per checkpoint or logged step summary.",
    (
        s("run_id"),
        i64("step"),
        s("checkpoint_path", nullable=True, doc="Where the checkpoint is stored."),
        f32("train_loss", nullable=True, doc="Training loss at this step."),
        f32("val_loss", nullable=True, doc="Validation loss at this step."),
        i64("tokens_seen", nullable=True, doc="Tokens seen up to this step."),
        f64("wall_time_s", nullable=True, doc="Seconds since the run started."),
    ) + _trailer(),
    primary_key=("run_id", "step"),
    partition_by=("run_id",),
)

SAMPLES = Dataset(
    "02", "samples", "fact", "samples@2.0",
    "Evaluation sample catalog: stable sample IDs and optional payloads.",
    (
        s("sample_set"),
        s("sample_id"),
        s("split"),
        s("family_id", nullable=True),
        s("text", nullable=True, doc="The sample's text."),
        s("payload_json", nullable=True, doc="Any further payload, as JSON."),
    ) + _trailer(),
    primary_key=("sample_set", "sample_id"),
    partition_by=("sample_set",),
)

FAMILIES = Dataset(
    "03", "families", "fact", "families@2.0",
    "Stable registry of probe grouping units.",
    (
        s("family_id"),
        s("family_version", doc="Version of the family definition."),
        s("source", doc="Where the family comes from, e.g. a dataset name or generator."),
        lst("tags", pa.string(), doc="Free-form tags."),
        s("notes", nullable=True, doc="Free-form notes."),
        ts("created_at_utc"),
    ),
    primary_key=("family_id",),
    partition_by=(),
)

METRICS_SCALAR = Dataset(
    "10", "metrics_scalar", "fact", "metrics_scalar@2.0",
    "Scalar metrics of runs as a long time series.",
    (
        s("run_id"),
        i64("step"),
        s("metric_name", doc="Name of the metric, e.g. val_accuracy."),
        f64("value", doc="Value of the metric."),
        s("split", nullable=True),
        s("sample_set", nullable=True),
    ) + _trailer(),
    primary_key=("run_id", "metric_name", "split", "sample_set", "step"),
    partition_by=("run_id",),
)

PROBE_CAPTURES_INDEX = Dataset(
    "12", "probe_captures_index", "fact", "probe_captures_index@2.0",
    "Inventory of immutable probe capture files.",
    (
        s("run_id"),
        s("probe_name"),
        s("probe_config_hash"),
        s("schema_version"),
        s("capture_type", doc="Kind of capture, e.g. activations_sketch, attn_summary, grad_norms."),
        i64("step", nullable=True),
        s("shard_id", doc="Identifier of the capture shard."),
        s("path", doc="Path of the capture file, relative to the lake root."),
        i64("bytes", doc="Size of the capture file in bytes."),
        s("checksum", nullable=True, doc="Checksum of the capture file, e.g. sha256:<hex>."),
        ts("created_at_utc"),
    ),
    primary_key=("run_id", "probe_name", "probe_config_hash", "shard_id"),
    partition_by=("run_id",),
)


def _per_layer(name: str, item: pa.DataType, doc: str) -> Column:
    return lst(name, item, nullable=True, doc=doc + " Aligned with layers_covered.")


PROBE_SUMMARIES = Dataset(
    "13", "probe_summaries", "interpretation", "probe_summary@2.0",
    "One row per (run, family, seed, probe) summarising Layer A and B, with the DIS ranking.",
    (
        s("run_id"),
        s("family_id"),
        i32("seed"),
        s("probe_name"),
        s("probe_config_hash"),
        s("schema_version"),
        s("model_id", nullable=True),
        s("base_checkpoint", nullable=True),
        s("run_mode", nullable=True),
        i32("steps", nullable=True, doc="Steps between the first and last capture used."),
        lst("capture_steps_used", pa.int64(), nullable=True, doc="The distinct captured steps used."),
        lst("layers_covered", pa.int16(), nullable=True, doc="Layers the per-layer arrays refer to, ascending."),
        _per_layer("A_eff_rank_pre", pa.float32(), "eff_rank at the first capture."),
        _per_layer("A_eff_rank_post", pa.float32(), "eff_rank at the last capture."),
        _per_layer("A_eff_rank_delta", pa.float32(), "eff_rank post minus pre."),
        _per_layer("A_sv_entropy_pre", pa.float32(), "sv_entropy at the first capture."),
        _per_layer("A_sv_entropy_post", pa.float32(), "sv_entropy at the last capture."),
        _per_layer("A_sv_entropy_delta", pa.float32(), "sv_entropy post minus pre."),
        _per_layer("A_sparsity_pre", pa.float32(), "sparsity at the first capture."),
        _per_layer("A_sparsity_post", pa.float32(), "sparsity at the last capture."),
        _per_layer("A_sparsity_delta", pa.float32(), "sparsity post minus pre."),
        _per_layer("A_principal_angle_post_vs_pre", pa.float32(), "Mean principal angle between post and pre."),
        _per_layer("B_drift_velocity_by_layer", pa.float32(), "Mean drift velocity."),
        _per_layer("B_drift_accel_by_layer", pa.float32(), "Mean absolute drift acceleration."),
        _per_layer("B_volatility_by_layer", pa.float32(), "Sample std of drift velocity."),
        _per_layer("B_alignment_velocity_by_layer", pa.float32(), "Mean alignment velocity."),
        f32("B_drift_velocity_global", True, "Mean of B_drift_velocity_by_layer."),
        f32("B_drift_accel_global", True, "Mean of B_drift_accel_by_layer."),
        f32("B_volatility_global", True, "Mean of B_volatility_by_layer."),
        f32("B_alignment_velocity_global", True, "Mean of B_alignment_velocity_by_layer."),
        lst("affected_layers", pa.int16(), nullable=True, doc="Layers with at least one event candidate."),
        s("signature_version", nullable=True, doc="Version of the signature, e.g. sig@1."),
        lst("signature_vector", pa.float32(), nullable=True, doc="Robust-standardised features, layer-major."),
        f32("signature_norm", True, "L2 norm of signature_vector."),
        s("score_version", nullable=True, doc="Version of the DIS score, e.g. dis@1."),
        f32("magnitude", True, "signature_norm / sqrt(length of signature_vector)."),
        f32("coherence", True, "Mean cosine to the other seeds of the family, clipped at 0."),
        f32("novelty", True, "(1 - max cosine to another family's centroid) / 2."),
        f32("DIS", True, "magnitude * coherence * novelty."),
        s("captures_manifest_path", nullable=True, doc="Path of the captures manifest."),
        s("captures_index_path", nullable=True, doc="Lake-relative folder of the run's probe_captures_index."),
        ts("created_at_utc"),
    ),
    primary_key=("run_id", "family_id", "seed", "probe_name", "probe_config_hash"),
    partition_by=("analysis_id", "run_id"),
    path_columns=(s("analysis_id"),),
)

PROBE_EVENTS_CANDIDATES = Dataset(
    "14", "probe_events_candidates", "interpretation", "probe_events_candidates@2.0",
    "Layer C candidate events derived from probe summaries or geometry (not consensus).",
    (
        s("run_id"),
        s("family_id"),
        i32("seed"),
        s("probe_name"),
        s("probe_config_hash"),
        s("schema_version"),
        s("detector_version", doc="Version of the detector that found the event."),
        s("event_id"),
        s("event_type"),
        i64("t_step", doc="Step of the event."),
        lst("layers", pa.int16(), doc="Layers involved."),
        f32("strength", doc="Strength of the event."),
        lst("supporting_key", pa.string(), nullable=True, doc="Names of supporting values."),
        lst("supporting_val", pa.float32(), nullable=True, doc="Supporting values, aligned with supporting_key."),
        i32("timewarp_tolerance_steps", doc="Steps within which another event counts as the same."),
        ts("created_at_utc"),
    ),
    primary_key=("run_id", "family_id", "seed", "probe_name", "probe_config_hash", "event_id"),
    partition_by=("analysis_id", "run_id"),
    path_columns=(s("analysis_id"),),
)

GEOMETRY_STATE = Dataset(
    "20", "geometry_state", "interpretation", "geometry_state@2.0",
    "Layer A: basis-invariant geometric descriptors per capture.",
    _GEOMETRY_KEYS
    + (
        i32("n_samples", doc="Number of samples (rows) in the activation matrix."),
        i32("dim", doc="Number of features (columns) in the activation matrix."),
    )
    + tuple(f32(d, True, _DESCRIPTOR_DOCS[d]) for d in DESCRIPTORS)
    + _trailer(),
    primary_key=_GEOMETRY_PK,
    partition_by=("analysis_id", "run_id"),
)

GEOMETRY_DYNAMICS = Dataset(
    "21", "geometry_dynamics", "interpretation", "geometry_dynamics@2.0",
    "Layer B: deltas, velocities, accelerations, volatility and drift of the descriptors.",
    _GEOMETRY_KEYS + _dynamics_columns() + _trailer(),
    primary_key=_GEOMETRY_PK,
    partition_by=("analysis_id", "run_id"),
)

_F32_DIAGNOSTICS = (
    ("magnitude", "metric_z at the peak (composite z for composite events)."),
    ("structure_modifier", "1 / (1 + max(0, log2 volatility_ratio))."),
    ("magnitude_eff", "magnitude * structure_modifier."),
    ("coherence", "Share of the run's other layers with an event of the same metric nearby."),
    ("novelty", "1 / (1 + number of earlier events in the same series)."),
    ("metric_size", "Median of the post window minus baseline median (signed)."),
    ("metric_z", "The change's z: its contrast at the detecting scale, normalised (cpd@2); robust z of metric_size (cpd@1)."),
    ("baseline_median", "Median of the baseline window."),
    ("baseline_mad", "Median absolute deviation of the baseline window."),
    ("volatility_event", "Std of the first differences inside the post window."),
    ("volatility_baseline", "Std of the first differences inside the baseline window."),
    ("volatility_ratio", "volatility_event / volatility_baseline."),
    ("volatility_ratio_agg", "Median volatility_ratio over the run's layers."),
)

EVENTS_CANDIDATES = Dataset(
    "22", "events_candidates", "interpretation", "events_candidates@2.0",
    "Per-run candidate event windows detected from geometric time series.",
    (
        s("run_id"),
        s("analysis_id"),
        s("schema_version"),
        ts("created_at_utc"),
        s("event_id"),
        i16("layer"),
        s("metric"),
        i64("step", doc="Step of the event's peak (the first capture at the new level)."),
        i64("start_step", nullable=True, doc="First step of the event's window: the first capture of the "
            "detecting scale's baseline window (cpd@2), of the candidate captures (cpd@1)."),
        i64("end_step", nullable=True, doc="Last step of the event's window: the last capture of the "
            "detecting scale's post window (cpd@2), of the candidate captures (cpd@1)."),
        s("event_type", enum=("change_point", "change_point_composite")),
        f32("score", doc="magnitude_eff * coherence * novelty."),
    )
    + tuple(f32(name, True, doc) for name, doc in _F32_DIAGNOSTICS)
    + tuple(s(column, True, f"{column.removesuffix('_json')} of every metric of the layer at the peak, as JSON.")
            for column in DIAGNOSTIC_JSON.values()),
    primary_key=("run_id", "analysis_id", "event_id"),
    partition_by=("analysis_id", "run_id"),
)

EVENTS = Dataset(
    "30", "events", "interpretation", "events@2.0",
    "Consensus events: change points that recur across the runs of a cohort.",
    (
        s("event_id"),
        s("analysis_id"),
        s("cohort_id", doc="The cohort: runs.config_hash shared by its runs."),
        i16("layer"),
        s("metric"),
        s("event_type", enum=("consensus",)),
        i64("step_median", doc="Median peak step of the supporting candidates."),
        i64("step_min", doc="Smallest peak step of the supporting candidates."),
        i64("step_max", doc="Largest peak step of the supporting candidates."),
        f32("t_median", doc="Median normalised time of the supporting candidates."),
        i32("n_runs_supporting", doc="Distinct runs with a candidate in the cluster."),
        i32("n_runs_total", doc="Runs in the cohort."),
        f32("support", doc="n_runs_supporting / n_runs_total."),
        f32("strength", doc="Mean score of the supporting candidates."),
        lst("source_event_ids", pa.string(), doc="event_id of every supporting candidate."),
        lst("source_run_ids", pa.string(), doc="run_id of every supporting run."),
    ) + _trailer(),
    primary_key=("analysis_id", "event_id"),
    partition_by=("analysis_id",),
)

SIGNATURES = Dataset(
    "31", "signatures", "interpretation", "signatures@2.0",
    "Compressed, matchable representations of runs: vectors plus event sequences.",
    (
        s("signature_id", doc="Stable hash identifying the signature."),
        s("analysis_id"),
        s("run_id"),
        s("kind", doc="trajectory or probe.", enum=("trajectory", "probe")),
        s("scope", doc="run or layer.", enum=("run", "layer")),
        i16("layer", nullable=True, doc="The layer, for scope layer."),
        s("family_id", nullable=True),
        i32("seed"),
        s("probe_name", nullable=True),
        s("signature_version", doc="Version of the signature formula, e.g. sig@1 (sig@1.1 builds the sig@1 formula per run)."),
        lst("vector", pa.float32(), doc="The signature vector."),
        s("vector_layout", doc="What each block of the vector holds; only equal layouts are compared."),
        f32("norm", doc="L2 norm of the vector."),
        lst("event_t", pa.float32(), doc="Normalised time of each event."),
        lst("event_steps", pa.int64(), doc="Step of each event."),
        lst("event_layers", pa.int16(), doc="Layer of each event."),
        lst("event_metrics", pa.string(), doc="Metric of each event."),
        lst("event_scores", pa.float32(), doc="Score of each event."),
    ) + _trailer(),
    primary_key=("analysis_id", "signature_id"),
    partition_by=("analysis_id", "run_id"),
)

MATCHES = Dataset(
    "32", "matches", "interpretation", "matches@2.0",
    "Similarity between signatures: each signature's top-k partners.",
    (
        s("match_id", doc="Stable hash identifying the match."),
        s("analysis_id"),
        s("match_version", doc="Version of the matcher formula, e.g. match@1 (match@1.1 builds the match@1 formula; the model version is warehouse_analyses.version)."),
        s("signature_id_a", doc="The signature whose partners are ranked."),
        s("signature_id_b", doc="The partner."),
        s("run_id_a", doc="Run of signature a."),
        s("run_id_b", doc="Run of signature b."),
        f32("vector_cosine", True, "Cosine similarity of the two vectors."),
        f32("event_precision", True, "Share of a's events matched in b."),
        f32("event_recall", True, "Share of b's events matched in a."),
        f32("event_f1", True, "Harmonic mean of event precision and recall."),
        f32("mean_abs_offset_t", True, "Mean |delta t| over a's matched events."),
        f32("score", True, "Combined match score."),
        i32("rank_a", doc="Rank of b among a's partners, 1 best."),
        f32("timewarp_tolerance", doc="Largest |delta t| at which two events match."),
    ) + _trailer(),
    primary_key=("analysis_id", "match_id"),
    partition_by=("analysis_id",),
)

EMBEDDINGS = Dataset(
    "40", "embeddings", "fact", "embeddings@2.0",
    "Selected raw or projected activation vectors (use sparingly).",
    (
        s("run_id"),
        i64("step"),
        s("sample_set"),
        s("sample_id", nullable=True, doc="Stable eval sample ID; NULL for a pooled vector."),
        i16("layer"),
        s("module"),
        s("method", doc="raw or random_projection.", enum=("raw", "random_projection")),
        i32("dim", doc="Length of the vector."),
        lst("vector", pa.float32(), doc="The vector."),
    ) + _trailer(),
    primary_key=("run_id", "step", "sample_set", "sample_id", "layer", "module", "method"),
    partition_by=("run_id",),
)

ATTENTION_SUMMARY = Dataset(
    "41", "attention_summary", "fact", "attention_summary@2.0",
    "Head-level attention summaries.",
    (
        s("run_id"),
        i64("step"),
        s("sample_set"),
        i16("layer"),
        i16("head", doc="Attention head index."),
        f32("entropy_mean", doc="Mean attention entropy over queries."),
        f32("entropy_std", doc="Std of attention entropy over queries."),
        f32("max_attn_mean", doc="Mean of the largest attention weight per query."),
        f32("prev_token_score", True, "Mean attention to the previous token."),
    ) + _trailer(),
    primary_key=("run_id", "step", "sample_set", "layer", "head"),
    partition_by=("run_id",),
)

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        RUNS,
        CHECKPOINTS,
        SAMPLES,
        FAMILIES,
        METRICS_SCALAR,
        PROBE_CAPTURES_INDEX,
        PROBE_SUMMARIES,
        PROBE_EVENTS_CANDIDATES,
        GEOMETRY_STATE,
        GEOMETRY_DYNAMICS,
        EVENTS_CANDIDATES,
        EVENTS,
        SIGNATURES,
        MATCHES,
        EMBEDDINGS,
        ATTENTION_SUMMARY,
    )
}


def get(name: str) -> Dataset:
    """The contract of dataset ``name``; a clear error lists the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise UnknownDataset(f"unknown dataset {name!r}; known datasets: {known}") from None


def duckdb_type(type_: pa.DataType) -> str:
    """The DuckDB SQL type that reads back as ``type_``."""
    if pa.types.is_list(type_):
        return duckdb_type(type_.value_type) + "[]"
    simple = {
        pa.string(): "VARCHAR",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        TIMESTAMP: "TIMESTAMP WITH TIME ZONE",
    }
    return simple[type_]
