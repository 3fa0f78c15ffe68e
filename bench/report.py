"""The benchmark's results: ``bench/results/bench.json`` holds every size and memory limit
measured (a run replaces the results of the sizes and limit it measured and keeps the
others); ``bench.md`` and ``bench.png`` are rendered from it."""

from __future__ import annotations

import json
from pathlib import Path

import machine

from warehouse.duck import DUCKDB_DEFAULT, memory_bytes

RESULTS = Path(__file__).resolve().parent / "results"
# the plotted and tabled lines, in the order a round takes them
LINES = ("scan floor", "copy floor", "full build", "catalog", "no-op build", "no-op make models",
         "dyn@1 + cpd@1 build", "pandas baseline", "one new run")
GB = 10**9
MIB = 2**20


def save(out: Path, text: str, data: dict) -> None:
    """A standalone benchmark's results: ``out`` with .md (the rendered report) and .json."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")


def only_named(available: dict, only: list[str] | None, what: str) -> dict:
    """The entries of ``available`` named in ``only`` (all of them when it names none); an
    unknown name ends the run, naming the ones available."""
    if not only:
        return available
    unknown = [n for n in only if n not in available]
    if unknown:
        raise SystemExit(f"unknown or unavailable {what}(s) {unknown}; available: {list(available)}")
    return {n: available[n] for n in only}


def merge(entries: list[dict], path: Path = RESULTS / "bench.json") -> list[dict]:
    """The results in ``path`` with ``entries`` replacing those of the same size and memory limit."""
    old = json.loads(path.read_text())["sizes"] if path.is_file() else []
    fresh = {_key(e) for e in entries}
    return sorted([e for e in old if _key(e) not in fresh] + entries, key=_key)


def _key(entry: dict) -> tuple[str, int]:
    return entry["memory_limit"] or "", entry["requested_rows"]


def write(sizes: list[dict], folder: Path = RESULTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_text(json.dumps({"sizes": sizes}, indent=2) + "\n")
    (folder / "bench.md").write_text(markdown(sizes))
    plot(sizes, folder / "bench.png")


def limit_bytes(limit: str) -> int:
    """DuckDB's reading of a memory limit such as ``2GB`` (10^9 bytes) or ``2GiB``."""
    try:
        return memory_bytes(limit)
    except ValueError:
        raise ValueError(f"not a memory limit: {limit!r} (e.g. 2GB, 1.5GiB)") from None


def _limited(entry: dict) -> bool:
    """Whether the entry ran under a memory limit of its own (not DuckDB's default: None in
    results from before the warehouse chose a default, 'duckdb' after)."""
    return entry["memory_limit"] not in (None, DUCKDB_DEFAULT)


def ratios(entry: dict) -> dict:
    """The issue's figures for one size (None where the size lacks a measurement)."""
    med = {name: m["median_seconds"] for name, m in entry["measurements"].items()}

    def ratio(a: str, b: str) -> float | None:
        return med[a] / med[b] if a in med and b in med else None

    peaks = [m["max_peak_rss_mib"] for name, m in entry["measurements"].items() if name != "pandas baseline"]
    peak = max(peaks, default=None)
    ceiling = (limit_bytes(entry["memory_limit"]) + GB) / MIB if _limited(entry) else None
    noop = med.get("no-op make models")
    return {
        "full_over_copy": ratio("full build", "copy floor"),
        "full_over_scan": ratio("full build", "scan floor"),
        "pandas_over_two_models": ratio("pandas baseline", "dyn@1 + cpd@1 build"),
        "noop_build_seconds": med.get("no-op build"),
        "noop_make_models_seconds": noop,
        "one_new_run_over_full": ratio("one new run", "full build"),
        "peak_rss_mib": peak,
        "limit_plus_1gb_mib": ceiling,
        "peak_over_limit_plus_1gb": peak / ceiling if peak and ceiling else None,
    }


