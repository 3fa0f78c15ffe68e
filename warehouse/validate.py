"""Conform a batch to its dataset contract, or refuse it naming every offending column.

:func:`conform` returns the batch cast to the contract's exact schema and column order. It
refuses (raising :class:`~warehouse.errors.ValidationError`) on: an unknown column, a
missing required column, a value that cannot be cast losslessly, NULL in a non-nullable
column, NaN or infinity in a float column, a value outside a column's enum, an identifier
that would be an unsafe path segment, and a schema_version of another dataset or major
version. Missing ``schema_version`` and ``created_at_utc`` columns are filled in, and a
missing nullable column is filled with NULL.

Every column is checked, so one pass reports every problem of a batch: each unknown or
missing column, and each bad column at its first offending row (with how many rows break
the same rule). :class:`Problems` gathers them over the batches of an input.

Rows are counted from 1 (the first data row of the input) in every message.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from .contracts import IDENTIFIER_PATTERN, Column, Dataset
from .errors import InvalidInput, ValidationError


def conform(
    dataset: Dataset,
    table: pa.Table,
    *,
    source: str = "<batch>",
    first_row: int = 1,
    created_at: dt.datetime | None = None,
) -> pa.Table:
    """Cast ``table`` to ``dataset``'s schema, checking every rule of the contract.

    ``first_row`` is the input row number of the table's first row (for messages when a
    large input is validated batch by batch); ``created_at`` fills a missing created_at_utc.
    Raises :class:`~warehouse.errors.InvalidInput` listing every problem found.
    """
    conformed, problems = check_batch(dataset, table, source=source, first_row=first_row, created_at=created_at)
    if problems:
        raise InvalidInput(problems)
    return conformed


def check_batch(
    dataset: Dataset,
    table: pa.Table,
    *,
    source: str = "<batch>",
    first_row: int = 1,
    created_at: dt.datetime | None = None,
) -> tuple[pa.Table | None, list[ValidationError]]:
    """:func:`conform` without raising: the conformed table (None if refused) and the problems.

    A problem's ``count`` attribute is how many rows of the batch break the same rule
    (None where counting would cost a second pass, as for a refused cast).
    """
    check = _Checker(dataset, source, first_row)
    check.columns(table.column_names)
    arrays = []
    for column in dataset.all_columns:
        try:
            if column.name in check.unusable:
                continue
            if column.name in table.column_names:
                array = check.cast(column, table.column(column.name).combine_chunks())
            else:
                array = _fill(dataset, column, table.num_rows, created_at)
            check.values(column, array)
            arrays.append(array)
        except _ColumnRefused:
            pass  # recorded; the other columns are still checked
    if check.problems:
        return None, check.problems
    return pa.Table.from_arrays(arrays, schema=dataset.schema), []


class Problems:
    """The problems of an input gathered over its batches: one per column and rule.

    A rule broken again in a later batch adds its rows to the first problem's count instead
    of adding a line, so the list stays as long as the number of distinct faults.
    """

    def __init__(self) -> None:
        self._first: dict[tuple, ValidationError] = {}
        self._counts: dict[tuple, int | None] = {}

    def __bool__(self) -> bool:
        return bool(self._first)

    def add(self, problems: list[ValidationError]) -> None:
        for p in problems:
            key = (p.source, p.column, p.reason)
            count = getattr(p, "count", None)
            if key not in self._first:
                self._first[key], self._counts[key] = p, count
            elif count is not None and self._counts[key] is not None:
                self._counts[key] += count

    def errors(self) -> list[ValidationError]:
        """One error per problem, saying how many more rows break the same rule."""
        out = []
        for key, p in self._first.items():
            count = self._counts[key]
            if count is not None and count > 1:
                more = count - 1
                p = ValidationError(f"{p.reason} ({more:,} more row{'s' if more > 1 else ''} like it)",
                                    dataset=p.dataset, source=p.source, column=p.column, row=p.row, value=p.value)
            out.append(p)
        return out


def _fill(dataset: Dataset, column: Column, n: int, created_at: dt.datetime | None) -> pa.Array:
    # pa.repeat, not a Python list of n values: a list costs ~0.4 s per million rows.
    if column.name == "schema_version":
        return pa.repeat(pa.scalar(dataset.schema_version, pa.string()), n)
    if column.name == "created_at_utc":
        now = created_at or dt.datetime.now(dt.timezone.utc)
        return pa.repeat(pa.scalar(now, column.type), n)
    return pa.nulls(n, column.type)


class _ColumnRefused(Exception):
    """A column's problem was recorded: stop checking that column."""


