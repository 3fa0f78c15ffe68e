"""Layer A descriptors against an independent numpy version (tests/capture_reference.py),
against values worked out by hand, and on every degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest

import capture_reference as ref
from warehouse.capture import Subspace, descriptors, mean_principal_angle, principal_angles
from warehouse.contracts import DESCRIPTORS
from warehouse.errors import CaptureError

RTOL = 1e-5


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def assert_descriptors_match(got: dict, expected: dict, where: str = "") -> None:
    for name in DESCRIPTORS:
        g, e = got[name], expected[name]
        if e is None:
            assert g is None, f"{where} {name}: expected NULL, got {g}"
        else:
            assert g is not None, f"{where} {name}: expected {e}, got NULL"
            assert g == pytest.approx(e, rel=RTOL, abs=1e-7), f"{where} {name}"


def run_series(matrices: list[np.ndarray]) -> list[dict]:
    """The library's descriptors of a series, chaining subspaces as a session does."""
    out, first, previous = [], None, None
    for x in matrices:
        d = descriptors(x, previous, first)
        first = d.subspace if first is None else first
        previous = d.subspace
        out.append(d.values())
    return out


# ---------------------------------------------------------------------------------------
# Matrices with well-separated spectra: random, low-rank, structured


def low_rank(n: int, d: int, rank: int, seed: int) -> np.ndarray:
    g = rng(seed)
    return g.normal(size=(n, rank)) @ g.normal(size=(rank, d)) + g.normal(size=d)


def decaying(n: int, d: int, seed: int) -> np.ndarray:
    """Singular values 1, 1/2, ..., 2^-9 on random orthonormal bases: a steep, known spectrum."""
    g = rng(seed)
    u, _ = np.linalg.qr(g.normal(size=(n, 10)))
    v, _ = np.linalg.qr(g.normal(size=(d, 10)))
    return 100.0 * (u * 2.0 ** -np.arange(10)) @ v.T


def one_hot(n: int, d: int, seed: int) -> np.ndarray:
    """Sparse rows: each sample is one feature (of several strengths)."""
    g = rng(seed)
    x = np.zeros((n, d))
    x[np.arange(n), g.integers(0, d, n)] = g.uniform(0.5, 2.0, n)
    return x


def relu(n: int, d: int, seed: int) -> np.ndarray:
    """Non-negative, half-sparse activations with a large shared offset in some features."""
    g = rng(seed)
    return np.maximum(g.normal(size=(n, d)), 0.0) + np.where(np.arange(d) % 3 == 0, 1e3, 0.0)


MATRICES = {
    "random 200x50": lambda: rng(1).normal(size=(200, 50)),
    "random 40x90 (n < d)": lambda: rng(2).normal(size=(40, 90)),
    "random float32 128x256": lambda: rng(3).normal(size=(128, 256)).astype(np.float32),
    "low rank 3 in 100x40": lambda: low_rank(100, 40, 3, 4),
    "low rank 12 in 60x30": lambda: low_rank(60, 30, 12, 5),
    "decaying spectrum 80x50": lambda: decaying(80, 50, 6),
    "one-hot rows 120x16": lambda: one_hot(120, 16, 7),
    "relu with offsets 150x60": lambda: relu(150, 60, 8),
}


@pytest.mark.parametrize("name", MATRICES)
def test_one_capture_matches_the_reference(name: str) -> None:
    x = MATRICES[name]()
    got = descriptors(x).values()
    assert_descriptors_match(got, ref.series([x])[0], name)


@pytest.mark.parametrize("name", MATRICES)
def test_a_series_matches_the_reference(name: str) -> None:
    """Four captures drifting away from the first: angles to the previous and the first."""
    x = MATRICES[name]()
    g = rng(11)
    matrices = [x]
    for scale in (0.3, 0.6, 1.2):
        matrices.append(matrices[-1] + scale * g.normal(size=x.shape) * x.std(axis=0, keepdims=True).clip(0.1))
    for i, (got, expected) in enumerate(zip(run_series(matrices), ref.series(matrices))):
        assert_descriptors_match(got, expected, f"{name}, capture {i}")
    assert all(v["principal_angle_prev"] > 0 for v in run_series(matrices)[1:])


def test_activation_sized_capture_matches_the_reference() -> None:
    """512 x 768 float32, the size of a real probe capture, with a second capture."""
    g = rng(12)
    x1 = (g.normal(size=(512, 768)) @ np.diag(np.linspace(0.2, 3.0, 768))).astype(np.float32)
    x2 = (x1 + 0.5 * g.normal(size=x1.shape)).astype(np.float32)
    for i, (got, expected) in enumerate(zip(run_series([x1, x2]), ref.series([x1, x2]))):
        assert_descriptors_match(got, expected, f"capture {i}")


