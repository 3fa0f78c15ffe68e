"""Model kinds: the one ``-- kind:`` header line that says what shape a model's output has.

A kind is a name, with options in brackets for the kinds that take them::

    -- kind: per_run
    -- kind: table
    -- kind: table_by_run
    -- kind: grouped (groups = signatures(kind, scope, vector_layout))
    -- kind: merging (runs = events_candidates)
    -- kind: merging (runs = signatures, groups = signatures(kind, scope, vector_layout), pairwise = true)
    -- kind: view

``per_run``
    One unit of work per run, computed in batches of runs; only the runs whose inputs
    changed are recomputed. The target must be partitioned by ``run_id``.
``table``
    The whole table is one unit, recomputed when any input changed. The target is not
    partitioned by ``run_id``.
``table_by_run``
    The whole table is one unit, written as a folder per run (``probe_summaries``): the
    target is partitioned by ``run_id``, and a run whose rows come out the same keeps its
    files.
``grouped (groups = DATASET(COLUMN, ...))``
    One unit whose rows for one value of those columns depend only on DATASET's rows with
    that value (``matches`` pairs signatures only within a kind, scope and vector layout)
    and, when DATASET has a run_id column, on the other inputs' rows of those runs (a
    cohort's events): when that input is larger than a batch, or an executor has workers to
    spread it over, it is computed in batches of whole groups.
``merging (runs = DATASET[, groups = DATASET(COLUMN, ...)][, pairwise = true])``
    One unit (grouped too, with ``groups``); when the only change to its inputs is new runs
    of DATASET (a dataset partitioned by run), the SQL is rendered with ``adding`` true and
    merges them into the previous output (``previous_output``; the new runs' ids are
    ``added_runs(run_id)``). ``pairwise = true`` (with ``groups`` over DATASET itself) says
    more: each output row scores one pair of DATASET's rows from that pair alone, and the
    merge keeps the best rows of the union of ``previous_output`` and the new pairs, so
    merging outputs of disjoint sets of pairs, with no runs added, gives the output of
    their union. An executor with workers then computes a group too large for one task in
    blocks of pairs (:func:`pair_blocks`), and merges the blocks' outputs.
``view``
    A view in the catalog, over the dataset views, at default parameters.

Each kind is a small frozen dataclass with its options as typed fields. :func:`parse_kind`
reads the header's text; :meth:`Kind.validate` checks the kind against its target's
contract. ``materialization`` and ``incremental`` give each kind's older spelling
(``lake``/``view``, ``run_id``/``full``), which the logic fingerprint hashes.

A kind also owns what differs between kinds in a build: its units of work
(:meth:`Kind.units`), the batches it is computed in (:meth:`Kind.batches`) and how a unit's
staged files are laid out for publishing (:meth:`Kind.stage`). The engine asks the kind and
never branches on its name.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Iterable

import duckdb

from .. import contracts, lake as lk
from ..errors import ModelError
from ..scan import select_dataset
from ..sql import quote_identifier as qi, sql_literal

if TYPE_CHECKING:
    from .inputs import Input
    from .plan import ModelPlan

NAME_RE = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)\s*(?:\((?P<options>.*)\))?$", re.S)
DATASET_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
GROUPS_RE = re.compile(r"^(?P<dataset>[a-z_][a-z0-9_]*)\s*\((?P<columns>[^()]*)\)$")
COLUMN_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
KIND_SYNTAX = "`-- kind: NAME` or `-- kind: NAME (OPTION = VALUE, ...)`"

Groups = tuple[str, tuple[str, ...]]  # (input dataset, its grouping columns)
WHOLE = "*"  # the unit of work of a model computed as one table


@dataclass(frozen=True)
class Batch:
    """One step of a model's computation: the units it computes, per input dataset a
    condition on the rows it reads (groups of a grouped model), and the runs whose files its
    inputs partitioned by run are read from (None: those of its units).

    A step of a merging model's merging SQL also has the runs it adds (``added``; None: the
    full SQL) and the output it merges them into (``previous``). A block of pairs
    (``block_of``: the number of the group it is part of) writes output that is merged
    with the group's other blocks' by a last step (:func:`merged_blocks`); ``part`` names
    the output file of those steps."""

    units: list[str]
    filters: dict[str, str] = field(default_factory=dict)
    runs: frozenset[str] | None = None
    added: frozenset[str] | None = None
    previous: tuple[Path, ...] = ()
    block_of: int | None = None
    part: str | None = None

    def files(self, inp: Input) -> list[Path]:
        """The input's files this batch reads."""
        if self.runs is None or not inp.by_run:
            return inp.files_for(self.units)
        return [f for run in sorted(self.runs) for f in inp.files.get(run, [])]

    def output_name(self, index: int) -> str:
        """The file its output gets (a target not partitioned by run), the ``index``-th step."""
        return f"{self.part or f'data-{index}'}.parquet"


