"""The catalog: one DuckDB file with a view per dataset, the BI views, and comments.

Every build writes a fresh file next to the target and renames it into place, so a
notebook or BI tool holding the old file keeps reading it undisturbed. The file is written
in DuckDB's v1.4.0 storage format so that older clients (BI drivers) can open it, and it
holds only SQL views over absolute Parquet globs: no Python UDFs, no relative paths.

The views of the datasets that models write read a snapshot of their files
(:mod:`warehouse.snapshots`), taken under the lake's build lock: a catalog shows every
model as of the builds completed when it was made, however many builds follow, and a
query never meets a file that a later build removed. The other datasets, which writers
only append to, are read live.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import duckdb

from . import lake as lake_mod, snapshots
from .contracts import DATASETS, Column, Dataset
from .errors import LakeNotWritable, WarehouseError
from .scan import select_dataset
from .sql import quote_identifier as sql_ident, quote_literal as sql_string

if TYPE_CHECKING:
    from .models.project import Project

# The oldest DuckDB storage format the project supports (DuckDB 1.4 and 1.5 clients).
STORAGE_VERSION = "v1.4.0"
# Name under which the catalog file is attached, both while building and in connect().
CATALOG_ALIAS = "warehouse"
DEFAULT_VIEWS_DIR = Path(__file__).resolve().parent.parent / "views"
DATASETS_TABLE = "warehouse_datasets"
BUILD_TABLE = "warehouse_catalog"


# --------------------------------------------------------------------------------------
# Dataset views


def column_comment(dataset: Dataset, column: Column) -> str:
    """The comment of one view column: its doc, allowed values, nullability, partitioning."""
    parts = [column.doc.strip() or column.name]
    if column.enum:
        parts.append(f"Allowed values: {', '.join(column.enum)}.")
    if column.nullable:
        parts.append("Nullable.")
    if column.name in dataset.partition_by:
        parts.append("Partition column (read from the folder name).")
    return " ".join(parts)


def view_comment(dataset: Dataset, n_files: int, shown: str | None = None) -> str:
    """The comment of a dataset view: number, name, kind, description, keys and, for an
    analysed dataset, which of its analyses the view shows."""
    text = (
        f"{dataset.number} {dataset.name} ({dataset.kind}): {dataset.doc} "
        f"Schema {dataset.schema_version}; primary key ({', '.join(dataset.primary_key)})."
    )
    if shown:
        text += f" {shown}"
    if n_files == 0:
        text += " No files yet when the catalog was built: rebuild it to see new data."
    return text


ALL_SUFFIX = "_all"  # <dataset>_all: every analysis of an analysed dataset, side by side


@dataclass(frozen=True)
class Shown:
    """Which analyses a dataset's main view shows: one analysis, or every analysis but some
    (run, analysis) pairs; ``note`` says so in the view's comment."""

    analysis: str | None = None
    hidden: tuple[tuple[str, str], ...] = ()
    note: str | None = None


def dataset_view_sql(root: Path, dataset: Dataset, has_files: bool, shown: Shown = Shown(), name: str | None = None) -> str:
    """The CREATE VIEW statement of one dataset, typed from its contract.

    Without files the Parquet glob would fail to bind, so the view is then an empty,
    correctly typed SELECT.
    """
    view = sql_ident(name or dataset.name)
    if shown.analysis is not None:
        folder = lake_mod.Lake(root).table(dataset).analysis(shown.analysis)
        pattern = "/".join([f"{k}=*" for k in dataset.partition_by if k != "analysis_id"] + ["*.parquet"])
        has_files = has_files and any(folder.glob(pattern))
        # a glob below the analysis folder: the hive column analysis_id still comes from its path
        return f"CREATE VIEW {view} AS {select_dataset(dataset, str(folder / pattern) if has_files else [])}"
    sources = lake_mod.Lake(root).table(dataset).glob if has_files else []
    select = select_dataset(dataset, sources)
    if shown.hidden and has_files:
        pairs = ", ".join(sql_string(f"{analysis}/{run}") for run, analysis in shown.hidden)
        select = f"SELECT * FROM ({select}) WHERE analysis_id || '/' || run_id NOT IN ({pairs})"
    return f"CREATE VIEW {view} AS {select}"


