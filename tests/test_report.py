"""`warehouse report`: one offline HTML file, a figure per panel, drawn by a real Chromium."""

from __future__ import annotations

import io
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import pytest

from model_fixtures import cli
from picture_fixtures import built_demo
from warehouse.plots.browser import find_chromium, render


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path]:
    return built_demo(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def report(demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "report.html"
    done = cli("report", "--db", str(demo[1]), "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert f"report written: {out}" in done.stdout
    return out


class Page(HTMLParser):
    """The parts of the report the tests count: figures, scripts, headings, table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.figures, self.scripts, self.external, self.headings, self.cells = [], 0, [], [], []
        self._in = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and "plotly-graph-div" in (attrs.get("class") or ""):
            self.figures.append(attrs["id"])
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if attrs.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(attrs[key])
        self._in = tag

    def handle_data(self, text):
        if self._in in ("h2", "h3"):
            self.headings.append(text)
        if self._in == "td":
            self.cells.append(text)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def expected_figures(db: Path) -> int:
    """Panels the demo's report must hold, counted from the catalog with plain queries."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        cohorts = con.execute("SELECT config_hash, list(run_id) FROM runs GROUP BY config_hash").fetchall()
        per_cohort = 0
        for cohort_id, runs in cohorts:
            metrics = con.execute(
                "SELECT count(DISTINCT metric) FROM (SELECT metric FROM events WHERE cohort_id = $c UNION ALL "
                "SELECT metric FROM events_candidates WHERE list_contains($r, run_id)) WHERE metric <> '__composite__'",
                {"c": cohort_id, "r": runs}).fetchone()[0]
            per_cohort += max(1, min(2, metrics)) + 1  # squiggles per chosen metric, and the timeline
        ranking = con.execute("SELECT count(*) > 0 FROM family_ranking").fetchone()[0]
        best = con.execute(
            "SELECT count(*) FROM best_matches WHERE rank_a = 1 AND scope = 'run'").fetchone()[0]
    finally:
        con.close()
    assert len(cohorts) == 9 and best == 27 + 18
    return per_cohort + int(ranking) + best


def test_report_holds_one_figure_per_panel_and_no_external_reference(demo, report) -> None:
    page = parse(report)
    assert len(page.figures) == expected_figures(demo[1])
    assert len(set(page.figures)) == len(page.figures)
    assert page.external == []  # plotly's script is inline: the file opens offline
    assert report.stat().st_size < 10_000_000
    assert "Best matches" in page.headings and "Probe families by DIS" in page.headings
    con = duckdb.connect(str(demo[1]), read_only=True)
    ids = [r[0] for r in con.execute("SELECT analysis_id FROM warehouse_current_analyses").fetchall()]
    con.close()
    assert set(ids) <= set(page.cells)  # the analyses behind every table


def test_report_renders_in_headless_chromium_without_errors(demo, report) -> None:
    from PIL import Image

    assert find_chromium(), "no Chromium: `make test` installs Debian's chromium"
    drawn = render(report, width=1400)
    assert drawn.errors == []
    assert drawn.figures_drawn == len(parse(report).figures)
    image = np.asarray(Image.open(io.BytesIO(drawn.png)).convert("RGB"))
    assert image.shape[0] > 4000  # the whole page, not one screen
    inked = (image < 200).any(axis=2)
    assert inked.mean() > 0.01  # lines, text and heat maps, not a blank page
    assert len(np.unique(image.reshape(-1, 3)[::97], axis=0)) > 50  # in colour


def test_cohort_and_run_reports_draw_only_their_runs(demo, tmp_path) -> None:
    _, db = demo
    con = duckdb.connect(str(db), read_only=True)
    cohort_id = con.execute("SELECT config_hash FROM runs WHERE run_id = 'c2-s0'").fetchone()[0]
    con.close()
    for flag, value, runs in (("--cohort", cohort_id, {"c2-s0", "c2-s1", "c2-s2"}), ("--run", "c2-s0", {"c2-s0"})):
        out = tmp_path / f"{flag[2:]}.html"
        done = cli("report", "--db", str(db), flag, value, "-o", str(out))
        assert done.returncode == 0, done.stderr
        text = out.read_text(encoding="utf-8")
        # the squiggles' lines are named "<run> (seed <s>)"; a best match may draw another run
        drawn = {r for r in ("c1-s0", "c2-s0", "c2-s1", "c2-s2", "c3-s0") if f'"name":"{r} (seed' in text}
        assert drawn == runs, flag


def test_unknown_run_or_cohort_is_refused_and_nothing_is_written(demo, tmp_path) -> None:
    out = tmp_path / "report.html"
    out.write_text("an earlier report")
    for flag, value, said in (("--run", "nope", "unknown run 'nope'; known: c1-s0, c1-s1"),
                              ("--cohort", "abc", "unknown cohort (runs.config_hash) 'abc'; known: ")):
        done = cli("report", "--db", str(demo[1]), flag, value, "-o", str(out))
        assert done.returncode == 2 and said in done.stderr
        assert done.stderr.count(",") <= 10  # at most 10 known names, then how many more
    assert out.read_text() == "an earlier report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


@pytest.mark.parametrize("where", ["missing/report.html", "/sys/report.html"])
def test_output_that_cannot_be_written_fails_clearly_with_no_file(demo, tmp_path, where) -> None:
    out = tmp_path / where if not where.startswith("/") else Path(where)
    done = cli("report", "--db", str(demo[1]), "-o", str(out))
    assert done.returncode == 2
    assert f"cannot write the report to {out}" in done.stderr
    assert not out.exists()
    if out.parent.exists():
        assert not list(out.parent.glob(".report.html.*"))


def test_catalog_without_model_outputs_says_which_models_to_run(tmp_path) -> None:
    lake, db, out = tmp_path / "lake", tmp_path / "warehouse.duckdb", tmp_path / "report.html"
    assert cli("demo", "--lake", str(lake)).returncode == 0
    assert cli("catalog", "--lake", str(lake), "--db", str(db)).returncode == 0
    done = cli("report", "--db", str(db), "-o", str(out))
    assert done.returncode == 0, done.stderr
    for model in ("events_candidates", "events", "probe_summaries", "signatures", "matches"):
        assert model in done.stdout
    assert "warehouse models run" in done.stdout and "warehouse models run" in out.read_text()
    assert len(parse(out).figures) == 2 * 9  # the squiggles of each cohort and its (empty) timeline


def test_a_run_without_a_runs_row_is_drawn_and_long_series_are_thinned(tmp_path) -> None:
    from model_fixtures import geometry_rows, write_runs
    from warehouse import writer

    lake, db, out = tmp_path / "lake", tmp_path / "warehouse.duckdb", tmp_path / "report.html"
    write_runs(lake, {"long-a": range(0, 30_000, 6), "long-b": range(0, 30_000, 6)}, samples=(None,))
    writer.write("geometry_state", geometry_rows("stray", range(0, 400, 4), samples=(None,)), lake=lake)
    assert cli("models", "run", "--lake", str(lake), "--db", str(db), timeout=600).returncode == 0
    done = cli("report", "--db", str(db), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "1 run(s) have geometry but no runs row" in done.stdout and "stray" in done.stdout
    # no probe runs: nothing for probe_summaries to build, so no request to build it
    assert "No probe runs" in done.stdout and "Not built" not in done.stdout
    assert "Series of up to 5,000 captures are drawn as at most 2,000 points each" in done.stdout
    text = out.read_text(encoding="utf-8")
    assert "Runs without a runs row" in text and '"name":"stray (seed 0)"' in text
    import warehouse
    from warehouse import plots

    con = warehouse.connect(db)
    fig = plots.cohort("cohort-a", "resid_post.eff_rank", con=con)
    con.close()
    lines = [t for t in fig.data if t.mode == "lines" and "(seed" in (t.name or "")]
    assert len(lines) == 2 * 2  # two runs, two layers
    assert all(1000 < len(t.x) <= 2000 for t in lines)  # 5,000 captures, thinned to slices' extremes
