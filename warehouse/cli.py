"""The ``warehouse`` command: a thin layer over the Python API.

Every subcommand takes ``--lake`` (default ``$SQUIGGLE_LAKE`` or ``./lake``) and, where it
touches the catalog, ``--db`` (default ``$SQUIGGLE_DB`` or ``./warehouse.duckdb``).
Errors the warehouse raises on purpose print as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Callable

from .errors import WarehouseError

if TYPE_CHECKING:
    from .models import Progress

Handler = Callable[[argparse.Namespace], int]


def _ingest(args: argparse.Namespace) -> int:
    from .writer import ingest_files

    results = ingest_files(args.dataset, args.files, lake=args.lake, batch_rows=args.batch_rows)
    for r in results:
        print(f"{r.source}: {r.rows_written} rows written, {r.rows_skipped} already present, {len(r.files)} files")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .check import check_catalog, check_lake

    problems = check_lake(args.lake) + check_catalog(args.lake, args.db)
    if args.json:
        print(json.dumps([p.as_dict() for p in problems], indent=2))
    else:
        for p in problems:
            print(p)
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


def _docs(args: argparse.Namespace) -> int:
    from .docs import update_readme

    changed = update_readme(args.readme)
    print(f"{args.readme}: data dictionary and model parameters {'updated' if changed else 'already up to date'}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from . import models

    if args.action == "check":
        problems = models.lock_problems(args.sql)
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(problems)} model(s) out of step with sql/models.lock" if problems else "models match sql/models.lock")
        return 1 if problems else 0
    if args.action == "lock":
        print(f"written {models.write_lock(args.sql, force=args.force)}")
        return 0
    if args.action == "lineage":
        print(models.lineage(args.column, models.load_project(args.sql)))
        return 0
    # On a terminal, a model's line shows while it runs (with its batches done, rows per
    # second and time left when it has several) and is completed in place; in CI (no
    # terminal) each model prints one plain line when done.
    tty = sys.stdout.isatty()
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
        dry_run=args.action == "plan",
        wait=args.wait,
        skip_invalid=args.skip_invalid,
    )
    if args.action == "run" and args.db:
        _refresh_catalog(args.lake, args.db, args.sql)
    return 0


def _show_progress(progress: Progress) -> None:
    if progress.total > 1:  # one batch: the model's line says all there is
        print(f"\r\x1b[K{progress.plan.describe()} ... {progress.describe()}", end="", flush=True)


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

    p = add("check", _check, "Report every problem of an existing lake (and of its catalog) without changing it.", db=True)
    p.add_argument("--json", action="store_true", help="print the problems as JSON")

    p = add("catalog", _catalog, "Write the DuckDB catalog: one view per dataset, comments, BI views.", db=True)
    p.add_argument("--if-changed", action="store_true", help="only if the lake, analyses, models or views changed since it was built")

    p = add("demo", _demo, "Write a deterministic demo lake with planted geometry changes.")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    p = add("scorecard", _scorecard, "Score the models against the demo lake's planted truth.", db=True)
    p.add_argument("--tolerance", type=int, default=2, help="captures between a planted and a detected change (default 2)")

    p = add("models", _models, "Plan, run and check the versioned SQL models of sql/models.")
    p.add_argument("action", choices=["plan", "run", "check", "lock", "lineage"])
    p.add_argument("column", nargs="?", help="for lineage: MODEL.COLUMN")
    p.add_argument("--select", action="append", metavar="NAME[+]", help="only these models (NAME+ adds downstream)")
    p.add_argument("--param", action="append", metavar="MODEL.KEY=VALUE", help="set a model parameter")
    p.add_argument("--input", action="append", metavar="MODEL.DATASET=ANALYSIS", help="read this analysis of an input")
    p.add_argument("--full-refresh", action="store_true", help="recompute every unit of the selected models")
    p.add_argument("--wait", action="store_true", help="wait for a running build instead of refusing")
    p.add_argument("--skip-invalid", action="store_true",
                   help="build without the input files that break their contract, and list them")
    p.add_argument("--force", action="store_true", help="for lock: re-pin a version that was never released")
    p.add_argument("--sql", help="the models' folder (default $SQUIGGLE_SQL or the repository's sql/)")
    p.add_argument("--db", help="for run: then bring this catalog file up to date (rebuilt only if something changed)")

    p = sub.add_parser("docs", help="Regenerate the data dictionary in the README from the contracts.")
    p.add_argument("--readme", default="README.md")
    p.set_defaults(handler=_docs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (WarehouseError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"warehouse {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
