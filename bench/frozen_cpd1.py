"""The released change-point model cpd@1 beside the repository's current events_candidates.

``tests/data/models/events_candidates_cpd1.sql`` keeps cpd@1 as it was released (header name
``events_candidates``, version ``cpd@1``). :func:`sql_dir` lays out a copy of the
repository's ``sql/`` in which that file takes the place of ``models/events_candidates.sql``:
the engine runs cpd@1 there with the same macros and beside the same other models (a run
with ``selected=["events_candidates"]`` or ``--select`` leaves those alone). The
change-point evaluation, the cost benchmark and ``make bench``'s pandas comparison use it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from warehouse.models import load_project

REPO = Path(__file__).resolve().parent.parent
REPO_SQL = REPO / "sql"  # the repository's models, whatever $SQUIGGLE_SQL says
FROZEN = REPO / "tests" / "data" / "models" / "events_candidates_cpd1.sql"
MODEL, VERSION = "events_candidates", "cpd@1"


def sql_dir(target: Path) -> Path:
    """``target`` (replaced if it exists) as a copy of the repository's ``sql/`` whose
    events_candidates is the frozen cpd@1; refuses a frozen file of another version."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(REPO_SQL, target)
    shutil.copyfile(FROZEN, target / "models" / f"{MODEL}.sql")
    version = load_project(target).models[MODEL].spec.version
    if version != VERSION:
        raise SystemExit(f"{FROZEN}: its header says version {version}, not {VERSION}")
    return target
