"""Model files: the metadata header every ``sql/models/<name>.sql`` starts with.

A header is a block of ``-- key: value`` comment lines before the SQL::

    -- name: geometry_dynamics
    -- version: dyn@1
    -- target: geometry_dynamics
    -- materialization: lake
    -- incremental: run_id
    -- grain: run_id, sample_set, sample_id, layer, module, step
    -- param volatility_window: int = 5  | captures in the volatility window
    -- description: Layer B dynamics of every geometry_state series.
    --   Continuation lines are indented by at least two spaces.

``materialization`` is ``lake`` (Parquet in the target dataset's partitions) or ``view``
(a view in the catalog); ``incremental`` is ``run_id`` (only runs whose inputs changed are
recomputed) or ``full``.

A full model may declare ``-- batch_by: DATASET(COLUMN, ...)``: its output for one value of
those columns depends only on the input rows with that value (``matches`` pairs signatures
only within a kind, scope and vector_layout). When that input is larger than a batch, the
engine computes one value at a time, so memory follows the largest group, not the input.

A full model may declare ``-- additions: DATASET`` (a dataset partitioned by run): when
the only change to its inputs since its last build is new runs of that dataset, the
engine renders it with the Jinja variable ``adding`` true, and the SQL merges the new runs
into its previous output, which it reads as ``previous_output`` (the new runs' ids are
``added_runs(run_id)``). The merged table must equal a full build's.

A model may declare ``-- runs: CONDITION`` (on the columns of ``runs``): it reads only
the runs that satisfy it, and the engine gives it only those runs' files, so other runs
neither cost it time nor make it out of date. The condition is part of its logic.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import contracts
from ..errors import WarehouseError

VERSION_RE = re.compile(r"^[a-z][a-z0-9_]*@[0-9]+(\.[0-9]+)?$")
PARAM_RE = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)\s*:\s*(?P<type>int|float|str|bool)\s*=\s*(?P<default>[^|]*?)\s*(\|\s*(?P<doc>.*))?$")
PARAM_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
REQUIRED = ("name", "version", "target", "materialization", "incremental", "description")
BATCH_BY_RE = re.compile(r"^(?P<dataset>[a-z_][a-z0-9_]*)\s*\((?P<columns>[a-z0-9_,\s]+)\)$")


class ModelError(WarehouseError):
    """A model that cannot be planned or run; the message names the model and its file."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any
    doc: str = ""

    def parse(self, text: str, model: str) -> Any:
        """``text`` (from the command line) as a value of this parameter's type."""
        return _convert(text, self.type, f"model {model}: parameter {self.name}")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    target: str
    materialization: str
    incremental: str
    description: str
    path: Path
    template: str
    grain: tuple[str, ...] = ()
    params: dict[str, Param] = field(default_factory=dict)
    batch_by: tuple[str, tuple[str, ...]] | None = None  # (input dataset, its grouping columns)
    additions: str | None = None  # input dataset whose new runs the model can merge in
    runs: str | None = None  # condition on `runs`: the only runs whose files the model reads

    @property
    def contract(self) -> contracts.Dataset | None:
        return contracts.DATASETS.get(self.target)

    def where(self) -> str:
        return f"model {self.name} ({self.path})"


def parse_model_file(path: Path) -> ModelSpec:
    """Read a model file and validate its header."""
    text = path.read_text(encoding="utf-8")
    header, body = _split_header(text)
    fields, params = _parse_header(header, path)
    missing = [k for k in REQUIRED if k not in fields]
    if missing:
        raise ModelError(f"{path}: header is missing {', '.join(missing)}")
    spec = ModelSpec(
        name=fields["name"],
        version=fields["version"],
        target=fields["target"],
        materialization=fields["materialization"],
        incremental=fields["incremental"],
        description=fields["description"],
        path=path,
        template=body,
        grain=tuple(g.strip() for g in fields.get("grain", "").split(",") if g.strip()),
        params=params,
        batch_by=_parse_batch_by(fields.get("batch_by"), path),
        additions=fields.get("additions"),
        runs=fields.get("runs"),
    )
    _validate(spec)
    return spec


def _split_header(text: str) -> tuple[list[str], str]:
    lines = text.splitlines(keepends=True)
    n = 0
    while n < len(lines) and (lines[n].startswith("--") or not lines[n].strip()):
        n += 1
    return [line.rstrip("\n") for line in lines[:n]], "".join(lines[n:])


