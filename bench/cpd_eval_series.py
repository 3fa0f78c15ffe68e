"""Labelled series for the change-point evaluation: planted changes and null nuisance (numpy).

Every series is made from its own seed (``numpy.random.default_rng``), so a suite is the
same on every machine. A series has ``values`` and ``steps`` (training steps: 10 apart, or
for every other series of a suite irregular gaps of 10 to 40; the values are laid out per capture index,
so a change is planted at a capture index whatever the spacing) and the capture indices of
its planted changes (``changes``: the first capture of the new regime, or the middle of a
slow transition). Null series have no change.

Planted kinds, each on Gaussian noise of standard deviation ``noise`` with a change of size
``DELTA`` (1 unit):

- ``level_step``: the level moves by DELTA over 1 to 3 captures (labelled at the first);
- ``level_ramp``: the level moves by DELTA along a logistic over ``slow_width(n)`` captures
  (labelled at its middle, where it moves fastest);
- ``slope_kink``: the slope changes abruptly by DELTA per ``kink_scale(n)`` captures;
- ``slope_bend``: the same change of slope spread evenly over ``slow_width(n)`` captures
  (labelled at its middle);
- ``variance_step``: the noise's standard deviation is multiplied (or divided) by 4.

Null kinds (nuisance only): ``linear_trend``, ``curved_trend`` (a quadratic), ``seasonal``
(a sine of period 12 to 50 captures), ``ar1`` (AR(1) noise, rho 0.5 or 0.9), ``student_t3``
(Student t noise with 3 degrees of freedom), ``outliers`` (1% isolated spikes of 8 to 12 noise
units), ``loss_decay`` (an exponential decay to a floor, like a training loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

PLANTED_KINDS = ("level_step", "level_ramp", "slope_kink", "slope_bend", "variance_step")
NULL_KINDS = ("linear_trend", "curved_trend", "seasonal", "ar1", "student_t3", "outliers", "loss_decay")
DELTA = 1.0
VARIANCE_FACTOR = 4.0


@dataclass(frozen=True)
class Series:
    """One labelled series: values per capture, their steps, the planted change indices."""

    name: str
    kind: str
    values: np.ndarray
    steps: np.ndarray
    changes: tuple[int, ...]
    null: bool
    source: str = "generated"

    @property
    def n(self) -> int:
        return len(self.values)


def slow_width(n: int) -> int:
    """Captures a slow transition takes: a tenth of the series, at least 6, at most 200."""
    return int(np.clip(n // 10, 6, 200))


def kink_scale(n: int) -> int:
    """Captures over which an abrupt slope change moves the series by DELTA."""
    return max(5, n // 20)


def change_positions(n: int, kind: str, rng: np.random.Generator) -> list[int]:
    """One change in series under 64 captures, two above; each at least a margin from the
    ends and from the other (a slow transition's half width more)."""
    half = slow_width(n) // 2 if kind in ("level_ramp", "slope_bend") else 0
    gap = min(max(n // 8, 3) + half, n // 2)
    count = 1 if n < 64 else 2
    while True:
        points = sorted(int(p) for p in rng.integers(gap, n - gap + 1, size=count))
        if count == 1 or points[1] - points[0] >= 2 * gap:
            return points


def steps_for(n: int, irregular: bool, rng: np.random.Generator) -> np.ndarray:
    if not irregular:
        return np.arange(n, dtype=np.int64) * 10
    return np.concatenate([[0], np.cumsum(rng.integers(1, 5, size=n - 1))]).astype(np.int64) * 10


def planted(kind: str, n: int, noise: float, seed: int, irregular: bool = False) -> Series:
    """A series of ``n`` captures with the changes of ``kind`` planted (see the module doc)."""
    if kind not in PLANTED_KINDS:
        raise ValueError(f"unknown planted kind {kind!r}; known: {', '.join(PLANTED_KINDS)}")
    rng = np.random.default_rng(seed)
    points = change_positions(n, kind, rng)
    t = np.arange(n, dtype=np.float64)
    signs = rng.choice([-1.0, 1.0], size=len(points))
    level = np.zeros(n)
    slope = np.zeros(n)
    scale = np.full(n, noise)
    width = slow_width(n)
    for c, s in zip(points, signs):
        if kind == "level_step":
            r = int(rng.integers(1, 4))
            level += s * DELTA * np.clip((t - c + 1) / r, 0, 1)
        elif kind == "level_ramp":
            level += s * DELTA / (1 + np.exp(-(t - c) * 8 / width))
        elif kind == "slope_kink":
            slope += s * DELTA / kink_scale(n) * (t >= c)
        elif kind == "slope_bend":
            slope += s * DELTA / kink_scale(n) * np.clip((t - (c - width / 2)) / width, 0, 1)
        else:  # variance_step
            scale = np.where(t >= c, scale * VARIANCE_FACTOR ** s, scale)
    values = level + np.concatenate([[0.0], np.cumsum(slope[1:])]) + scale * rng.standard_normal(n)
    return Series(f"{kind}-n{n}-s{noise:g}-{seed}", kind, values, steps_for(n, irregular, rng), tuple(points), False)


def null(kind: str, n: int, noise: float, seed: int, irregular: bool = False) -> Series:
    """A series of ``n`` captures of the nuisance ``kind`` only: no change point."""
    if kind not in NULL_KINDS:
        raise ValueError(f"unknown null kind {kind!r}; known: {', '.join(NULL_KINDS)}")
    rng = np.random.default_rng(seed)
    u = np.arange(n, dtype=np.float64) / max(n - 1, 1)  # 0 .. 1 along the series
    e = rng.standard_normal(n)
    if kind == "linear_trend":
        values = rng.uniform(-5, 5) * u + noise * e
    elif kind == "curved_trend":
        values = rng.uniform(2, 5) * rng.choice([-1, 1]) * (u - 0.5) ** 2 + noise * e
    elif kind == "seasonal":
        period = rng.uniform(12, 50)
        values = rng.uniform(1, 3) * np.sin(2 * np.pi * np.arange(n) / period + rng.uniform(0, 2 * np.pi)) + noise * e
    elif kind == "ar1":
        rho = float(rng.choice([0.5, 0.9]))
        x = np.empty(n)
        x[0] = e[0] / np.sqrt(1 - rho**2)  # started from the stationary distribution
        for k in range(1, n):
            x[k] = rho * x[k - 1] + e[k]
        values = noise * x
    elif kind == "student_t3":
        values = noise * rng.standard_t(3, size=n)
    elif kind == "outliers":
        values = noise * e
        spikes = rng.choice(n, size=max(1, n // 100), replace=False)
        values[spikes] += noise * rng.uniform(8, 12, size=len(spikes)) * rng.choice([-1, 1], size=len(spikes))
    else:  # loss_decay: from about 5 down to a floor of 0.5 with noise shrinking with the loss
        curve = 0.5 + 4.5 * np.exp(-u * rng.uniform(3, 8))
        values = curve * (1 + 0.1 * noise * e)
    return Series(f"{kind}-n{n}-s{noise:g}-{seed}", kind, values, steps_for(n, irregular, rng), (), True)


def suite(lengths: Sequence[int], noises: Sequence[float], seeds: int, base_seed: int = 0) -> Iterator[Series]:
    """Every planted and null kind at every length and noise level, ``seeds`` series each;
    every other series has irregular steps."""
    k = 0
    for make, kinds in ((planted, PLANTED_KINDS), (null, NULL_KINDS)):
        for kind in kinds:
            for n in lengths:
                for noise in noises:
                    for s in range(seeds):
                        yield make(kind, n, noise, base_seed + k, irregular=k % 2 == 1)
                        k += 1
