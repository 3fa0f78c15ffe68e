"""The matching evaluation: every matcher on the same labelled sets, in one process.

The standard 1-nearest-neighbour protocol: each series is a run; a test run takes the
class of its best-scoring partner among the training runs; the score of a matcher on a set
is its 1-NN error (the share of test runs given another class than their own). Sets: the
generated ones of ``match_eval_sets`` (shape groups at three difficulties, and one nuisance
at a time) and the real ones of ``match_eval_real``; matchers as ``match_eval_matchers``
states. Writes bench/results/match_eval.md and .json (or ``--out``), with each matcher's
wall time over all the sets.

    python bench/match_eval.py [--quick] [--seed 0] [--per-class 10 20] [--sets shapes-easy ...] [--only ED ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import machine
import match_eval_matchers as matchers
import match_eval_real as real
import match_eval_sets as gen
from report import only_named, save

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("aeon", "numpy", "duckdb")  # whose versions a report names
DEFAULT = {"per_class": (10, 20), "sets": None, "real": list(real.ALLOWED)}
QUICK = {"per_class": (3, 4), "sets": ["shapes-easy", "timing-hard", "nuisance-warp"], "real": ["UnitTest"]}


def evaluate(sets: Sequence[gen.LabelledSet], chosen: dict[str, matchers.Matcher]) -> dict:
    """Every matcher on every set: its 1-NN error, seconds and details (a matcher's ``last``, if
    it has one: DTW's band, the warehouse's seconds per model) per set, and its total seconds."""
    results = {}
    for name, match in chosen.items():
        per_set, total = {}, 0.0
        for s in sets:
            start = time.perf_counter()
            predicted = match(s.train, s.train_labels, s.test)
            seconds = time.perf_counter() - start
            total += seconds
            per_set[s.name] = {"error": matchers.error_rate(predicted, s.test_labels), "seconds": seconds,
                               "unanswered": sum(p is None for p in predicted), **getattr(match, "last", {})}
        results[name] = {"sets": per_set, "seconds": total}
        print(f"{name}: {total:.1f} s", file=sys.stderr, flush=True)
    return results


def set_facts(s: gen.LabelledSet) -> dict:
    lengths = [r.n for r in [*s.train, *s.test]]
    return {"source": s.source, "classes": len(s.classes), "train": len(s.train), "test": len(s.test),
            "channels": s.train[0].channels, "lengths": [min(lengths), max(lengths)], **s.facts}


def mean_error(report: dict, name: str, sets: list[str]) -> float | None:
    errors = [report["matchers"][name]["sets"][s]["error"] for s in sets]
    return sum(errors) / len(errors) if errors else None


def markdown(report: dict) -> str:
    names = list(report["matchers"])
    head = "| set | classes | train / test | captures | " + " | ".join(names) + " |\n|---|---:|---:|---:|" + \
        "---:|" * len(names) + "\n"
    groups = {"generated, graded": [s for s, f in report["sets"].items() if "group" in f and not s.startswith("nuisance-")],
              "generated, one nuisance": [s for s in report["sets"] if s.startswith("nuisance-")],
              "real": [s for s, f in report["sets"].items() if f.get("real")]}

    def row(s: str) -> str:
        f = report["sets"][s]
        lo, hi = f["lengths"]
        captures = str(lo) if lo == hi else f"{lo}-{hi}"
        channels = "" if f["channels"] == 1 else f" x {f['channels']} ch"
        cells = [f"{report['matchers'][n]['sets'][s]['error']:.3f}" + _unanswered(report['matchers'][n]['sets'][s])
                 for n in names]
        return f"| {s} | {f['classes']} | {f['train']} / {f['test']} | {captures}{channels} | " + " | ".join(cells) + " |\n"

    def mean_row(label: str, sets: list[str]) -> str:
        return f"| **mean, {label}** | | | | " + " | ".join(_cell(mean_error(report, n, sets)) for n in names) + " |\n"

    v = report["versions"]
    text = [
        "# Matching evaluation: 1-NN error of the warehouse's matches and its peers\n\n",
        f"Machine: {report['machine']}; aeon {v['aeon']}, numpy {v['numpy']}. Run time {report['seconds']:.0f} s.\n\n",
        "Each series is a run; a test run takes the class of its best-ranked training run (1-NN); the table gives "
        "the share of test runs classed wrongly (lower is better). Matchers as `bench/match_eval_matchers.py` "
        "states: the warehouse's signatures and matches models run on a temporary lake of all the set's runs; "
        "ED and DTW on the runs resampled to a common length and z-normalised.\n\n",
        head,
    ]
    for label, sets in groups.items():
        if sets:
            text += [*map(row, sets), mean_row(label, sets)]
    text += ["\n## Wall time over all the sets\n\n", *[f"- {n}: {_seconds(report['matchers'][n])}\n" for n in names]]
    for n in names:
        bands = {s: e["band"] for s, e in report["matchers"][n]["sets"].items() if "band" in e}
        if len(set(bands.values())) > 1:
            text.append(f"\n{n}, the band per set (a fraction of the length): "
                        + ", ".join(f"{s} {b:g}" for s, b in bands.items()) + ".\n")
    text += ["\n## The sets\n\n", *[f"- {s}: {f['source']}\n" for s, f in report["sets"].items()]]
    return "".join(text)


def _seconds(entry: dict) -> str:
    """Total seconds, and per model where the matcher ran models."""
    per_model: dict[str, float] = {}
    for e in entry["sets"].values():
        for model, seconds in e.get("model_seconds", {}).items():
            per_model[model] = per_model.get(model, 0.0) + seconds
    split = ", ".join(f"{m} {s:.1f} s" for m, s in per_model.items())
    return f"{entry['seconds']:.1f} s" + (f" (models: {split})" if split else "")


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _unanswered(entry: dict) -> str:
    return f" ({entry['unanswered']} without partner)" if entry["unanswered"] else ""


def run(seed: int, per_class: Sequence[int], set_names: Sequence[str] | None, real_names: Sequence[str],
        only: Sequence[str] | None = None) -> dict:
    """The whole evaluation: the sets, every available matcher (or ``only`` those), errors."""
    start = time.perf_counter()
    chosen = only_named(matchers.available(), only, "matcher")
    sets = gen.suite(seed, *per_class, only=set_names) + real.available(list(real_names))
    results = evaluate(sets, chosen)
    return {
        "machine": machine.one_line(machine.describe()), "versions": machine.versions(PACKAGES), "seed": seed,
        "sets": {s.name: set_facts(s) for s in sets}, "matchers": results,
        "seconds": time.perf_counter() - start,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three small generated sets and UnitTest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, nargs=2, metavar=("TRAIN", "TEST"), help="runs per class")
    parser.add_argument("--sets", nargs="+", help="generated sets to make (default: all)")
    parser.add_argument("--real", nargs="*", help=f"real sets, of {', '.join(real.ALLOWED)} (default: all)")
    parser.add_argument("--only", nargs="+", help="matchers to run (default: every available one)")
    parser.add_argument("--out", type=Path, default=RESULTS / "match_eval", help="results path, without .md / .json")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULT
    report = run(args.seed, args.per_class or base["per_class"], args.sets or base["sets"],
                 base["real"] if args.real is None else args.real, args.only)
    text = markdown(report)
    save(args.out, text, report)
    print(text)


if __name__ == "__main__":
    main()
