"""Series too short for the change-point model are said, not skipped silently: by the build
that computes their runs (a `left out:` line) and by `warehouse check` (a note, which does
not fail the check: the data are valid)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from warehouse import check_lake, models, writer
from warehouse.check import short_series_notes
from warehouse.contracts import DESCRIPTORS
from warehouse.lake import init_lake

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def captures(run: str, n: int, *, full_until: int | None = None, sample_id: str | None = None) -> list[dict]:
    """n captures of one series per descriptor (layer 0, resid_post); from `full_until` on
    every descriptor but eff_rank is NULL."""
    rows = []
    for k in range(n):
        row = {"run_id": run, "analysis_id": "cap", "step": 10 * k, "seed": 0, "sample_set": "fixed",
               "sample_id": sample_id, "layer": 0, "module": "resid_post", "n_samples": 8, "dim": 4}
        for d in DESCRIPTORS:
            full = full_until is None or k < full_until or d == "eff_rank"
            row[d] = float(k % 5) if full else None
        rows.append(row)
    return rows


def runs_rows(*runs: str) -> list[dict]:
    return [{"run_id": r, "seed": 0, "run_mode": "train_full", "model_id": "m", "config_json": "{}",
             "config_hash": "c", "status": "completed", "started_at_utc": START} for r in runs]


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    root = init_lake(tmp_path / "lake")
    rows = captures("short", 10) + captures("long", 100) + captures("holey", 40, full_until=12)
    rows += captures("samples", 12, sample_id="s0") + captures("samples", 12, sample_id="s1")  # per-sample only
    writer.write("geometry_state", rows, lake=root)
    writer.write("runs", runs_rows("short", "long", "holey", "samples"), lake=root)
    return root


def test_the_build_names_each_short_run_once(lake: Path) -> None:
    said: list[str] = []
    models.run(lake=lake, selected=["events_candidates"], report=said.append)
    short = [line for line in said if line.startswith("left out:")]
    # 6 descriptors each: short has 10 captures in all 6, holey 12 in 5 (eff_rank has 40),
    # samples 12 steps (two samples per step count once); long's 100 are enough
    assert [line.split(": ", 2)[1] for line in short] == [
        "geometry_state/analysis_id=cap/run_id=holey", "geometry_state/analysis_id=cap/run_id=samples",
        "geometry_state/analysis_id=cap/run_id=short"]
    assert "5 of run holey's 6 series have fewer than 16 captures (the shortest: 12)" in short[0]
    assert "6 of run samples's 6 series have fewer than 16 captures (the shortest: 12)" in short[1]
    assert "6 of run short's 6 series have fewer than 16 captures (the shortest: 10)" in short[2]
    # a smaller scale tests them: nothing is said
    said.clear()
    models.run(lake=lake, selected=["events_candidates"], params={"events_candidates": {"min_scale": 2}},
               report=said.append)
    assert not [line for line in said if line.startswith("left out:")]
    # a build with nothing to compute says nothing again; check says it
    said.clear()
    models.run(lake=lake, selected=["events_candidates"], report=said.append)
    assert not [line for line in said if line.startswith("left out:")]


def test_check_notes_short_series_without_failing(lake: Path) -> None:
    assert [p.kind for p in check_lake(lake)] == []  # the data are valid
    notes = [(n.path, n.runs) for n in short_series_notes(lake)]
    assert notes == [("geometry_state/analysis_id=cap/run_id=holey", ("holey",)),
                     ("geometry_state/analysis_id=cap/run_id=samples", ("samples",)),
                     ("geometry_state/analysis_id=cap/run_id=short", ("short",))]
    done = subprocess.run([sys.executable, "-m", "warehouse.cli", "check", "--lake", str(lake)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "lake is clean"
    assert "note: geometry_state/analysis_id=cap/run_id=short: 6 of run short's 6 series have fewer than 16" in done.stdout
