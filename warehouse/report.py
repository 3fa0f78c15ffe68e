"""``warehouse report``: one self-contained HTML file of what the catalog found.

Per cohort the squiggles (each chosen descriptor per layer, seeds overlaid, change
points and consensus events marked) and an event timeline; the probe families by DIS;
each run's best match; and the analyses behind them. The file carries plotly's script
once, inline, so it opens offline; it is read from the catalog only (read-only) and
written under a temporary name, then renamed, so a failed report leaves no file.
"""

from __future__ import annotations

import html
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from .duck import apply_resource_settings
from .errors import WarehouseError
from .plots import MAX_POINTS
from .plots import data


@dataclass(frozen=True)
class Limits:
    """What one report draws at most; anything beyond is left out and said so in the report."""

    cohorts: int = 12
    metrics_per_cohort: int = 2
    runs_per_cohort: int = 12
    matches: int = 60
    match_series: int = 6
    points_per_series: int = MAX_POINTS
    points_per_figure: int = 100_000


@dataclass
class Report:
    """A written report: where, how many figures, and what it left out or could not show."""

    path: Path
    figures: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        size = self.path.stat().st_size / 1e6
        return f"report written: {self.path} ({self.figures} figures, {size:.1f} MB, {self.seconds:.1f} s)"


# Which model a part of the report needs, and the part's name.
NEEDS = {
    "events_candidates": "change points and the event timeline",
    "events": "consensus events",
    "probe_summaries": "the probe family ranking",
    "signatures": "the best matches",
    "matches": "the best matches",
}


class _Page:
    """The report's body as it is assembled: sections of HTML and a figure counter."""

    def __init__(self, figures_module) -> None:
        self.figures = figures_module
        self.parts: list[str] = []
        self.count = 0
        self.notes: list[str] = []

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")

    def text(self, text: str, cls: str = "") -> None:
        self.parts.append(f'<p class="{cls}">{html.escape(text)}</p>' if cls else f"<p>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.text(text, "note")

    def figure(self, fig) -> None:
        self.count += 1
        self.parts.append(
            '<div class="figure">'
            + fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{self.count}",
                          config={"displaylogo": False, "responsive": True})
            + "</div>"
        )


def write_report(
    output: str | os.PathLike = "report.html",
    *,
    db: str | os.PathLike | None = None,
    lake: str | os.PathLike | None = None,
    cohort: str | None = None,
    run: str | None = None,
    limits: Limits = Limits(),
) -> Report:
    """Write the HTML report of the catalog ``db`` (whole lake, one cohort or one run) to ``output``.

    An unknown cohort or run, or an output folder that is missing or not writable, is
    refused before anything is written. ``lake`` is only checked: a catalog built from
    another lake warns, as :func:`warehouse.connect` does.
    """
    from .catalog import connect
    from .plots import _plotting

    if cohort and run:
        raise WarehouseError("give --cohort or --run, not both")
    started = time.perf_counter()
    target = _writable(Path(output))
    figures = _plotting()
    con = connect(db, lake=lake)
    try:
        apply_resource_settings(con)  # a command of the warehouse's: within its memory limit
        scope = _scope(con, cohort, run)
        page = _Page(figures)
        _body(con, page, scope, limits)
        document = _document(con, page, scope)
    finally:
        con.close()
    _write_atomically(target, document)
    return Report(target, page.count, page.notes, time.perf_counter() - started)


@dataclass(frozen=True)
class _Scope:
    title: str
    cohorts: list[data.Cohort]
    run: str | None
    cohorts_total: int


def _scope(con: duckdb.DuckDBPyConnection, cohort: str | None, run: str | None) -> _Scope:
    if run:
        data.require_run(con, run)
        return _Scope(f"run {run}", [c for c in data.cohorts(con) if run in c.run_ids], run, 1)
    if cohort:
        return _Scope(f"cohort {cohort}", [data.require_cohort(con, cohort)], None, 1)
    every = data.cohorts(con)
    return _Scope("the whole lake", every, None, len(every))


