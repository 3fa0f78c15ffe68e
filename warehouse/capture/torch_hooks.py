"""PyTorch forward hooks that capture a transformer's canonical modules for a session.

A *layout* maps each canonical module name to a template of module paths as
``model.named_modules()`` names them, ``{layer}`` standing for the block index:

    {"resid_pre": "transformer.h.{layer}", "attn_out": "transformer.h.{layer}.attn", ...}

``resid_pre`` is the input of the matched module, every other name its output (the first
tensor of a tuple output, as attention modules return). A template also matches below a
prefix (``layers.{layer}`` matches ``model.layers.3``). A template without ``{layer}``
(the logits) gets the layer after the last block. Tensors of shape (batch, sequence,
features) are reduced to one row per sample: the token at ``position`` (default the
last) or, with ``position="mean"``, the mean over the sequence.

PyTorch is imported only when a capture runs: ``pip install 'squiggle-warehouse[torch]'``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..contracts import MODULES
from ..errors import CaptureError
from .descriptors import Descriptors

LAYOUTS: dict[str, dict[str, str]] = {
    # GPT-2 and its relatives (Hugging Face GPT2LMHeadModel, GPT-J, GPT-Neo)
    "gpt2": {
        "resid_pre": "transformer.h.{layer}",
        "attn_out": "transformer.h.{layer}.attn",
        "mlp_out": "transformer.h.{layer}.mlp",
        "resid_post": "transformer.h.{layer}",
        "logits": "lm_head",
    },
    # Llama, Mistral, Qwen and other decoders with model.layers.{i}.self_attn / .mlp
    "llama": {
        "resid_pre": "layers.{layer}",
        "attn_out": "layers.{layer}.self_attn",
        "mlp_out": "layers.{layer}.mlp",
        "resid_post": "layers.{layer}",
        "logits": "lm_head",
    },
    # blocks.{i}.attn / .mlp and an unembedding (TransformerLens-style, and examples/)
    "blocks": {
        "resid_pre": "blocks.{layer}",
        "attn_out": "blocks.{layer}.attn",
        "mlp_out": "blocks.{layer}.mlp",
        "resid_post": "blocks.{layer}",
        "logits": "unembed",
    },
}
INPUT_MODULES = frozenset({"resid_pre"})  # captured from the module's input, not its output


@dataclass(frozen=True)
class Target:
    """One module to capture: its path in the model, its layer and canonical name."""

    path: str
    layer: int
    module: str


def resolve(model: Any, layout: str | Mapping[str, str], modules: Sequence[str] | None = None) -> list[Target]:
    """The modules of ``model`` that ``layout`` names (only ``modules``, if given), by layer."""
    mapping = _layout(layout)
    names = [name for name, _ in model.named_modules()]
    matched = {canonical: _matches(template, names) for canonical, template in mapping.items()}
    # The layer after the last block, from every template of the layout (a subset may lack blocks).
    blocks = 1 + max((layer for found in matched.values() for _, layer in found if layer is not None), default=-1)
    targets: dict[tuple[int, str], str] = {}
    for canonical, found in matched.items():
        if modules is not None and canonical not in modules:
            continue
        if not found:
            shown = ", ".join(repr(n) for n in names[1:9]) + (", ..." if len(names) > 9 else "")
            raise CaptureError(f"no module of the model matches {mapping[canonical]!r} (for {canonical}); "
                               f"its modules: {shown}")
        for path, layer in found:
            key = (blocks if layer is None else layer, canonical)
            if key in targets:
                raise CaptureError(f"{canonical} of layer {key[0]} matches two modules: {targets[key]!r} and "
                                   f"{path!r}; make the template {mapping[canonical]!r} exact")
            targets[key] = path
    ordered = sorted(targets.items(), key=lambda item: (item[0][0], MODULES.index(item[0][1])))
    return [Target(path, layer, canonical) for (layer, canonical), path in ordered]


class ActivationHooks:
    """Captures the canonical modules of ``model`` during one forward pass.

    ``layout`` is a name of :data:`LAYOUTS` or a mapping of canonical names to templates;
    ``modules`` restricts the capture to some canonical names.
    """

    def __init__(
        self,
        model: Any,
        layout: str | Mapping[str, str] = "gpt2",
        *,
        modules: Sequence[str] | None = None,
        position: int | str = -1,
    ) -> None:
        if not (isinstance(position, int) or position == "mean"):
            raise CaptureError(f"position must be a token index or 'mean', not {position!r}")
        self.model, self.position = model, position
        self.targets = resolve(model, layout, modules)

    def capture(self, *args: Any, **kwargs: Any) -> dict[tuple[int, str], np.ndarray]:
        """Run ``model(*args, **kwargs)`` in eval mode without gradients; return each
        target's activations as a float32 (samples x features) matrix, by (layer, module)."""
        torch = _torch()
        captured: dict[tuple[int, str], np.ndarray] = {}
        by_path = dict(self.model.named_modules())
        handles = [self._register(by_path[t.path], t, captured) for t in self.targets]
        modes = {m: m.training for m in self.model.modules()}  # a submodule may be in eval on purpose
        try:
            self.model.eval()
            with torch.no_grad():
                self.model(*args, **kwargs)
        finally:
            for m, training in modes.items():
                m.training = training
            for handle in handles:
                handle.remove()
        return captured

    def log(
        self, session: Any, step: int, *args: Any, sample_ids: Sequence[str], **kwargs: Any
    ) -> dict[tuple[int, str], Descriptors]:
        """Capture one forward pass and log every target to ``session`` at ``step``."""
        activations = self.capture(*args, **kwargs)
        return {key: session.log(step, *key, x, sample_ids=sample_ids) for key, x in sorted(activations.items())}

    def _register(self, module: Any, target: Target, captured: dict) -> Any:
        def keep(value: Any, what: str) -> None:
            key = (target.layer, target.module)
            if key in captured:
                raise CaptureError(f"module {target.path!r} ran twice in one forward pass; capture needs one call")
            tensor = _first_tensor(value)
            if tensor is None:
                raise CaptureError(f"module {target.path!r}: no tensor in its {what}")
            captured[key] = _rows(tensor, self.position, target.path)

        if target.module in INPUT_MODULES:
            return module.register_forward_pre_hook(
                lambda m, args, kwargs: keep((args, kwargs), "input"), with_kwargs=True
            )
        return module.register_forward_hook(lambda m, args, output: keep(output, "output"))


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise CaptureError("PyTorch is not installed: pip install 'squiggle-warehouse[torch]'") from None
    return torch


