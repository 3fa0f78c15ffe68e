"""Check an existing lake against the dataset contracts, without changing anything.

``check_lake`` walks the lake root, judges every folder and file it finds (including files
written by other tools) and returns one :class:`Problem` per finding. It only reads: files
are opened read-only, and DuckDB runs in memory with its spill directory outside the lake.

Per dataset it reads each file's footer with pyarrow (readability, schema, partition
columns), then runs two set-based DuckDB scans over the files that conform: one for invalid
values, one for duplicate primary keys. A file DuckDB cannot read is reported and left out.

:func:`check_files` runs the same checks on a given list of one dataset's files: the model
engine uses it on a build's input files before reading them.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .contracts import DATASETS, IDENTIFIER_COLUMNS, IDENTIFIER_PATTERN, Column, Dataset
from .coverage import LeftOut, min_series_captures, runs_without_runs_row, short_series
from .duck import apply_resource_settings
from .errors import WarehouseError, shown_value
from .lake import RESERVED_DIRS, STAGING_DIR, TEMP_PREFIX, Lake, is_identifier, is_stale, lake_root, open_lake
from .scan import PARAMETER, read_parquet
from .sql import quote_identifier as qi, quote_literal as ql

# Every kind of problem, with what it means (stable codes: scripts match on them).
KINDS: dict[str, str] = {
    "unreadable": "not a valid Parquet file (empty, truncated, wrong magic bytes, a folder, corrupt data)",
    "empty_file": "a Parquet file holding no rows: writers never publish one",
    "missing_column": "schema drift: a contract column absent from the file",
    "extra_column": "schema drift: a file column the contract does not know, or one repeated",
    "type_mismatch": "schema drift: a column whose Arrow type differs from the contract",
    "partition_mismatch": "schema drift: a partition column stored in the file whose values differ from its folder",
    "bad_partition": "a folder that is not key=value with the dataset's partition keys in order",
    "unsafe_partition": "a partition folder whose value is not a safe identifier",
    "duplicate_key": "a primary key held by more than one row",
    "invalid_value": "NULL in a non-nullable column, a value outside an enum, NaN/inf, an unsafe identifier",
    "stray_file": "a file or folder that is not a data file where data files belong",
    "unknown_dataset": "a folder at the lake root that is neither a dataset nor reserved",
    "stale_staging": "a leftover of a killed writer or build in the staging area (the next one removes it)",
    "missing_run": "geometry of a run with no runs row: the models cannot place it in a cohort, so consensus leaves it out",
    "catalog_elsewhere": "the catalog was copied or moved since it was built, or reads another lake than this one",
}

# Files the warehouse itself keeps at the lake root: none today. Anything else loose there
# is a stray file (add a name here when a tool starts writing one).
KNOWN_ROOT_FILES: frozenset[str] = frozenset()

MAX_DUPLICATE_KEYS = 20  # duplicated keys listed per dataset; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One finding: where it is (lake-relative path), a stable kind code and a specific message.

    ``files`` lists every file a finding involves when there are several (the files sharing
    a duplicated key); ``path`` is the first of them. The message names them all.
    """

    dataset: str | None
    path: str
    kind: str
    message: str
    files: tuple[str, ...] = dataclasses.field(default=(), compare=False)

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.message}"

    def as_dict(self) -> dict[str, str | None]:
        return {"dataset": self.dataset, "path": self.path, "kind": self.kind, "message": self.message}

    def involves(self, rel: str) -> bool:
        """Whether the lake-relative path ``rel`` is one of this finding's files, or is at or below its path."""
        if self.files:
            return rel in self.files
        return rel == self.path or rel.startswith(self.path + "/")


@dataclass
class _File:
    """A data file in a valid partition folder, with its folder's partition values."""

    path: Path
    partition: dict[str, str]
    schema: pa.Schema | None = None


class _Report:
    """Collects the problems of one dataset (or of the root) with lake-relative paths."""

    def __init__(self, root: Path, problems: list[Problem], dataset: str | None) -> None:
        self.root, self.problems, self.dataset = root, problems, dataset

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def __call__(self, path: Path, kind: str, message: str, files: Sequence[Path] = ()) -> None:
        self.problems.append(Problem(self.dataset, self.rel(path), kind, message, tuple(self.rel(f) for f in files)))


