"""How well the models recover what the demo lake planted, read from the catalog.

``make demo`` ends by printing this: planted against detected change points (precision and
recall within a tolerance of captures), the families ranked by DIS beside their planted
rank, and each training run's best trajectory match with whether it is in its own cohort.
Every figure is a SQL query over the catalog's views and the truth files under
``<lake>/_meta/demo/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import lake as lk
from .catalog import connect
from .errors import WarehouseError
from .sql import quote_literal as ql

TRUTH_DIR = Path(lk.META_DIR) / "demo"

_EVENT_RECOVERY = """
WITH capture_index AS (
    -- a run's captures share one step grid across layers and modules
    SELECT run_id, step, dense_rank() OVER (PARTITION BY run_id ORDER BY step) - 1 AS i
    FROM (SELECT DISTINCT run_id, step FROM geometry_state WHERE sample_id IS NULL)
),

planted AS (
    SELECT run_id, layer, metric, capture_index AS i FROM read_parquet({truth})
),

detected AS (
    -- on the runs the truth covers: the demo plants no listed change in probe runs
    SELECT e.run_id, e.layer, e.metric, x.i
    FROM events_candidates AS e
    JOIN capture_index AS x USING (run_id, step)
    WHERE e.event_type = 'change_point'
        AND e.run_id IN (SELECT run_id FROM planted)
),

detected_matched AS (
    SELECT d.*, EXISTS (
        SELECT 1 FROM planted AS p
        WHERE p.run_id = d.run_id AND p.layer = d.layer AND p.metric = d.metric AND abs(p.i - d.i) <= {tolerance}
    ) AS matched
    FROM detected AS d
),

planted_matched AS (
    SELECT p.*, EXISTS (
        SELECT 1 FROM detected AS d
        WHERE p.run_id = d.run_id AND p.layer = d.layer AND p.metric = d.metric AND abs(p.i - d.i) <= {tolerance}
    ) AS matched
    FROM planted AS p
)

SELECT
    (SELECT count(*) FROM planted_matched) AS planted,
    (SELECT count(*) FROM detected_matched) AS detected,
    (SELECT avg(matched::INT) FROM detected_matched) AS precision,
    (SELECT avg(matched::INT) FROM planted_matched) AS recall
"""

_FAMILY_RANKING = """
SELECT f.family_rank, f.family_id, f.mean_dis, p.expected_rank
FROM family_ranking AS f
LEFT JOIN read_parquet({truth}) AS p USING (family_id)
ORDER BY f.probe_name, f.family_rank, f.analysis_id
"""

_BEST_MATCHES = """
SELECT run_id_a, run_id_b, score, same_cohort
FROM best_matches
WHERE rank_a = 1 AND kind = 'trajectory' AND scope = 'run' AND run_mode_a = 'train_full'
ORDER BY run_id_a, analysis_id, signature_id_a
"""


@dataclass
class Scorecard:
    planted: int
    detected: int
    precision: float | None
    recall: float | None
    families: list[tuple]
    best_matches: list[tuple]
    tolerance: int

    def __str__(self) -> str:
        def fmt(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.3f}"

        lines = [
            f"Planted vs detected change points in the training runs (tolerance {self.tolerance} captures):",
            f"  {self.planted} planted, {self.detected} detected: precision {fmt(self.precision)}, recall {fmt(self.recall)}",
            "Families by DIS (rank, family, mean DIS, planted rank):",
            *(f"  {r:>2}  {f:<24} {fmt(d):>7}  planted {p}" for r, f, d, p in self.families),
            "Best trajectory match of each training run:",
            *(f"  {a:<10} -> {b:<10} score {fmt(s)}{'' if same else '  (other cohort)'}" for a, b, s, same in self.best_matches),
        ]
        in_cohort = sum(1 for *_, same in self.best_matches if same)
        lines.append(f"  {in_cohort} of {len(self.best_matches)} best matches are in the run's own cohort")
        return "\n".join(lines)


def scorecard(db: str | os.PathLike | None = None, lake: str | os.PathLike | None = None, *, tolerance: int = 2) -> Scorecard:
    """Score the current analyses in the catalog against the demo lake's planted truth."""
    truth = lk.open_lake(lake) / TRUTH_DIR
    events, families = truth / "planted_events.parquet", truth / "planted_families.parquet"
    if not events.is_file():
        raise WarehouseError(f"no planted truth at {truth}: score only a lake written by `warehouse demo`")
    with connect(db) as con:
        planted, detected, precision, recall = con.execute(
            _EVENT_RECOVERY.format(truth=ql(str(events)), tolerance=int(tolerance))
        ).fetchone()
        ranking = con.execute(_FAMILY_RANKING.format(truth=ql(str(families)))).fetchall()
        best = con.execute(_BEST_MATCHES).fetchall()
    return Scorecard(planted, detected, precision, recall, ranking, best, tolerance)