@dataclass(frozen=True)
class Kind:
    """What a model's output is and how it is computed; one subclass per kind."""

    name: ClassVar[str]
    syntax: ClassVar[str]  # the header line's shape, for messages
    options: ClassVar[tuple[str, ...]] = ()  # the options it takes, in their canonical order
    required: ClassVar[tuple[str, ...]] = ()
    _materialization: ClassVar[str] = "lake"
    _incremental: ClassVar[str] = "full"
    # whether its target must be partitioned by run_id (None: either), and the kind to
    # write instead when it is not so
    target_by_run: ClassVar[bool | None] = None
    instead: ClassVar[str] = ""

    @property
    def materialization(self) -> str:
        """``lake`` (Parquet in the target's partitions) or ``view`` (a catalog view)."""
        return self._materialization

    @property
    def incremental(self) -> str:
        """``run_id`` (one unit per run) or ``full`` (the table is one unit)."""
        return self._incremental

    @property
    def header(self) -> str:
        """The kind as the header writes it: ``merging (runs = signatures)``."""
        given = [f"{key} = {_option_text(getattr(self, key))}" for key in self.options if getattr(self, key) is not None]
        return f"{self.name} ({', '.join(given)})" if given else self.name

    def __str__(self) -> str:
        return self.header

    @classmethod
    def from_options(cls, options: dict[str, str], where: str) -> Kind:
        """The kind with ``options`` (option name to its text), each read and checked."""
        values = {key: _read_option(cls, key, text, where) for key, text in options.items()}
        return cls(**values)

    def validate(self, target: str, where: str) -> None:
        """Refuse a target this kind cannot write (``where`` names the model and its file)."""
        contract = contracts.DATASETS.get(target)
        if contract is None or contract.kind != "interpretation":
            raise ModelError(
                f"{where}: a model of kind {self.name} writes to the lake: its target must be an interpretation "
                f"dataset, not {target!r} (`-- kind: view` makes a view in the catalog)"
            )
        if self.target_by_run is not None and self.by_run(target) != self.target_by_run:
            need = "needs a target partitioned by run_id" if self.target_by_run else "is for a target not partitioned by run_id"
            raise ModelError(
                f"{where}: kind {self.name} {need}; {target} is{' not' if self.target_by_run else ''}: "
                f"write `-- kind: {self.instead}`"
            )

    @staticmethod
    def by_run(target: str) -> bool:
        contract = contracts.DATASETS.get(target)
        return contract is not None and "run_id" in contract.partition_by

    # -- in a build --------------------------------------------------------------------

    merges: ClassVar[bool] = False  # merges new runs into its previous output (``merging``)
    keeps_unchanged_runs: ClassVar[bool] = False  # a run whose rows came out the same keeps its files

    def check_reads(self, dependencies: tuple[str, ...], where: str) -> None:
        """Refuse options naming a dataset the model's SQL does not read."""
        named = {"groups": (getattr(self, "groups", None) or (None,))[0], "runs": getattr(self, "runs", None)}
        for option, dataset in named.items():
            if dataset is not None and dataset not in dependencies:
                what = "groups" if option == "groups" else "merges new runs of"
                raise ModelError(f"{where}: `kind: {self.header}` {what} {dataset}, which the model does not read")

    def units(self, runs: Iterable[str]) -> list[str]:
        """Its units of work, given the runs its by-run inputs hold: the whole table."""
        return [WHOLE]

    def unit_of(self, run: str) -> str:
        """The unit a run's input files belong to."""
        return WHOLE

    def unit_word(self, n: int) -> str:
        return "table"

    def batches(
        self, plan: ModelPlan, units: list[str], con: duckdb.DuckDBPyConnection, excluded: set[Path], budget: int,
        spread: int = 1,
    ) -> list[Batch]:
        """The steps computing ``units``, each reading input files (less ``excluded``) of about
        ``budget`` bytes at most where the kind can split its work: here, one step. ``spread``:
        how many steps can run at once (an executor with workers); a kind that can split then
        makes at least twice as many steps where its input allows."""
        return [Batch(units)]

    def stage(self, out: Path, fresh: Path, files: list[Path], kept: dict[str, list[Path]]) -> list[Path]:
        """Move a unit's staged ``files`` (in ``out``) into the ``fresh`` folder that replaces
        its published one; the files, where they are now. ``kept``: runs whose old files
        stay (a kind that keeps unchanged runs)."""
        return [lk.publish(f, fresh) for f in files]