def test_values_worked_out_by_hand() -> None:
    # X = [[1, 0], [0, 1], [0, 0]]: Xc^T Xc = [[2/3, -1/3], [-1/3, 2/3]], eigenvalues 1 and
    # 1/3, so s = (1, 1/sqrt(3)). Every row has at most one non-zero: Hoyer 1 (the zero row
    # counts as 1). Row norms 1, 1, 0.
    d = descriptors(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    # p = s / sum(s) = (0.63397, 0.36603), H(p) = 0.65681; q = s^2 / sum(s^2) = (3/4, 1/4).
    s = np.array([1.0, 1.0 / math.sqrt(3.0)])
    p = s / s.sum()
    assert d.eff_rank == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-6)
    assert d.eff_rank == pytest.approx(1.92862, abs=1e-5)
    assert d.sv_entropy == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2), rel=1e-6)
    assert d.sparsity == 1.0
    assert d.act_norm == pytest.approx(2.0 / 3.0, rel=1e-6)
    assert d.principal_angle_prev is None and d.principal_angle_init == 0.0
    assert (d.n_samples, d.dim, d.subspace.k) == (3, 2, 2)


def test_dense_rows_have_zero_sparsity() -> None:
    x = np.array([[1.0, -1.0, 1.0, -1.0], [2.0, 2.0, 2.0, 2.0]])  # |x|_1 / |x|_2 = sqrt(d)
    assert descriptors(x).sparsity == 0.0


def test_outputs_are_float32_values() -> None:
    d = descriptors(rng(13).normal(size=(30, 20)), descriptors(rng(14).normal(size=(30, 20))).subspace)
    for name, value in d.values().items():
        assert value == float(np.float32(value)), name


# ---------------------------------------------------------------------------------------
# Principal angles


def test_principal_angles_of_known_subspaces() -> None:
    """span(e1, e2) against span(cos a e1 + sin a e3, cos b e2 + sin b e4): angles a and b,
    down to 1e-9 rad, where the arccos of a cosine would give 0 or noise."""
    e = np.eye(6)
    for a, b in ((0.3, 1.2), (1e-9, 0.7), (1e-5, 1e-3), (math.pi / 2, math.pi / 4)):
        q1 = Subspace(e[:, [0, 1]])
        q2 = Subspace(np.stack([math.cos(a) * e[0] + math.sin(a) * e[2], math.cos(b) * e[1] + math.sin(b) * e[3]], 1))
        angles = principal_angles(q1, q2)
        assert angles == pytest.approx(sorted([a, b]), rel=1e-9, abs=1e-15)
        assert mean_principal_angle(q1, q2) == pytest.approx((a + b) / 2, rel=1e-9)


def test_identical_subspaces_give_exactly_zero() -> None:
    x = rng(15).normal(size=(50, 20))
    first = descriptors(x)
    again = descriptors(x.copy(), first.subspace, first.subspace)
    assert again.principal_angle_prev == 0.0 and again.principal_angle_init == 0.0


def test_angles_use_the_smaller_k() -> None:
    """A rank-2 capture against a rank-8 one: two angles; here the plane lies inside, so 0."""
    e = np.eye(10)
    wide = Subspace(e[:, :8])
    plane = Subspace(np.stack([(e[0] + e[1]) / math.sqrt(2), (e[2] - e[3]) / math.sqrt(2)], 1))
    assert principal_angles(plane, wide) == pytest.approx([0.0, 0.0], abs=1e-15)
    assert principal_angles(wide, plane).shape == (2,)


# ---------------------------------------------------------------------------------------
# Degenerate input: a defined answer or a clear error


def test_a_single_sample_has_no_rank_nor_angles() -> None:
    row = np.array([[3.0, 0.0, -4.0]])  # |x|_1 / |x|_2 = 7 / 5
    d = descriptors(row, Subspace(np.eye(3)[:, :1]), Subspace(np.eye(3)[:, :1]))
    assert (d.eff_rank, d.sv_entropy, d.principal_angle_prev, d.principal_angle_init) == (None,) * 4
    assert d.sparsity == pytest.approx((math.sqrt(3) - 7 / 5) / (math.sqrt(3) - 1), rel=1e-6)
    assert d.act_norm == 5.0
    assert d.subspace.k == 0


