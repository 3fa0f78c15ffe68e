"""F1 with a margin and Cover (bench/cpd_eval_metrics.py) on cases worked out by hand.

Conventions (van den Burg & Williams 2020): index 0 is added to every annotation and
prediction; a change point is the first index of a new segment; each annotation is matched
at most once, to its closest unused prediction within 5 captures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from cpd_eval_metrics import cover, f1, match_counts, precision_recall  # noqa: E402  (bench/ is a folder of scripts)


def test_a_prediction_one_off_is_a_hit_and_covers_most() -> None:
    # n 10, truth {0, 5}, predicted {0, 4}: 0-0 and 5-4 match: P = R = F1 = 1.
    assert precision_recall([[5]], [4], 10) == (1.0, 1.0)
    assert f1([[5]], [4], 10) == 1.0
    # truth segments [0,5) [5,10); predicted [0,4) [4,10).
    # [0,5): best J with [0,4) = 4/5; [5,10): with [4,10) = 5/6. Cover = (5 * 4/5 + 5 * 5/6) / 10.
    assert cover([[5]], [4], 10) == pytest.approx((4 + 25 / 6) / 10)


def test_predictions_outside_the_margin_miss() -> None:
    # n 20, truth {0, 10}, predicted {0, 3, 16}: 10 is 7 from 3 and 6 from 16, both > 5.
    # TP = {0}: P = 1/3, R = 1/2, F1 = 2 (1/6) / (5/6) = 0.4.
    assert precision_recall([[10]], [3, 16], 20) == pytest.approx((1 / 3, 1 / 2))
    assert f1([[10]], [3, 16], 20) == pytest.approx(0.4)
    # [0,10): J with [3,16) = 7/16 (best); [10,20): with [16,20) = 4/10 (with [3,16): 6/17).
    assert cover([[10]], [3, 16], 20) == pytest.approx((10 * 7 / 16 + 10 * 0.4) / 20)


def test_a_margin_of_exactly_five_matches() -> None:
    assert f1([[10]], [15], 30) == 1.0
    assert f1([[10]], [16], 30) == pytest.approx(2 * 0.5 * 0.5 / 1.0)  # P = 1/2, R = 1/2


def test_each_annotation_and_each_prediction_is_matched_once() -> None:
    # truth {0, 10, 12}, predicted {0, 11}: 10-11, then 12 finds 11 used. P = 1, R = 2/3, F1 = 0.8.
    assert precision_recall([[10, 12]], [11], 30) == pytest.approx((1.0, 2 / 3))
    assert f1([[10, 12]], [11], 30) == pytest.approx(0.8)
    # truth {0, 10}, predicted {0, 10, 11}: 11 is left over. P = 2/3, R = 1, F1 = 0.8.
    assert f1([[10]], [10, 11], 30) == pytest.approx(0.8)
    # duplicates are one prediction
    assert f1([[10]], [10, 10], 30) == 1.0


def test_no_predictions() -> None:
    # truth {0, 5}, predicted {0}: P = 1, R = 1/2, F1 = 2/3; one predicted segment covers each
    # half of the truth with J = 1/2.
    assert f1([[5]], [], 10) == pytest.approx(2 / 3)
    assert cover([[5]], [], 10) == pytest.approx(0.5)


def test_no_annotations() -> None:
    # truth {0}, predicted {0, 5}: P = 1/2, R = 1, F1 = 2/3; [0,10) against [0,5) or [5,10): J 1/2.
    assert f1([[]], [5], 10) == pytest.approx(2 / 3)
    assert cover([[]], [5], 10) == pytest.approx(0.5)
    # neither: a perfect score, as the paper's trivial detector gets on a series without change
    assert f1([[]], [], 10) == 1.0
    assert cover([[]], [], 10) == 1.0


def test_predictions_at_the_boundaries() -> None:
    # index 0 is already in every set: predicting it changes nothing
    assert f1([[5]], [0], 10) == f1([[5]], [], 10)
    assert cover([[5]], [0], 10) == cover([[5]], [], 10)
    # the last index starts a one-sample segment. n 20, truth {0, 10}, predicted {0, 19}:
    # 19 is 9 from 10: P = 1/2, R = 1/2, F1 = 1/2.
    assert f1([[10]], [19], 20) == pytest.approx(0.5)
    # [0,10): with [0,19) J = 10/19; [10,20): with [0,19) 9/20, with [19,20) 1/10 -> 9/20.
    assert cover([[10]], [19], 20) == pytest.approx((10 * 10 / 19 + 10 * 9 / 20) / 20)


@pytest.mark.parametrize("bad", [-1, 20, 2.5])
def test_an_index_outside_the_series_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match=f"predicted change point {bad!r} is not an index of a series of 20"):
        f1([[10]], [bad], 20)
    with pytest.raises(ValueError, match="annotated change point"):
        cover([[bad]], [], 20)


def test_no_annotator_is_refused() -> None:
    with pytest.raises(ValueError, match="no annotator"):
        f1([], [3], 10)


def test_several_annotators() -> None:
    # n 20, annotators {0, 5} and {0, 15}, predicted {0, 5}. T* = {0, 5, 15}: TP = {0, 5}, P = 2/2.
    # R = (2/2 + 1/2) / 2 = 3/4; F1 = 2 (3/4) / (7/4) = 6/7.
    assert precision_recall([[5], [15]], [5], 20) == pytest.approx((1.0, 0.75))
    assert f1([[5], [15]], [5], 20) == pytest.approx(6 / 7)
    # annotator 1 is covered exactly (1). Annotator 2: [0,15) best with [5,20) J = 10/20;
    # [15,20) with [5,20) J = 5/15. (15 * 1/2 + 5 * 1/3) / 20 = 0.458333. Mean (1 + 0.458333) / 2.
    assert cover([[5], [15]], [5], 20) == pytest.approx((1 + (7.5 + 5 / 3) / 20) / 2)


def test_match_counts_leave_the_start_out() -> None:
    # truth {10, 40}, predicted {0, 3, 12, 47}: the start is neither predicted nor annotated;
    # 10-12 match (2 apart), 40 is 7 from 47 and 37 from 3: 1 matched of 3 predicted and 2 annotated
    assert match_counts([10, 40], [0, 3, 12, 47], 50) == (1, 3, 2)
    # nothing predicted, nothing annotated: all zero (the paper's scores would give 1 for the start)
    assert match_counts([], [], 50) == (0, 0, 0)
    assert match_counts([10], [10, 10, 11], 50) == (1, 2, 1)


def test_match_counts_refuse_an_index_outside_the_series() -> None:
    with pytest.raises(ValueError, match="predicted change point 50 is not an index of a series of 50 samples"):
        match_counts([10], [50], 50)
