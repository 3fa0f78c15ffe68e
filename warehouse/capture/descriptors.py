"""Layer A descriptors of one activation matrix, as design.md defines them.

For X (n samples x d features) at one (step, layer, module): Xc = X minus its column
means; s = the singular values of Xc, keeping s >= 1e-12 * s_max; r = how many are kept.
Everything is computed in float64 and returned rounded to float32, the lake's type.
A descriptor without a defined value is ``None`` (NULL in the lake):

- ``eff_rank`` and ``sv_entropy`` when r = 0 (fewer than 2 samples, all rows equal);
- ``sparsity`` when d = 1 (the Hoyer measure divides by sqrt(d) - 1);
- ``principal_angle_prev`` at the first capture of a series, and both angles when a
  subspace is empty (r = 0) or the two captures have different d.

NaN or infinity, a value beyond float32's range, an empty matrix or one that is not
2-D raise :class:`CaptureError` naming the step, layer and module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..contracts import DESCRIPTORS
from ..errors import CaptureError

ANALYSIS_ID = "capture-v1"  # the analysis_id of geometry_state rows computed by these definitions
RANK_TOLERANCE = 1e-12  # singular values below this fraction of the largest are dropped
TOP_K = 8  # the principal angles compare the top min(TOP_K, r) right singular vectors
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Subspace:
    """The top-k right singular subspace of a centred capture: orthonormal columns (d x k).

    k is 0 for a capture without variance; angles to such a subspace are undefined.
    """

    basis: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.basis.shape[0])

    @property
    def k(self) -> int:
        return int(self.basis.shape[1])


@dataclass(frozen=True)
class Descriptors:
    """The six descriptors of one capture (float32 values, ``None`` for NULL) and its subspace."""

    n_samples: int
    dim: int
    eff_rank: float | None
    sv_entropy: float | None
    sparsity: float | None
    principal_angle_prev: float | None
    principal_angle_init: float | None
    act_norm: float
    subspace: Subspace  # pass it on as the next capture's ``previous`` (and ``initial`` after the first)

    def values(self) -> dict[str, float | None]:
        """The six descriptors by name, in the lake's column order."""
        return {name: getattr(self, name) for name in DESCRIPTORS}


def descriptors(
    activations: np.ndarray,
    previous: Subspace | None = None,
    initial: Subspace | None = None,
    *,
    step: int | None = None,
    layer: int | None = None,
    module: str | None = None,
) -> Descriptors:
    """The Layer A descriptors of ``activations`` (n samples x d features).

    ``previous`` is the subspace of the series' previous capture (``None`` at the first
    capture: ``principal_angle_prev`` is then NULL). ``initial`` is the subspace of the
    series' first capture; ``None`` means this capture is the first, whose
    ``principal_angle_init`` is 0. ``step``, ``layer`` and ``module`` only name the capture
    in error messages.
    """
    where = _where(step, layer, module)
    x = _checked_matrix(activations, where)
    row_norms = np.linalg.norm(x, axis=1)
    s, vt = _centred_svd(x)
    kept = s[s >= RANK_TOLERANCE * s[0]] if s.size and s[0] > 0 else s[:0]
    subspace = Subspace(np.ascontiguousarray(vt[: min(TOP_K, kept.size)].T))
    angle_prev = None if previous is None else mean_principal_angle(subspace, previous)
    angle_init = (0.0 if subspace.k else None) if initial is None else mean_principal_angle(subspace, initial)
    return Descriptors(
        n_samples=x.shape[0],
        dim=x.shape[1],
        eff_rank=_f32(_effective_rank(kept), "eff_rank", where),
        sv_entropy=_f32(_sv_entropy(kept), "sv_entropy", where),
        sparsity=_f32(_hoyer_sparsity(x, row_norms), "sparsity", where),
        principal_angle_prev=_f32(angle_prev, "principal_angle_prev", where),
        principal_angle_init=_f32(angle_init, "principal_angle_init", where),
        act_norm=_f32(float(row_norms.mean()), "act_norm", where),
        subspace=subspace,
    )


