"""The measurements of one lake size: floors, builds and the pandas baseline, each its own process.

Every round works on a fresh copy of the cached scale lake (hard links: the lake's files are
never changed in place, so a copy costs no data and every round starts alike), and takes:

- scan floor: DuckDB reading every column of the datasets a full build reads (those no
  model writes: geometry_state and runs) once;
- copy floor: DuckDB copying them once to zstd Parquet with the same partitioning (read
  plus write: no model that writes its output can do less);
- full build: ``warehouse models run`` of every model on the fresh lake, and each model's own
  time from its line; catalog: ``warehouse catalog`` after it (the rest of ``make models``);
- no-op build: ``warehouse models run`` again with nothing new; no-op ``make models``:
  ``warehouse models run --db`` (what ``make models`` runs: the models, then the catalog
  only if it changed);
- with the pandas baseline (if asked): dyn@1 + cpd@1 build: ``warehouse models run --select
  geometry_dynamics --select events_candidates --full-refresh --sql <copy>``, the two models
  the baseline computes, then ``bench/pandas_baseline.py`` on the same lake, its output
  checked against the models' in the first round (``bench/agreement.py``). The baseline
  computes cpd@1, and the repository's events_candidates is cpd@2 now: this build runs a
  temporary copy of ``sql/`` in which the frozen ``tests/data/models/events_candidates_cpd1.sql``
  replaces it (``frozen_cpd1.sql_dir``), so that the agreement and the time ratio compare like
  with like (the full build and the other measurements run the repository's models);
- one new run: one more seed of a cohort written (not timed), then ``warehouse models run``.

DuckDB processes (floors and builds) get the memory limit, threads and spill directory of
``Settings`` through the warehouse's environment variables; the spill directory's size is
sampled while each command runs (its peak is a lower bound: a spill shorter than the
sampling interval can be missed). The first round also scores the
build against the planted truth (``warehouse.scorecard``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import statistics
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import agreement
import frozen_cpd1
import machine
import report
import scale_lake
from measure import CommandFailed, Measurement, measure

from warehouse import contracts, demo, duck, lake as lk
from warehouse.models import load_project
from warehouse.scan import select_dataset
from warehouse.scorecard import scorecard
from warehouse.sql import quote_literal as ql

HERE = Path(__file__).resolve().parent
WAREHOUSE = [sys.executable, "-m", "warehouse.cli"]
MODEL_LINE = re.compile(r"^(\w+) \S+ -> .*, ([0-9.]+) s$", re.MULTILINE)
PHASE_LINE = re.compile(r"^pandas (\w+): ([0-9.]+) s$", re.MULTILINE)
FLOOR = (
    "import sys; from pathlib import Path; from warehouse.duck import work_connection; "
    "con = work_connection(Path(sys.argv[1])); [con.execute(q).fetchall() for q in sys.argv[2:]]"
)
TWO_MODELS = ["--select", "geometry_dynamics", "--select", "events_candidates"]


def memory_limit(text: str) -> str:
    """A benchmark's ``--memory-limit``: 'default' is the warehouse's own limit (as a size),
    'duckdb' (or 'none') DuckDB's default, anything else a size, refused if malformed before
    any work starts."""
    limit = {"default": duck.default_memory_limit(), "none": duck.DUCKDB_DEFAULT,
             "duckdb": duck.DUCKDB_DEFAULT}.get(text.lower(), text)
    if limit != duck.DUCKDB_DEFAULT:
        report.limit_bytes(limit)
    return limit


@dataclass(frozen=True)
class Settings:
    """DuckDB resources of the measured processes; None leaves DuckDB's default."""

    memory_limit: str | None
    threads: int | None
    temp_directory: Path | None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var, value in (("SQUIGGLE_MEMORY_LIMIT", self.memory_limit), ("SQUIGGLE_THREADS", self.threads),
                           ("SQUIGGLE_TEMP_DIRECTORY", self.temp_directory)):
            env.pop(var, None)
            if value is not None:
                env[var] = str(value)
        return env


