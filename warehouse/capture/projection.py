"""Small, reproducible sketches of activations: embeddings rows and capture files.

A matrix with at most ``dim`` features is kept as it is (method ``raw``); a wider one is
multiplied by a seeded Gaussian random projection to ``dim`` features (method
``random_projection``), which keeps distances and norms in expectation
(Johnson-Lindenstrauss). The projection depends only on (seed, input width, dim), so the
sketches of one (layer, module) stay comparable across steps and runs.

A capture file is an ``.npz`` archive of the step's sketches (one array per
``L<layer>.<module>``) and the probe set's ``sample_ids``, written with fixed archive
dates so that the same sketches always give the same bytes and checksum.
"""

from __future__ import annotations

import io
import zipfile
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from ..errors import CaptureError

MAX_DIM = 64
RAW, RANDOM_PROJECTION = "raw", "random_projection"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip archive can hold


class Sketcher:
    """Reduces activation rows to at most ``dim`` float32 features, seeded by ``seed``."""

    def __init__(self, dim: int = MAX_DIM, seed: int = 0) -> None:
        if not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
            raise CaptureError(f"projection dim must be an integer from 1 to {MAX_DIM}, not {dim!r}")
        self.dim, self.seed = dim, seed

    def method(self, width: int) -> str:
        return RAW if width <= self.dim else RANDOM_PROJECTION

    def __call__(self, activations: np.ndarray) -> np.ndarray:
        """The sketch of a (samples x width) matrix: (samples x min(width, dim)), float32."""
        x = np.asarray(activations, dtype=np.float64)
        if self.method(x.shape[1]) == RAW:
            return x.astype(np.float32)
        return (x @ projection_matrix(x.shape[1], self.dim, self.seed)).astype(np.float32)


@lru_cache(maxsize=64)
def projection_matrix(width: int, dim: int, seed: int) -> np.ndarray:
    """A (width x dim) Gaussian matrix with entries of variance 1 / dim (read-only, cached)."""
    rng = np.random.default_rng([seed, width, dim])
    matrix = rng.normal(0.0, 1.0 / np.sqrt(dim), (width, dim))
    matrix.flags.writeable = False
    return matrix


def array_name(layer: int, module: str) -> str:
    """The name of a (layer, module) sketch inside a capture file."""
    return f"L{layer}.{module}"


def capture_file_bytes(sample_ids: Sequence[str], sketches: Mapping[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive (readable by ``numpy.load``) of ``sample_ids`` and the sketches."""
    arrays = {"sample_ids": np.asarray(list(sample_ids), dtype=str), **sketches}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE), "w") as member:
                np.lib.format.write_array(member, arrays[name], allow_pickle=False)
    return buf.getvalue()