@dataclass(frozen=True)
class PerRun(Kind):
    """One unit per run, computed in batches of runs; the target is partitioned by run_id."""

    name: ClassVar[str] = "per_run"
    syntax: ClassVar[str] = "per_run"
    _incremental: ClassVar[str] = "run_id"
    target_by_run: ClassVar[bool | None] = True
    instead: ClassVar[str] = "table"

    def units(self, runs: Iterable[str]) -> list[str]:
        return sorted(runs)

    def unit_of(self, run: str) -> str:
        return run

    def unit_word(self, n: int) -> str:
        return "run" if n == 1 else "runs"

    def batches(
        self, plan: ModelPlan, units: list[str], con: duckdb.DuckDBPyConnection, excluded: set[Path], budget: int,
        spread: int = 1,
    ) -> list[Batch]:
        """Consecutive runs grouped so that each batch's own input files total at most
        ``budget`` bytes (a run larger than that is a batch of its own), and with ``spread``
        above 1 at most a 2 x ``spread``-th of them all: a run's output depends on its inputs
        alone, so memory follows the batch, not the lake."""
        sizes = {unit: _run_bytes(plan, unit, excluded) for unit in units}
        return [Batch(list(chunk)) for chunk in _pack(units, sizes, _target(sizes, budget, spread))]


@dataclass(frozen=True)
class Table(Kind):
    """The whole table is one unit; the target is not partitioned by run_id."""

    name: ClassVar[str] = "table"
    syntax: ClassVar[str] = "table"
    target_by_run: ClassVar[bool | None] = False
    instead: ClassVar[str] = "table_by_run"


@dataclass(frozen=True)
class TableByRun(Kind):
    """The whole table is one unit, written as a folder per run (``probe_summaries``)."""

    name: ClassVar[str] = "table_by_run"
    syntax: ClassVar[str] = "table_by_run"
    keeps_unchanged_runs: ClassVar[bool] = True
    target_by_run: ClassVar[bool | None] = True
    instead: ClassVar[str] = "table"

    def stage(self, out: Path, fresh: Path, files: list[Path], kept: dict[str, list[Path]]) -> list[Path]:
        """Every staged run folder goes under the new analysis folder or, for a ``kept`` run,
        links to its old files (the models reading it see nothing new there)."""
        moved = []
        for folder in out.glob("run_id=*"):
            run = lk.check_identifier(lk.partition_value(folder), "run_id")
            target = fresh / f"run_id={run}"
            if run in kept:
                target.mkdir()
                for old in kept[run]:
                    os.link(old, target / old.name)
                    moved.append(target / old.name)
            else:
                moved += [lk.publish(f, target) for f in sorted(folder.glob("*.parquet"))]
        return moved