class SpillWatch:
    """The largest total size of the files under a folder while a command runs (sampled)."""

    def __init__(self, folder: Path | None, every: float = 0.25) -> None:
        self.folder, self.every = folder, every
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> SpillWatch:
        if self.folder is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_bytes = max(self.peak_bytes, _folder_bytes(self.folder))


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.stat(os.path.join(path, f)).st_size
            except FileNotFoundError:  # DuckDB removed it meanwhile
                pass
    return total


class Recorder:
    """The samples of every measurement, in the order first taken, and the models' own times."""

    def __init__(self, settings: Settings) -> None:
        self.env = settings.env()
        self.spill = settings.temp_directory
        self.samples: dict[str, list[Measurement]] = {}
        self.spill_mib: dict[str, list[float]] = {}
        self.parts: dict[str, dict[str, list[float]]] = {}  # measurement -> model or phase -> seconds
        self.failure: dict[str, str] | None = None

    def run(self, name: str, argv: list[str], parts: re.Pattern | None = None) -> Measurement:
        """Measure ``argv`` as ``name``; if it fails, note which measurement, why, and the parts
        it completed before (e.g. the models built before the one that failed), and raise."""
        try:
            with SpillWatch(self.spill) as spill:
                m = measure(argv, env=self.env)
        except CommandFailed as exc:
            completed = {part: float(s) for part, s in parts.findall(exc.stdout)} if parts else {}
            self.failure = {"measurement": name, "error": exc.stderr.strip().splitlines()[0], "completed": completed}
            print(f"  {name}: FAILED: {self.failure['error']}", flush=True)
            raise
        self.samples.setdefault(name, []).append(m)
        self.spill_mib.setdefault(name, []).append(spill.peak_bytes / 2**20)
        print(f"  {name}: {m.seconds:.2f} s, {m.peak_rss_mib:.0f} MiB, spilled {spill.peak_bytes / 2**20:.0f} MiB",
              flush=True)
        for part, seconds in (parts.findall(m.stdout) if parts else []):
            self.parts.setdefault(name, {}).setdefault(part, []).append(float(seconds))
        return m

    def summary(self) -> tuple[dict, dict]:
        measurements = {
            name: {
                "seconds": [m.seconds for m in ms], "cpu_seconds": [m.cpu_seconds for m in ms],
                "peak_rss_mib": [m.peak_rss_mib for m in ms],
                "median_seconds": statistics.median(m.seconds for m in ms),
                "max_peak_rss_mib": max(m.peak_rss_mib for m in ms),
                "max_spill_mib": max(self.spill_mib[name]),
            }
            for name, ms in self.samples.items()
        }
        parts = {name: {p: {"seconds": s, "median_seconds": statistics.median(s)} for p, s in by.items()}
                 for name, by in self.parts.items()}
        return measurements, parts


def measure_size(rows: int, rounds: int, work: Path, settings: Settings, pandas: bool) -> dict:
    """Every measurement of the lake of about ``rows`` rows, ``rounds`` times; a result entry."""
    cache = scale_lake.cached_lake(work, rows)
    layout = scale_lake.Layout.for_rows(rows)
    recorder = Recorder(settings)
    checks: dict = {}
    load = []  # one per round taken, the failed one included
    for i in range(rounds):
        print(f"{layout.rows:,} rows, round {i + 1}/{rounds}", flush=True)
        load.append(os.getloadavg()[0])
        lake = fresh_copy(cache, work / "round" / "lake")
        try:
            checks |= _round(recorder, lake, first=i == 0, pandas=pandas)
        except CommandFailed:
            break  # what follows a failed step would measure something else: the size ends here
    shutil.rmtree(work / "round", ignore_errors=True)
    measurements, parts = recorder.summary()
    return {
        "requested_rows": rows, "rows": layout.rows, "training_runs": layout.training_runs,
        "probe_runs": layout.probe_runs, "rounds": len(load), "memory_limit": settings.memory_limit,
        "threads": settings.threads, "spill": str(settings.temp_directory or "the lake's staging folder"),
        "machine": machine.describe(), "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average": load, "measurements": measurements, "parts": parts, "failure": recorder.failure, **checks,
    }