def markdown(sizes: list[dict]) -> str:
    lines = [
        "# Benchmarks: the model build against the floors and a pandas baseline",
        "",
        "Written by `make bench` (`bench/run.py`); plot: [bench.png](bench.png), data: [bench.json](bench.json).",
        "Every figure is the median wall time over the rounds, each command in its own process",
        "(interpreter start-up included, warm file cache), and the largest peak resident memory",
        "of that process alone (`ru_maxrss` from `wait4`).",
        "",
        "## Targets",
        "",
        "| rows | memory limit | rounds | full build / copy floor (target <= 3) | full build / scan floor"
        " | pandas / dyn@1 + cpd@1 build (>= 10) | no-op build (s) | no-op `make models` (s) (< 1)"
        " | one new run / full build (< 0.10) | DuckDB peak RSS / (limit + 1 GB) (< 1) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_target_row(e) for e in sizes),
        "",
        *_definitions(),
    ]
    for entry in sizes:
        lines += ["", *_size_section(entry)]
    return "\n".join(lines) + "\n"


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _target_row(e: dict) -> str:
    r = ratios(e)
    if r["peak_rss_mib"] is None:
        peak = "-"
    elif r["limit_plus_1gb_mib"]:
        peak = f"{r['peak_rss_mib']:.0f} / {r['limit_plus_1gb_mib']:.0f} MiB = {r['peak_over_limit_plus_1gb']:.2f}"
    else:
        peak = f"{r['peak_rss_mib']:.0f} MiB, no limit"
    if e.get("failure"):
        peak += f"; **{e['failure']['measurement']} failed**"
    return (f"| {e['rows']:,} | {e['memory_limit'] or 'none'} | {e['rounds']} | {_fmt(r['full_over_copy'])}"
            f" | {_fmt(r['full_over_scan'])}"
            f" | {_fmt(r['pandas_over_two_models'], 1)} | {_fmt(r['noop_build_seconds'])}"
            f" | {_fmt(r['noop_make_models_seconds'])} | {_fmt(r['one_new_run_over_full'], 3)} | {peak} |")


def _definitions() -> list[str]:
    return [
        "- **scan floor**: DuckDB reads every column of the datasets a full build reads and no",
        "  model writes (geometry_state and runs) once. **copy floor**: DuckDB copies them once",
        "  to zstd Parquet with the same hive partitioning (read plus write).",
        "- **full build**: `warehouse models run` of all six models on a lake without outputs;",
        "  indented below it, each model's own time as the engine reports it. **catalog**:",
        "  `warehouse catalog` after it (a full rebuild).",
        "- **no-op build**: `warehouse models run` again with nothing new. **no-op make models**:",
        "  `warehouse models run --db` (what `make models` runs: the catalog is rebuilt only if",
        "  what it shows changed).",
        "- **one new run**: `warehouse models run` after one more seed of a cohort is written: the",
        "  per-run models compute that run; probe_summaries reads probe runs only (nothing to do);",
        "  events recomputes that cohort and keeps the others; matches merges the run's signatures",
        "  into the last table (only pairs with a new signature are scored).",
        "- **pandas / dyn@1 + cpd@1 build**: `bench/pandas_baseline.py` (read geometry_state,",
        "  compute geometry_dynamics and events_candidates as design.md defines them, write both as",
        "  zstd Parquet) against `warehouse models run --select geometry_dynamics --select",
        "  events_candidates --full-refresh` on the same lake (the same reads, the same two tables",
        "  written into the lake). Both are whole processes; the pandas process has no memory limit.",
        "  Its output is checked against the models' (`bench/agreement.py`, below each size; a",
        "  relative difference of 1 is a value that is exactly 0 on one side: pandas' rolling std",
        "  leaves residues of its running sums where the models give 0).",
        "- **DuckDB peak RSS**: the largest over the floors and the warehouse's commands, against",
        "  DuckDB's memory limit plus 1 GB (10^9 bytes). **spill**: the largest size of DuckDB's",
        "  spill directory seen while the command ran (sampled every 0.25 s).",
    ]