def _layout(layout: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(layout, str):
        if layout not in LAYOUTS:
            raise CaptureError(f"unknown layout {layout!r}; built-in layouts: {', '.join(LAYOUTS)}")
        return LAYOUTS[layout]
    unknown = [c for c in layout if c not in MODULES]
    if unknown:
        raise CaptureError(f"layout names {', '.join(map(repr, unknown))}: canonical modules are {', '.join(MODULES)}")
    return dict(layout)


def _matches(template: str, names: list[str]) -> list[tuple[str, int | None]]:
    """(path, layer) of every module path matching ``template`` (layer None without ``{layer}``)."""
    pattern = re.escape(template).replace(re.escape("{layer}"), r"(?P<layer>\d+)")
    regex = re.compile(rf"(?:.*\.)?{pattern}" if template else "")
    found = [(name, m) for name in names if (m := regex.fullmatch(name))]
    return [(name, int(m["layer"]) if "{layer}" in template else None) for name, m in found]


def _first_tensor(value: Any) -> Any:
    """The first tensor in a module's output, or in a pre-hook's (args, kwargs); else None."""
    if isinstance(value, _torch().Tensor):
        return value
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (tuple, list)) else ()
    for item in items:
        tensor = _first_tensor(item)
        if tensor is not None:
            return tensor
    return None


def _rows(tensor: Any, position: int | str, path: str) -> np.ndarray:
    """A (samples x features) float32 matrix: one token (or the mean) of each sequence."""
    t = tensor.detach()
    if t.ndim == 3:
        t = t.mean(dim=1) if position == "mean" else t[:, position, :]
    elif t.ndim != 2:
        raise CaptureError(f"module {path!r}: expected (batch, features) or (batch, sequence, features), "
                           f"got {tuple(t.shape)}")
    return t.float().cpu().numpy()

