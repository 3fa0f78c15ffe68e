"""The change-point evaluation: every detector on the same labelled series, in one process.

Scores (``cpd_eval_metrics``): F1 with a 5-capture margin and Cover on the planted suite
(overall, per change kind and per length) and on the real series; false events per 1,000 captures on
the null series (per nuisance kind: every reported change there is false, the start not
counted). Writes bench/results/cpd_eval.md and .json (or ``--out``).

    python bench/cpd_eval.py [--quick] [--lengths 8 32 ...] [--noises 0.2 1.0] [--seeds 1] [--only cpd@1 ...]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import cpd_eval_detectors as detectors
import cpd_eval_metrics as metrics
import cpd_eval_real as real
import cpd_eval_series as gen
import machine

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT = {"lengths": [8, 32, 128, 512, 2000, 10000], "noises": [0.2, 1.0], "seeds": 1}
QUICK = {"lengths": [8, 64, 200], "noises": [0.5], "seeds": 1}


def score(series: Sequence[gen.Series], predictions: Sequence[Sequence[int]]) -> dict:
    """Per detector's predictions: the planted, real and null scores (see the module doc)."""
    groups: dict[str, dict[str, list[float]]] = {}
    false: dict[str, list[int]] = {}
    for s, p in zip(series, predictions):
        if s.null:
            counts = false.setdefault(s.kind, [0, 0])
            counts[0] += len([i for i in p if i != 0])
            counts[1] += s.n
            continue
        scope = "real" if s.source != "generated" else "planted"
        f1 = metrics.f1([list(s.changes)], p, s.n)
        cover = metrics.cover([list(s.changes)], p, s.n)
        keys = [scope, f"planted:{s.kind}", f"length:{s.n}"] if scope == "planted" else [scope, f"real:{s.name}"]
        for key in keys:
            g = groups.setdefault(key, {"f1": [], "cover": []})
            g["f1"].append(f1)
            g["cover"].append(cover)
    out = {k: {"f1": _mean(g["f1"]), "cover": _mean(g["cover"]), "series": len(g["f1"])} for k, g in groups.items()}
    total = [sum(c[0] for c in false.values()), sum(c[1] for c in false.values())]
    for kind, (events, captures) in list(false.items()) + [("all", total)]:
        out[f"null:{kind}"] = {"false_per_1000": 1000 * events / captures if captures else 0.0,
                               "events": events, "captures": captures}
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def evaluate(series: list[gen.Series], chosen: dict[str, detectors.Detector]) -> dict:
    """Runs every detector on all the series; their scores and wall times."""
    results = {}
    for name, detect in chosen.items():
        start = time.perf_counter()
        predictions = detect(series)
        seconds = time.perf_counter() - start
        results[name] = {"scores": score(series, predictions), "seconds": seconds}
        print(f"{name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return results


def markdown(report: dict) -> str:
    names = list(report["detectors"])
    sc = {n: report["detectors"][n]["scores"] for n in names}
    head = "| | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names) + "\n"

    def row(label: str, key: str, field: str) -> str:
        cells = [f"{sc[n][key][field]:.3f}" if key in sc[n] else "-" for n in names]
        return f"| {label} | " + " | ".join(cells) + " |\n"

    planted = sorted(k for k in sc[names[0]] if k.startswith("planted:"))
    lengths = sorted((k for k in sc[names[0]] if k.startswith("length:")), key=lambda k: int(k.split(":")[1]))
    real_keys = sorted(k for k in sc[names[0]] if k.startswith("real:"))
    nulls = sorted(k for k in sc[names[0]] if k.startswith("null:") and k != "null:all") + ["null:all"]
    s = report["suite"]
    timings = ", ".join(f"{n} {report['detectors'][n]['seconds']:.1f} s" for n in names)
    text = [
        "# Change-point evaluation: cpd@1 and its peers on the same series\n\n",
        f"Machine: {report['machine']}; ruptures {report['versions']['ruptures']}, statsmodels "
        f"{report['versions']['statsmodels']}, numpy {report['versions']['numpy']}. Run time {report['seconds']:.0f} s "
        f"(per detector: {timings}).\n\n",
        f"Suite: lengths {s['lengths']}, noise levels {s['noises']}, {s['seeds']} seed(s) per kind, length and noise "
        f"({s['planted']} planted series, {s['null']} null series of {s['null_captures']:,} captures, "
        f"{s['real']} real). Scores as in van den Burg & Williams (2020): F1 with a 5-capture margin and Cover, "
        "the start counted as a change point; detectors and penalties as `bench/cpd_eval_detectors.py` states.\n\n",
        "## F1\n\n", head, row("planted, all", "planted", "f1"),
        *[row(k.split(":", 1)[1], k, "f1") for k in planted],
        *[row(f"n = {k.split(':', 1)[1]}", k, "f1") for k in lengths],
        *[row(f"real: {k.split(':', 1)[1]}", k, "f1") for k in real_keys],
        "\n## Cover\n\n", head, row("planted, all", "planted", "cover"),
        *[row(k.split(":", 1)[1], k, "cover") for k in planted],
        *[row(f"n = {k.split(':', 1)[1]}", k, "cover") for k in lengths],
        *[row(f"real: {k.split(':', 1)[1]}", k, "cover") for k in real_keys],
        "\n## False events per 1,000 captures of null series\n\n", head,
        *[row(k.split(":", 1)[1], k, "false_per_1000") for k in nulls],
        "\nReal series: " + "; ".join(report["real_sources"]) + "\n" if report["real_sources"] else "",
    ]
    return "".join(text)


def versions() -> dict[str, str]:
    out = {}
    for p in ("ruptures", "statsmodels", "numpy", "duckdb"):
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def run(lengths: Sequence[int], noises: Sequence[float], seeds: int, only: Sequence[str] | None = None) -> dict:
    """The whole evaluation: the suite, every available detector (or ``only`` those), scores."""
    start = time.perf_counter()
    series = list(gen.suite(lengths, noises, seeds)) + real.available()
    chosen = detectors.available()
    if only:
        unknown = [n for n in only if n not in chosen]
        if unknown:
            raise SystemExit(f"unknown or unavailable detector(s) {unknown}; available: {list(chosen)}")
        chosen = {n: chosen[n] for n in only}
    results = evaluate(series, chosen)
    nulls = [s for s in series if s.null]
    return {
        "machine": machine.one_line(machine.describe()), "versions": versions(),
        "suite": {"lengths": list(lengths), "noises": list(noises), "seeds": seeds,
                  "planted": sum(1 for s in series if not s.null and s.source == "generated"),
                  "null": len(nulls), "null_captures": sum(s.n for s in nulls),
                  "real": sum(1 for s in series if s.source != "generated")},
        "real_sources": [f"{s.name}: {s.source}" for s in series if s.source != "generated"],
        "detectors": results, "seconds": time.perf_counter() - start,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny suite (lengths 8, 64, 200; one noise level)")
    parser.add_argument("--lengths", type=int, nargs="+")
    parser.add_argument("--noises", type=float, nargs="+")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--only", nargs="+", help="detectors to run (default: every available one)")
    parser.add_argument("--out", type=Path, default=RESULTS / "cpd_eval", help="results path, without .md / .json")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULT
    report = run(args.lengths or base["lengths"], args.noises or base["noises"], args.seeds or base["seeds"], args.only)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
