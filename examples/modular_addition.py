"""Grokking on modular addition, captured into a lake; then the models' events beside the jump.

A small transformer learns (a + b) mod p from a fixed 60% of the pairs, full batch, on the
CPU. It memorises the training pairs quickly; validation accuracy jumps much later
("grokking", Power et al. 2022). Each of 3 seeds trains the same configuration (one
cohort), and a CaptureSession records, at 60 evenly spaced checkpoints, the geometry of
resid_pre, attn_out, mlp_out and resid_post of every layer and of the logits on a fixed
probe set of 256 pairs, plus losses and accuracies. Then the SQL models run on the lake it
wrote, the catalog is built, and the detected events are printed beside the step where
validation accuracy jumps.

    python examples/modular_addition.py --lake examples/lake      # about 3 minutes on 2 cores
    python examples/modular_addition.py --steps 40 --captures 12 --seeds 0 1   # a quick try
"""

from __future__ import annotations

import os

# One BLAS thread for numpy: its threads and the training's would share 2 cores, and an
# SVD of the descriptors then waits on busy cores (about 0.9 s instead of 2 ms here).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import warehouse  # noqa: E402
import warehouse.models  # noqa: E402
from warehouse.capture import ActivationHooks, CaptureSession  # noqa: E402


@dataclass(frozen=True)
class Config:
    p: int = 31
    train_fraction: float = 0.6
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    lr: float = 3e-3
    weight_decay: float = 2.0
    steps: int = 1500
    captures: int = 60
    probe_size: int = 256
    data_seed: int = 0  # the split and the probe set: shared by the seeds of the cohort


# ---------------------------------------------------------------------------------------
# The model: blocks.{i}.attn / blocks.{i}.mlp and an unembedding (the "blocks" layout)


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.attn = Attention(d, heads)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Transformer(nn.Module):
    """Tokens a, b, '=' in; logits over the p residues at '=' out."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.p + 1, cfg.d_model)
        self.pos = nn.Parameter(torch.randn(3, cfg.d_model) / cfg.d_model**0.5)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads) for _ in range(cfg.n_layers))
        self.unembed = nn.Linear(cfg.d_model, cfg.p, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pos
        for block in self.blocks:
            h = block(h)
        return self.unembed(h[:, -1])


# ---------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Data:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    probe_x: torch.Tensor
    probe_ids: list[str]
    probe_in_train: list[bool]


def make_data(cfg: Config) -> Data:
    """Every pair (a, b) as tokens [a, b, '='] with label (a + b) mod p, split once."""
    a, b = torch.meshgrid(torch.arange(cfg.p), torch.arange(cfg.p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    x = torch.stack([a, b, torch.full_like(a, cfg.p)], dim=1)
    y = (a + b) % cfg.p
    g = torch.Generator().manual_seed(cfg.data_seed)
    order = torch.randperm(len(y), generator=g)
    n_train = int(cfg.train_fraction * len(y))
    train, val = order[:n_train], order[n_train:]
    probe = torch.randperm(len(y), generator=g)[: min(cfg.probe_size, len(y))].sort().values
    in_train = torch.zeros(len(y), dtype=torch.bool)
    in_train[train] = True
    ids = [f"{int(a[i])}+{int(b[i])}" for i in probe]
    return Data(x[train], y[train], x[val], y[val], x[probe], ids, in_train[probe].tolist())


def capture_steps(cfg: Config) -> list[int]:
    """``cfg.captures`` evenly spaced steps from 0 to ``cfg.steps``."""
    n = min(cfg.captures, cfg.steps + 1)
    return sorted({round(i * cfg.steps / (n - 1)) for i in range(n)})


# ---------------------------------------------------------------------------------------
# One run


@dataclass
class Timings:
    """Seconds spent in training steps and in the capture session's calls."""

    steps: list[float] = dataclasses.field(default_factory=list)
    captures: list[float] = dataclasses.field(default_factory=list)


def record_run(cfg: Config, seed: int, lake: Path, data: Data) -> Timings:
    """Train one seed with a capture session writing to ``lake``."""
    config = {**dataclasses.asdict(cfg), "task": "modular_addition", "optimizer": "adamw", "seed": seed}
    with CaptureSession(
        f"modadd-p{cfg.p}-s{seed}", config, model_id=f"modadd-{cfg.n_layers}l-d{cfg.d_model}", lake=lake,
        sample_set=f"modadd-p{cfg.p}-probe", code_version="examples/modular_addition.py",
    ) as session:
        session.samples(data.probe_ids, texts=[f"{i.replace('+', ' + ')} =" for i in data.probe_ids],
                        payloads=[{"in_train": t} for t in data.probe_in_train])
        timings = train_run(cfg, seed, data, session)
        started = time.perf_counter()
        session.flush()
    timings.captures.append(time.perf_counter() - started)  # the last flush and the runs row
    return timings