def shown_analyses(root: Path, project: Project) -> dict[str, Shown]:
    """Per analysed dataset, what its main view shows: a model's target its current analysis
    (the one the model's file and default parameters define); a captured dataset each run's
    newest analysis, as the models read it."""
    from .models.current import expected_analyses, newest_per_run  # the engine, imported late

    current = expected_analyses(project)
    out = {}
    for name, dataset in DATASETS.items():
        if "analysis_id" not in dataset.partition_by:
            continue
        if name in current:
            out[name] = Shown(current[name], note=(
                f"Shows the current analysis {current[name]} (model {project.by_target()[name]} at its default "
                f"parameters); {name}{ALL_SUFFIX} shows every analysis."))
        elif name not in project.by_target() and "run_id" in dataset.partition_by:
            table = lake_mod.Lake(root).table(dataset)
            _, chosen = newest_per_run(table.folder)
            by_analysis = table.files_by_analysis()
            hidden = tuple(sorted(
                (run, analysis) for analysis, runs in by_analysis.items() for run in runs if chosen[run] != analysis
            ))
            out[name] = Shown(hidden=hidden, note=(
                f"Shows each run's newest analysis, as the models read it; {name}{ALL_SUFFIX} shows every analysis."))
    return out


def _comment_on(con: duckdb.DuckDBPyConnection, kind: str, name: str, text: str) -> None:
    """COMMENT ON a VIEW or TABLE of the catalog."""
    con.execute(f"COMMENT ON {kind} {sql_ident(name)} IS {sql_string(text)}")


def _comment_on_column(con: duckdb.DuckDBPyConnection, view: str, column: str, text: str) -> None:
    con.execute(f"COMMENT ON COLUMN {sql_ident(view)}.{sql_ident(column)} IS {sql_string(text)}")


def _create_dataset_views(
    con: duckdb.DuckDBPyConnection, sources: dict[str, Path], shown: dict[str, Shown]
) -> dict[str, int]:
    """A view per dataset over the root its files are read from (the lake, or a snapshot),
    and for an analysed dataset a ``<dataset>_all`` view of every analysis."""
    n_files: dict[str, int] = {}
    for dataset in DATASETS.values():
        root = sources[dataset.name]
        n = len(lake_mod.Lake(root).table(dataset).files())
        n_files[dataset.name] = n
        views = [(dataset.name, shown.get(dataset.name, Shown()))]
        if "analysis_id" in dataset.partition_by:
            views.append((dataset.name + ALL_SUFFIX, Shown(note="Every analysis side by side: filter on analysis_id.")))
        for name, what in views:
            try:
                con.execute(dataset_view_sql(root, dataset, n > 0, what, name))
            except duckdb.Error as exc:
                folder = lake_mod.Lake(root).table(dataset).folder
                raise WarehouseError(f"dataset {dataset.name}: cannot create its view {name} over {folder}: {exc}") from exc
            # Comments after the view's final CREATE: re-creating a view drops them.
            _comment_on(con, "VIEW", name, view_comment(dataset, n, what.note))
            for column in dataset.all_columns:
                _comment_on_column(con, name, column.name, column_comment(dataset, column))
    return n_files


_DATASETS_COLUMNS = {
    "name": ("VARCHAR", "Dataset name, also the name of its view."),
    "number": ("VARCHAR", "Dataset number from the specification, e.g. 20."),
    "kind": ("VARCHAR", "fact (immutable run artifacts) or interpretation (versioned analysis output)."),
    "schema_version": ("VARCHAR", "Schema version of the dataset's contract, e.g. runs@2.0."),
    "primary_key": ("VARCHAR[]", "Columns that identify a row."),
    "partition_by": ("VARCHAR[]", "Hive partition columns, in folder order."),
    "n_files": ("INTEGER", "Parquet files of the dataset when the catalog was built."),
    "description": ("VARCHAR", "What the dataset holds."),
}


