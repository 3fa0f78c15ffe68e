"""The capture library: Layer A descriptors from activations, and a session that writes a
training run's captures, metrics and checkpoints to the lake.

- :func:`descriptors`: the six descriptors of one activation matrix (numpy);
- :class:`CaptureSession`: a run's rows, buffered and flushed through the lake writer;
- :mod:`warehouse.capture.torch_hooks`: forward hooks for PyTorch transformers
  (:class:`~warehouse.capture.torch_hooks.ActivationHooks`); PyTorch is imported only
  when a capture runs.
"""

from .descriptors import ANALYSIS_ID, Descriptors, Subspace, descriptors, mean_principal_angle, principal_angles
from .session import CaptureSession
from .torch_hooks import LAYOUTS, ActivationHooks

__all__ = [
    "ANALYSIS_ID",
    "LAYOUTS",
    "ActivationHooks",
    "CaptureSession",
    "Descriptors",
    "Subspace",
    "descriptors",
    "mean_principal_angle",
    "principal_angles",
]