def fresh_copy(source: Path, target: Path) -> Path:
    """``target`` as a copy of ``source`` made of hard links (whatever was there is removed)."""
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, copy_function=os.link)
    return target


def _round(rec: Recorder, lake: Path, *, first: bool, pandas: bool) -> dict:
    scratch, db = lake.parent / "scratch", lake.parent / "warehouse.duckdb"
    build = WAREHOUSE + ["models", "run", "--lake", str(lake)]
    catalog = WAREHOUSE + ["catalog", "--lake", str(lake), "--db", str(db)]
    for name, queries in floors(lake, scratch / "copy").items():
        shutil.rmtree(scratch, ignore_errors=True)
        (scratch / "copy").mkdir(parents=True)
        rec.run(name, [sys.executable, "-c", FLOOR, str(scratch / "spill")] + queries)
    shutil.rmtree(scratch, ignore_errors=True)
    rec.run("full build", build, MODEL_LINE)
    rec.run("catalog", catalog)
    checks = {"scorecard": _scorecard(db, lake)} if first else {}
    rec.run("no-op build", build)
    rec.run("no-op make models", build + ["--db", str(db)])
    if pandas:
        rec.run("dyn@1 + cpd@1 build", cpd1_build(lake, frozen_cpd1.sql_dir(lake.parent / "sql-cpd1")), MODEL_LINE)
        out = scratch / "pandas"
        rec.run("pandas baseline", [sys.executable, str(HERE / "pandas_baseline.py"), "--lake", str(lake),
                                    "--out", str(out)], PHASE_LINE)
        if first:
            checks["agreement"] = [t.summary() for t in agreement.compare(lake, out)]
        shutil.rmtree(out)
        # the full refresh rewrote dyn@1's files (and wrote cpd@1's beside cpd@2's): bring the
        # rest up to date (not timed), so that one new run is measured on a lake where only it is new
        subprocess.run(build, check=True, capture_output=True, env=rec.env)
    scale_lake.add_run(lake, seed=len(demo.SEEDS))
    rec.run("one new run", build, MODEL_LINE)
    return checks


def cpd1_build(lake: Path, sql: Path) -> list[str]:
    """The build the pandas baseline is timed against: dyn@1 and cpd@1 recomputed from
    ``sql``, a copy of sql/ holding the frozen cpd@1 (``frozen_cpd1.sql_dir``)."""
    return WAREHOUSE + ["models", "run", "--lake", str(lake), "--sql", str(sql)] + TWO_MODELS + ["--full-refresh"]


def input_datasets() -> list[contracts.Dataset]:
    """The datasets a full build reads that no model writes."""
    project = load_project()
    targets = {m.spec.target for m in project.models.values()}
    read = {d for m in project.models.values() for d in m.dependencies}
    return [contracts.DATASETS[d] for d in sorted(read - targets)]


def floors(root: Path, copy_to: Path) -> dict[str, list[str]]:
    """The SQL of the two floors over the build's input datasets."""
    scan, copy = [], []
    for dataset in input_datasets():
        source = select_dataset(dataset, lk.Lake(root).table(dataset).glob)
        scan.append(f"SELECT max(COLUMNS(*)) FROM ({source})")
        options = "FORMAT parquet, COMPRESSION zstd"
        if dataset.partition_by:
            options += f", PARTITION_BY ({', '.join(dataset.partition_by)}), OVERWRITE_OR_IGNORE"
        target = copy_to / dataset.name if dataset.partition_by else copy_to / f"{dataset.name}.parquet"
        copy.append(f"COPY ({source}) TO {ql(str(target))} ({options})")
    return {"scan floor": scan, "copy floor": copy}


def _scorecard(db: Path, lake: Path) -> dict:
    """Planted against detected change points, and the training runs' best matches."""
    card = scorecard(db, lake)
    in_cohort = sum(1 for *_, same in card.best_matches if same)
    return {"planted": card.planted, "detected": card.detected, "precision": card.precision, "recall": card.recall,
            "best_match_in_cohort": in_cohort, "training_runs_matched": len(card.best_matches)}
