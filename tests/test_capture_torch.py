"""Forward hooks on PyTorch transformers of three layouts, against a forward pass written
out by hand in the test. Skipped without PyTorch, unless SQUIGGLE_REQUIRE_TORCH is set
(as ``make test`` and CI do), when a missing PyTorch fails instead."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("SQUIGGLE_REQUIRE_TORCH"):
    torch = importlib.import_module("torch")
else:
    torch = pytest.importorskip("torch")
nn = torch.nn

from warehouse.capture import ActivationHooks, CaptureSession  # noqa: E402
from warehouse.capture.torch_hooks import resolve  # noqa: E402
from warehouse.errors import CaptureError  # noqa: E402

D, VOCAB, BATCH, SEQ = 8, 11, 5, 4


def test_importing_the_library_does_not_import_torch() -> None:
    code = "import sys, warehouse, warehouse.capture, warehouse.capture.torch_hooks; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------
# Three module trees, each with a forward written out by hand that records what the hooks
# should see: {(layer, module): tensor (batch, seq, features) or (batch, features)}.


class TupleAttention(nn.Module):
    """An attention stand-in that, like Hugging Face's, returns (output, weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(D, D)

    def forward(self, x: torch.Tensor) -> tuple:
        return self.proj(x).tanh(), None


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, D))


class GPT2Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = nn.LayerNorm(D), TupleAttention(), nn.LayerNorm(D), mlp()

    def forward(self, x: torch.Tensor) -> tuple:
        x = x + self.attn(self.ln_1(x))[0]
        return (x + self.mlp(self.ln_2(x)),)


class GPT2Like(nn.Module):
    """transformer.wte, transformer.h.{i}.attn / .mlp, lm_head; blocks return tuples."""

    def __init__(self, layers: int = 3) -> None:
        super().__init__()
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(VOCAB, D)
        self.transformer.h = nn.ModuleList(GPT2Block() for _ in range(layers))
        self.lm_head = nn.Linear(D, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.transformer.wte(tokens)
        for block in self.transformer.h:
            h = block(h)[0]
        return self.lm_head(h)

    def by_hand(self, tokens: torch.Tensor) -> dict:
        seen, h = {}, self.transformer.wte(tokens)
        for i, b in enumerate(self.transformer.h):
            seen[(i, "resid_pre")] = h
            seen[(i, "attn_out")] = a = b.attn(b.ln_1(h))[0]
            seen[(i, "mlp_out")] = m = b.mlp(b.ln_2(h + a))
            seen[(i, "resid_post")] = h = h + a + m
        seen[(len(self.transformer.h), "logits")] = self.lm_head(h)
        return seen


class LlamaLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_layernorm, self.self_attn = nn.LayerNorm(D), TupleAttention()
        self.post_attention_layernorm, self.mlp = nn.LayerNorm(D), mlp()

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = hidden_states + self.self_attn(self.input_layernorm(hidden_states))[0]
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaLike(nn.Module):
    """model.embed_tokens, model.layers.{i}.self_attn / .mlp, lm_head; layers get keyword input."""

    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(VOCAB, D)
        self.model.layers = nn.ModuleList(LlamaLayer() for _ in range(layers))
        self.lm_head = nn.Linear(D, VOCAB, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            h = layer(hidden_states=h, attention_mask=None)
        return self.lm_head(h)

    def by_hand(self, tokens: torch.Tensor) -> dict:
        seen, h = {}, self.model.embed_tokens(tokens)
        for i, layer in enumerate(self.model.layers):
            seen[(i, "resid_pre")] = h
            seen[(i, "attn_out")] = a = layer.self_attn(layer.input_layernorm(h))[0]
            seen[(i, "mlp_out")] = m = layer.mlp(layer.post_attention_layernorm(h + a))
            seen[(i, "resid_post")] = h = h + a + m
        seen[(len(self.model.layers), "logits")] = self.lm_head(h)
        return seen


class PlainBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn, self.mlp = TupleAttention(), mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)[0]
        return x + self.mlp(x)


class BlocksLike(nn.Module):
    """blocks.{i}.attn / .mlp and an unembedding of the last position only (2-D logits)."""

    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D)
        self.blocks = nn.ModuleList(PlainBlock() for _ in range(layers))
        self.unembed = nn.Linear(D, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        for block in self.blocks:
            h = block(h)
        return self.unembed(h[:, -1])

    def by_hand(self, tokens: torch.Tensor) -> dict:
        seen, h = {}, self.embed(tokens)
        for i, b in enumerate(self.blocks):
            seen[(i, "resid_pre")] = h
            seen[(i, "attn_out")] = a = b.attn(h)[0]
            seen[(i, "mlp_out")] = m = b.mlp(h + a)
            seen[(i, "resid_post")] = h = h + a + m
        seen[(len(self.blocks), "logits")] = self.unembed(h[:, -1])
        return seen


MODELS = {"gpt2": GPT2Like, "llama": LlamaLike, "blocks": BlocksLike}


def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))


def at(tensor: torch.Tensor, position: int | str) -> np.ndarray:
    if tensor.ndim == 2:
        return tensor.detach().numpy()
    return (tensor.mean(dim=1) if position == "mean" else tensor[:, position]).detach().numpy()


