"""Model files: the metadata header every ``sql/models/<name>.sql`` starts with.

A header is a block of ``-- key: value`` comment lines before the SQL::

    -- name: geometry_dynamics
    -- version: dyn@1
    -- target: geometry_dynamics
    -- kind: per_run
    -- grain: run_id, sample_set, sample_id, layer, module, step
    -- param volatility_window: int = 5 in [2, 100] | captures in the volatility window
    -- description: Layer B dynamics of every geometry_state series.
    --   Continuation lines are indented by at least two spaces.

A parameter's line gives its name, type (``int``, ``float``, ``str`` or ``bool``), default,
optionally the values it accepts, and after ``|`` what it means. The accepted values are
``in [LOW, HIGH]`` (a round bracket leaves that end out: ``in (0, 1]``), ``>= LOW``,
``> LOW``, ``<= HIGH`` or ``< HIGH`` for a number, and ``in {A, B, ...}`` for text. A value
outside them is refused before anything runs, and so is a header whose default is outside.

``kind`` says what the model's output is and how it is computed (:mod:`.kinds`):

- ``per_run``: one unit per run, computed in batches of runs; only the runs whose inputs
  changed are recomputed. The target is partitioned by ``run_id``.
- ``table``: the whole table is one unit, recomputed when any input changed (a target not
  partitioned by ``run_id``).
- ``table_by_run``: the whole table is one unit, written as a folder per run (a target
  partitioned by ``run_id``; ``probe_summaries``).
- ``grouped (groups = DATASET(COLUMN, ...))``: one unit whose output for one value of those
  columns depends only on DATASET's rows with that value (``matches`` pairs signatures only
  within a kind, scope and vector_layout). When that input is larger than a batch, the
  engine computes one value at a time, so memory follows the largest group, not the input.
- ``merging (runs = DATASET)``, or ``merging (runs = DATASET, groups = DATASET(COLUMN, ...))``
  (grouped too): one unit; when the only change to its inputs since its last build is new
  runs of DATASET (a dataset partitioned by run), the engine renders it with the Jinja
  variable ``adding`` true, and the SQL merges the new runs into its previous output, which
  it reads as ``previous_output`` (the new runs' ids are ``added_runs(run_id)``). The merged
  table must equal a full build's. ``pairwise = true`` adds that each row scores one pair of
  DATASET's rows from that pair alone and the merge keeps the best rows of the union: an
  executor with workers may then compute a group in blocks of pairs with the same SQL.
- ``view``: a view in the catalog (over the dataset views, at default parameters).

The older keys ``materialization``, ``incremental``, ``batch_by`` and ``additions`` are
refused, with the ``kind:`` line that replaces them.

A model may declare ``-- batch_divisor: N`` (an integer, 1 or more; default 32): a batch
of its input reads at most the memory limit / N bytes of Parquet. A model that widens each
input row into many more columns than the usual window pass (``events_candidates``, every
scale's window sums) declares a larger divisor and is computed in smaller batches, so its
memory stays within the limit.

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
from ..errors import ModelError
from .kinds import Kind, legacy_kind, parse_kind

VERSION_RE = re.compile(r"^[a-z][a-z0-9_]*@[0-9]+(\.[0-9]+)?$")
PARAM_RE = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)\s*:\s*(?P<type>int|float|str|bool)\s*=\s*(?P<rest>[^|]*?)\s*(\|\s*(?P<doc>.*))?$")
# Where the accepted values begin after the default: ` in [`, ` in (`, ` in {`, or a comparison.
RANGE_START_RE = re.compile(r"\s(?=in\s*[\[({]|[<>]=?)")
INTERVAL_RE = re.compile(r"^in\s*(?P<open>[\[(])\s*(?P<low>[^,\s]+)\s*,\s*(?P<high>[^\])\s]+)\s*(?P<close>[\])])$")
BOUND_RE = re.compile(r"^(?P<op>>=|<=|>|<)\s*(?P<bound>\S+)$")
CHOICES_RE = re.compile(r"^in\s*\{(?P<items>[^}]*)\}$")
PARAM_SYNTAX = "`-- param NAME: int|float|str|bool = DEFAULT [in [LOW, HIGH] | >= LOW | in {A, B}] | doc`"
PARAM_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
REQUIRED = ("name", "version", "target", "kind", "description")
# header keys the `kind:` line replaced; a header still holding one is refused
LEGACY_KEYS = ("materialization", "incremental", "batch_by", "additions")

__all__ = ["Allowed", "ModelError", "ModelSpec", "Param", "parse_model_file"]


@dataclass(frozen=True)
class Allowed:
    """The values a parameter accepts: a number between bounds (each optional, inclusive
    unless open) or one of a list of texts."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None

    def __contains__(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(repr(c) if not re.fullmatch(r"[A-Za-z0-9_.:-]+", c) else c for c in self.choices) + "}"
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"{'<' if self.high_open else '<='} {high}"


def _number(value: float | None) -> str:
    # a whole bound reads as it is written in the header: [0, 1], not [0.0, 1.0]
    return str(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any
    doc: str = ""
    allowed: Allowed | None = None  # None: any value of the type

    def parse(self, text: str, model: str) -> Any:
        """``text`` (from the command line, or a Python value) as a value of this
        parameter's type, refused when outside the values the header allows."""
        value = _convert(text, self.type, f"model {model}: parameter {self.name}")
        if self.allowed is not None and value not in self.allowed:
            raise ModelError(f"model {model}: parameter {self.name} = {value!r} is outside its range {self.allowed}")
        return value


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    target: str
    kind: Kind
    description: str
    path: Path
    template: str
    grain: tuple[str, ...] = ()
    params: dict[str, Param] = field(default_factory=dict)
    runs: str | None = None  # condition on `runs`: the only runs whose files the model reads
    batch_divisor: int = 32  # a batch reads at most memory_limit / batch_divisor input bytes

    @property
    def writes_lake(self) -> bool:
        """Whether its output is Parquet in the lake (else a view in the catalog)."""
        return self.kind.materialization == "lake"

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
    legacy = [k for k in LEGACY_KEYS if k in fields]
    if legacy:
        keys = [f"`{k}`" for k in legacy]
        named = f"{', '.join(keys[:-1])} and {keys[-1]} are" if len(keys) > 1 else f"{keys[0]} is"
        also = f" in place of {'them' if len(keys) > 1 else 'it'} and of the `kind:` line already there"
        raise ModelError(
            f"{path}: {named} replaced by one `kind:` line; write `-- kind: {legacy_kind(fields)}`"
            + (also if "kind" in fields else "")
        )
    missing = [k for k in REQUIRED if k not in fields]
    if missing:
        raise ModelError(f"{path}: header is missing {', '.join(missing)}")
    spec = ModelSpec(
        name=fields["name"],
        version=fields["version"],
        target=fields["target"],
        kind=parse_kind(fields["kind"], str(path)),
        description=fields["description"],
        path=path,
        template=body,
        grain=tuple(g.strip() for g in fields.get("grain", "").split(",") if g.strip()),
        params=params,
        runs=fields.get("runs"),
        batch_divisor=_parse_batch_divisor(fields.get("batch_divisor"), path),
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


def _parse_batch_divisor(text: str | None, path: Path) -> int:
    if text is None:
        return 32
    if not text.strip().isdigit() or int(text) < 1:
        raise ModelError(f"{path}: batch_divisor must be a whole number, 1 or more; got {text!r}")
    return int(text)


def _parse_param(text: str, path: Path) -> Param:
    m = PARAM_RE.match(text)
    if not m:
        raise ModelError(f"{path}: cannot read parameter {text!r}; write {PARAM_SYNTAX}")
    name, type_ = m["name"], m["type"]
    where = f"{path}: parameter {name}"
    default, allowed_text = _split_default(m["rest"])
    if type_ == "str":
        # a quoted default is the text between the quotes: `= ''` is the empty string. Only
        # in the header: a value given on the command line or in Python is taken as it is.
        default = _unquote(default)
    default = _convert(default, type_, where)
    allowed = _parse_allowed(allowed_text, type_, where) if allowed_text else None
    if allowed is not None and default not in allowed:
        raise ModelError(f"{where}: the default {default!r} is outside its range {allowed}")
    return Param(name, type_, default, (m["doc"] or "").strip(), allowed)


def _split_default(text: str) -> tuple[str, str]:
    """The default and the accepted values' text after it (empty if none). A quoted default
    ends at its closing quote, so the text inside may hold anything."""
    if text[:1] in ("'", '"') and text.find(text[0], 1) > 0:
        end = text.find(text[0], 1) + 1
        return text[:end], text[end:].strip()
    m = RANGE_START_RE.search(text)
    return (text[: m.start()].strip(), text[m.end():].strip()) if m else (text.strip(), "")


def _parse_allowed(text: str, type_: str, where: str) -> Allowed:
    """``in [LOW, HIGH]`` (round brackets for open ends), ``>= LOW`` and the like for a
    number; ``in {A, B, ...}`` for a text."""
    hint = "write `in [LOW, HIGH]`, `>= LOW`, `> LOW`, `<= HIGH` or `< HIGH` for a number, `in {A, B}` for a str"
    if type_ == "bool":
        raise ModelError(f"{where}: a bool parameter takes no range (it is true or false), not {text!r}")
    choices, interval, bound = CHOICES_RE.match(text), INTERVAL_RE.match(text), BOUND_RE.match(text)
    if (choices is not None) != (type_ == "str") or not (choices or interval or bound):
        raise ModelError(f"{where}: cannot read the range {text!r} of a {type_} parameter; {hint}")
    if choices:
        items = tuple(_unquote(i.strip()) for i in choices["items"].split(","))
        if not all(i.strip() for i in choices["items"].split(",")) or len(set(items)) != len(items):
            raise ModelError(f"{where}: the choices {text!r} must be distinct and not empty; {hint}")
        return Allowed(choices=items)
    if interval:
        low, high = (_convert(interval[k], type_, f"{where}: range {text!r}") for k in ("low", "high"))
        allowed = Allowed(low, high, interval["open"] == "(", interval["close"] == ")")
        if low > high or (low == high and (allowed.low_open or allowed.high_open)):
            raise ModelError(f"{where}: the range {text!r} holds no value")
        return allowed
    value = _convert(bound["bound"], type_, f"{where}: range {text!r}")
    op = bound["op"]
    return Allowed(low=value, low_open=op == ">") if op[0] == ">" else Allowed(high=value, high_open=op == "<")


def _unquote(text: str) -> str:
    """The text inside matching single or double quotes, else the text."""
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


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
    spec.kind.validate(spec.target, where)
