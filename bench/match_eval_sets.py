"""Labelled trajectory sets for the matching evaluation: seeded planted shapes (numpy).

A set holds runs of several classes, split into training and test runs. Each run is a
``Series``: its values per channel and capture (``channels x n``) and its steps. A class is
a shape family on normalised time u in [0, 1] (the run's first to last step), of unit
amplitude; an instance is that shape seen through planted nuisance:

    value(u) = offset + scale * (shape(w(u) ** g - shift) + noise * e),  e ~ N(0, 1)

- ``shift``: uniform in [-shift, shift] (a fraction of the run);
- ``w``, a smooth monotone time warp fixing both ends: w(u) = u + a sin(pi u) / pi with a
  uniform in [-warp, warp] (warp < 1 keeps w' = 1 + a cos(pi u) > 0): the middle of the run
  moves by up to warp / pi, earlier or later;
- ``g``, a time stretch: log g uniform in [-stretch, stretch], so that what one run does at
  time u another does at u ** (1 / g), as a run trained at another learning rate would;
- ``noise``: Gaussian, in units of the shape's amplitude;
- ``offset`` uniform in [-level, level] and ``scale`` log-uniform in [1 / spread, spread];
- lengths uniform in [lo, hi] captures per run; steps 10 apart, or for an irregular set
  gaps of 10 to 10 * max_gap drawn per capture, or log-spaced gaps growing geometrically
  from 10 to 10 * LOG_GAP along the run (as checkpoints often are: dense early, sparse
  late). The shape is sampled at the step's u, so the captures are unevenly spread over it.

Shape groups (the classes of a set):

- ``shapes``: step_early (a rise at u = 0.3), step_late (a rise at 0.7), bump (a Gaussian
  bump at 0.5), dip_recovery (a sharp drop at 0.3, then an exponential recovery),
  oscillation (three periods of a sine), plateau_drop (flat, then a sharp drop at 0.55
  and a slow decay);
- ``timing``: one rise (logistic, width 0.02) at u = 0.2, 0.4, 0.6 or 0.8: classes that only
  the time of the transition tells apart;
- ``loss``: training-loss-like decays: fast_decay (exp(-8u)), slow_decay (exp(-2u)),
  plateau_drop (as above), double_descent (a decay, a rise peaking at 0.5, a second decay),
  spike_recovery (a decay with a sharp spike at 0.4 and its recovery).

Difficulties (``DIFFICULTIES``) set shift, warp, stretch and noise together; every graded set has
random level offsets (+-10) and scales (x 1/5 .. 5) and lengths 24 to 400; the loss group
has random gaps (1 to 4). In the timing group, medium's largest displacement of a rise
(shift + warp / pi, 0.10) is about half the classes' spacing (0.2): hard's (0.21, more with the
stretch) lets classes overlap, so its error has a floor that no matcher beats. The nuisance
sets (``NUISANCES``) are the ``loss`` group (whose classes differ more subtly than the
shapes') at 128 regular captures with a little noise (0.05), each with one nuisance strong
and the others off, and a ``clean`` one with none: they tell which nuisance hurts a
matcher. Level and scale, length and step spacing should not hurt any matcher that reads
a run on its own normalised time, z-normalised: their rows check that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

Shape = Callable[[np.ndarray], np.ndarray]


def logistic(u: np.ndarray, at: float, width: float) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip((u - at) / width, -60, 60)))


def _after(u: np.ndarray, at: float) -> np.ndarray:
    """Time since ``at``, 0 before it."""
    return np.maximum(u - at, 0)


def _plateau_drop(u: np.ndarray) -> np.ndarray:
    return 1 - 0.05 * u - logistic(u, 0.55, 0.01) * (0.7 + 0.3 * (1 - np.exp(-_after(u, 0.55) / 0.1)))


SHAPES: dict[str, dict[str, Shape]] = {
    "shapes": {
        "step_early": lambda u: logistic(u, 0.3, 0.02),
        "step_late": lambda u: logistic(u, 0.7, 0.02),
        "bump": lambda u: np.exp(-0.5 * ((u - 0.5) / 0.08) ** 2),
        "dip_recovery": lambda u: -logistic(u, 0.3, 0.005) * np.exp(-_after(u, 0.3) / 0.15),
        "oscillation": lambda u: np.sin(2 * np.pi * 3 * u),
        "plateau_drop": _plateau_drop,
    },
    "timing": {f"rise_at_{at}": (lambda u, at=at: logistic(u, at, 0.02)) for at in (0.2, 0.4, 0.6, 0.8)},
    "loss": {
        "fast_decay": lambda u: np.exp(-8 * u),
        "slow_decay": lambda u: np.exp(-2 * u),
        "plateau_drop": _plateau_drop,
        "double_descent": lambda u: np.exp(-6 * u) + 0.4 * np.exp(-0.5 * ((u - 0.5) / 0.1) ** 2),
        "spike_recovery": lambda u: np.exp(-4 * u) + 0.8 * logistic(u, 0.4, 0.003) * np.exp(-_after(u, 0.4) / 0.04),
    },
}


@dataclass(frozen=True)
class Nuisance:
    """The planted nuisance of a set (see the module doc)."""

    shift: float = 0.0
    warp: float = 0.0
    stretch: float = 0.0
    noise: float = 0.0
    level: float = 0.0
    spread: float = 1.0
    lengths: tuple[int, int] = (128, 128)
    max_gap: int = 1  # 1: regular steps
    log_spaced: bool = False  # gaps growing geometrically from 1 to LOG_GAP along the run


DIFFICULTIES = {
    "easy": Nuisance(shift=0.02, warp=0.1, noise=0.05),
    "medium": Nuisance(shift=0.04, warp=0.2, stretch=0.1, noise=0.15),
    "hard": Nuisance(shift=0.08, warp=0.4, stretch=0.2, noise=0.3),
}
GRADED = {"level": 10.0, "spread": 5.0, "lengths": (24, 400)}
BASE = Nuisance(noise=0.05)
NUISANCE_GROUP = "loss"
LOG_GAP = 50
NUISANCES = {
    "clean": BASE,
    "shift": replace(BASE, shift=0.2),
    "warp": replace(BASE, warp=0.95),
    "stretch": replace(BASE, stretch=0.7),
    "noise": replace(BASE, noise=0.5),
    "level_scale": replace(BASE, level=10.0, spread=10.0),
    "length": replace(BASE, lengths=(24, 400)),
    "random_gaps": replace(BASE, max_gap=8),
    "log_spaced": replace(BASE, log_spaced=True),
}


@dataclass(frozen=True)
class Series:
    """One run: ``values`` (channels x captures, float64) and its ``steps`` (int64, increasing)."""

    values: np.ndarray
    steps: np.ndarray

    @property
    def n(self) -> int:
        return self.values.shape[1]

    @property
    def channels(self) -> int:
        return self.values.shape[0]


@dataclass(frozen=True)
class LabelledSet:
    """Training and test runs with their class labels, and how the set was made."""

    name: str
    train: list[Series]
    train_labels: list[str]
    test: list[Series]
    test_labels: list[str]
    source: str
    facts: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.train_labels) | set(self.test_labels))


@dataclass(frozen=True)
class SetSpec:
    """A generated set: its shape group, nuisance and size (runs per class)."""

    name: str
    group: str
    nuisance: Nuisance
    train_per_class: int = 10
    test_per_class: int = 20


def warp(u: np.ndarray, a: float) -> np.ndarray:
    """The monotone warp u + a sin(pi u) / pi (|a| < 1); 0 and 1 stay in place."""
    if not -1 < a < 1:
        raise ValueError(f"warp amplitude {a} outside (-1, 1): the warp would not be monotone")
    return u + a * np.sin(np.pi * u) / np.pi


def steps_for(n: int, nuisance: Nuisance, rng: np.random.Generator) -> np.ndarray:
    """Steps 10 apart, or gaps of 10 to 10 * max_gap drawn at random, or growing geometrically."""
    if nuisance.log_spaced:
        gaps = np.round(np.exp(np.linspace(0, np.log(LOG_GAP), n - 1)))
    elif nuisance.max_gap > 1:
        gaps = rng.integers(1, nuisance.max_gap + 1, size=n - 1)
    else:
        gaps = np.ones(n - 1)
    return np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64) * 10


def instance(shape: Shape, nuisance: Nuisance, rng: np.random.Generator) -> Series:
    """One run of ``shape`` with the nuisance drawn from ``rng`` (see the module doc)."""
    lo, hi = nuisance.lengths
    n = int(rng.integers(lo, hi + 1))
    steps = steps_for(n, nuisance, rng)
    u = (steps - steps[0]) / (steps[-1] - steps[0])
    shift = rng.uniform(-nuisance.shift, nuisance.shift)
    a = rng.uniform(-nuisance.warp, nuisance.warp)
    g = float(np.exp(rng.uniform(-nuisance.stretch, nuisance.stretch)))
    offset = rng.uniform(-nuisance.level, nuisance.level)
    scale = float(np.exp(rng.uniform(-np.log(nuisance.spread), np.log(nuisance.spread))))
    clean = shape(warp(u, a) ** g - shift)
    values = offset + scale * (clean + nuisance.noise * rng.standard_normal(n))
    return Series(values.reshape(1, -1), steps)


def generate(spec: SetSpec, seed: int) -> LabelledSet:
    """The set ``spec`` from ``seed``: per class its training runs, then its test runs."""
    if spec.group not in SHAPES:
        raise ValueError(f"unknown shape group {spec.group!r}; known: {', '.join(SHAPES)}")
    rng = np.random.default_rng(seed)
    shapes = SHAPES[spec.group]
    train, train_labels, test, test_labels = [], [], [], []
    for label, shape in shapes.items():
        train += [instance(shape, spec.nuisance, rng) for _ in range(spec.train_per_class)]
        train_labels += [label] * spec.train_per_class
        test += [instance(shape, spec.nuisance, rng) for _ in range(spec.test_per_class)]
        test_labels += [label] * spec.test_per_class
    return LabelledSet(spec.name, train, train_labels, test, test_labels, describe(spec, seed),
                       {"group": spec.group, "nuisance": asdict(spec.nuisance)})


def describe(spec: SetSpec, seed: int) -> str:
    n = spec.nuisance
    lo, hi = n.lengths
    parts = [f"generated, group {spec.group} ({', '.join(SHAPES[spec.group])}), seed {seed}",
             f"{spec.train_per_class} training and {spec.test_per_class} test runs per class",
             f"shift +-{n.shift:g}, warp {n.warp:g}, stretch {n.stretch:g}, noise {n.noise:g}",
             f"offset +-{n.level:g}, scale x1/{n.spread:g}..{n.spread:g}" if n.level or n.spread != 1 else "no offset or scale",
             f"{lo} captures" if lo == hi else f"{lo} to {hi} captures",
             _spacing(n)]
    return "; ".join(parts)


def _spacing(n: Nuisance) -> str:
    if n.log_spaced:
        return f"log-spaced steps (gaps growing from 10 to {10 * LOG_GAP})"
    return f"irregular steps (gaps 10 to {10 * n.max_gap})" if n.max_gap > 1 else "regular steps (10 apart)"


def graded_specs(train_per_class: int = 10, test_per_class: int = 20) -> list[SetSpec]:
    """Every shape group at every difficulty; the loss group with irregular steps."""
    return [SetSpec(f"{group}-{level}", group,
                    replace(DIFFICULTIES[level], **GRADED, max_gap=4 if group == "loss" else 1),
                    train_per_class, test_per_class)
            for group in SHAPES for level in DIFFICULTIES]


def nuisance_specs(train_per_class: int = 10, test_per_class: int = 20, group: str = NUISANCE_GROUP) -> list[SetSpec]:
    """One shape group with one nuisance at a time (and none: ``clean``)."""
    return [SetSpec(f"nuisance-{name}", group, n, train_per_class, test_per_class) for name, n in NUISANCES.items()]


def suite(seed: int = 0, train_per_class: int = 10, test_per_class: int = 20,
          only: Sequence[str] | None = None) -> list[LabelledSet]:
    """The graded and nuisance sets (or ``only`` those named), set k from seed + k."""
    specs = graded_specs(train_per_class, test_per_class) + nuisance_specs(train_per_class, test_per_class)
    unknown = sorted(set(only or []) - {s.name for s in specs})
    if unknown:
        raise ValueError(f"unknown generated set(s) {unknown}; known: {', '.join(s.name for s in specs)}")
    return [generate(s, seed + k) for k, s in enumerate(specs) if only is None or s.name in only]