def _create_datasets_table(con: duckdb.DuckDBPyConnection, n_files: dict[str, int]) -> None:
    rows = [
        [d.name, d.number, d.kind, d.schema_version, list(d.primary_key), list(d.partition_by), n_files[d.name], d.doc]
        for d in DATASETS.values()
    ]
    _create_table(con, DATASETS_TABLE, _DATASETS_COLUMNS, rows, "The datasets of the lake, one row per dataset view.")


ANALYSES_TABLE = "warehouse_analyses"
_ANALYSES_COLUMNS = {
    "analysis_id": ("VARCHAR", "The analysis: written into every row the model produced."),
    "model": ("VARCHAR", "Model name (its file under sql/models/)."),
    "version": ("VARCHAR", "Model version, e.g. dyn@1."),
    "target": ("VARCHAR", "Dataset the model writes."),
    "fingerprint": ("VARCHAR", "Hash of version, logic, parameters and input analyses."),
    "logic_fingerprint": ("VARCHAR", "Hash of the model's canonical SQL at default parameters."),
    "params_json": ("VARCHAR", "Parameter values, as JSON."),
    "inputs_json": ("VARCHAR", "The analysis read from each input dataset (null for facts; 'newest per run' for "
                    "captures read from each run's newest analysis), as JSON."),
    "input_sources_json": ("VARCHAR", "For inputs read 'newest per run': the analyses read, with their number of "
                           "runs, as JSON; null when none."),
    "created_at": ("TIMESTAMPTZ", "First build of this analysis."),
    "updated_at": ("TIMESTAMPTZ", "Latest build that changed this analysis."),
    "n_units": ("INTEGER", "Runs (or 1 for a whole-table model) the analysis covers."),
    "rows": ("BIGINT", "Rows the analysis holds."),
    "last_build_units": ("INTEGER", "Runs recomputed by the latest build."),
    "last_build_seconds": ("DOUBLE", "Seconds the latest build of this analysis took."),
    "skipped_inputs_json": ("VARCHAR", "Invalid input files left out by `--skip-invalid` (path: kind: problem), "
                            "as JSON; null when none."),
}


def _create_analyses_table(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """The build history: one row per analysis the model engine recorded in the lake."""
    from .models.state import load_analyses  # the engine's records; imported late to keep the catalog light

    rows = [
        [r.analysis_id, r.model, r.version, r.target, r.fingerprint, r.logic_fingerprint,
         json.dumps(r.params, sort_keys=True), json.dumps(r.inputs, sort_keys=True),
         json.dumps(r.input_sources, sort_keys=True) if r.input_sources else None,
         r.created_at, r.updated_at, len(r.units), r.rows, r.last_build_units, r.last_build_seconds,
         json.dumps(r.skipped) if r.skipped else None]
        for r in load_analyses(root).values()
    ]
    _create_table(con, ANALYSES_TABLE, _ANALYSES_COLUMNS, rows, "Build history: every analysis of every model, "
                  "with its version, fingerprints, parameters, inputs, rows and timing.")


def _create_table(
    con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, tuple[str, str]], rows: list[list], comment: str
) -> None:
    """A table of the catalog from ``columns`` (name: (type, comment)) and its rows, commented."""
    con.execute(f"CREATE TABLE {name} ({', '.join(f'{c} {type_}' for c, (type_, _) in columns.items())})")
    if rows:
        con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(columns))})", rows)
    _comment_on(con, "TABLE", name, comment)
    for column, (_, doc) in columns.items():
        _comment_on_column(con, name, column, doc)


