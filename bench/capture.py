"""Benchmark: the capture library's descriptors throughput, and the session's cost in training.

(a) ``warehouse.capture.descriptors`` on 512 x 768 float32 activations (a decaying
    spectrum plus noise), each against the previous and the first capture's subspaces, as a
    session computes them: matrices per second over ``--matrices`` matrices, in a fresh
    child process, ``--repeats`` times; once with one BLAS thread and once with numpy's
    default. The table gives the median.
(b) The example's training (examples/modular_addition.py, its default configuration, seed
    0, 1 torch thread, 1 BLAS thread) without and with a capture session, alternating,
    ``--repeats`` times each, each in a fresh child process: the wall time of the training
    loop (evaluation at the checkpoints included in both), and, inside the runs with a
    session, the time spent in the session's calls against the time spent in training
    steps. The overhead is the median with-session time over the median without, minus 1.

Results are printed as Markdown and written to ``bench/results/capture.md`` and ``.json``.

    python bench/capture.py --steps 300     # a quick try
    python bench/capture.py                 # the example's 1,500 steps and 60 checkpoints
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from measure import measure

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
EXAMPLES = HERE.parent / "examples"
ROWS, WIDTH = 512, 768


def descriptors_child(matrices: int) -> dict:
    """Matrices per second of descriptors() on a series of 512 x 768 float32 captures."""
    import numpy as np

    from warehouse.capture import descriptors

    g = np.random.default_rng(0)
    spectrum = np.exp(-np.arange(WIDTH) / 96.0)  # activations are anisotropic, not white noise
    base = g.normal(size=(ROWS, WIDTH)) * spectrum
    xs = [(base + 0.1 * g.normal(size=base.shape)).astype(np.float32) for _ in range(matrices)]
    first = previous = None
    started = time.perf_counter()
    for x in xs:
        d = descriptors(x, previous, first)
        first = d.subspace if first is None else first
        previous = d.subspace
    seconds = time.perf_counter() - started
    return {"matrices": matrices, "seconds": seconds, "per_second": matrices / seconds}


def training_child(capture: bool, steps: int) -> dict:
    """One seed of the example's training, with or without a session; its timings."""
    sys.path.insert(0, str(EXAMPLES))
    import modular_addition as ex  # sets one BLAS thread before numpy loads
    import torch

    torch.set_num_threads(1)
    cfg = ex.Config(steps=steps, captures=round(60 * steps / 1500))  # the example's capture density
    data = ex.make_data(cfg)
    with tempfile.TemporaryDirectory() as lake:
        started = time.perf_counter()
        timings = ex.record_run(cfg, 0, Path(lake), data) if capture else ex.train_run(cfg, 0, data)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "step_seconds": sum(timings.steps), "step_median": statistics.median(timings.steps),
            "session_seconds": sum(timings.captures), "checkpoints": len(ex.capture_steps(cfg))}


def run_child(args: list[str], blas_threads: str | None) -> dict:
    env = dict(os.environ)
    if blas_threads:
        env["OPENBLAS_NUM_THREADS"] = blas_threads
    else:
        env.pop("OPENBLAS_NUM_THREADS", None)
    return json.loads(measure([sys.executable, __file__, *args], env=env, cwd=HERE).stdout)


def bench_descriptors(repeats: int, matrices: int) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"1 BLAS thread": [], "default BLAS threads": []}
    for _ in range(repeats):
        out["1 BLAS thread"].append(run_child(["--child", "descriptors", "--matrices", str(matrices)], "1"))
        out["default BLAS threads"].append(run_child(["--child", "descriptors", "--matrices", str(matrices)], None))
    return out


def bench_training(repeats: int, steps: int) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"without session": [], "with session": []}
    for _ in range(repeats):
        out["without session"].append(run_child(["--child", "plain", "--steps", str(steps)], "1"))
        out["with session"].append(run_child(["--child", "capture", "--steps", str(steps)], "1"))
    return out


def report(desc: dict[str, list[dict]], train: dict[str, list[dict]], steps: int) -> str:
    import numpy
    import torch

    lines = [f"# Capture benchmark: descriptors of {ROWS} x {WIDTH} float32 activations; the session in training", ""]
    lines += ["| descriptors() | matrices per second (median) | runs |", "|---|---:|---|"]
    for name, runs in desc.items():
        rates = [r["per_second"] for r in runs]
        lines.append(f"| {name} | {statistics.median(rates):.1f} | {', '.join(f'{r:.1f}' for r in rates)} |")
    plain = statistics.median(r["seconds"] for r in train["without session"])
    with_session = statistics.median(r["seconds"] for r in train["with session"])
    inside = [r["session_seconds"] / r["step_seconds"] for r in train["with session"]]
    checkpoints = train["with session"][0]["checkpoints"]
    lines += [
        "",
        f"Training: the example's configuration, seed 0, {steps} full-batch steps, {checkpoints} checkpoints "
        "(9 captures each: 4 modules x 2 layers and the logits, 256 probe samples x 64 or 31 features).",
        "",
        "| training run | wall time (s, median) | median step (ms) | runs (s) |",
        "|---|---:|---:|---|",
    ]
    for name, runs in train.items():
        walls = [r["seconds"] for r in runs]
        lines.append(f"| {name} | {statistics.median(walls):.1f} | "
                     f"{1000 * statistics.median(r['step_median'] for r in runs):.1f} | "
                     f"{', '.join(f'{w:.1f}' for w in walls)} |")
    lines += [
        "",
        f"Overhead of the session: {100 * (with_session / plain - 1):+.1f}% of the run's wall time (median with "
        f"over median without); inside the runs with a session, its calls took {100 * statistics.median(inside):.1f}% "
        f"of the time of the training steps (median over runs; "
        f"{1000 * statistics.median(r['session_seconds'] / r['checkpoints'] for r in train['with session']):.0f} ms "
        "per checkpoint, flushes included).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy "
        f"{numpy.__version__}, torch {torch.__version__}. Other processes shared the CPUs; the wall times vary with them.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matrices", type=int, default=10, help="matrices per descriptors run (default 10)")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per run (default 1500)")
    parser.add_argument("--child", choices=["descriptors", "plain", "capture"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "descriptors":
        print(json.dumps(descriptors_child(args.matrices)))
        return
    if args.child:
        print(json.dumps(training_child(args.child == "capture", args.steps)))
        return
    desc = bench_descriptors(args.repeats, args.matrices)
    train = bench_training(args.repeats, args.steps)
    text = report(desc, train, args.steps)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "capture.md").write_text(text)
    (RESULTS / "capture.json").write_text(json.dumps({"descriptors": desc, "training": train}, indent=2) + "\n")


if __name__ == "__main__":
    main()
