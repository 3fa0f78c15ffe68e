"""Benchmark the model build at several lake sizes; write bench/results/bench.{md,json,png}.

For each size it writes (once, then reuses) a deterministic scale lake under ``--work``,
then takes every measurement of ``bench/models.py`` in ``--repeat`` rounds, and the pandas
baseline on sizes up to ``--pandas-max-rows``. The results of the sizes measured replace
those sizes in bench.json; the Markdown table and the plot are rendered from all of it.

    python bench/run.py                                   # 1 and 10 million rows, 3 rounds
    python bench/run.py --sizes 100000000 --repeat 1      # what `make bench-100m` runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import report
from models import Settings, measure_size, memory_limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000],
                        help="geometry_state rows of each lake, about (default 1000000 10000000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every measurement (default 3)")
    parser.add_argument("--work", type=Path, default=Path(".bench"),
                        help="cached lakes and the rounds' working copies (default .bench)")
    parser.add_argument("--memory-limit", default="default",
                        help="DuckDB memory_limit of every DuckDB process: a size (2GB), 'default' for the warehouse's"
                             " own (a quarter of RAM, at most 4 GiB) or 'duckdb' for DuckDB's (default: default)")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: DuckDB's, one per core)")
    parser.add_argument("--temp-directory", type=Path,
                        help="where DuckDB spills, through SQUIGGLE_TEMP_DIRECTORY (default: WORK/spill)")
    parser.add_argument("--pandas-max-rows", type=int, default=10_000_000,
                        help="run the pandas baseline on sizes up to this many rows (default 10000000)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    limit = memory_limit(args.memory_limit)  # a malformed one is refused before hours of work
    work = args.work.resolve()
    settings = Settings(limit, args.threads, (args.temp_directory or work / "spill").resolve())
    entries = []
    for rows in sorted(args.sizes):
        entries.append(measure_size(rows, args.repeat, work, settings, pandas=rows <= args.pandas_max_rows))
        sizes = report.merge(entries)
        report.write(sizes)  # after each size, so a later failure keeps the sizes done
    print((report.RESULTS / "bench.md").read_text())


if __name__ == "__main__":
    main()
