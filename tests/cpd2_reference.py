"""An independent numpy reading of events_candidates cpd@2 (the model header's definition).

The model computes every window sum as a difference of running sums over the capture index;
this reference builds each contrast's weights explicitly (the step or kink regressor less its
least-squares projection on the nuisance polynomials) and convolves them with the series, and
takes the window diagnostics from explicit slices. Series are read as the model reads them
(``test_events_candidates_cpd1.analysed_series``: same sample-set choice, NaN for NULL).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from test_events_candidates_cpd1 import DIAGNOSTICS, analysed_series, list_median, structure_modifier
from warehouse.contracts import DESCRIPTORS

LOG_ABS_NORMAL_MEAN = 0.6351814227307392  # -E ln|N(0, 1)| = (Euler's gamma + ln 2) / 2
LOG_ABS_NORMAL_SD = math.pi / math.sqrt(8)
KINDS = ("level", "slope", "variance")


@dataclass(frozen=True)
class Params:
    min_scale: int = 4
    max_scale: int = 256
    alpha: float = 0.01
    trend_scale: int = 64
    clip: float = 3.0
    noise_window: int = 64
    tolerance: int = 2

    def scales(self) -> list[int]:
        out, g = [], self.min_scale
        while g <= self.max_scale:
            out.append(g)
            g *= 2
        return out


def contrast_weights(g: int, kind: str, trend_blind: bool) -> np.ndarray:
    """Weights over the 2g captures [i - g, i + g): the regressor (a step at i, or a kink
    there) less its projection on a constant (and a line, for a kink or a trend-blind level)."""
    k = np.arange(2 * g, dtype=np.float64)
    t = k - (g - 0.5)
    regressor = (k >= g).astype(np.float64) if kind == "level" else np.maximum(t, 0.0)
    basis = [np.ones(2 * g)] + ([t] if kind == "slope" or trend_blind else [])
    w = regressor.copy()
    for b in basis:  # the basis vectors are orthogonal on this symmetric grid
        w -= (regressor @ b) / (b @ b) * b
    return w


def threshold(n: float, g: int, alpha: float) -> float:
    x = n / g
    a = math.sqrt(2 * math.log(x))
    b = 2 * math.log(x) + 0.5 * math.log(math.log(x)) + math.log(1.5) - 0.5 * math.log(math.pi)
    return (b - math.log(-math.log(math.sqrt(1 - alpha)))) / a


def median3(x: np.ndarray) -> np.ndarray:
    m = x.copy()
    if len(x) >= 3:
        m[1:-1] = np.median(np.stack([x[:-2], x[1:-1], x[2:]]), axis=0)
        m[0], m[-1] = np.median(x[:3]), np.median(x[-3:])  # at either end, the end's three
    return m


def series_z(x: np.ndarray, p: Params) -> dict[tuple[str, int], np.ndarray]:
    """(kind, scale) -> z at every capture index (NaN where the contrast is undefined)."""
    n = len(x)
    m = median3(x)
    spread = 1.4826 * float(np.median(np.abs(x - m)))
    y = m - float(np.median(x)) + np.clip(x - m, -p.clip * spread, p.clip * spread)
    e = x[2:] - 2 * x[1:-1] + x[:-2]  # centred at 1 .. n - 2
    floor = 1e-9 * (float(np.median(np.abs(e))) if len(e) else 0.0) + 1e-300
    u = np.full(n, np.nan)
    u[1:-1] = np.log(np.abs(e) + floor)
    noise_floor = 1e-6 * abs(float(np.median(x))) + 1e-12
    out = {}
    for g in p.scales():
        span = max(g, p.noise_window)
        noise = np.full(n, np.nan)
        for i in range(n):
            part = u[max(i - span, 0):i + span]
            part = part[~np.isnan(part)]
            if len(part):
                noise[i] = max(math.exp(part.mean() + LOG_ABS_NORMAL_MEAN) / math.sqrt(6), noise_floor)
        for kind in KINDS:
            if kind == "variance" and g < 16:
                continue
            z1 = np.full(n, np.nan)
            if n >= 4 * g:
                w = contrast_weights(g, "level" if kind == "variance" else kind, kind == "level" and g >= p.trend_scale)
                if kind == "variance":
                    for i in range(g + 1, n - g):
                        z1[i] = (w @ u[i - g:i + g]) / math.sqrt(w @ w) / LOG_ABS_NORMAL_SD
                else:
                    for i in range(g, n - g + 1):
                        z1[i] = (w @ y[i - g:i + g]) / math.sqrt(w @ w) / noise[i]
            z = np.full(n, np.nan)
            if np.isfinite(z1).any():
                centre = float(np.nanmedian(z1))
                kappa = max(1.0, 1.4826 * float(np.nanmedian(np.abs(z1 - centre))))
                z = (z1 - centre) / kappa
            out[(kind, g)] = z
    return out


def peaks(zs: dict[tuple[str, int], np.ndarray], n_for_threshold: int, p: Params) -> list[dict]:
    """Local maxima over half a scale at or above the threshold, then bottom-up merging."""
    found = []
    for (kind, g), z in zs.items():
        a = np.where(np.isnan(z), -np.inf, np.abs(z))
        if n_for_threshold < 4 * g:
            continue
        thr = threshold(n_for_threshold, g, p.alpha)
        h = g // 2
        for i in np.flatnonzero(a >= thr):
            before, after = a[max(i - h, 0):i], a[i + 1:i + 1 + h]
            if (len(before) == 0 or a[i] > before.max()) and (len(after) == 0 or a[i] >= after.max()):
                found.append({"i": int(i), "scale": g, "kind": kind, "z": float(a[i])})
    order = lambda c: (c["scale"], -c["z"], KINDS.index(c["kind"]), c["i"])  # noqa: E731
    return [c for c in found
            if not any(o is not c and abs(o["i"] - c["i"]) < c["scale"] and order(o) < order(c) for o in found)]


def window_diagnostics(x: np.ndarray, i: int, g: int) -> dict[str, float] | None:
    """The diagnostics of the windows [i - g, i) and [i, i + g) of x; None unless both whole."""
    if i - g < 0 or i + g > len(x):
        return None
    before, after = x[i - g:i], x[i:i + g]
    bm = float(np.median(before))
    vb, ve = float(np.std(np.diff(before))), float(np.std(np.diff(after)))
    return {"baseline_median": bm, "baseline_mad": float(np.median(np.abs(before - bm))),
            "metric_size": float(np.median(after)) - bm, "volatility_baseline": vb,
            "volatility_event": ve, "volatility_ratio": ve / max(vb, 1e-12)}


@dataclass
class Series:
    steps: np.ndarray
    x: np.ndarray
    z: dict = field(default_factory=dict)


def reference(rows: list[dict], p: Params = Params(), sample_set: str = "") -> dict[tuple, dict]:
    """cpd@2 over the lake's geometry rows: (run, event_type, layer, metric, step) -> columns."""
    out = {}
    for run, by_series in analysed_series(rows, sample_set).items():
        series: dict[tuple[int, str], Series] = {}
        layer_metrics: dict[int, list[str]] = {}
        for (layer, module), (steps, values) in by_series.items():
            for k, d in enumerate(DESCRIPTORS):
                metric = f"{module}.{d}"
                layer_metrics.setdefault(layer, []).append(metric)
                keep = ~np.isnan(values[:, k])
                if keep.any():
                    s = Series(steps[keep], values[keep, k])
                    s.z = series_z(s.x, p)
                    series[(layer, metric)] = s
        events = metric_events(run, series, p) + composite_events(run, series, layer_metrics, p)
        score(events, series, p)
        for ev in events:
            out[(run, ev["event_type"], ev["layer"], ev["metric"], ev["step"])] = ev
    return out