@dataclass(frozen=True)
class Grouped(Kind):
    """One unit, computed one group of an input's rows at a time when that input is large:
    its output for one value of ``groups``' columns depends only on the input rows with it."""

    groups: Groups
    name: ClassVar[str] = "grouped"
    syntax: ClassVar[str] = "grouped (groups = DATASET(COLUMN, ...))"
    options: ClassVar[tuple[str, ...]] = ("groups",)
    required: ClassVar[tuple[str, ...]] = ("groups",)

    def batches(
        self, plan: ModelPlan, units: list[str], con: duckdb.DuckDBPyConnection, excluded: set[Path], budget: int,
        spread: int = 1,
    ) -> list[Batch]:
        return _group_batches(self.groups, plan, units, con, excluded, budget, spread)

    def validate(self, target: str, where: str) -> None:
        super().validate(target, where)
        _validate_groups(self, where)


@dataclass(frozen=True)
class Merging(Kind):
    """One unit (grouped too when ``groups`` is given); new runs of ``runs``, when they are
    the only change, are merged into the previous output by the SQL itself."""

    runs: str
    groups: Groups | None = None
    pairwise: bool | None = None
    name: ClassVar[str] = "merging"
    syntax: ClassVar[str] = "merging (runs = DATASET[, groups = DATASET(COLUMN, ...)][, pairwise = true])"
    options: ClassVar[tuple[str, ...]] = ("runs", "groups", "pairwise")
    required: ClassVar[tuple[str, ...]] = ("runs",)
    merges: ClassVar[bool] = True

    def batches(
        self, plan: ModelPlan, units: list[str], con: duckdb.DuckDBPyConnection, excluded: set[Path], budget: int,
        spread: int = 1,
    ) -> list[Batch]:
        """A merge of new runs is one step (it reads only their pairs and the last output);
        a full build goes by groups, if any, and in blocks of pairs when it is pairwise and
        has workers to spread them over."""
        if plan.added:
            return [Batch(units, added=frozenset(plan.added), previous=plan.previous_files)]
        if self.groups is None:
            return [Batch(units)]
        if self.pairwise and spread > 1:
            return pair_blocks(self.groups, plan, units, con, excluded, spread)
        return _group_batches(self.groups, plan, units, con, excluded, budget, spread)

    def validate(self, target: str, where: str) -> None:
        super().validate(target, where)
        dataset = contracts.DATASETS.get(self.runs)
        if dataset is None or "run_id" not in dataset.partition_by:
            raise ModelError(
                f"{where}: kind merging: runs must name a dataset partitioned by run, not {self.runs!r}"
            )
        if self.groups is not None:
            _validate_groups(self, where)
        if self.pairwise and (self.groups is None or self.groups[0] != self.runs):
            raise ModelError(
                f"{where}: kind merging: pairwise = true needs groups over the runs dataset: "
                f"`groups = {self.runs}(COLUMN, ...)`"
            )
        if self.pairwise and self.by_run(target):
            raise ModelError(f"{where}: kind merging: pairwise = true is for a target not partitioned by run_id; "
                             f"{target} is")


@dataclass(frozen=True)
class View(Kind):
    """A view in the catalog (over the dataset views, at default parameters)."""

    name: ClassVar[str] = "view"
    syntax: ClassVar[str] = "view"
    _materialization: ClassVar[str] = "view"

    def validate(self, target: str, where: str) -> None:
        if target in contracts.DATASETS:
            raise ModelError(f"{where}: a view model's target must not be a dataset name ({target!r})")


KINDS: dict[str, type[Kind]] = {k.name: k for k in (PerRun, Table, TableByRun, Grouped, Merging, View)}