def _size_section(e: dict) -> list[str]:
    copy = e["measurements"].get("copy floor", {}).get("median_seconds")
    load = ", ".join(f"{x:.1f}" for x in e["load_average"])
    lines = [
        f"## {e['rows']:,} geometry_state rows, memory limit {e['memory_limit'] or 'none'}"
        f" ({e['training_runs']:,} training runs, {e['probe_runs']:,} probe runs)",
        "",
        f"Machine: {machine.one_line(e['machine'])}.",
        f"DuckDB memory limit {e['memory_limit'] if _limited(e) else 'DuckDB default (80% of RAM)'}, threads {e['threads'] or 'default'},"
        f" spill to {e['spill']}. {e['rounds']} round{'s' if e['rounds'] > 1 else ''}"
        f" (1-minute load average at the start of each: {load}); finished {e['finished_at']}.",
        "",
        "| measurement | seconds (median) | each round (s) | x copy floor | CPU (s, median) | peak RSS (MiB) | spill (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in LINES:
        m = e["measurements"].get(name)
        if m is None:
            continue
        cpu = sorted(m["cpu_seconds"])[len(m["cpu_seconds"]) // 2]
        rounds = ", ".join(f"{s:.2f}" for s in m["seconds"])
        lines.append(f"| {name} | {m['median_seconds']:.2f} | {rounds} | {_per(m['median_seconds'], copy)}"
                     f" | {cpu:.2f} | {m['max_peak_rss_mib']:.0f} | {_fmt(m.get('max_spill_mib'), 0)} |")
        for part, p in e["parts"].get(name, {}).items():
            lines.append(f"| &nbsp;&nbsp;{part} | {p['median_seconds']:.2f} |"
                         f" {', '.join(f'{s:.2f}' for s in p['seconds'])} | {_per(p['median_seconds'], copy)} | | | |")
    return lines + _checks(e)


def _per(seconds: float, copy: float | None) -> str:
    return _fmt(seconds / copy if copy else None)


def _checks(e: dict) -> list[str]:
    lines = []
    if e.get("failure"):
        f = e["failure"]
        lines += ["", f"**{f['measurement']} failed** (the size stopped there): `{f['error']}`"]
        if f.get("completed"):
            lines[-1] += " Completed before it: " + ", ".join(f"{p} {s:.2f} s" for p, s in f["completed"].items()) + "."
    card = e.get("scorecard")
    if card:
        lines += ["", f"Planted against detected change points (first round, tolerance 2 captures): {card['planted']:,}"
                      f" planted, {card['detected']:,} detected, precision {_fmt(card['precision'], 3)},"
                      f" recall {_fmt(card['recall'], 3)}; the best trajectory match of"
                      f" {card['best_match_in_cohort']:,} of {card['training_runs_matched']:,} training runs is in"
                      " its own cohort."]
    for t in e.get("agreement", []):
        verdict = "agree" if t["agrees"] else "**disagree**"
        lines += ["", f"pandas against the models, {t['table']}: {t['compared']:,} rows on both sides,"
                      f" {t['only_pandas']:,} only in pandas, {t['only_models']:,} only in the models;"
                      f" largest difference {t['max_abs']:.3g} (relative {t['max_rel']:.3g}),"
                      f" {sum(c['beyond_tolerance'] for c in t['columns'])} values beyond tolerance,"
                      f" {sum(c['null_mismatches'] for c in t['columns'])} NULL mismatches: {verdict}."]
    return lines


def plot(sizes: list[dict], path: Path) -> None:
    """Median seconds against rows, one line per measurement, log-log; a panel per memory limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limits = sorted({e["memory_limit"] or "" for e in sizes})
    fig, axes = plt.subplots(1, len(limits), figsize=(8 * len(limits), 5.5), squeeze=False, sharey=True)
    for ax, limit in zip(axes[0], limits):
        entries = [e for e in sizes if (e["memory_limit"] or "") == limit]
        for name in LINES:
            points = [(e["rows"], e["measurements"][name]["median_seconds"]) for e in entries if name in e["measurements"]]
            if points:
                style = "--" if "floor" in name else ":" if "pandas" in name else "-"
                ax.plot(*zip(*points), style, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("geometry_state rows")
        ax.set_title(f"DuckDB memory limit: {limit or 'none'}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    axes[0][0].set_ylabel("seconds (median)")
    fig.suptitle("Squiggle warehouse: model build against floors and pandas")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