def _parse_header(lines: list[str], path: Path) -> tuple[dict[str, str], dict[str, Param]]:
    fields: dict[str, str] = {}
    params: dict[str, Param] = {}
    last = None
    for line in lines:
        body = line[2:]
        if not body.strip():
            continue
        if body.startswith("   ") and last:
            fields[last] += " " + body.strip()
            continue
        key, sep, value = body.strip().partition(":")
        if key.startswith("param "):
            param = _parse_param(body.strip()[len("param "):], path)
            params[param.name] = param
            last = None
        elif sep and re.fullmatch(r"[a-z_]+", key):
            fields[key] = value.strip()
            last = key
    return fields, params


def _parse_batch_by(text: str | None, path: Path) -> tuple[str, tuple[str, ...]] | None:
    if text is None:
        return None
    m = BATCH_BY_RE.match(text)
    columns = tuple(c.strip() for c in m["columns"].split(",")) if m else ()
    if not m or not all(columns):
        raise ModelError(f"{path}: cannot read batch_by {text!r}; write `-- batch_by: DATASET(COLUMN, ...)`")
    return m["dataset"], columns


def _parse_param(text: str, path: Path) -> Param:
    m = PARAM_RE.match(text)
    if not m:
        raise ModelError(f"{path}: cannot read parameter {text!r}; write `-- param NAME: int|float|str|bool = DEFAULT | doc`")
    default = m["default"]
    if m["type"] == "str" and len(default) >= 2 and default[0] == default[-1] and default[0] in "'\"":
        # a quoted default is the text between the quotes: `= ''` is the empty string. Only
        # in the header: a value given on the command line or in Python is taken as it is.
        default = default[1:-1]
    default = _convert(default, m["type"], f"{path}: parameter {m['name']}")
    return Param(m["name"], m["type"], default, (m["doc"] or "").strip())


def _convert(text: str, type_: str, where: str) -> Any:
    if isinstance(text, PARAM_TYPES[type_]) and not (type_ != "bool" and isinstance(text, bool)):
        value = text
    else:
        text = str(text).strip()
        try:
            if type_ == "bool":
                if text.lower() not in ("true", "false"):
                    raise ValueError
                return text.lower() == "true"
            if type_ == "str":
                return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text
            value = PARAM_TYPES[type_](text)
        except ValueError:
            raise ModelError(f"{where}: {text!r} is not a valid {type_}") from None
    if type_ == "float" and not math.isfinite(value):
        # nan and inf have no numeric SQL literal: they would render as the names nan, inf
        raise ModelError(f"{where}: {text!r} is not a valid float (a finite number)")
    return value


def _validate(spec: ModelSpec) -> None:
    where = spec.where()
    if spec.name != spec.path.stem:
        raise ModelError(f"{where}: the header's name must equal the file name {spec.path.stem!r}")
    if not VERSION_RE.match(spec.version):
        raise ModelError(f"{where}: version {spec.version!r} must look like dyn@1")
    if spec.materialization not in ("lake", "view"):
        raise ModelError(f"{where}: materialization must be lake or view, not {spec.materialization!r}")
    if spec.incremental not in ("run_id", "full"):
        raise ModelError(f"{where}: incremental must be run_id or full, not {spec.incremental!r}")
    contract = spec.contract
    if spec.materialization == "lake":
        if contract is None or contract.kind != "interpretation":
            raise ModelError(f"{where}: a lake model's target must be an interpretation dataset, not {spec.target!r}")
        if spec.incremental == "run_id" and "run_id" not in contract.partition_by:
            raise ModelError(f"{where}: incremental run_id needs a target partitioned by run_id")
    elif contract is not None:
        raise ModelError(f"{where}: a view model's target must not be a dataset name ({spec.target!r})")
    if spec.batch_by:
        _validate_batch_by(spec)
    if spec.additions:
        _validate_additions(spec)


def _validate_batch_by(spec: ModelSpec) -> None:
    where = spec.where()
    dataset, columns = spec.batch_by
    if spec.incremental != "full" or spec.materialization != "lake":
        raise ModelError(f"{where}: batch_by is for full lake models (a run_id model is batched by run)")
    if dataset not in contracts.DATASETS:
        raise ModelError(f"{where}: batch_by names unknown dataset {dataset!r}")
    unknown = [c for c in columns if c not in contracts.DATASETS[dataset].column_names]
    if unknown:
        raise ModelError(f"{where}: batch_by names columns {dataset} does not have: {', '.join(unknown)}")


def _validate_additions(spec: ModelSpec) -> None:
    where = spec.where()
    if spec.incremental != "full" or spec.materialization != "lake":
        raise ModelError(f"{where}: additions is for full lake models (a run_id model is built per run)")
    dataset = contracts.DATASETS.get(spec.additions)
    if dataset is None or "run_id" not in dataset.partition_by:
        raise ModelError(f"{where}: additions must name a dataset partitioned by run, not {spec.additions!r}")