CURRENT_TABLE = "warehouse_current_analyses"
_CURRENT_COLUMNS = {
    "model": ("VARCHAR", "Model name (its file under sql/models/)."),
    "version": ("VARCHAR", "Model version, e.g. dyn@1."),
    "target": ("VARCHAR", "Dataset the model writes; its view shows this analysis, <target>_all every analysis."),
    "analysis_id": ("VARCHAR", "The current analysis: the one the model's file and default parameters define."),
    "params_json": ("VARCHAR", "Its default parameter values, as JSON."),
    "built": ("BOOLEAN", "Whether a build has recorded this analysis (false: its view is empty until `make models`)."),
    "updated_at": ("TIMESTAMPTZ", "Latest build that changed it; null when not built."),
}


def _create_current_table(con: duckdb.DuckDBPyConnection, root: Path, project: Project, shown: dict[str, Shown]) -> None:
    """Per lake model, its current analysis: what the dataset views and the BI views show."""
    from .models.state import load_analyses

    records = load_analyses(root)
    rows = []
    for name in project.order:
        spec = project.models[name].spec
        analysis = shown.get(spec.target, Shown()).analysis
        if analysis is None:
            continue
        record = records.get(analysis)
        rows.append([name, spec.version, spec.target, analysis, json.dumps(project.models[name].params, sort_keys=True),
                     record is not None, record.updated_at if record else None])
    _create_table(con, CURRENT_TABLE, _CURRENT_COLUMNS, rows,
                  "Per model, its current analysis: what the dataset views and the BI views show.")


def _create_model_views(con: duckdb.DuckDBPyConnection, project: Project) -> None:
    """The models materialised as views: their SQL over the dataset views, at default parameters."""
    for model in project.models.values():
        if model.spec.writes_lake:
            continue
        try:
            con.execute(f"CREATE VIEW {sql_ident(model.spec.target)} AS {model.sql}")
        except duckdb.Error as exc:
            raise WarehouseError(f"{model.spec.where()}: cannot create its view: {exc}") from exc
        _comment_on(con, "VIEW", model.spec.target, f"{model.spec.description} (model {model.spec.name} {model.spec.version})")


# --------------------------------------------------------------------------------------
# BI views (views/*.sql)

_HEADER_RE = re.compile(r"^--\s*(?:(name|description)\s*:\s*(.*)|column\s+([^\s:]+)\s*:\s*(.*))$")


@dataclass
class ViewHeader:
    """The ``-- name:``, ``-- description:`` and ``-- column <name>: <doc>`` header lines."""

    name: str | None = None
    description: str | None = None
    columns: dict[str, str] = field(default_factory=dict)


def parse_view_header(sql: str) -> ViewHeader:
    """Read the header: the comment lines before the first line of SQL."""
    header = ViewHeader()
    for line in sql.splitlines():
        line = line.strip()
        if not line:
            continue
        if not line.startswith("--"):
            break
        m = _HEADER_RE.match(line)
        if not m:
            continue
        key, value, column, doc = m.groups()
        if key == "name":
            header.name = value.strip()
        elif key == "description":
            header.description = value.strip()
        else:
            header.columns[column] = doc.strip()
    return header


def _view_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE database_name = ? AND NOT internal", [CATALOG_ALIAS]
    ).fetchall()
    return {r[0] for r in rows}