def train_run(cfg: Config, seed: int, data: Data, session: CaptureSession | None = None) -> Timings:
    """Train one seed, full batch, evaluating at every capture step; with a session, record it.

    The session's calls are timed apart from the training steps; the evaluation is
    neither (a run evaluates its checkpoints with or without a session).
    """
    torch.manual_seed(seed)
    model = Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    hooks = ActivationHooks(model, "blocks")
    at = set(capture_steps(cfg))
    timings = Timings()
    for step in range(cfg.steps + 1):
        if step in at:
            metrics = {split: evaluate(model, x, y) for split, x, y in
                       (("train", data.train_x, data.train_y), ("val", data.val_x, data.val_y))}
            if session:
                timings.captures.append(record_checkpoint(session, hooks, data, step, metrics))
        started = time.perf_counter()
        loss = F.cross_entropy(model(data.train_x), data.train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        timings.steps.append(time.perf_counter() - started)
    return timings


def record_checkpoint(
    session: CaptureSession, hooks: ActivationHooks, data: Data, step: int, metrics: dict[str, tuple[float, float]]
) -> float:
    """Log one checkpoint's metrics and activations; return the seconds the session took."""
    started = time.perf_counter()
    for split, (loss, accuracy) in metrics.items():
        session.log_metrics(step, {"loss": loss, "accuracy": accuracy}, split=split)
    session.checkpoint(step, train_loss=metrics["train"][0], val_loss=metrics["val"][0],
                       tokens_seen=step * data.train_x.numel())
    hooks.log(session, step, data.probe_x, sample_ids=data.probe_ids)
    return time.perf_counter() - started


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Loss and accuracy of the model on (x, y)."""
    logits = model(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(-1) == y).float().mean().item()


# ---------------------------------------------------------------------------------------
# The models, and what they found


def build(lake: Path, db: Path) -> None:
    warehouse.models.run(lake=lake, report=lambda line: print("  " + line))
    warehouse.build_catalog(lake=lake, db=db)


JUMP_SQL = """
SELECT run_id,
       min(step) FILTER (WHERE split = 'train' AND value >= 0.99) AS memorised,
       min(step) FILTER (WHERE split = 'val' AND value >= 0.5) AS half,
       min(step) FILTER (WHERE split = 'val' AND value >= 0.9) AS most
FROM metrics_scalar
WHERE metric_name = 'accuracy'
GROUP BY run_id ORDER BY run_id
"""

EVENTS_SQL = """
SELECT run_id, layer, metric, step, score
FROM events_candidates
-- equal scores in step order (layer and metric break what remains): the same lines every time
ORDER BY run_id, score DESC, step, layer, metric, event_id
"""

CONSENSUS_SQL = """
SELECT layer, metric, step_median, step_min, step_max, n_runs_supporting, n_runs_total, strength
FROM events
ORDER BY strength DESC, step_median, layer, metric, cohort_id, event_id
LIMIT ?
"""


def report(db: Path, nearest: int = 5, strongest: int = 3) -> str:
    """Per run: where validation accuracy jumps, the change points nearest to its 50% step,
    the strongest ones; then the consensus events of the cohort."""
    con = warehouse.connect(db)
    events = con.execute(EVENTS_SQL).fetchall()
    lines = []
    for run_id, memorised, half, most in con.execute(JUMP_SQL).fetchall():
        lines.append(f"{run_id}: train accuracy reaches 99% at step {memorised}; "
                     f"validation accuracy 50% at step {half}, 90% at step {most}")
        mine = [e for e in events if e[0] == run_id]
        composite = sorted((e for e in mine if e[2] == "__composite__"), key=lambda e: e[3])
        lines.append("  composite change points (layer@step): " + (", ".join(f"L{e[1]}@{e[3]}" for e in composite) or "none"))
        if half is not None:
            # score 0: no other layer changed nearby (cpd@1's coherence); those are left out here
            coherent = sorted((e for e in mine if e[4] > 0), key=lambda e: (abs(e[3] - half), -e[4]))
            lines.append(f"  nearest to the 50% step ({half}), seen in more than one layer:")
            lines += [_event_line(e, half) for e in coherent[:nearest]]
        lines.append("  strongest:")
        lines += [_event_line(e, half) for e in mine[:strongest]]
    lines.append("Consensus events of the cohort (strongest first):")
    for layer, metric, median, lo, hi, n, total, strength in con.execute(CONSENSUS_SQL, [nearest]).fetchall():
        lines.append(f"  step {median:>5} ({lo}-{hi})  layer {layer}  {metric:<32} {n}/{total} runs  strength {strength:.1f}")
    return "\n".join(lines)


def _event_line(event: tuple, half: int | None) -> str:
    _, layer, metric, step, score = event
    offset = f"({step - half:+d})" if half is not None else ""
    return f"    step {step:>5} {offset:>7}  layer {layer}  {metric:<32} score {score:5.1f}"


def overhead(timings: list[Timings]) -> str:
    steps = [s for t in timings for s in t.steps]
    captures = [c for t in timings for c in t.captures]
    share = sum(captures) / sum(steps)
    return (f"training steps: median {1000 * statistics.median(steps):.1f} ms, {sum(steps):.1f} s in all; "
            f"capture session: median {1000 * statistics.median(captures):.1f} ms per checkpoint, "
            f"{sum(captures):.1f} s in all = {100 * share:.1f}% on top of training")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, default=Path("examples/lake"), help="lake to write, created if missing (new run ids only)")
    parser.add_argument("--db", type=Path, help="catalog file (default: warehouse.duckdb beside the lake)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    for field in dataclasses.fields(Config):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    args = parser.parse_args(argv)
    cfg = Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Config)})
    db = args.db or args.lake.parent / "warehouse.duckdb"
    torch.set_num_threads(args.threads)
    data = make_data(cfg)
    timings = []
    for seed in args.seeds:
        started = time.perf_counter()
        timings.append(record_run(cfg, seed, args.lake, data))
        print(f"seed {seed}: {cfg.steps} steps, {len(capture_steps(cfg))} captures, {time.perf_counter() - started:.0f} s",
              flush=True)
    print(overhead(timings))
    print(f"models on {args.lake}:")
    build(args.lake, db)
    problems = warehouse.check_lake(args.lake)
    print(f"warehouse check: {len(problems)} problem(s)" if problems else "warehouse check: lake is clean")
    print(report(db))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