class _Checker:
    def __init__(self, dataset: Dataset, source: str, first_row: int) -> None:
        self.dataset = dataset
        self.source = source
        self.first_row = first_row
        self.problems: list[ValidationError] = []
        self.unusable: set[str] = set()  # columns missing or repeated: not checked further

    def note(self, message: str, column: str | None = None, index: int | None = None, value=None,
             count: int | None = None) -> None:
        row = None if index is None else self.first_row + index
        problem = ValidationError(message, dataset=self.dataset.name, source=self.source, column=column, row=row, value=value)
        problem.count = count
        self.problems.append(problem)

    def fail(self, message: str, column: str | None = None, index: int | None = None, value=None,
             count: int | None = None):
        self.note(message, column, index, value, count)
        raise _ColumnRefused

    def columns(self, names: list[str]) -> None:
        known = set(self.dataset.column_names)
        unknown = [n for n in dict.fromkeys(names) if n not in known]
        if unknown:  # one problem for all of them: the contract's list is long
            self.note(f"unknown column{'s' if len(unknown) > 1 else ''}; the contract's columns are "
                      f"{', '.join(self.dataset.column_names)}", ", ".join(unknown))
        for name in dict.fromkeys(names):
            if names.count(name) > 1:
                self.note("column appears more than once", name)
                self.unusable.add(name)
        for column in self.dataset.all_columns:
            if column.name not in names and column.required:
                self.note("required column is missing", column.name)
                self.unusable.add(column.name)

    def cast(self, column: Column, array: pa.Array) -> pa.Array:
        if array.type == column.type:
            return array
        if pa.types.is_string_view(array.type):  # as polars exports text: parsed and checked as plain text
            array = array.cast(pa.string())
        if _is_text(array.type) and column.type == pa.float32():
            # Text is parsed as float64 first: parsed straight to float32, a finite value
            # too large for it (1e300) would silently become infinity.
            array = self._cast(column, array, pa.float64())
        return self._cast(column, array, column.type)

    def _cast(self, column: Column, array: pa.Array, target: pa.DataType) -> pa.Array:
        if array.type == target:
            return array
        self._check_float_source(column, array)
        cast = _caster(array.type, target)
        try:
            result = cast(array)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            index = _first_failure(array, cast)
            value = array[index].as_py() if index is not None else None
            self.fail(f"cannot be cast losslessly from {array.type} to {target} ({exc})", column.name, index, value)
        self._check_float_overflow(column, array, result)
        return result

    def _check_float_source(self, column: Column, array: pa.Array) -> None:
        # NaN and infinity must be reported as such before a cast hides them in another type.
        if pa.types.is_floating(_leaf_type(array.type)):
            self._check_finite(column, array)

    def _check_float_overflow(self, column: Column, before: pa.Array, after: pa.Array) -> None:
        if _leaf_type(after.type) == pa.float32() and _leaf_type(before.type) != pa.float32():
            flat_after = _leaf_values(after)
            if pa.types.is_floating(flat_after.type):
                bad = pc.is_inf(flat_after)
                if pc.any(bad).as_py():
                    index = _row_of_leaf(after, _first_true(bad))
                    self.fail("value does not fit in float32", column.name, index, before[index].as_py())

    def values(self, column: Column, array: pa.Array) -> None:
        if not column.nullable and array.null_count:
            self.fail("NULL in a non-nullable column", column.name, _first_true(array.is_null()), count=array.null_count)
        if pa.types.is_floating(_leaf_type(column.type)):
            self._check_finite(column, array)
        if column.enum is not None:
            # NULL is no enum value; whether it is allowed was decided above by nullability.
            bad = pc.and_(array.is_valid(), pc.invert(pc.is_in(array, value_set=pa.array(column.enum, pa.string()))))
            self._refuse_where(bad, array, column, f"not one of the allowed values {', '.join(column.enum)}")
        if column.is_identifier or column.name in self.dataset.partition_by:
            bad = pc.invert(pc.match_substring_regex(array, IDENTIFIER_PATTERN))
            self._refuse_where(bad, array, column, f"unsafe identifier: it must match {IDENTIFIER_PATTERN}")
        if column.name == "schema_version":
            name, _, version = self.dataset.schema_version.partition("@")
            pattern = rf"^{re.escape(name)}@{version.split('.')[0]}\.[0-9]+$"
            bad = pc.invert(pc.match_substring_regex(array, pattern))
            self._refuse_where(bad, array, column, f"schema_version must be {name}@{version.split('.')[0]}.x")

    def _check_finite(self, column: Column, array: pa.Array) -> None:
        flat = _leaf_values(array)
        bad = pc.invert(pc.is_finite(flat))
        if pc.any(bad).as_py():
            i = _first_true(bad)
            index = _row_of_leaf(array, i)
            count = None if flat is not array else pc.sum(bad).as_py()  # rows, not list elements
            self.fail("NaN or infinity in a float column (write NULL for a missing value)", column.name, index,
                      flat[i].as_py(), count)

    def _refuse_where(self, bad: pa.Array, array: pa.Array, column: Column, message: str) -> None:
        bad = pc.fill_null(bad, False)
        if pc.any(bad).as_py():
            index = _first_true(bad)
            self.fail(message, column.name, index, array[index].as_py(), pc.sum(bad).as_py())