def parse_kind(text: str, where: str) -> Kind:
    """The kind a header's ``kind:`` text names, with its options; ``where`` (the file)
    starts every error."""
    text = " ".join(text.split())
    m = NAME_RE.match(text)
    if not m or not _paired(text):
        raise ModelError(f"{where}: cannot read kind {text!r}; write {KIND_SYNTAX}")
    cls = KINDS.get(m["name"])
    if cls is None:
        raise ModelError(f"{where}: unknown kind {m['name']!r}; the kinds are {', '.join(KINDS)}")
    options = _split_options(m["options"] or "", cls, where)
    unknown = [key for key in options if key not in cls.options]
    if unknown:
        takes = f"its options are {', '.join(cls.options)}" if cls.options else "it takes no options"
        raise ModelError(f"{where}: kind {cls.name} has no option {unknown[0]!r} ({takes}); write `-- kind: {cls.syntax}`")
    missing = [key for key in cls.required if key not in options]
    if missing:
        raise ModelError(f"{where}: kind {cls.name} needs the option {missing[0]}; write `-- kind: {cls.syntax}`")
    return cls.from_options(options, where)


def _paired(text: str) -> bool:
    """Every bracket closes one opened before it."""
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _split_options(text: str, cls: type[Kind], where: str) -> dict[str, str]:
    """``key = value`` pairs separated by commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    options: dict[str, str] = {}
    if not text.strip():
        return options
    for part in parts:
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not re.fullmatch(r"[a-z_]+", key) or not value:
            raise ModelError(
                f"{where}: cannot read the option {part.strip()!r} of kind {cls.name}; write `-- kind: {cls.syntax}`"
            )
        if key in options:
            raise ModelError(f"{where}: kind {cls.name} gives the option {key} twice")
        options[key] = value
    return options


def _read_option(cls: type[Kind], key: str, text: str, where: str) -> str | Groups | bool:
    if key == "pairwise":
        if text not in ("true", "false"):
            raise ModelError(f"{where}: cannot read pairwise {text!r} of kind {cls.name}; write `pairwise = true`")
        return text == "true"
    if key == "groups":
        m = GROUPS_RE.match(text)
        columns = tuple(c.strip() for c in m["columns"].split(",")) if m else ()
        if not m or not all(COLUMN_RE.match(c) for c in columns):
            raise ModelError(
                f"{where}: cannot read groups {text!r} of kind {cls.name}; write `groups = DATASET(COLUMN, ...)`"
            )
        return m["dataset"], columns
    if not DATASET_RE.match(text):
        raise ModelError(f"{where}: cannot read {key} {text!r} of kind {cls.name}; write `{key} = DATASET`")
    return text


def _option_text(value: str | Groups | bool) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value
    dataset, columns = value
    return f"{dataset}({', '.join(columns)})"


def _group_batches(
    groups: Groups, plan: ModelPlan, units: list[str], con: duckdb.DuckDBPyConnection, excluded: set[Path], budget: int,
    spread: int,
) -> list[Batch]:
    """One batch of everything if the grouped input's files fit in ``budget`` bytes and
    ``spread`` is 1; else consecutive groups packed as :meth:`PerRun.batches` packs runs (a
    group whose size is unknown is a batch of its own). A grouped input with a run_id
    column gives each group's runs: the batch reads the by-run inputs of those runs only
    (a cohort's runs, the runs holding a kind of signature)."""
    dataset, columns = groups
    inp = plan.inputs[dataset]
    files = [f for f in inp.files_for([WHOLE]) if f not in excluded]
    if spread < 2 and sum(f.stat().st_size for f in files) <= budget:
        return [Batch(units)]
    with_runs = "run_id" in inp.dataset.column_names
    keys = con.execute(
        f"SELECT {', '.join(qi(c) for c in columns)}{', list(DISTINCT run_id)' if with_runs else ''}"
        f" FROM ({select_dataset(inp.dataset, files, exact=True)})"
        f" GROUP BY ALL ORDER BY {', '.join(str(i + 1) for i in range(len(columns)))}"
    ).fetchall()
    conditions = {_group_condition(columns, key): frozenset(key[len(columns)]) if with_runs else None for key in keys}
    sizes = {c: sum(_run_bytes(plan, r, excluded) for r in runs) if runs is not None else budget
             for c, runs in conditions.items()}
    batches = []
    for chunk in _pack(list(conditions), sizes, _target(sizes, budget, spread)):
        runs = frozenset().union(*(conditions[c] for c in chunk)) if with_runs else None
        batches.append(Batch(units, {dataset: " OR ".join(f"({c})" for c in chunk)}, runs))
    return batches or [Batch(units)]


def pair_blocks(
    groups: Groups, plan: ModelPlan, units: list[str], con: duckdb.DuckDBPyConnection, excluded: set[Path], spread: int,
) -> list[Batch]:
    """The steps of a pairwise model's full build over ``spread`` workers: about 2 x
    ``spread`` steps of equal numbers of pairs (n signatures of a group make n(n-1)/2).

    Consecutive groups with at most that share each are computed whole, together. A larger
    group is split into B blocks of its runs, in order: block j adds its runs to the runs of
    blocks 1..j-1 (the merging SQL with no previous output), so it computes the pairs with
    one side in block j and the other in blocks 1..j, and every pair of the group is
    computed once. Block j ends at n * sqrt(j / B) signatures, which gives each block about
    n^2 / 2B pairs. :func:`merged_blocks` makes the steps that merge a group's blocks."""
    dataset, columns = groups
    inp = plan.inputs[dataset]
    files = [f for f in inp.files_for([WHOLE]) if f not in excluded]
    keys = ", ".join(qi(c) for c in columns)
    counts = con.execute(
        f"SELECT {keys}, run_id, count(*) FROM ({select_dataset(inp.dataset, files, exact=True)})"
        f" GROUP BY ALL ORDER BY {keys}, run_id"
    ).fetchall()
    group_runs: dict[str, list[tuple[str, int]]] = {}
    for *key, run, n in counts:
        group_runs.setdefault(_group_condition(columns, key), []).append((run, n))
    pairs = {c: _pairs(runs) for c, runs in group_runs.items()}
    share = max(1, sum(pairs.values()) // (2 * spread))
    steps: list[Batch] = []
    whole: list[str] = []  # consecutive small groups, computed together
    for number, (condition, runs) in enumerate(group_runs.items()):
        if pairs[condition] <= share:
            if whole and sum(pairs[c] for c in whole) + pairs[condition] > share:
                steps.append(_whole_groups(dataset, whole, group_runs, units))
                whole = []
            whole.append(condition)
            continue
        blocks = _split_runs(runs, math.ceil(pairs[condition] / share))
        if len(blocks) == 1:  # one run holds nearly all of it
            steps.append(_whole_groups(dataset, [condition], group_runs, units))
            continue
        for j, block in enumerate(blocks):
            earlier = frozenset(run for b in blocks[:j + 1] for run in b)
            steps.append(Batch(units, {dataset: condition}, earlier, frozenset(block), block_of=number,
                               part=f"block-{number}-{j}"))
    if whole:
        steps.append(_whole_groups(dataset, whole, group_runs, units))
    return steps or [Batch(units)]


def merged_blocks(steps: list[Batch], out: Path, folder: Path) -> list[Batch]:
    """For each group computed in blocks among ``steps``, the step that merges its blocks'
    output: the merging SQL over the group's runs, with no runs added and the blocks' files
    as its previous output, moved from ``out`` into ``folder`` (which names the analysis)."""
    parts: dict[int, list[Batch]] = {}
    for step in steps:
        if step.block_of is not None:
            parts.setdefault(step.block_of, []).append(step)
    merges = []
    for number, blocks in sorted(parts.items()):
        files = [folder / f.name for f in sorted(out.glob(f"block-{number}-*.parquet"))]
        for f in files:
            os.rename(out / f.name, f)
        merges.append(Batch(blocks[0].units, blocks[0].filters, frozenset().union(*(b.runs or () for b in blocks)),
                            frozenset(), tuple(files), part=f"pairs-{number}"))
    return merges


def _group_condition(columns: tuple[str, ...], key: Iterable[object]) -> str:
    return " AND ".join(f"{qi(c)} IS NOT DISTINCT FROM {'NULL' if v is None else sql_literal(v)}"
                        for c, v in zip(columns, key))


def _pairs(runs: list[tuple[str, int]]) -> int:
    n = sum(count for _, count in runs)
    return n * (n - 1) // 2


def _whole_groups(dataset: str, conditions: list[str], group_runs: dict[str, list[tuple[str, int]]],
                  units: list[str]) -> Batch:
    runs = frozenset(run for c in conditions for run, _ in group_runs[c])
    return Batch(units, {dataset: " OR ".join(f"({c})" for c in conditions)}, runs)


def _split_runs(runs: list[tuple[str, int]], blocks: int) -> list[list[str]]:
    """``runs`` (with their signature counts) in consecutive blocks, block j ending nearest
    n * sqrt(j / blocks) signatures (a run goes where most of it lies); fewer blocks when a
    run is larger than a block."""
    n = sum(count for _, count in runs)
    bounds = [n * math.sqrt(j / blocks) for j in range(1, blocks + 1)]
    split: list[list[str]] = [[]]
    seen, j = 0, 0
    for run, count in runs:
        if split[-1] and seen + count / 2 > bounds[j]:  # most of it lies past block j
            split.append([])
            while j < blocks - 1 and seen + count / 2 > bounds[j]:
                j += 1
        split[-1].append(run)
        seen += count
    return split


def _run_bytes(plan: ModelPlan, run: str, excluded: set[Path]) -> int:
    """The bytes of a run's files in the plan's inputs partitioned by run."""
    return sum(f.stat().st_size for inp in plan.inputs.values() if inp.by_run
               for f in inp.files.get(run, []) if f not in excluded)


def _target(sizes: dict[str, int], budget: int, spread: int) -> int:
    """The bytes a batch may read: ``budget``, and with ``spread`` above 1 at most a
    2 x ``spread``-th of everything (so each of ``spread`` workers has a next batch)."""
    return budget if spread < 2 else max(1, min(budget, sum(sizes.values()) // (2 * spread)))


def _pack(items: list[str], sizes: dict[str, int], target: int) -> list[list[str]]:
    """Consecutive ``items`` in chunks whose sizes total at most ``target`` (an item larger
    than that is a chunk of its own)."""
    chunks: list[list[str]] = []
    size = 0
    for item in items:
        if not chunks or (chunks[-1] and size + sizes[item] > target):
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += sizes[item]
    return chunks


def _validate_groups(kind: Grouped | Merging, where: str) -> None:
    dataset, columns = kind.groups
    if dataset not in contracts.DATASETS:
        raise ModelError(f"{where}: kind {kind.name}: groups names unknown dataset {dataset!r}")
    unknown = [c for c in columns if c not in contracts.DATASETS[dataset].column_names]
    if unknown:
        raise ModelError(f"{where}: kind {kind.name}: groups names columns {dataset} does not have: {', '.join(unknown)}")


def legacy_kind(fields: dict[str, str]) -> str:
    """The ``kind:`` text that replaces a header's ``materialization``, ``incremental``,
    ``batch_by`` and ``additions`` (for the message refusing them)."""
    if fields.get("materialization") == "view":
        return View().header
    groups = fields.get("batch_by")
    if groups is not None:
        m = GROUPS_RE.match(groups.strip())
        if m:  # written the canonical way: `signatures(kind, scope)`
            groups = _option_text((m["dataset"], tuple(c.strip() for c in m["columns"].split(","))))
    if fields.get("additions"):
        return f"merging (runs = {fields['additions']}" + (f", groups = {groups})" if groups else ")")
    if groups:
        return f"grouped (groups = {groups})"
    if fields.get("incremental") == "run_id":
        return PerRun().header
    return TableByRun().header if Kind.by_run(fields.get("target", "")) else Table().header
