"""An independent numpy version of design.md's Layer A descriptors, for the capture tests.

It takes another road than ``warehouse.capture.descriptors``: singular values and right
singular vectors come from the eigen-decomposition of the covariance Xc^T Xc (not an SVD
of Xc), sparsity and norms are a loop over rows, and principal angles are the arccos of the
singular values of Q1^T Q2, clipped to [-1, 1]. The covariance squares the spectrum, so
eigenvalues below ~1e-16 of the largest are rounding noise: the reference keeps singular
values above 1e-6 of the largest, and the test matrices keep every genuine singular value
far above that, so both versions keep the same ones.
"""

from __future__ import annotations

import math

import numpy as np

KEEP = 1e-6
TOP_K = 8


def spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kept singular values (descending) and their right singular vectors (d x r)."""
    xc = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    values, vectors = np.linalg.eigh(xc.T @ xc)  # ascending
    s = np.sqrt(np.clip(values[::-1], 0.0, None))
    vectors = vectors[:, ::-1]
    if s.size == 0 or s[0] == 0:
        return s[:0], vectors[:, :0]
    kept = s > KEEP * s[0]
    return s[kept], vectors[:, kept]


def eff_rank(s: np.ndarray) -> float | None:
    if s.size == 0:
        return None
    p = s / s.sum()
    return math.exp(-sum(pi * math.log(pi) for pi in p))


def sv_entropy(s: np.ndarray) -> float | None:
    if s.size == 0:
        return None
    if s.size == 1:
        return 0.0
    q = s**2 / (s**2).sum()
    return -sum(qi * math.log(qi) for qi in q) / math.log(s.size)


def sparsity(x: np.ndarray) -> float | None:
    d = x.shape[1]
    if d == 1:
        return None
    values = []
    for row in x.astype(np.float64):
        l2 = math.sqrt(float(row @ row))
        values.append(1.0 if l2 == 0 else (math.sqrt(d) - float(np.abs(row).sum()) / l2) / (math.sqrt(d) - 1))
    return sum(values) / len(values)


def act_norm(x: np.ndarray) -> float:
    return sum(math.sqrt(float(row @ row)) for row in x.astype(np.float64)) / x.shape[0]


def top_subspace(x: np.ndarray) -> np.ndarray:
    s, vectors = spectrum(x)
    return vectors[:, : min(TOP_K, s.size)]


def mean_angle(q1: np.ndarray, q2: np.ndarray) -> float | None:
    if q1.shape[0] != q2.shape[0] or q1.shape[1] == 0 or q2.shape[1] == 0:
        return None
    cosines = np.linalg.svd(q1.T @ q2, compute_uv=False)
    return float(np.mean(np.arccos(np.clip(cosines, -1.0, 1.0))))


def series(matrices: list[np.ndarray]) -> list[dict[str, float | None]]:
    """The six descriptors of each capture of one series, in order."""
    subspaces = [top_subspace(x) for x in matrices]
    out = []
    for i, x in enumerate(matrices):
        s, _ = spectrum(x)
        out.append({
            "eff_rank": eff_rank(s),
            "sv_entropy": sv_entropy(s),
            "sparsity": sparsity(x),
            "principal_angle_prev": None if i == 0 else mean_angle(subspaces[i], subspaces[i - 1]),
            "principal_angle_init": (0.0 if s.size else None) if i == 0 else mean_angle(subspaces[i], subspaces[0]),
            "act_norm": act_norm(x),
        })
    return out
