"""The ``warehouse`` command: a thin layer over the Python API.

Every subcommand takes ``--lake`` (default ``$SQUIGGLE_LAKE`` or ``./lake``) and, where it
touches the catalog, ``--db`` (default ``$SQUIGGLE_DB`` or ``./warehouse.duckdb``). A lake
must exist: only ``init``, ``demo`` and ``ingest --create`` create one.

Exit status: 0 done; 1 ``check`` or ``models check`` found problems; 2 bad input (a
refused file or value, a missing lake, a wrong option), with one error message on stderr;
3 an unexpected error, which is a bug: stderr names the exception, its message and the
line it came from (``SQUIGGLE_DEBUG=1`` prints the full traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import WarehouseError

if TYPE_CHECKING:
    from .models import Progress

EXIT_BAD_INPUT = 2
EXIT_BUG = 3
DEBUG_ENV = "SQUIGGLE_DEBUG"

Handler = Callable[[argparse.Namespace], int]


def _ingest(args: argparse.Namespace) -> int:
    from .writer import ingest_files

    if args.batch_rows < 1:
        raise WarehouseError(f"--batch-rows must be at least 1, not {args.batch_rows}")
    results = ingest_files(args.dataset, args.files, lake=args.lake, batch_rows=args.batch_rows, create=args.create)
    for r in results:
        print(f"{r.source}: {r.rows_written} rows written, {r.rows_skipped} already present, {len(r.files)} files")
    return 0


def _init(args: argparse.Namespace) -> int:
    from .lake import init_lake, lake_root

    existed = lake_root(args.lake).is_dir()
    root = init_lake(args.lake)
    print(f"lake already exists, left as it is: {root}" if existed else f"empty lake created: {root}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from . import contracts
    from .schema import describe, write_template

    dataset = contracts.get(args.dataset)
    if args.template:
        path = write_template(dataset, args.template, args.output)
        print(f"template written: {path} (fill in the rows; `warehouse schema {dataset.name}` explains each column)")
    else:
        print(describe(dataset))
    return 0


def _check(args: argparse.Namespace) -> int:
    from .check import check_catalog, check_lake, memory_split_notes, short_series_notes

    problems = check_lake(args.lake) + check_catalog(args.lake, args.db)
    if args.json:
        print(json.dumps([p.as_dict() for p in problems], indent=2))
    else:
        for p in problems:
            print(p)
        for note in [*short_series_notes(args.lake), *memory_split_notes(args.lake)]:  # not problems of the data
            print(f"note: {note}")
        print(f"{len(problems)} problem(s) found" if problems else "lake is clean")
    return 1 if problems else 0


def _catalog(args: argparse.Namespace) -> int:
    from .catalog import build_catalog

    if args.if_changed:
        _refresh_catalog(args.lake, args.db, None)
        return 0
    path = build_catalog(lake=args.lake, db=args.db)
    print(f"catalog written: {path}")
    return 0


def _refresh_catalog(lake: str | None, db: str | None, sql_dir: str | None) -> None:
    from .catalog import refresh_catalog
    from .lake import db_path

    rebuilt = refresh_catalog(lake=lake, db=db, sql_dir=sql_dir)
    print(f"catalog written: {db_path(db)}" if rebuilt else f"catalog up to date: {db_path(db)}")


def _demo(args: argparse.Namespace) -> int:
    from .demo import write_demo

    summary = write_demo(lake=args.lake, seed=args.seed)
    print(summary)
    return 0


def _scorecard(args: argparse.Namespace) -> int:
    from .scorecard import scorecard

    print(scorecard(db=args.db, lake=args.lake, tolerance=args.tolerance))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import Limits, write_report

    for flag in ("max_cohorts", "max_matches"):
        if getattr(args, flag) < 1:
            raise WarehouseError(f"--{flag.replace('_', '-')} must be at least 1, not {getattr(args, flag)}")
    limits = Limits(cohorts=args.max_cohorts, matches=args.max_matches)
    report = write_report(args.output, db=args.db, lake=args.lake, cohort=args.cohort, run=args.run, limits=limits)
    for note in report.notes:
        print(f"note: {note}")
    print(report.describe())
    return 0


def _docs(args: argparse.Namespace) -> int:
    from .docs import update_readme

    changed = update_readme(args.readme)
    print(f"{args.readme}: data dictionary and model parameters {'updated' if changed else 'already up to date'}")
    return 0


def _models_check(args: argparse.Namespace) -> int:
    from . import models

    problems = models.lock_problems(args.sql)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(problems)} model(s) out of step with sql/models.lock" if problems else "models match sql/models.lock")
    return 1 if problems else 0


def _models_lock(args: argparse.Namespace) -> int:
    from . import models

    print(f"written {models.write_lock(args.sql, force=args.force)}")
    return 0


def _models_lineage(args: argparse.Namespace) -> int:
    from . import models

    print(models.lineage(args.column, models.load_project(args.sql)))
    return 0


def _models_render(args: argparse.Namespace) -> int:
    from . import models

    params = {args.model: dict(_key_value(item, "--param") for item in args.param)} if args.param else None
    print(models.render(args.model, sql_dir=args.sql, params=params, merging=args.merging))
    return 0


def _models_run(args: argparse.Namespace) -> int:
    from . import models

    # On a terminal, a model's line shows while it runs (with its batches done, rows per
    # second and time left when it has several) and is completed in place; in CI (no
    # terminal) each model prints one plain line when done.
    tty = sys.stdout.isatty()
    dry_run = args.models_command == "plan"
    models.run(
        lake=args.lake,
        sql_dir=args.sql,
        report=lambda line: print(("\r\x1b[K" if tty else "") + line, flush=True),
        started=(lambda plan: print(f"{plan.describe()} ...", end="", flush=True)) if tty else None,
        progress=_show_progress if tty else None,
        selected=args.select,
        params=_key_values(args.param, "--param"),
        inputs=_key_values(args.input, "--input"),
        full_refresh=args.full_refresh,
        dry_run=dry_run,
        wait=args.wait,
        skip_invalid=args.skip_invalid,
        executor=getattr(args, "executor", None),
        address=getattr(args, "address", None),
    )
    if not dry_run and args.db:
        _refresh_catalog(args.lake, args.db, args.sql)
    return 0


def _show_progress(progress: Progress) -> None:
    if progress.total > 1:  # one batch: the model's line says all there is
        print(f"\r\x1b[K{progress.plan.describe()} ... {progress.describe()}", end="", flush=True)


def _key_value(item: str, flag: str) -> tuple[str, str]:
    """A ``KEY=VALUE`` option as (key, value)."""
    key, sep, value = item.partition("=")
    if not (sep and key):
        raise WarehouseError(f"{flag} {item!r}: write KEY=VALUE")
    return key, value


def _key_values(items: list[str] | None, flag: str) -> dict[str, dict[str, str]]:
    """``MODEL.KEY=VALUE`` options as {model: {key: value}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items or []:
        target, sep, value = item.partition("=")
        model, dot, key = target.partition(".")
        if not (sep and dot and model and key):
            raise WarehouseError(f"{flag} {item!r}: write MODEL.KEY=VALUE")
        out.setdefault(model, {})[key] = value
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warehouse", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Handler, help_: str, db: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--lake", help="lake root (default $SQUIGGLE_LAKE or ./lake)")
        if db:
            p.add_argument("--db", help="catalog file (default $SQUIGGLE_DB or ./warehouse.duckdb)")
        p.set_defaults(handler=handler)
        return p

    p = add("ingest", _ingest, "Validate files against a dataset contract and write them to the lake.")
    p.add_argument("dataset", help="dataset name, e.g. geometry_state")
    p.add_argument("files", nargs="+", help="Parquet, CSV (.csv) or JSON Lines (.jsonl, .ndjson) files")
    p.add_argument("--batch-rows", type=int, default=1_000_000, help="rows read per batch (default 1000000)")
    p.add_argument("--create", action="store_true", help="create the lake if it does not exist")

    p = sub.add_parser("init", help="Create an empty lake.", description="Create an empty lake (an existing one is left as it is).")
    p.add_argument("lake", nargs="?", help="lake root (default $SQUIGGLE_LAKE or ./lake)")
    p.set_defaults(handler=_init)

    p = sub.add_parser("schema", help="Show a dataset's columns, or write an empty file to fill.",
                       description="Show a dataset's columns (type, required, meaning), or write an empty "
                                   "template file holding exactly the columns an input gives.")
    p.add_argument("dataset", help="dataset name, e.g. geometry_state")
    p.add_argument("--template", choices=["csv", "parquet"], help="write an empty CSV (header only) or Parquet file")
    p.add_argument("--output", help="the template's path (default DATASET.csv or DATASET.parquet); never overwritten")
    p.set_defaults(handler=_schema)

    p = add("check", _check, "Report every problem of an existing lake (and of its catalog) without changing it.", db=True)
    p.add_argument("--json", action="store_true", help="print the problems as JSON")

    p = add("catalog", _catalog, "Write the DuckDB catalog: one view per dataset, comments, BI views.", db=True)
    p.add_argument("--if-changed", action="store_true", help="only if the lake, analyses, models or views changed since it was built")

    p = add("demo", _demo, "Write a deterministic demo lake with planted geometry changes.")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    p = add("scorecard", _scorecard, "Score the models against the demo lake's planted truth.", db=True)
    p.add_argument("--tolerance", type=int, default=2, help="captures between a planted and a detected change (default 2)")

    _models_parser(sub)

    p = add("report", _report, "Write an offline HTML report of the catalog: squiggles, events, families, matches.", db=True)
    p.add_argument("--output", "-o", default="report.html", help="the HTML file to write (default ./report.html)")
    p.add_argument("--cohort", metavar="CONFIG_HASH", help="only this cohort (runs.config_hash)")
    p.add_argument("--run", metavar="RUN_ID", help="only this run")
    p.add_argument("--max-cohorts", type=int, default=12, help="cohorts drawn at most (default 12)")
    p.add_argument("--max-matches", type=int, default=60, help="best matches drawn at most (default 60)")

    p = sub.add_parser("docs", help="Regenerate the data dictionary in the README from the contracts.")
    p.add_argument("--readme", default="README.md")
    p.set_defaults(handler=_docs)
    return parser