def _caster(source: pa.DataType, target: pa.DataType) -> Callable[[pa.Array], pa.Array]:
    if pa.types.is_timestamp(target) and (pa.types.is_string(source) or pa.types.is_large_string(source)):
        return _parse_utc_timestamps(target)
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(source) and source.tz is None:
        # A timestamp without a zone is taken as UTC, the lake's only zone.
        return lambda a: pc.assume_timezone(a, "UTC").cast(target, safe=True)
    return lambda a: pc.cast(a, target, safe=True)


# An ISO 8601 time of day ending with a zone designator: Z, +HH, +HHMM or +HH:MM.
_ZONED = r"[T ][0-9:.,]*([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$"


def _parse_utc_timestamps(target: pa.DataType) -> Callable[[pa.Array], pa.Array]:
    def parse(a: pa.Array) -> pa.Array:
        try:
            return pc.cast(a, target, safe=True)
        except pa.ArrowInvalid:
            pass
        # Some or all values have no zone: those are UTC. Each kind is parsed on its own.
        zoned = pc.fill_null(pc.match_substring_regex(a, _ZONED), False)
        with_zone = pc.cast(pc.if_else(zoned, a, None), target, safe=True)
        naive = pc.cast(pc.if_else(zoned, None, a), pa.timestamp(target.unit), safe=True)
        return pc.if_else(zoned, with_zone, pc.assume_timezone(naive, "UTC").cast(target, safe=True))

    return parse


def _first_failure(array: pa.Array, cast: Callable[[pa.Array], pa.Array]) -> int | None:
    """The index of the first element that ``cast`` refuses, by bisection."""

    def fails(lo: int, hi: int) -> bool:
        try:
            cast(array.slice(lo, hi - lo))
            return False
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return True

    lo, hi = 0, len(array)
    if not fails(lo, hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails(lo, mid):
            hi = mid
        else:
            lo = mid
    return lo


def _is_text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _leaf_type(type_: pa.DataType) -> pa.DataType:
    return _leaf_type(type_.value_type) if pa.types.is_list(type_) or pa.types.is_large_list(type_) else type_


def _leaf_values(array: pa.Array) -> pa.Array:
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        array = array.flatten()
    return array


def _row_of_leaf(array: pa.Array, leaf_index: int) -> int:
    """The row of ``array`` (a flat array or a list array) that holds leaf ``leaf_index``."""
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        return leaf_index
    ends = pc.list_value_length(array).fill_null(0).to_numpy().cumsum()
    return int((ends <= leaf_index).sum())


def _first_true(mask: pa.Array) -> int:
    return pc.index(mask, True).as_py()