def _create_bi_view(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    sql = path.read_text(encoding="utf-8")
    try:
        statements = con.extract_statements(sql)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.CREATE:
            raise WarehouseError("it must hold exactly one CREATE VIEW statement")
        before = _view_names(con)
        con.execute(sql)
        # Name the view from what DuckDB created, not from a second parser's reading.
        created = _view_names(con) - before
        if len(created) != 1:
            raise WarehouseError("it must create exactly one new view (CREATE VIEW, not OR REPLACE of an existing name)")
        (name,) = created
        header = parse_view_header(sql)
        if header.name is not None and header.name != name:
            raise WarehouseError(f"its header says '-- name: {header.name}' but it creates view {name}")
        if header.description:
            _comment_on(con, "VIEW", name, header.description)
        for column, doc in header.columns.items():
            _comment_on_column(con, name, column, doc)
    except (duckdb.Error, WarehouseError) as exc:
        raise WarehouseError(f"views file {path}: {exc}") from exc


def _create_bi_views(con: duckdb.DuckDBPyConnection, views_dir: Path) -> None:
    if not views_dir.is_dir():
        return  # no BI views yet
    for path in sorted(views_dir.glob("*.sql")):
        _create_bi_view(con, path)


# --------------------------------------------------------------------------------------
# Build and connect


def build_catalog(
    lake: str | os.PathLike | None = None,
    db: str | os.PathLike | None = None,
    *,
    views_dir: str | os.PathLike | None = None,
    sql_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the catalog file for ``lake`` at ``db`` and return its path.

    It holds a view per dataset, the view models of ``sql_dir`` (default: the repository's
    ``sql/``), the BI views of ``views_dir`` (default ``views/``), and the tables
    ``warehouse_datasets``, ``warehouse_analyses`` and ``warehouse_catalog`` (the lake it
    shows, when it was built, and the fingerprint of what it was built from). The file is
    built under a temporary name in the target's folder and renamed onto the target only
    once complete; on any failure the temporary file is removed and the old catalog is
    left as it was.
    """
    from .models import load_project  # the engine, imported late to keep the catalog light

    root = lake_mod.open_lake(lake)
    target = lake_mod.db_path(db)
    views = _views_dir(views_dir)
    project = load_project(Path(sql_dir) if sql_dir is not None else None)
    retention = snapshots.retention()  # a bad setting fails before anything is written
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lake_held(root) as writable:
        _remove_stale_temporaries(target)
        fingerprint = catalog_fingerprint(root, views, project.sql_dir)
        sources = {name: root for name in DATASETS}
        snapshot, made = None, False
        if writable:
            targets = _model_targets(root, project)
            snapshot, made = snapshots.take_snapshot(root, targets)
            sources.update({d.name: snapshot for d in targets})
        try:
            _write_catalog(target, root, sources, project, views, fingerprint)
        except BaseException:
            if made:
                snapshots.discard(snapshot)
            raise
        if snapshot is not None:
            snapshots.retire_snapshots(root, snapshot, retention)
    return target


def _write_catalog(
    target: Path, root: Path, sources: dict[str, Path], project: Project, views: Path, fingerprint: str
) -> None:
    """Build the catalog under a temporary name beside ``target``, then rename it onto it."""
    tmp = target.with_name(f"{target.name}{TEMP_INFIX}{uuid.uuid4().hex}")
    try:
        con = duckdb.connect()
        try:
            con.execute(f"ATTACH {sql_string(str(tmp))} AS {CATALOG_ALIAS} (STORAGE_VERSION {sql_string(STORAGE_VERSION)})")
            # Unqualified names in views/*.sql must resolve inside the catalog being built.
            con.execute(f"USE {CATALOG_ALIAS}")
            shown = shown_analyses(root, project)
            n_files = _create_dataset_views(con, sources, shown)
            _create_datasets_table(con, n_files)
            _create_analyses_table(con, root)
            _create_current_table(con, root, project, shown)
            _create_model_views(con, project)
            _create_bi_views(con, views)
            _create_build_table(con, root, fingerprint, target)
            con.execute("USE memory")
            con.execute(f"DETACH {CATALOG_ALIAS}")  # checkpoints: the file is complete, no WAL left
        finally:
            con.close()
        lake_mod.fsync(tmp)
        # A WAL left beside the old file (by a crashed read-write session) belongs to the
        # old file; DuckDB refuses to open the new one next to it ("WAL does not match").
        lake_mod.remove_quietly([_wal(target)])
        os.replace(tmp, target)
    except (OSError, duckdb.IOException) as exc:
        lake_mod.remove_quietly([tmp, _wal(tmp)])
        cause = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise WarehouseError(f"cannot write the catalog {target}: {cause}; the old catalog is unchanged") from exc
    except BaseException:
        lake_mod.remove_quietly([tmp, _wal(tmp)])
        raise
    lake_mod.fsync(target.parent)


TEMP_INFIX = ".tmp-"  # <catalog>.tmp-<uuid>: a catalog being built


def _remove_stale_temporaries(target: Path) -> None:
    """Remove catalogs a killed build left half written beside ``target`` (under the lake's lock)."""
    lake_mod.remove_quietly(target.parent.glob(f"{target.name}{TEMP_INFIX}*"))


def _model_targets(root: Path, project: Project) -> list[Dataset]:
    """The datasets whose files builds replace: the lake models' targets, and any dataset a
    recorded analysis wrote."""
    from .models.state import load_analyses

    names = {m.spec.target for m in project.models.values() if m.spec.writes_lake}
    names |= {r.target for r in load_analyses(root).values()}
    return [d for name, d in DATASETS.items() if name in names]


@contextmanager
def _lake_held(root: Path) -> Iterator[bool]:
    """Hold the lake's build lock (waiting for a running build) while the catalog is made.

    Yields False, holding nothing, when there is no lake folder or this process cannot
    write the lake (a read-only mount, no permission): no build of this process can change
    it either, and the catalog reads it live.
    """
    from .models.state import build_lock

    with ExitStack() as stack:
        writable = root.is_dir()
        if writable:
            try:
                stack.enter_context(build_lock(root, wait=True, holder="catalog"))
            except LakeNotWritable:
                writable = False
        yield writable


def refresh_catalog(
    lake: str | os.PathLike | None = None,
    db: str | os.PathLike | None = None,
    *,
    views_dir: str | os.PathLike | None = None,
    sql_dir: str | os.PathLike | None = None,
) -> bool:
    """Rebuild the catalog only if what it would show has changed; True if it was rebuilt.

    It is current when its ``warehouse_catalog`` fingerprint equals that of the lake's
    files per dataset, the analyses recorded, the models and views and the catalog's code.
    """
    root = lake_mod.open_lake(lake)
    target = lake_mod.db_path(db)
    sql = Path(sql_dir) if sql_dir is not None else None
    if _built_fingerprint(target) == catalog_fingerprint(root, _views_dir(views_dir), sql):
        return False
    build_catalog(root, target, views_dir=views_dir, sql_dir=sql_dir)
    return True


def catalog_fingerprint(root: Path, views_dir: Path, sql_dir: Path | None) -> str:
    """A hash of everything the catalog's content depends on."""
    from .models import cache, project, state  # the engine, imported late to keep the catalog light

    h = hashlib.sha256()
    sources = [Path(__file__), *sorted(views_dir.glob("*.sql")), *sorted(state.analyses_dir(root).glob("*.json"))]
    for path in sources:
        h.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    n_files = {d.name: len(lake_mod.Lake(root).table(d).files()) for d in DATASETS.values()}
    models = cache.project_key(sql_dir or project.default_sql_dir(), {})
    h.update(json.dumps([STORAGE_VERSION, str(root), n_files, models], sort_keys=True).encode())
    return h.hexdigest()


def _views_dir(views_dir: str | os.PathLike | None) -> Path:
    return Path(views_dir).resolve() if views_dir is not None else DEFAULT_VIEWS_DIR


def _create_build_table(con: duckdb.DuckDBPyConnection, root: Path, fingerprint: str, target: Path) -> None:
    con.execute(
        f"CREATE TABLE {BUILD_TABLE} (lake VARCHAR, built_at_utc TIMESTAMPTZ, fingerprint VARCHAR, catalog VARCHAR)"
    )
    con.execute(f"INSERT INTO {BUILD_TABLE} VALUES (?, now(), ?, ?)", [str(root), fingerprint, str(target)])
    _comment_on(con, "TABLE", BUILD_TABLE, "How this catalog was built: one row.")
    docs = {
        "lake": "The lake folder the views read (absolute).",
        "built_at_utc": "When the catalog file was written.",
        "fingerprint": "Hash of the lake's files per dataset, the analyses, models, views and catalog code it was built from.",
        "catalog": "Where the catalog file was written (absolute): a copied or moved catalog is at another path.",
    }
    for column, doc in docs.items():
        _comment_on_column(con, BUILD_TABLE, column, doc)


def _built_fingerprint(target: Path) -> str | None:
    """The fingerprint recorded in an existing catalog file, or None (also for a catalog
    copied or moved from where it was built: rebuilt, it records its new place)."""
    if not target.is_file():
        return None
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {sql_string(str(target))} AS {CATALOG_ALIAS} (READ_ONLY)")
        fingerprint, built_at = con.execute(f"SELECT fingerprint, catalog FROM {CATALOG_ALIAS}.{BUILD_TABLE}").fetchone()
        return fingerprint if built_at == str(target) else None
    except (duckdb.Error, TypeError):
        return None  # not a catalog, or one from before fingerprints: build a new one
    finally:
        con.close()


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def connect(
    db: str | os.PathLike | None = None, *, read_only: bool = True, lake: str | os.PathLike | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the catalog (read-only by default) with its views as the default schema.

    The file is attached to a fresh in-memory DuckDB rather than opened by path: DuckDB
    caches open databases per path within a process, so opening by path after a rebuild
    would hand back the replaced catalog while an older connection is still open.

    Warns (:class:`CatalogElsewhereWarning`) when the catalog was copied or moved since it
    was built, or reads another lake than ``lake`` (default: ``$SQUIGGLE_LAKE`` when set):
    its views hold absolute paths, so it would go on reading the lake it was built from.
    """
    path = lake_mod.db_path(db)
    if not path.is_file():
        raise WarehouseError(f"no catalog at {path}: run `warehouse catalog` or `make models` first")
    con = duckdb.connect()
    try:
        mode = " (READ_ONLY)" if read_only else ""
        con.execute(f"ATTACH {sql_string(str(path))} AS {CATALOG_ALIAS}{mode}")
        con.execute(f"USE {CATALOG_ALIAS}")
        expected = lake if lake is not None else os.environ.get("SQUIGGLE_LAKE") or None
        problem = catalog_elsewhere(con, path, lake_mod.lake_root(expected) if expected else None)
    except BaseException:
        con.close()
        raise
    if problem:
        warnings.warn(problem, CatalogElsewhereWarning, stacklevel=2)
    return con


class CatalogElsewhereWarning(UserWarning):
    """A catalog that was copied or moved, or that reads another lake than the expected one."""


def catalog_elsewhere(con: duckdb.DuckDBPyConnection, path: Path, lake: Path | None = None) -> str | None:
    """Why the catalog attached to ``con`` as ``warehouse`` does not show the lake it should,
    or None: it is no longer where it was built (a copied or moved project), the lake it
    reads is gone, or it reads another lake than ``lake``."""
    try:
        # fetch every row: DuckDB 2 refuses other work on a connection with a result left unfetched
        cursor = con.execute(f"SELECT * FROM {CATALOG_ALIAS}.{BUILD_TABLE}")
        (row,) = cursor.fetchall()
        built = dict(zip([d[0] for d in cursor.description], row))
    except (duckdb.Error, TypeError, ValueError):
        return None  # not a catalog (nothing to compare)
    built_lake, built_at = built.get("lake"), built.get("catalog")  # no catalog column: built before it was recorded
    if built_lake is None:
        return None
    reasons = []
    if built_at is not None and built_at != str(path):
        reasons.append(f"was built at {built_at} (copied or moved since)")
    if not Path(built_lake).is_dir():
        reasons.append("reads a lake that no longer exists")
    elif lake is not None and Path(built_lake) != lake:
        reasons.append(f"reads another lake than {lake}")
    if not reasons:
        return None
    target = lake if lake is not None else Path("LAKE")
    return (
        f"catalog {path} {' and '.join(reasons)}: its views read the lake {built_lake}. "
        f"Rebuild it where it is: `make catalog` (warehouse catalog --lake {target} --db {path})"
    )