def metric_events(run: str, series: dict, p: Params) -> list[dict]:
    events = []
    for (layer, metric), s in series.items():
        for c in peaks(s.z, len(s.x), p):
            i, g = c["i"], c["scale"]
            ratios = [d["volatility_ratio"] for (la, me), o in series.items()
                      if me == metric and (d := window_diagnostics(o.x, i, g)) is not None]
            ev = {"run_id": run, "event_type": "change_point", "layer": layer, "metric": metric, "i": i,
                  "scale": g, "step": int(s.steps[i]), "start_step": int(s.steps[i - g]),
                  "end_step": int(s.steps[i + g - 1]), "magnitude": c["z"], "metric_z": c["z"],
                  "volatility_ratio_agg": list_median(ratios), "json": None}
            ev.update(window_diagnostics(s.x, i, g))
            ev["ratio"] = ev["volatility_ratio"]
            events.append(ev)
    return events


def composite_events(run: str, series: dict, layer_metrics: dict[int, list[str]], p: Params) -> list[dict]:
    events = []
    for layer, metrics in layer_metrics.items():
        own = {m: series[(layer, m)] for m in metrics if (layer, m) in series}
        if not own:
            continue
        steps = np.array(sorted({int(st) for s in own.values() for st in s.steps}))
        zs = {}
        for key in next(iter(own.values())).z:
            stack = np.full((len(steps), len(own)), np.nan)
            for col, s in enumerate(own.values()):
                stack[np.searchsorted(steps, s.steps), col] = s.z[key]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a step without any z
                zs[key] = np.sqrt(np.nanmean(stack**2, axis=1))
        n = max(len(s.x) for s in own.values())
        for c in peaks(zs, n, p):
            jj, g, step = c["i"], c["scale"], int(steps[c["i"]])
            per_metric = {}
            for metric in sorted(set(metrics)):
                s = own.get(metric)
                at = np.flatnonzero(s.steps == step) if s is not None else []
                d = window_diagnostics(s.x, int(at[0]), g) if len(at) else None
                z = abs(float(s.z[(c["kind"], g)][at[0]])) if len(at) else math.nan
                per_metric[metric] = (d or {}) | {"metric_z": z}
            ratios = [v["volatility_ratio"] for v in per_metric.values() if "volatility_ratio" in v]
            events.append({"run_id": run, "event_type": "change_point_composite", "layer": layer,
                           "metric": "__composite__", "i": jj, "scale": g, "step": step,
                           "start_step": int(steps[jj - g]), "end_step": int(steps[jj + g - 1]),
                           "magnitude": c["z"], "ratio": list_median(ratios), "volatility_ratio_agg": math.nan,
                           **{col: math.nan for col in DIAGNOSTICS},
                           "json": {col: {m: v.get(col, math.nan) for m, v in per_metric.items()} for col in DIAGNOSTICS}})
    return events


def score(events: list[dict], series: dict, p: Params) -> None:
    """Coherence across the run's layers, novelty within the series, and the score."""
    layers_with: dict[str, set[int]] = {}
    for layer, metric in series:
        layers_with.setdefault(metric, set()).add(layer)
        layers_with.setdefault("__composite__", set()).add(layer)
    for ev in events:
        others = layers_with[ev["metric"]] - {ev["layer"]}
        reach = max(p.tolerance, ev["scale"] // 4)
        near = {o["layer"] for o in events
                if o["metric"] == ev["metric"] and o["layer"] != ev["layer"] and abs(o["i"] - ev["i"]) <= reach}
        ev["coherence"] = len(near) / len(others) if others else 1.0
        earlier = sum(1 for o in events if (o["layer"], o["metric"]) == (ev["layer"], ev["metric"]) and o["step"] < ev["step"])
        ev["novelty"] = 1 / (1 + earlier)
        ev["structure_modifier"] = structure_modifier(ev["ratio"])
        ev["magnitude_eff"] = ev["magnitude"] * ev["structure_modifier"]
        ev["score"] = ev["magnitude_eff"] * ev["coherence"] * ev["novelty"]