def check_lake(lake: str | os.PathLike | None = None) -> list[Problem]:
    """Every problem of the lake at ``lake`` (see :func:`lake.lake_root`), sorted by path.

    An empty lake gives ``[]``; a missing root raises :class:`~warehouse.errors.LakeNotFound`.
    """
    root = open_lake(lake)
    problems: list[Problem] = []

    def adder(dataset: str | None) -> _Report:
        return _Report(root, problems, dataset)

    with _connection() as con:
        for entry in sorted(root.iterdir()):
            if entry.name in DATASETS and entry.is_dir():
                _check_dataset(con, DATASETS[entry.name], entry, adder(entry.name))
            elif entry.name == STAGING_DIR:
                _check_staging(entry, adder(None))
            elif entry.name in RESERVED_DIRS or entry.name in KNOWN_ROOT_FILES:
                continue
            elif entry.is_dir():
                adder(None)(entry, "unknown_dataset", f"folder {entry.name!r} is neither a dataset "
                            f"({', '.join(DATASETS)}) nor a reserved folder ({', '.join(RESERVED_DIRS)})")
            else:
                adder(None)(entry, "stray_file", f"loose file at the lake root: {_what_file(entry.name)}")
    problems += [Problem(item.dataset, item.path, "missing_run", item.reason) for item in runs_without_runs_row(root)]
    return sorted(problems, key=lambda p: (p.path, p.kind))  # stable: keeps scan order within


def short_series_notes(lake: str | os.PathLike | None = None) -> list[LeftOut]:
    """Not problems of the data, but what the models will leave out of it: the runs whose
    series the repository's change-point model (at its default parameters) is given too few
    captures to test, each run in its newest capture. ``warehouse check`` prints them as
    notes, without failing."""
    root = open_lake(lake)
    from .models import load_project  # here: the model engine imports this module
    from .models.current import newest_per_run

    model = load_project().models.get("events_candidates")
    floor = min_series_captures(model.spec.name, model.params) if model else None
    if floor is None:
        return []
    files, _ = newest_per_run(Lake(root).table("geometry_state").folder)
    return short_series(root, files, floor, str(model.params.get("sample_set", "")))


def memory_split_notes(lake: str | os.PathLike | None = None) -> list[str]:
    """Not problems either: the analyses whose last build computed batches of runs again in
    smaller batches because they ran out of DuckDB's memory (the output is whole, the build
    slower; a larger memory limit avoids it). ``warehouse check`` prints them as notes."""
    from .models.state import load_analyses  # here: the model engine imports this module

    notes = []
    for r in sorted(load_analyses(open_lake(lake)).values(), key=lambda r: r.analysis_id):
        if n := len(r.last_build_splits):
            notes.append(f"{r.target}/analysis_id={r.analysis_id} ({r.model} {r.version}): its last build, {r.updated_at},"
                         f" split {n} batch{'es' if n > 1 else ''} of runs that ran out of memory into smaller ones"
                         f" (the first: {r.last_build_splits[0]}); its output is complete")
    return notes


def check_files(root: Path, dataset: Dataset, paths: Sequence[Path], *, nonfinite_is_null: bool = False) -> list[Problem]:
    """The problems of some of a dataset's files under ``root``, as :func:`check_lake` reports them.

    Each path is judged by its folders (partition keys in order, safe values, at the
    partition depth), as a file (a folder where a file belongs is unreadable), by its schema,
    its values and the primary keys it shares with the other paths. ``nonfinite_is_null``
    passes NaN and infinity in float columns, for a reader that takes them as NULL.
    """
    problems: list[Problem] = []
    add = _Report(root, problems, dataset.name)
    base = Lake(root).table(dataset).folder
    files = [f for f in (_placed(dataset, base, Path(p), add) for p in sorted(set(paths))) if f is not None]
    with _connection() as con:
        _check_files(con, dataset, files, add, nonfinite_is_null)
    return sorted(set(problems), key=lambda p: (p.path, p.kind))


@contextmanager
def _connection() -> Iterator[duckdb.DuckDBPyConnection]:
    with tempfile.TemporaryDirectory(prefix="warehouse-check-") as spill:
        # In memory, spilling outside the lake, no extension downloads: the check writes nothing.
        con = duckdb.connect(config={"temp_directory": spill, "autoinstall_known_extensions": False})
        try:
            # Parquet min/max statistics leave NaN out (as the format says), yet DuckDB's
            # statistics propagation trusts them and folds isnan() to false: turn it off.
            con.execute("SET disabled_optimizers = 'statistics_propagation'")
            con.execute("SET enable_progress_bar = false")
            apply_resource_settings(con)
            yield con
        finally:
            con.close()


