"""The matching evaluation's sets: the generator (bench/match_eval_sets.py) is the same per
seed and makes what its doc says; the real-set loader (bench/match_eval_real.py) refuses the
held-out sets and anything off its allow-list."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import match_eval_real as real  # noqa: E402  (bench/ is a folder of scripts)
import match_eval_sets as gen  # noqa: E402


def spec(group: str = "shapes", nuisance: gen.Nuisance = gen.DIFFICULTIES["hard"], **kw) -> gen.SetSpec:
    return gen.SetSpec("t", group, nuisance, **({"train_per_class": 2, "test_per_class": 3} | kw))


def test_the_same_seed_gives_the_same_set_and_another_seed_another() -> None:
    s = spec(nuisance=replace(gen.DIFFICULTIES["medium"], lengths=(24, 400), level=10.0, spread=5.0, max_gap=4))
    a, b, c = gen.generate(s, 3), gen.generate(s, 3), gen.generate(s, 4)
    assert a.train_labels == b.train_labels and a.test_labels == b.test_labels
    for x, y in zip(a.train + a.test, b.train + b.test):
        assert np.array_equal(x.values, y.values) and np.array_equal(x.steps, y.steps)
    assert any(x.n != z.n or not np.array_equal(x.values, z.values) for x, z in zip(a.train, c.train))


def test_classes_counts_lengths_and_steps_are_as_documented() -> None:
    s = spec("loss", replace(gen.DIFFICULTIES["easy"], lengths=(24, 400), max_gap=4), train_per_class=4,
             test_per_class=5)
    got = gen.generate(s, 0)
    names = ["fast_decay", "slow_decay", "plateau_drop", "double_descent", "spike_recovery"]
    assert got.train_labels == [n for n in names for _ in range(4)]
    assert got.test_labels == [n for n in names for _ in range(5)]
    for r in got.train + got.test:
        assert r.values.shape == (1, r.n) and 24 <= r.n <= 400 and r.steps[0] == 0
        gaps = np.diff(r.steps)
        assert set(gaps) <= {10, 20, 30, 40}
    assert len({g for r in got.train for g in np.diff(r.steps)}) == 4  # irregular: every gap drawn
    regular = gen.generate(spec(nuisance=gen.DIFFICULTIES["easy"]), 0)
    assert all(r.n == 128 and np.array_equal(r.steps, np.arange(128) * 10) for r in regular.train)
    logged = gen.generate(spec(nuisance=replace(gen.DIFFICULTIES["easy"], log_spaced=True)), 0)
    for r in logged.train:  # gaps 10 .. 500, each at least the one before
        gaps = np.diff(r.steps)
        assert gaps[0] == 10 and gaps[-1] == 10 * gen.LOG_GAP and (np.diff(gaps) >= 0).all()


def logistic(u: np.ndarray, at: float, width: float) -> np.ndarray:
    return np.array([1 / (1 + math.exp(-(x - at) / width)) for x in u])


def test_without_nuisance_a_run_is_its_shape_at_the_steps_normalised_time() -> None:
    got = gen.generate(spec("timing", gen.Nuisance(lengths=(41, 41)), train_per_class=1, test_per_class=1), 0)
    u = np.arange(41) / 40
    assert got.train_labels == ["rise_at_0.2", "rise_at_0.4", "rise_at_0.6", "rise_at_0.8"]
    for r, at in zip(got.train, (0.2, 0.4, 0.6, 0.8)):
        np.testing.assert_allclose(r.values[0], logistic(u, at, 0.02), atol=1e-12)
    shapes = gen.generate(spec(nuisance=gen.Nuisance(lengths=(41, 41)), train_per_class=1, test_per_class=1), 0)
    bump = shapes.train[shapes.train_labels.index("bump")].values[0]
    np.testing.assert_allclose(bump, np.exp(-0.5 * ((u - 0.5) / 0.08) ** 2), atol=1e-12)
    oscillation = shapes.train[shapes.train_labels.index("oscillation")].values[0]
    np.testing.assert_allclose(oscillation, np.sin(6 * np.pi * u), atol=1e-12)


def z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def test_offset_and_scale_leave_the_z_normalised_run_unchanged() -> None:
    plain = gen.generate(spec(nuisance=gen.Nuisance(lengths=(60, 60))), 5)
    moved = gen.generate(spec(nuisance=gen.Nuisance(lengths=(60, 60), level=10.0, spread=5.0)), 5)
    for a, b in zip(plain.train, moved.train):
        assert not np.allclose(a.values, b.values)
        np.testing.assert_allclose(z(a.values[0]), z(b.values[0]), atol=1e-9)


def test_the_warp_is_monotone_and_keeps_both_ends() -> None:
    u = np.linspace(0, 1, 1001)
    for a in (-0.9, -0.3, 0.4, 0.9):
        w = gen.warp(u, a)
        assert w[0] == 0 and w[-1] == pytest.approx(1) and (np.diff(w) > 0).all()
        assert gen.warp(np.array([0.5]), a)[0] == pytest.approx(0.5 + a / math.pi)
    with pytest.raises(ValueError, match="warp amplitude 1.2"):
        gen.warp(u, 1.2)


def test_the_suite_names_its_sets_and_refuses_unknown_ones() -> None:
    names = [s.name for s in gen.graded_specs() + gen.nuisance_specs()]
    assert names[:3] == ["shapes-easy", "shapes-medium", "shapes-hard"] and "nuisance-warp" in names
    assert len(names) == 18  # 3 groups x 3 difficulties, 9 nuisance sets
    assert [s.name for s in gen.suite(only=["timing-easy"], train_per_class=1, test_per_class=1)] == ["timing-easy"]
    with pytest.raises(ValueError, match="unknown generated set.*'nope'"):
        gen.suite(only=["nope"])


@pytest.mark.parametrize("name", ["GunPoint", "ItalyPowerDemand", "ArrowHead", "OSULeaf", "ACSF1", "Trace",
                                  "gunpoint", "TRACE"])
def test_the_loader_refuses_every_held_out_set(name: str) -> None:
    with pytest.raises(ValueError, match="held out"):
        real.load(name)
    with pytest.raises(ValueError, match="held out"):
        real.available([name])


def test_the_loader_refuses_a_name_off_the_allow_list() -> None:
    assert not set(real.ALLOWED) & real.HELD_OUT
    with pytest.raises(ValueError, match="'Coffee' is not on the allow-list"):
        real.load("Coffee")
    with pytest.raises(ValueError, match="not on the allow-list"):
        real.load("../UnitTest")


def test_an_allowed_set_loads_with_its_published_split() -> None:
    pytest.importorskip("aeon")
    got = real.load("UnitTest")  # aeon's documentation: 20 training and 22 test series of 24 values, 2 classes
    assert (len(got.train), len(got.test), got.classes) == (20, 22, ["1", "2"])
    assert all(r.values.shape == (1, 24) and np.array_equal(r.steps, np.arange(24)) for r in got.train + got.test)