MODELS_EXAMPLES = {
    "plan": ("Show what `models run` would compute, and why, without running anything.", """
examples:
  warehouse models plan
  warehouse models plan --select events_candidates+ --param events_candidates.alpha=0.05"""),
    "run": ("Run the models that are out of date (every model, or those selected), then refresh the catalog with --db.", """
examples:
  warehouse models run --db warehouse.duckdb          # what is out of date, then the catalog
  warehouse models run --select geometry_dynamics+    # a model and everything downstream
  warehouse models run --param geometry_dynamics.volatility_window=7
  warehouse models run --input geometry_dynamics.geometry_state=capture-v1
  warehouse models run --full-refresh
  warehouse models run --executor ray --address 10.0.0.5:6379   # batches as tasks on a Ray cluster"""),
    "check": ("Check that no model's logic changed without a new version (sql/models.lock); exit 1 if one did.", """
example:
  warehouse models check"""),
    "lock": ("Record every model's version and logic fingerprint in sql/models.lock.", """
examples:
  warehouse models lock
  warehouse models lock --force    # re-pin a version that was never released"""),
    "lineage": ("Trace a model's output column back to the dataset columns it comes from.", """
example:
  warehouse models lineage geometry_dynamics.drift_velocity"""),
    "render": ("Print a model's SQL as it runs: its Jinja rendered with the parameters given (else the defaults).", """
examples:
  warehouse models render geometry_dynamics
  warehouse models render events_candidates --param alpha=0.05
  warehouse models render matches --merging        # the SQL that merges new runs into the last build"""),
}


