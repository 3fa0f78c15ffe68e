"""The capture library: Layer A descriptors from activations, and a session that writes a
training run's captures, metrics and checkpoints to the lake.

- :func:`descriptors`: the six descriptors of one activation matrix (numpy);
- :class:`CaptureSession`: a run's rows, buffered and flushed through the lake writer.
"""

from .descriptors import ANALYSIS_ID, Descriptors, Subspace, descriptors, mean_principal_angle, principal_angles
from .session import CaptureSession

__all__ = [
    "ANALYSIS_ID",
    "CaptureSession",
    "Descriptors",
    "Subspace",
    "descriptors",
    "mean_principal_angle",
    "principal_angles",
]