def _check_staging(folder: Path, add: _Report) -> None:
    """Report what killed processes left; a running writer's or build's folder is its own."""
    what = "left in the staging area by an interrupted write (a killed writer or build); the next one removes it"
    for entry in sorted(folder.iterdir()):
        if not is_stale(entry):
            continue
        if not entry.is_dir() or entry.is_symlink():
            add(entry, "stale_staging", what)
            continue
        for dirpath, _, filenames in os.walk(entry):
            for name in sorted(filenames):
                add(Path(dirpath) / name, "stale_staging", what)


# ---------------------------------------------------------------------------------------
# Layout: partition folders and stray files.


def _what_file(name: str) -> str:
    if name.startswith(TEMP_PREFIX):
        return "leftover temporary file of an interrupted write"
    if name.startswith("."):
        return "hidden file, not a data file"
    if name.endswith(".parquet"):
        return "Parquet file outside the dataset folders"
    return "not a Parquet data file"


def _is_data_name(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith(".")


def _walk(dataset: Dataset, folder: Path, add: _Report) -> list[_File]:
    """The data files of a dataset folder in valid partition folders; reports everything else."""
    keys = dataset.partition_by
    files: list[_File] = []

    def visit(here: Path, values: dict[str, str]) -> None:
        depth = len(values)
        for entry in sorted(here.iterdir()):
            if depth < len(keys):
                expected = keys[depth]
                if not entry.is_dir():
                    what = _what_file(entry.name)
                    if _is_data_name(entry.name):
                        what = f"Parquet file outside the partition folders (expected under {expected}=<value>/)"
                    add(entry, "stray_file", what)
                    continue
                key, sep, value = entry.name.partition("=")
                if not sep or key != expected:
                    add(entry, "bad_partition", f"folder {entry.name!r} is not {expected}=<value> (partition "
                        f"keys of {dataset.name}, in order: {', '.join(keys)}); its contents were not checked")
                elif not is_identifier(value):
                    add(entry, "unsafe_partition", f"{key} value {value!r} is not a safe identifier (must match "
                        f"{IDENTIFIER_PATTERN}); its contents were not checked")
                else:
                    visit(entry, {**values, key: value})
            elif entry.is_dir():
                if entry.name.endswith(".parquet"):
                    add(entry, "unreadable", "a folder, not a Parquet file")
                else:
                    add(entry, "stray_file", "unexpected folder below the partition folders")
            elif _is_data_name(entry.name):
                files.append(_File(entry, values))
            else:
                add(entry, "stray_file", _what_file(entry.name))

    visit(folder, {})
    return files


# ---------------------------------------------------------------------------------------
# One file: footer and schema, read with pyarrow.


def _normalize(type_: pa.DataType) -> pa.DataType:
    """The contract type a file type stands for: encodings and spellings that read the same."""
    if pa.types.is_dictionary(type_):
        return _normalize(type_.value_type)
    if pa.types.is_large_string(type_) or pa.types.is_string_view(type_):
        return pa.string()
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return pa.list_(_normalize(type_.value_type))  # item name and nullability don't matter
    if pa.types.is_timestamp(type_) and type_.tz in ("UTC", "+00:00", "Etc/UTC", "Z"):
        return pa.timestamp(type_.unit, tz="UTC")
    return type_


def _read_schema(path: Path, add: _Report) -> pa.Schema | None:
    try:
        with pq.ParquetFile(path) as f:  # opens the file read-only
            if f.metadata.num_rows == 0:
                add(path, "empty_file", f"holds no rows ({f.metadata.num_row_groups} row groups); writers never publish "
                    "an empty file")
            return f.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        add(path, "unreadable", f"not a readable Parquet file: {type(exc).__name__}: {exc}")
        return None


def _check_schema(dataset: Dataset, f: _File, add: _Report) -> bool:
    """Report column problems; True when DuckDB may scan the file with the others."""
    assert f.schema is not None
    names = f.schema.names
    repeated = sorted({n for n in names if names.count(n) > 1})
    for name in repeated:  # DuckDB cannot line such a file up with the others by name
        add(f.path, "extra_column", f"column {name} appears {names.count(name)} times")
    conforms = not repeated
    for col in dataset.file_columns:
        if col.name not in f.schema.names:
            null = "nullable" if col.nullable else "not nullable"
            add(f.path, "missing_column", f"column {col.name} ({col.type}, {null}) is missing")
    for field in f.schema:
        if field.name not in dataset.column_names:
            add(f.path, "extra_column", f"column {field.name} ({field.type}) is not in the {dataset.name} contract")
            continue
        expected = dataset.column(field.name).type
        if _normalize(field.type) != expected:
            add(f.path, "type_mismatch", f"column {field.name}: expected {expected}, found {field.type}")
            conforms = False
        elif field.name in f.partition and not _partition_matches(f, field.name, add):
            conforms = False
    return conforms


def _partition_matches(f: _File, key: str, add: _Report) -> bool:
    """A file may repeat its partition column, if every value equals the folder's."""
    value, count, first = f.partition[key], 0, None
    try:
        with pq.ParquetFile(f.path) as pf:
            for batch in pf.iter_batches(columns=[key]):  # batches: bounded memory on big files
                col = pc.cast(batch.column(0), pa.string())
                bad = pc.invert(pc.fill_null(pc.equal(col, value), False))
                n = pc.sum(bad).as_py() or 0
                if n and count == 0:
                    first = col.filter(bad)[0].as_py()
                count += n
    except (pa.ArrowException, OSError) as exc:
        add(f.path, "unreadable", f"column {key} could not be read: {type(exc).__name__}: {exc}")
        return False
    if count:
        add(f.path, "partition_mismatch", f"column {key} holds {count} value(s) differing from the folder's "
            f"{key}={value}, first {first!r}")
    return count == 0


# ---------------------------------------------------------------------------------------
# One dataset: layout and files, then the set-based scans.


def _check_dataset(con: duckdb.DuckDBPyConnection, dataset: Dataset, folder: Path, add: _Report) -> None:
    _check_files(con, dataset, _walk(dataset, folder, add), add)


def _placed(dataset: Dataset, base: Path, path: Path, add: _Report) -> _File | None:
    """``path`` as a data file of ``dataset`` with its folders' partition values; None (and the
    problem reported) when its folders or its kind say it is none."""
    parts = path.relative_to(base).parts
    keys = dataset.partition_by
    values: dict[str, str] = {}
    for depth, name in enumerate(parts[:-1]):
        folder = base.joinpath(*parts[: depth + 1])
        if depth >= len(keys):
            add(folder, "stray_file", "unexpected folder below the partition folders")
            return None
        key, sep, value = name.partition("=")
        if not sep or key != keys[depth]:
            add(folder, "bad_partition", f"folder {name!r} is not {keys[depth]}=<value> (partition keys of "
                f"{dataset.name}, in order: {', '.join(keys)})")
            return None
        if not is_identifier(value):
            add(folder, "unsafe_partition", f"{key} value {value!r} is not a safe identifier (must match "
                f"{IDENTIFIER_PATTERN})")
            return None
        values[key] = value
    if len(values) < len(keys):
        add(path, "stray_file", f"Parquet file outside the partition folders (expected under {keys[len(values)]}=<value>/)")
        return None
    if path.is_dir():
        add(path, "unreadable", "a folder, not a Parquet file")
        return None
    return _File(path, values)


def _check_files(
    con: duckdb.DuckDBPyConnection, dataset: Dataset, files: list[_File], add: _Report, nonfinite_is_null: bool = False
) -> None:
    """Footer and schema of each file, then the value and duplicate-key scans over those that conform."""
    scannable: list[_File] = []
    for f in files:
        f.schema = _read_schema(f.path, add)
        if f.schema is not None and _check_schema(dataset, f, add):
            scannable.append(f)
    if scannable:
        scannable = _check_values(con, dataset, scannable, add, nonfinite_is_null)
        _check_duplicates(con, dataset, scannable, add)


def _read_sql(dataset: Dataset, row_numbers: bool = False) -> str:
    """read_parquet over the ``?`` file list: partition columns come typed from the folders."""
    return read_parquet(PARAMETER, partitions=dataset.partition_by, row_numbers=row_numbers)


def _run(con: duckdb.DuckDBPyConnection, sql: str, files: list[_File], add: _Report) -> tuple[list[tuple], list[_File]]:
    """Run ``sql`` over ``files``; if DuckDB fails on some file, report it and retry without.

    Returns the rows and the files they cover. The rows' ``file_index`` indexes that list.
    """
    try:
        return con.execute(sql, [[str(f.path) for f in files]]).fetchall(), files
    except duckdb.Error as whole:
        good = []
        for f in files:
            try:  # hash every column so that every data page is decoded, not just the footer
                con.execute(f"SELECT min(hash(COLUMNS(*))) FROM {read_parquet(PARAMETER, union=False)}", [[str(f.path)]]).fetchall()
                good.append(f)
            except duckdb.Error as exc:
                add(f.path, "unreadable", f"DuckDB could not read it: {exc}")
        if len(good) == len(files):
            raise whole  # not a file's fault: a bug worth seeing
        return _run(con, sql, good, add) if good else ([], [])


class _Rule(NamedTuple):
    """A value rule of one column: the SQL condition of a bad row and what is wrong."""

    column: str
    cond: str
    what: str
    show_value: bool = True  # False for NULLs: there is nothing to show


def _value_rules(col: Column, nonfinite_is_null: bool = False) -> list[_Rule]:
    """The value rules of one column, from its contract (``nonfinite_is_null``: NaN and infinity pass)."""
    c = qi(col.name)
    rules = []
    if not col.nullable:
        rules.append(_Rule(col.name, f"{c} IS NULL", "NULL in a non-nullable column", show_value=False))
    if col.enum:
        allowed = ", ".join(ql(v) for v in col.enum)
        rules.append(_Rule(col.name, f"{c} NOT IN ({allowed})",
                           f"value(s) outside the allowed values ({', '.join(col.enum)})"))
    if pa.types.is_floating(col.type) and not nonfinite_is_null:
        rules.append(_Rule(col.name, f"(isnan({c}) OR isinf({c}))", "NaN or infinite value(s)"))
    elif pa.types.is_list(col.type) and pa.types.is_floating(col.type.value_type) and not nonfinite_is_null:
        # As the writer's validation: no NaN/inf inside vectors either. DuckDB sorts NaN
        # above +inf, so list_max/list_min find them without a lambda per element.
        rules.append(_Rule(col.name, f"(isnan(list_max({c})) OR isinf(list_max({c})) OR isinf(list_min({c})))",
                           "list(s) holding NaN or infinite values"))
    if col.name in IDENTIFIER_COLUMNS and pa.types.is_string(col.type):
        rules.append(_Rule(col.name, f"NOT regexp_full_match({c}, {ql(IDENTIFIER_PATTERN)})",
                           f"unsafe identifier(s) (must match {IDENTIFIER_PATTERN})"))
    return rules


def _check_values(
    con: duckdb.DuckDBPyConnection, dataset: Dataset, files: list[_File], add: _Report, nonfinite_is_null: bool = False
) -> list[_File]:
    """One scan: per (file, rule) the count of bad rows and the first one's row number.

    Returns the files DuckDB could read. Partition columns are not checked here: their
    values are the folder names, checked by the walk.
    """
    present = set().union(*(f.schema.names for f in files if f.schema is not None))
    rules = [r for col in dataset.file_columns if col.name in present for r in _value_rules(col, nonfinite_is_null)]
    if not rules:
        return files
    # CASE rather than FILTER, and the offending values fetched afterwards: on 10M rows
    # x 40 rules, FILTER-ed aggregates and arg_min cost several times the scan itself.
    aggs = ", ".join(
        f"count(CASE WHEN {r.cond} THEN 1 END), min(CASE WHEN {r.cond} THEN file_row_number END)" for r in rules
    )
    sql = f"SELECT file_index, {aggs} FROM {_read_sql(dataset, row_numbers=True)} GROUP BY file_index"
    rows, files = _run(con, sql, files, add)
    found = []  # (file, rule, count, first row)
    for row in sorted(rows):
        f = files[row[0]]
        for i, rule in enumerate(rules):
            count, first = row[1 + 2 * i], row[2 + 2 * i]
            # A column missing from the file reads as NULL: already reported as missing_column.
            if count and rule.column in f.schema.names:
                found.append((f, rule, count, first))
    values = _first_values(con, dataset, [(f.path, r.column, first) for f, r, _, first in found if r.show_value])
    for f, rule, count, first in found:
        shown = f" {_clip(values[(f.path, rule.column, first)])!r}" if rule.show_value else ""
        add(f.path, "invalid_value", f"column {rule.column}: {count} {rule.what}, first{shown} at row {first}")
    return files


def _clip(text: str | None, limit: int = 80) -> str | None:
    """A value short enough for a one-line message (vectors can hold thousands of floats)."""
    return text if text is None or len(text) <= limit else text[: limit - 3] + "..."


def _first_values(con: duckdb.DuckDBPyConnection, dataset: Dataset,
                  wanted: list[tuple[Path, str, int]]) -> dict[tuple[Path, str, int], str]:
    """The values at (file, column, row number), as text: one read of the offending files only."""
    if not wanted:
        return {}
    paths = list(dict.fromkeys(p for p, _, _ in wanted))
    cols = list(dict.fromkeys(c for _, c, _ in wanted))
    rows = sorted({r for _, _, r in wanted})
    texts = ", ".join(f"CAST({qi(c)} AS VARCHAR)" for c in cols)
    sql = (f"SELECT file_index, file_row_number, {texts} FROM {_read_sql(dataset, row_numbers=True)} "
           f"WHERE file_row_number IN ({', '.join(map(str, rows))})")
    out = {}
    for index, row_number, *values in con.execute(sql, [[str(p) for p in paths]]).fetchall():
        for c, text in zip(cols, values):
            out[(paths[index], c, row_number)] = text
    return out


def _check_duplicates(con: duckdb.DuckDBPyConnection, dataset: Dataset, files: list[_File], add: _Report) -> None:
    """One scan grouping by the primary key (GROUP BY treats NULLs as equal, as a key should).

    Interpretations are immutable per analysis_id, and a new analysis writes beside the old
    one: a partition column outside the primary key (probe_summaries' analysis_id) scopes it.
    """
    key = dataset.primary_key + tuple(k for k in dataset.partition_by if k not in dataset.primary_key)
    in_file = [k for k in key if k not in dataset.partition_by]
    files = [f for f in files if f.schema is not None and all(k in f.schema.names for k in in_file)]
    if not files:
        return
    cols = ", ".join(qi(k) for k in key)
    sql = (
        f"WITH d AS (SELECT {cols}, count(*) AS n, list(file_index) AS fi FROM {_read_sql(dataset)} "
        f"GROUP BY ALL HAVING count(*) > 1) "
        f"SELECT {cols}, n, list_sort(list_distinct(fi)), count(*) OVER () FROM d "
        f"ORDER BY {cols} LIMIT {MAX_DUPLICATE_KEYS}"
    )
    rows, files = _run(con, sql, files, add)
    for row in rows:
        values, n, where = row[: len(key)], row[len(key)], row[len(key) + 1]
        shown = ", ".join(f"{k}={shown_value(v, 80)}" for k, v in zip(key, values))
        paths = [files[i].path for i in where]
        names = ", ".join(add.rel(p) for p in paths)
        add(paths[0], "duplicate_key", f"key ({shown}) occurs {n} times, in {names}", paths)
    total = rows[0][-1] if rows else 0
    if total > len(rows):
        # The files of the keys not listed: one more scan, in the rare case of many duplicates.
        (where,), = con.execute(
            f"SELECT list_sort(list_distinct(flatten(list(fi)))) FROM (SELECT list(file_index) AS fi "
            f"FROM {_read_sql(dataset)} GROUP BY {cols} HAVING count(*) > 1)", [[str(f.path) for f in files]]
        ).fetchall()
        add(add.root / dataset.name, "duplicate_key",
            f"{total - len(rows)} more duplicated key(s) not listed (showing the first {len(rows)} of {total})",
            [files[i].path for i in where])


# ---------------------------------------------------------------------------------------
# The catalog beside the lake.


def check_catalog(lake: str | os.PathLike | None = None, db: str | os.PathLike | None = None) -> list[Problem]:
    """A ``catalog_elsewhere`` problem when the catalog ``db`` reads another lake than
    ``lake``, or was copied or moved since it was built; ``[]`` when it shows this lake.

    Without ``db`` it checks ``$SQUIGGLE_DB`` if that file exists, else
    ``./warehouse.duckdb`` if it exists in the lake's parent folder (a project's layout: a
    catalog elsewhere may belong to another lake). The problem's path is the catalog's
    absolute path.
    """
    from .catalog import CATALOG_ALIAS, catalog_elsewhere
    from .lake import db_path

    path, root = db_path(db), lake_root(lake)
    if not path.is_file():
        if db is not None:
            raise WarehouseError(f"no catalog at {path}")
        return []  # no catalog built yet
    if db is None and not os.environ.get("SQUIGGLE_DB") and path.parent != root.parent:
        return []
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {ql(str(path))} AS {CATALOG_ALIAS} (READ_ONLY)")
        problem = catalog_elsewhere(con, path, root)
    except duckdb.Error as exc:
        raise WarehouseError(f"cannot open the catalog {path}: {exc}") from exc
    finally:
        con.close()
    return [Problem(None, str(path), "catalog_elsewhere", problem)] if problem else []
