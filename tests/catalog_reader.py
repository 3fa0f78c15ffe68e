"""A catalog reader for the concurrency tests: queries the catalog in a loop until told to stop.

    python tests/catalog_reader.py CATALOG STOP_FILE (hold|reconnect)

``hold`` opens the catalog once with ``warehouse.connect()`` and keeps it; ``reconnect``
opens it anew for every round. Each round reads, in one query per model dataset (its
``<dataset>_all`` view: every analysis), the rows of every (analysis, run) partition and the builds they come from, and checks them against
the catalog's build history: every analysis holds exactly the rows its record says, and
every partition holds the rows of one build. It prints a JSON summary: rounds, errors (with
their messages), inconsistencies, the analyses it saw and how many catalogs (build
histories) it met.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import warehouse

MODEL_TARGETS = ("geometry_dynamics", "events_candidates", "events", "probe_summaries", "probe_events_candidates",
                 "signatures", "matches")


def one_round(con) -> tuple[list[str], dict[str, int], tuple]:
    """The inconsistencies of one round, the rows per analysis it saw, and the build history it read."""
    history = tuple(con.execute("SELECT analysis_id, rows, updated_at FROM warehouse_analyses ORDER BY 1").fetchall())
    records = {analysis: rows for analysis, rows, _ in history}
    seen: dict[str, int] = {}
    problems = []
    for target in MODEL_TARGETS:
        run = "run_id" if "run_id" in {r[0] for r in con.execute(f"DESCRIBE {target}").fetchall()} else "NULL"
        partitions = con.execute(
            f"SELECT analysis_id, {run}, count(*), count(DISTINCT created_at_utc) FROM {target}_all GROUP BY ALL"
        ).fetchall()
        for analysis, run_id, n, builds in partitions:
            seen[analysis] = seen.get(analysis, 0) + n
            if builds != 1:
                problems.append(f"{target} {analysis} {run_id}: rows of {builds} builds")
    for analysis, n in seen.items():
        if records.get(analysis) != n:
            problems.append(f"{analysis}: {n} rows, its record says {records.get(analysis)}")
    return problems, seen, history


def main() -> None:
    db, stop, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    summary = {"rounds": 0, "errors": [], "inconsistent": [], "analyses": [], "generations": 0}
    last = None
    con = warehouse.connect(db) if mode == "hold" else None
    while not stop.exists():
        try:
            if mode == "reconnect":
                con = warehouse.connect(db)
            problems, seen, history = one_round(con)
            summary["inconsistent"] += problems
            if history != last:  # another catalog: the builds it records differ
                summary["generations"] += 1
                last = history
            summary["analyses"] = sorted(set(summary["analyses"]) | set(seen))
        except Exception as exc:  # every error counts: none is expected
            summary["errors"].append(f"{type(exc).__name__}: {exc}")
        finally:
            if mode == "reconnect" and con is not None:
                con.close()
        summary["rounds"] += 1
        time.sleep(0.005)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
