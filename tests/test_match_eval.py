"""The matching evaluation's matchers and report (bench/match_eval_matchers.py,
bench/match_eval.py): 1-NN and its error on cases worked by hand, the ED peer on runs whose
resampled, z-normalised values are known, the DTW band choice, and the warehouse's own
models classing an easy set without error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import match_eval  # noqa: E402  (bench/ is a folder of scripts)
import match_eval_matchers as m  # noqa: E402
from match_eval_sets import Series  # noqa: E402


def run(values: list[float] | list[list[float]], steps: list[int] | None = None) -> Series:
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    return Series(v, np.asarray(steps if steps is not None else np.arange(v.shape[1]) * 10, dtype=np.int64))


def test_one_nn_error_on_a_hand_worked_case() -> None:
    # three training runs at distances 3, 1, 1 from test run 0: the tie goes to the first (b)
    d = np.array([[3.0, 1.0, 1.0], [0.5, 2.0, 0.7], [9.0, 8.0, 7.0], [1.0, 1.0, 1.0]])
    predicted = m.nearest_labels(d, ["a", "b", "c"])
    assert predicted == ["b", "a", "c", "a"]
    # truth b, b, c, c: run 1 and run 3 are wrong
    assert m.error_rate(predicted, ["b", "b", "c", "c"]) == 0.5
    assert m.error_rate(["a", None], ["a", "b"]) == 0.5  # no prediction counts as wrong
    with pytest.raises(ValueError, match="1 predictions for 2 test runs"):
        m.error_rate(["a"], ["a", "b"])


def test_leave_one_out_errors_on_a_hand_worked_matrix() -> None:
    # run 0 -> 1 (a, right), 1 -> 0 (right), 2 -> 1 (a, wrong: its class has no other run)
    d = np.array([[0.0, 1.0, 5.0], [1.0, 0.0, 4.0], [5.0, 4.0, 0.0]])
    assert m.loo_errors(d, ["a", "a", "b"]) == 1


def test_euclidean_peer_on_runs_worked_by_hand() -> None:
    # training: A = [0, 0, 3] and B = [3, 0, 0] at 3 captures; the test runs have 5, so the
    # common length is 5 and A resamples to [0, 0, 0, 1.5, 3]: mean 0.9, std 1.2, z = [-0.75,
    # -0.75, -0.75, 0.5, 1.75]; B to its mirror. Test 0 is A's resampled run shifted by 10
    # (same z); test 1, [2, 1, 0, 0, 0] (mean 0.6, std 0.8), has B's z. Squared distance of the
    # two z: diffs [-2.5, -1.25, 0, 1.25, 2.5] -> 6.25 + 1.5625 + 0 + 1.5625 + 6.25 = 15.625.
    train = [run([0, 0, 3]), run([3, 0, 0])]
    test = [run([10, 10, 10, 11.5, 13], [0, 5, 10, 15, 20]), run([2, 1, 0, 0, 0], [0, 5, 10, 15, 20])]
    prepared = m.prepare(train, 5)
    np.testing.assert_allclose(prepared[0, 0], [-0.75, -0.75, -0.75, 0.5, 1.75])
    np.testing.assert_allclose(m.squared_euclidean(m.prepare(test, 5), prepared), [[0, 15.625], [15.625, 0]],
                               atol=1e-9)
    assert m.euclidean(train, ["late", "early"], test) == ["late", "early"]


def test_resampling_follows_the_steps_not_the_capture_index() -> None:
    # captures at steps 0, 30, 40 (u = 0, 0.75, 1) of a line 0 .. 4: at u = 0.25, 0.5 it reads 1, 2
    np.testing.assert_allclose(m.resample(run([0, 3, 4], [0, 30, 40]), 5), [[0, 1, 2, 3, 4]])
    assert m.znorm(np.array([[2.0, 2.0, 2.0]])).tolist() == [[0.0, 0.0, 0.0]]  # flat: zeros


def test_the_learned_band_is_the_narrowest_with_fewest_leave_one_out_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = ["a", "a", "b", "b"]
    wrong = np.array([[0, 9, 1, 9], [9, 0, 9, 9], [9, 9, 0, 9], [9, 9, 1, 0]], dtype=float)  # runs 0, 3 wrong
    right = np.array([[0, 1, 9, 9], [1, 0, 9, 9], [9, 9, 0, 1], [9, 9, 1, 0]], dtype=float)
    by_band = {0.0: wrong, 0.02: wrong, 0.04: right, 0.06: right}
    monkeypatch.setattr(m, "dtw", lambda a, b, band: by_band[band])
    assert m.learned_band(np.zeros((4, 1, 3)), labels, bands=(0.0, 0.02, 0.04, 0.06)) == 0.04


def test_dtw_of_a_shifted_spike_inside_and_outside_the_band() -> None:
    pytest.importorskip("aeon")
    x = np.array([[[0.0, 1.0, 0.0, 0.0]]])
    y = np.array([[[0.0, 0.0, 1.0, 0.0]]])
    # band 0: the diagonal alone, the squared Euclidean distance 1 + 1; a band of a quarter
    # of 4 captures (radius 1) lets the path align the spikes: 0
    assert m.dtw(x, y, 0.0)[0, 0] == pytest.approx(2.0)
    assert m.dtw(x, y, 0.25)[0, 0] == pytest.approx(0.0)


def test_the_geometry_rows_hold_each_channel_as_a_layer() -> None:
    runs = [run([[1, 2, 3], [4, 5, 6]], [0, 7, 9]), run([8, 9], [0, 5])]
    t = m.geometry_table(runs).to_pydict()
    assert t["run_id"] == ["eval-00000"] * 6 + ["eval-00001"] * 2
    assert t["layer"] == [0, 0, 0, 1, 1, 1, 0, 0]
    assert t["step"] == [0, 7, 9, 0, 7, 9, 0, 5]
    assert t["eff_rank"] == [1, 2, 3, 4, 5, 6, 8, 9]
    assert set(t["sv_entropy"]) == {None} and set(t["sample_id"]) == {None}


def two_classes(n_per: int, rng: np.random.Generator, channels: int = 1) -> tuple[list[Series], list[str]]:
    # a late rise against three periods of a sine, 40 to 90 captures, small noise, offsets
    runs, labels = [], []
    for label in ("rise", "wave"):
        for _ in range(n_per):
            n = int(rng.integers(40, 91))
            u = np.arange(n) / (n - 1)
            shape = 1 / (1 + np.exp(-(u - 0.7) / 0.02)) if label == "rise" else np.sin(6 * np.pi * u)
            rows = [rng.uniform(-5, 5) + shape + 0.05 * rng.standard_normal(n)]
            rows += [np.cos(2 * np.pi * u) + 0.05 * rng.standard_normal(n) for _ in range(channels - 1)]
            runs.append(run(rows))
            labels.append(label)
    return runs, labels


@pytest.mark.parametrize("channels", [1, 2])
def test_the_warehouse_matcher_classes_an_easy_set_without_error(channels: int) -> None:
    # with two channels the first is the same for both classes: the layers must be told apart
    rng = np.random.default_rng(0)
    train, train_labels = two_classes(3, rng, channels)
    test, test_labels = two_classes(4, rng, channels)
    if channels == 2:
        train = [Series(r.values[::-1].copy(), r.steps) for r in train]
        test = [Series(r.values[::-1].copy(), r.steps) for r in test]
    predicted = m.warehouse_matcher()(train, train_labels, test)
    assert predicted == test_labels


def test_a_run_of_the_report_names_every_set_and_matcher(tmp_path: Path) -> None:
    out = tmp_path / "match_eval"
    match_eval.main(["--sets", "shapes-easy", "nuisance-noise", "--real", "--per-class", "2", "2", "--only", "ED",
                     "--out", str(out)])
    report = json.loads(out.with_suffix(".json").read_text())
    assert list(report["sets"]) == ["shapes-easy", "nuisance-noise"]
    assert report["sets"]["shapes-easy"]["train"] == 12 and report["sets"]["shapes-easy"]["test"] == 12
    errors = [report["matchers"]["ED"]["sets"][s]["error"] for s in report["sets"]]
    assert all(0 <= e <= 1 and e * 12 == round(e * 12) for e in errors)  # a share of 12 test runs
    text = out.with_suffix(".md").read_text()
    assert "| set | classes | train / test | captures | ED |" in text
    lo, hi = report["sets"]["shapes-easy"]["lengths"]
    assert 24 <= lo < hi <= 400
    assert f"| shapes-easy | 6 | 12 / 12 | {lo}-{hi} | " in text and "- ED: " in text
    with pytest.raises(SystemExit, match="unknown or unavailable matcher.*'XYZ'"):
        match_eval.main(["--quick", "--only", "XYZ", "--out", str(tmp_path / "x")])