@pytest.mark.parametrize("layout", MODELS)
@pytest.mark.parametrize("position", [-1, 0, "mean"])
def test_hooks_capture_what_the_forward_computes(layout: str, position: int | str) -> None:
    torch.manual_seed(1)
    model = MODELS[layout]()
    x = tokens()
    expected = model.by_hand(x)
    got = ActivationHooks(model, layout, position=position).capture(x)
    assert sorted(got) == sorted(expected)
    for key, tensor in expected.items():
        assert got[key].dtype == np.float32
        np.testing.assert_allclose(got[key], at(tensor, position), rtol=1e-5, atol=1e-6, err_msg=str(key))


def test_targets_resolve_to_module_paths() -> None:
    targets = resolve(LlamaLike(layers=2), "llama")
    assert [(t.layer, t.module, t.path) for t in targets] == [
        (0, "resid_pre", "model.layers.0"), (0, "attn_out", "model.layers.0.self_attn"),
        (0, "mlp_out", "model.layers.0.mlp"), (0, "resid_post", "model.layers.0"),
        (1, "resid_pre", "model.layers.1"), (1, "attn_out", "model.layers.1.self_attn"),
        (1, "mlp_out", "model.layers.1.mlp"), (1, "resid_post", "model.layers.1"),
        (2, "logits", "lm_head"),
    ]


def test_a_custom_mapping_and_a_subset_of_modules() -> None:
    model = GPT2Like(layers=2)
    mapping = {"resid_post": "transformer.h.{layer}", "mlp_out": "transformer.h.{layer}.mlp.2"}
    got = ActivationHooks(model, mapping).capture(tokens())
    expected = model.by_hand(tokens())
    assert sorted(got) == [(0, "mlp_out"), (0, "resid_post"), (1, "mlp_out"), (1, "resid_post")]
    np.testing.assert_allclose(got[(1, "mlp_out")], at(expected[(1, "mlp_out")], -1), rtol=1e-5, atol=1e-6)
    only = ActivationHooks(model, "gpt2", modules=["logits"]).capture(tokens())
    assert sorted(only) == [(2, "logits")]


def test_capture_leaves_the_model_as_it_was() -> None:
    model = BlocksLike()
    model.train()
    model.blocks[1].mlp.eval()  # e.g. a frozen part
    during = []
    probe = model.blocks[0].mlp.register_forward_hook(
        lambda m, args, out: during.append((m.training, torch.is_grad_enabled())))
    hooks = ActivationHooks(model, "blocks")
    hooks.capture(tokens())
    probe.remove()
    assert during == [(False, False)]  # the forward ran in eval mode, without gradients
    assert model.training and model.blocks[0].mlp.training and not model.blocks[1].mlp.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(IndexError):
        hooks.capture(torch.full((2, 3), VOCAB + 5))  # the forward fails: hooks still removed
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("model, layout, message", [
    (GPT2Like(), "llama", "no module of the model matches 'layers.{layer}' (for resid_pre); its modules: 'transformer'"),
    (GPT2Like(), "t5", "unknown layout 't5'; built-in layouts: gpt2, llama, blocks"),
    (GPT2Like(), {"resid_mid": "transformer.h.{layer}"}, "layout names 'resid_mid': canonical modules are"),
])
def test_a_layout_that_does_not_fit_is_an_error(model: nn.Module, layout, message: str) -> None:
    with pytest.raises(CaptureError) as err:
        ActivationHooks(model, layout)
    assert message in str(err.value)


def test_two_modules_for_one_layer_is_an_error() -> None:
    model = nn.Module()
    model.encoder, model.decoder = BlocksLike(), BlocksLike()
    with pytest.raises(CaptureError, match="resid_pre of layer 0 matches two modules: 'encoder.blocks.0' and 'decoder.blocks.0'"):
        ActivationHooks(model, {"resid_pre": "blocks.{layer}"})


def test_a_module_run_twice_is_an_error() -> None:
    class Twice(BlocksLike):
        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return super().forward(tokens) + super().forward(tokens)

    with pytest.raises(CaptureError, match="module 'blocks.0' ran twice in one forward pass"):
        ActivationHooks(Twice(), "blocks").capture(tokens())


def test_hooks_log_every_module_to_a_session(tmp_path: Path) -> None:
    model = GPT2Like(layers=2)
    ids = [f"t{i}" for i in range(BATCH)]
    hooks = ActivationHooks(model, "gpt2")
    with CaptureSession("r1", {"seed": 0}, model_id="gpt2-like", lake=tmp_path) as session:
        for step in (0, 5):
            logged = hooks.log(session, step, tokens(), sample_ids=ids)
    expected = model.by_hand(tokens())
    assert sorted(logged) == sorted(expected)
    assert logged[(2, "logits")].dim == VOCAB and logged[(0, "attn_out")].dim == D
    files = list((tmp_path / "geometry_state").rglob("*.parquet"))
    import pyarrow.parquet as pq

    table = pq.read_table(files[0])
    assert table.num_rows == 2 * len(expected)
    assert sorted(set(zip(table.column("layer").to_pylist(), table.column("module").to_pylist()))) == sorted(expected)


def test_a_session_takes_tensors_with_gradients_and_any_float_type(tmp_path: Path) -> None:
    weights = torch.randn(6, 4, requires_grad=True)
    x = (torch.randn(5, 6) @ weights).to(torch.bfloat16)  # part of a graph, in bfloat16
    ids = [f"t{i}" for i in range(5)]
    with CaptureSession("r1", {"seed": 0}, model_id="m", lake=tmp_path) as session:
        got = session.log(0, 0, "resid_post", x, sample_ids=ids)
    from warehouse.capture import descriptors

    expected = descriptors(x.detach().float().numpy())
    assert got.values() == expected.values()
    assert got.dim == 4 and got.n_samples == 5
