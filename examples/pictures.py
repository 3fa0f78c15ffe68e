"""Draw the README's pictures: each warehouse.plots example and the top of the report.

    python examples/pictures.py --db warehouse.duckdb   # after `make demo`

Runs the README's examples on the demo catalog, saves each figure as a standalone HTML
file and screenshots it in headless Chromium into examples/pictures/ (PNG).
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

from PIL import Image

import warehouse
from warehouse import plots
from warehouse.plots.browser import render
from warehouse.report import write_report

HERE = Path(__file__).resolve().parent / "pictures"


def examples(con) -> dict[str, object]:
    """The README's examples, by picture name (the same calls, on the demo's runs)."""
    cohort_id = con.execute("SELECT config_hash FROM runs WHERE run_id = 'c1-s0'").fetchone()[0]
    match_id = con.execute(
        "SELECT match_id FROM best_matches WHERE run_id_a = 'c1-s0' AND scope = 'run' AND rank_a = 1"
    ).fetchone()[0]
    return {
        "trajectory": plots.trajectory("c1-s0", "resid_post.sv_entropy", layers=[2, 3, 4], con=con),
        "cohort": plots.cohort(cohort_id, "resid_post.sv_entropy", con=con),
        "events": plots.events("c1-s0", con=con),
        "family_ranking": plots.family_ranking(con=con),
        "match": plots.match(match_id, con=con),
    }


def screenshot(page: Path, out: Path, width: int, height: int | None = None) -> None:
    drawn = render(page, width=width)
    if drawn.errors:
        raise SystemExit(f"{page}: the browser reported {drawn.errors}")
    image = Image.open(io.BytesIO(drawn.png)).convert("RGB")
    if height:
        image = image.crop((0, 0, width, min(height, image.height)))
    image.save(out, optimize=True)
    print(f"written {out} ({out.stat().st_size // 1024} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None, help="the demo catalog (default $SQUIGGLE_DB or ./warehouse.duckdb)")
    args = parser.parse_args()
    HERE.mkdir(exist_ok=True)
    con = warehouse.connect(args.db)
    with tempfile.TemporaryDirectory() as work:
        for name, fig in examples(con).items():
            page = Path(work) / f"{name}.html"
            fig.update_layout(width=1000)
            fig.write_html(page, include_plotlyjs=True, config={"displaylogo": False})
            screenshot(page, HERE / f"{name}.png", 1000, int(fig.layout.height or 500) + 20)
        report = write_report(Path(work) / "report.html", db=args.db)
        screenshot(report.path, HERE / "report.png", 1400, 1800)
    con.close()


if __name__ == "__main__":
    main()