def _body(con: duckdb.DuckDBPyConnection, page: _Page, scope: _Scope, limits: Limits) -> None:
    built = {name: a.built for name, a in data.analyses(con).items()}
    probe_runs = data.probe_run_count(con)
    # without probe runs probe_summaries has nothing to compute: not a build to ask for
    missing = sorted(m for m in NEEDS if not built.get(m) and (m != "probe_summaries" or probe_runs))
    if missing:
        page.note(
            f"Not built: {', '.join(missing)} (needed for "
            + "; ".join(sorted({NEEDS[m] for m in missing}))
            + "). Run `warehouse models run` (or `make models`), then the report again."
        )
    if not scope.cohorts:
        page.note("The catalog has no runs with geometry: ingest runs and geometry_state, then build the models.")
        return
    shown = scope.cohorts[: limits.cohorts]
    if scope.cohorts_total > len(shown):
        page.note(f"{len(shown)} of {scope.cohorts_total} cohorts drawn (at most {limits.cohorts}); "
                  "`warehouse report --cohort CONFIG_HASH` draws any one of them.")
    sample_set = data.chosen_sample_set(con)
    page.heading(2, "Squiggles and events, per cohort", "cohorts")
    for c in shown:
        _cohort_section(con, page, c, scope.run, sample_set, limits)
    if not probe_runs and scope.run is None:
        page.note("No probe runs (runs rows with family_id and probe_name), so no probe family ranking.")
    probes = any(c.family_id for c in shown)
    if built.get("probe_summaries") and (probes or scope.run is None):
        rows = data.family_ranking(con)
        page.heading(2, "Probe families by DIS", "families")
        if rows:
            page.figure(page.figures.ranking(rows, "Probe families ranked by mean DIS (points: each seed)"))
        else:
            page.text("No probe family has a DIS: the lake has no probe runs with summaries.")
    if built.get("matches") and built.get("signatures"):
        _matches_section(con, page, [r for c in shown for r in _runs_drawn(c, scope.run, limits)], limits)


def _runs_drawn(c: data.Cohort, run: str | None, limits: Limits) -> tuple[str, ...]:
    return (run,) if run else c.run_ids[: limits.runs_per_cohort]


def _cohort_section(con, page: _Page, c: data.Cohort, run: str | None, sample_set: str, limits: Limits) -> None:
    runs = _runs_drawn(c, run, limits)
    listed = ", ".join(f"{r} (seed {s})" for r, s in zip(c.run_ids, c.seeds))
    if c.cohort_id == data.NO_RUNS_ROW:
        page.heading(3, "Runs without a runs row", "no-runs-row")
        page.note(f"{len(c.run_ids)} run(s) have geometry but no runs row, so no cohort and no consensus "
                  f"events: {listed}. Ingest their runs rows to group them.")
    else:
        kind = f"probe family {c.family_id}" if c.family_id else c.run_mode
        page.heading(3, f"Cohort {c.cohort_id[:12]} ({kind})", f"cohort-{c.cohort_id[:12]}")
        page.text(f"config_hash {c.cohort_id}; runs: {listed}")
    if len(runs) < len(c.run_ids) and not run:
        page.note(f"{len(runs)} of the cohort's {len(c.run_ids)} runs drawn (at most {limits.runs_per_cohort}).")
    labels = dict(zip(c.run_ids, (f"{r} (seed {s})" for r, s in zip(c.run_ids, c.seeds))))
    where = data.shape(con, runs)
    points = _points_per_series(page, where, limits)
    candidates = data.candidates(con, runs)
    for metric in data.busiest_metrics(con, c, limits.metrics_per_cohort):
        series = data.series(con, runs, metric, None, sample_set, points)
        if series["step"].size == 0:
            continue
        consensus = None if run else data.consensus(con, c.cohort_id, metric)
        title = f"{metric}: {'run ' + run if run else 'seeds overlaid'}, change points ◆, consensus events shaded"
        page.figure(page.figures.squiggles(series, data.only_metric(candidates, metric), metric, title, consensus,
                                           labels))
    if where.layers:
        page.figure(page.figures.timeline(candidates, where.layers, where.span,
                                          "Event timeline: change points (every metric) per layer and step"))