def test_no_samples_is_an_error() -> None:
    with pytest.raises(CaptureError, match=r"step 4, layer 1, module attn_out: empty matrix of shape \(0, 8\)"):
        descriptors(np.zeros((0, 8)), step=4, layer=1, module="attn_out")


def test_an_all_zero_matrix() -> None:
    d = descriptors(np.zeros((10, 6)))
    assert (d.eff_rank, d.sv_entropy, d.principal_angle_prev, d.principal_angle_init) == (None,) * 4
    assert d.sparsity == 1.0  # zero rows count as 1
    assert d.act_norm == 0.0
    later = descriptors(rng(16).normal(size=(10, 6)), d.subspace, d.subspace)
    assert later.principal_angle_prev is None and later.principal_angle_init is None  # empty subspace: no angle


def test_equal_rows_centre_to_zero_exactly() -> None:
    """Rows all equal to a value whose mean rounds (0.1): still no variance, r = 0."""
    x = np.full((7, 5), 0.1)
    x[:, 2] = 1e8 / 3
    d = descriptors(x)
    assert d.eff_rank is None and d.sv_entropy is None and d.subspace.k == 0
    assert d.act_norm == pytest.approx(math.sqrt(4 * 0.01 + (1e8 / 3) ** 2), rel=1e-6)


def test_rank_one() -> None:
    g = rng(17)
    v = np.array([1.0, 2.0, 2.0]) / 3.0
    x = np.outer(g.normal(size=40), v) + np.array([5.0, 5.0, 5.0])
    d = descriptors(x)
    assert d.eff_rank == 1.0 and d.sv_entropy == 0.0 and d.subspace.k == 1
    # Against a rank-1 capture along w: the one angle is arccos |v . w|.
    w = np.array([0.0, 0.6, 0.8])
    other = descriptors(np.outer(g.normal(size=40), w), d.subspace, d.subspace)
    assert other.principal_angle_prev == pytest.approx(math.acos(abs(v @ w)), rel=1e-6)


def test_one_feature() -> None:
    d = descriptors(np.array([[1.0], [-2.0], [4.0]]))
    assert d.sparsity is None  # the Hoyer measure divides by sqrt(d) - 1
    assert d.eff_rank == 1.0 and d.sv_entropy == 0.0
    assert d.act_norm == pytest.approx(7.0 / 3.0, rel=1e-6)


@pytest.mark.parametrize("bad, shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_values_name_step_layer_and_module(bad: float, shown: str) -> None:
    x = rng(18).normal(size=(6, 4)).astype(np.float32)
    x[2, 3] = bad
    with pytest.raises(CaptureError) as err:
        descriptors(x, step=1200, layer=3, module="mlp_out")
    assert str(err.value) == (f"activations at step 1200, layer 3, module mlp_out: "
                              f"non-finite value {shown} at row 2, column 3")


def test_mismatched_dimensions_between_captures() -> None:
    g = rng(19)
    first = descriptors(g.normal(size=(20, 10)))
    wider = descriptors(g.normal(size=(20, 12)), first.subspace, first.subspace)
    assert wider.principal_angle_prev is None and wider.principal_angle_init is None
    assert wider.eff_rank is not None  # the capture itself is fine
    with pytest.raises(CaptureError, match="dimensions 12 and 10"):
        principal_angles(wider.subspace, first.subspace)


@pytest.mark.parametrize("value, message", [
    (np.zeros(5), r"expected a 2-D matrix \(samples x features\), got shape \(5,\)"),
    (np.zeros((2, 3, 4)), r"expected a 2-D matrix .* got shape \(2, 3, 4\)"),
    (np.array([["a", "b"]]), "expected real numbers, got dtype <U1"),
    (np.ones((3, 2), dtype=complex), "expected real numbers, got dtype complex128"),
    (np.zeros((4, 0)), r"empty matrix of shape \(4, 0\)"),
])
def test_malformed_input_is_an_error(value: np.ndarray, message: str) -> None:
    with pytest.raises(CaptureError, match=message):
        descriptors(value, step=0, layer=0, module="resid_pre")


def test_values_beyond_float32_are_an_error() -> None:
    with pytest.raises(CaptureError, match=r"step 5, layer 0, module logits: value 2e\+200 at row 1, column 1 is beyond"):
        descriptors(np.array([[1.0, 0.0], [0.0, 2e200]]), step=5, layer=0, module="logits")
    # each value fits, their row norm (6e38) does not
    with pytest.raises(CaptureError, match="act_norm = 6e\\+38 does not fit in float32"):
        descriptors(np.full((2, 4), 3e38), step=5, layer=0, module="logits")