def principal_angles(a: Subspace, b: Subspace) -> np.ndarray:
    """The min(k_a, k_b) principal angles between two subspaces of R^d, in radians, ascending.

    Angles below pi/4 come from their sines (the residual of projecting one basis onto the
    other), the others from their cosines: arccos alone loses half the digits near 0.
    """
    if a.dim != b.dim:
        raise CaptureError(f"principal angles need subspaces of one space; got dimensions {a.dim} and {b.dim}")
    small, large = (a.basis, b.basis) if a.k <= b.k else (b.basis, a.basis)
    if small.shape[1] == 0:
        return np.zeros(0)
    if np.array_equal(small, large[:, : small.shape[1]]):
        return np.zeros(small.shape[1])  # the same vectors span the same space: exactly 0
    cosines = np.linalg.svd(small.T @ large, compute_uv=False)  # descending: angles ascending
    sines = np.sort(np.linalg.svd(small - large @ (large.T @ small), compute_uv=False))
    from_sines = np.arcsin(np.minimum(sines, 1.0))
    from_cosines = np.arccos(np.minimum(cosines, 1.0))
    return np.where(sines**2 < 0.5, from_sines, from_cosines)


def mean_principal_angle(a: Subspace, b: Subspace) -> float | None:
    """The mean principal angle; ``None`` when either subspace is empty or their d differ."""
    if a.dim != b.dim or a.k == 0 or b.k == 0:
        return None
    return float(principal_angles(a, b).mean())


# ---------------------------------------------------------------------------------------


def _where(step: int | None, layer: int | None, module: str | None) -> str:
    return f"activations at step {step}, layer {layer}, module {module}"


def _checked_matrix(activations: object, where: str) -> np.ndarray:
    """``activations`` as a float64 matrix, or a CaptureError saying what is wrong with it."""
    x = np.asarray(activations)
    if x.dtype.kind not in "biuf":
        raise CaptureError(f"{where}: expected real numbers, got dtype {x.dtype}")
    if x.ndim != 2:
        raise CaptureError(f"{where}: expected a 2-D matrix (samples x features), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise CaptureError(f"{where}: empty matrix of shape {x.shape}; "
                           "descriptors need at least one sample and one feature")
    x = x.astype(np.float64, copy=False)
    finite = np.isfinite(x)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise CaptureError(f"{where}: non-finite value {x[row, col]} at row {row}, column {col}")
    too_large = np.abs(x) > FLOAT32_MAX  # the lake stores float32: such a capture could not be written
    if too_large.any():
        row, col = np.argwhere(too_large)[0]
        raise CaptureError(f"{where}: value {x[row, col]:g} at row {row}, column {col} is beyond float32's range")
    return x


def _centred_svd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (descending) and right singular vectors of x minus its column means.

    The first row is subtracted before the means: columns that are constant then centre
    to exact zeros, and large offsets cancel without rounding.
    """
    shifted = x - x[0]
    centred = shifted - shifted.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    return s, vt


def _effective_rank(s: np.ndarray) -> float | None:
    """exp of the entropy of p = s / sum(s) (Roy and Vetterli, 2007)."""
    if s.size == 0:
        return None
    return float(np.exp(_entropy(s / s.sum())))


def _sv_entropy(s: np.ndarray) -> float | None:
    """Entropy of q = s^2 / sum(s^2), divided by log(r); 0 when r = 1."""
    if s.size == 0:
        return None
    if s.size == 1:
        return 0.0
    scaled = s / s[0]  # squares of values down to 1e-12 stay well inside float64
    q = scaled**2 / np.sum(scaled**2)
    return float(_entropy(q) / np.log(s.size))


def _entropy(p: np.ndarray) -> float:
    return float(-np.sum(p * np.log(p)))  # every p > 0: kept singular values are positive


def _hoyer_sparsity(x: np.ndarray, row_norms: np.ndarray) -> float | None:
    """Mean Hoyer measure of the rows, (sqrt(d) - |x|_1 / |x|_2) / (sqrt(d) - 1); a zero row is 1."""
    d = x.shape[1]
    if d == 1:
        return None
    l1 = np.abs(x).sum(axis=1)
    ratio = np.divide(l1, row_norms, out=np.ones_like(l1), where=row_norms > 0)
    root = np.sqrt(d)
    return float(np.clip((root - ratio) / (root - 1.0), 0.0, 1.0).mean())


def _f32(value: float | None, name: str, where: str) -> float | None:
    """``value`` rounded to float32, the lake's type; one too large for it is an error."""
    if value is None:
        return None
    if abs(value) > FLOAT32_MAX:
        raise CaptureError(f"{where}: {name} = {value:g} does not fit in float32")
    return float(np.float32(value))