def _points_per_series(page: _Page, where: data.Shape, limits: Limits) -> int:
    """Points drawn per series: within the per-series cap and the figure's budget; said when it thins."""
    n_series = max(1, sum(len(x) for x in where.layers.values()))
    points = max(20, min(limits.points_per_series, limits.points_per_figure // n_series))
    if where.longest > points:
        page.note(f"Series of up to {where.longest:,} captures are drawn as at most {points:,} points each "
                  "(the lowest and highest value of each slice of their captures).")
    return points


def _matches_section(con, page: _Page, runs: list[str], limits: Limits) -> None:
    ids = data.best_match_ids(con, runs)
    page.heading(2, "Best matches", "matches")
    if not ids:
        page.text("No run in this report has a match.")
        return
    if len(ids) > limits.matches:
        page.note(f"{limits.matches} of {len(ids)} best matches drawn (at most {limits.matches}).")
    for found in data.matches(con, ids[: limits.matches]):
        fig, n_series = page.figures.match_panels(found, limits.match_series)
        page.figure(fig)
        if n_series > limits.match_series:
            page.text(f"match {found.match_id}: the {limits.match_series} of {n_series} series that add most "
                      "to the cosine.", "small")


def _provenance(con: duckdb.DuckDBPyConnection) -> str:
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            a.model, a.version, a.analysis_id, _params(a.params), "yes" if a.built else "no", a.updated_at or "–"))
        + "</tr>"
        for a in data.analyses(con).values()
    )
    head = "".join(f"<th>{h}</th>" for h in ("model", "version", "analysis", "parameters", "built", "updated (UTC)"))
    return f'<table class="provenance"><tr>{head}</tr>{rows}</table>'


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(params.items())) or "–"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.meta, .small { color: #666; font-size: 0.9em; }
.note { background: #fff6e0; border-left: 4px solid #f0a000; padding: 0.4em 0.8em; }
.figure { margin: 1em 0 2em; }
table.provenance { border-collapse: collapse; font-size: 0.85em; }
table.provenance td, table.provenance th { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
"""


def _document(con: duckdb.DuckDBPyConnection, page: _Page, scope: _Scope) -> str:
    from plotly.offline import get_plotlyjs

    lake, catalog_built = con.execute("SELECT lake, built_at_utc FROM warehouse_catalog").fetchone()
    made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    meta = (f"Scope: {scope.title}. Lake {lake}; catalog built {catalog_built:%Y-%m-%d %H:%M:%S} UTC; "
            f"report made {made}. Drag to zoom, double-click to reset, hover for values.")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Squiggle report: {html.escape(scope.title)}</title>",
        f"<style>{STYLE}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        "<h1>Squiggle report</h1>",
        f'<p class="meta">{html.escape(meta)}</p>',
        *page.parts,
        '<h2 id="analyses">Analyses shown</h2>',
        '<p class="meta">The current analysis of each model: what produced the tables above, and when.</p>',
        _provenance(con),
        "</body></html>",
    ])


def _writable(path: Path) -> Path:
    """The absolute output path, once its folder is known to exist and take a new file."""
    path = path.expanduser().absolute()
    folder = path.parent
    if not folder.is_dir():
        raise WarehouseError(f"cannot write the report to {path}: folder {folder} does not exist")
    if path.is_dir():
        raise WarehouseError(f"cannot write the report to {path}: it is a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WarehouseError(f"cannot write the report to {path}: no permission to write in {folder}")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_atomically(path: Path, text: str) -> None:
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WarehouseError(f"cannot write the report to {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the report from others
        os.replace(temp, path)
    except BaseException as exc:
        Path(temp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WarehouseError(f"cannot write the report to {path}: {exc.strerror}") from None
        raise