def _models_parser(sub: argparse._SubParsersAction) -> None:
    """``warehouse models ACTION``: one parser per action, each with the options it takes."""
    models = sub.add_parser("models", help="Plan, run, check, lock, trace and render the SQL models of sql/models.",
                            description="Plan, run, check, lock, trace and render the versioned SQL models of sql/models.")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    def action(name: str, handler: Handler) -> argparse.ArgumentParser:
        help_, examples = MODELS_EXAMPLES[name]
        p = actions.add_parser(name, help=help_, description=help_, epilog=examples,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--sql", help="the models' folder (default $SQUIGGLE_SQL or the repository's sql/)")
        p.set_defaults(handler=handler)
        return p

    for name in ("plan", "run"):
        p = action(name, _models_run)
        p.add_argument("--lake", help="lake root (default $SQUIGGLE_LAKE or ./lake)")
        p.add_argument("--select", action="append", metavar="NAME[+]", help="only these models (NAME+ adds downstream)")
        p.add_argument("--param", action="append", metavar="MODEL.KEY=VALUE", help="set a model parameter")
        p.add_argument("--input", action="append", metavar="MODEL.DATASET=ANALYSIS", help="read this analysis of an input")
        p.add_argument("--full-refresh", action="store_true", help="recompute every unit of the selected models")
        p.add_argument("--wait", action="store_true", help="wait for a running build instead of refusing")
        p.add_argument("--skip-invalid", action="store_true",
                       help="build without the input files that break their contract, and list them")
        if name == "run":
            p.add_argument("--db", help="then bring this catalog file up to date (rebuilt only if something changed)")
            p.add_argument("--executor", choices=["local", "ray"],
                           help="where batches run: here (local) or as tasks on a Ray cluster (default $SQUIGGLE_EXECUTOR or local)")
            p.add_argument("--address", metavar="HOST:PORT",
                           help="the Ray cluster's address (default $SQUIGGLE_RAY_ADDRESS; none: a Ray instance for this build)")
    action("check", _models_check)
    p = action("lock", _models_lock)
    p.add_argument("--force", action="store_true", help="re-pin a version that was never released")
    p = action("lineage", _models_lineage)
    p.add_argument("column", help="MODEL.COLUMN")
    p = action("render", _models_render)
    p.add_argument("model", help="the model's name (its file under sql/models/)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="set one of its parameters")
    p.add_argument("--merging", action="store_true", help="the SQL that merges new runs into the last build")


def _version() -> str:
    """The installed package's version (from its metadata; see ``warehouse.__version__``)."""
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except WarehouseError as exc:  # raised on purpose: the message says what to fix
        print(f"warehouse {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # anything else is a bug: never print it as if it were a message
        print(_bug_report(args.command, exc), file=sys.stderr)
        return EXIT_BUG


def _bug_report(command: str, exc: BaseException) -> str:
    """The exception's type, message and innermost line, and how to see the whole traceback."""
    kind = type(exc).__qualname__
    what = f"{kind}: {exc}" if str(exc) else kind
    lines = [f"warehouse {command}: internal error: {what}"]
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        lines.append(f"  at {_shown_path(last.filename)}:{last.lineno} in {last.name}")
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        lines.append("".join(traceback.format_exception(exc)).rstrip())
    else:
        lines.append(f"  set {DEBUG_ENV}=1 for the full traceback")
    lines.append("This is a bug in the warehouse, not a problem with your data; please report it with the command you ran.")
    return "\n".join(lines)


def _shown_path(filename: str) -> str:
    """A file of this package relative to the folder holding it (warehouse/...), else as is."""
    base = Path(__file__).resolve().parent.parent
    try:
        return Path(filename).resolve().relative_to(base).as_posix()
    except ValueError:
        return filename


if __name__ == "__main__":
    sys.exit(main())
