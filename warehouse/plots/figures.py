"""Plotly figures from the rows of :mod:`warehouse.plots.data`.

Plotly draws in the browser from a JSON description: one figure is interactive (zoom,
hover) in a notebook and in a self-contained HTML file alike, and the library holds no
state between figures.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .data import Match

# A small template of our own: plotly's stock ones add ~8 KB of JSON to every figure.
TEMPLATE = go.layout.Template(
    layout=go.Layout(
        font=dict(family="system-ui, sans-serif", size=12),
        paper_bgcolor="white",
        plot_bgcolor="white",
        colorway=qualitative.D3,
        xaxis=dict(showgrid=True, gridcolor="#eee", zeroline=False, linecolor="#999", ticks="outside", automargin=True),
        yaxis=dict(showgrid=True, gridcolor="#eee", zeroline=False, linecolor="#999", ticks="outside", automargin=True),
        hovermode="closest",
        margin=dict(l=60, r=20, t=60, b=40),
    )
)
COLORS = qualitative.D3
CONSENSUS_FILL = "rgba(255, 165, 0, 0.18)"
PANEL_HEIGHT = 220
GRID_COLUMNS = 3


def _grid(n: int) -> tuple[int, int]:
    cols = min(GRID_COLUMNS, max(n, 1))
    return math.ceil(max(n, 1) / cols), cols


def _marker_size(scores: np.ndarray) -> np.ndarray:
    return 6 + 3 * np.sqrt(np.clip(np.nan_to_num(scores.astype(float)), 0, 25))


def squiggles(
    series: dict[str, np.ndarray],
    candidates: dict[str, np.ndarray],
    metric: str,
    title: str,
    consensus: dict[str, np.ndarray] | None = None,
    run_labels: dict[str, str] | None = None,
) -> go.Figure:
    """One panel per layer: each run's trajectory, its change points, the consensus events.

    Change points are drawn on their run's line (their size grows with the score);
    a consensus event is a shaded band from its first to its last step, with a mark at
    the median step.
    """
    labels = run_labels or {}
    layers = sorted(set(series["layer"].tolist()))
    runs = list(dict.fromkeys(series["run_id"].tolist()))
    rows, cols = _grid(len(layers))
    fig = make_subplots(
        rows=rows, cols=cols, shared_xaxes=True, subplot_titles=[f"layer {x}" for x in layers],
        horizontal_spacing=0.06, vertical_spacing=min(0.12, 0.3 / rows),
    )
    for i, layer in enumerate(layers):
        row, col = divmod(i, cols)
        for j, run in enumerate(runs):
            color = COLORS[j % len(COLORS)]
            on = (series["run_id"] == run) & (series["layer"] == layer)
            steps, values = series["step"][on], series["value"][on]
            if steps.size == 0:
                continue
            name = labels.get(run, run)
            fig.add_trace(
                go.Scatter(
                    x=steps, y=values, mode="lines", name=name, legendgroup=run, showlegend=i == 0,
                    line=dict(color=color, width=1.5),
                    hovertemplate=f"{name}<br>step %{{x}}<br>{metric} %{{y:.4g}}<extra>layer {layer}</extra>",
                ),
                row=row + 1, col=col + 1,
            )
            hit = (candidates["run_id"] == run) & (candidates["layer"] == layer)
            if hit.any():
                cp_steps = candidates["step"][hit]
                fig.add_trace(
                    go.Scatter(
                        x=cp_steps, y=np.interp(cp_steps, steps, values), mode="markers",
                        name=f"{name} change points", legendgroup=run, showlegend=False,
                        marker=dict(color=color, symbol="diamond", size=_marker_size(candidates["score"][hit]),
                                    line=dict(color="black", width=1)),
                        customdata=np.stack([candidates["score"][hit], candidates["metric_z"][hit],
                                             candidates["start_step"][hit], candidates["end_step"][hit]], axis=-1),
                        hovertemplate=(f"{name}: change point at step %{{x}}<br>score %{{customdata[0]:.3g}}, "
                                       "z %{customdata[1]:.3g}<br>window %{customdata[2]}–%{customdata[3]}"
                                       f"<extra>layer {layer}</extra>"),
                    ),
                    row=row + 1, col=col + 1,
                )
        if consensus is not None:
            _consensus_bands(fig, consensus, layer, series, row + 1, col + 1)
    fig.update_layout(template=TEMPLATE, title=title, height=PANEL_HEIGHT * rows + 100)
    fig.update_xaxes(title_text="step", row=rows)
    return fig


def _consensus_bands(fig: go.Figure, consensus: dict[str, np.ndarray], layer: int,
                     series: dict[str, np.ndarray], row: int, col: int) -> None:
    here = consensus["layer"] == layer
    if not here.any():
        return
    values = series["value"][series["layer"] == layer]
    bottom, top = float(np.nanmin(values)), float(np.nanmax(values))
    # one filled trace of rectangles per panel: plotly re-checks every shape on each add_vrect
    x, y = [], []
    for lo, hi in zip(consensus["step_min"][here], consensus["step_max"][here]):
        lo, hi = int(lo), int(max(hi, lo + 1))
        x += [lo, lo, hi, hi, lo, None]
        y += [bottom, top, top, bottom, bottom, None]
    fig.add_trace(
        go.Scatter(x=x, y=y, mode="lines", fill="toself", fillcolor=CONSENSUS_FILL, line=dict(width=0),
                   name="consensus span", legendgroup="consensus", showlegend=False, hoverinfo="skip"),
        row=row, col=col,
    )
    fig.add_trace(
        go.Scatter(
            x=consensus["step_median"][here], y=np.full(int(here.sum()), top), mode="markers",
            name="consensus event", legendgroup="consensus", showlegend=False,
            marker=dict(symbol="triangle-down", size=11, color="darkorange", line=dict(color="black", width=1)),
            customdata=np.stack([consensus["step_min"][here], consensus["step_max"][here],
                                 consensus["n_runs_supporting"][here], consensus["n_runs_total"][here],
                                 consensus["strength"][here]], axis=-1),
            hovertemplate=("consensus event, median step %{x}<br>steps %{customdata[0]}–%{customdata[1]}"
                           "<br>support %{customdata[2]}/%{customdata[3]}, strength %{customdata[4]:.3g}"
                           f"<extra>layer {layer}</extra>"),
        ),
        row=row, col=col,
    )


def timeline(
    candidates: dict[str, np.ndarray],
    layers: dict[str, list[int]],
    span: tuple[int, int],
    title: str,
    bins: int = 100,
) -> go.Figure:
    """A layer x step heat map of change points per run (one row of panels per run).

    Steps are cut into at most ``bins`` equal slices of the runs' common span; a cell
    counts the run's single-metric candidates of that layer whose peak falls in the slice.
    """
    runs = list(layers)
    first, last = span
    n_bins = max(1, min(bins, last - first + 1))
    edges = np.linspace(first, last + 1, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = make_subplots(rows=len(runs), cols=1, shared_xaxes=True, subplot_titles=runs,
                        vertical_spacing=min(0.08, 0.3 / max(len(runs), 1)))
    zmax = 1
    for i, run in enumerate(runs):
        run_layers = layers[run]
        z = np.zeros((len(run_layers), n_bins))
        hit = candidates["run_id"] == run
        for layer, step in zip(candidates["layer"][hit], candidates["step"][hit]):
            if layer in run_layers:
                k = min(int(np.searchsorted(edges, step, side="right")) - 1, n_bins - 1)
                z[run_layers.index(layer), max(k, 0)] += 1
        zmax = max(zmax, int(z.max()))
        fig.add_trace(
            go.Heatmap(
                x=centres, y=[str(x) for x in run_layers], z=z, coloraxis="coloraxis",
                hovertemplate=f"{run}<br>layer %{{y}}<br>steps around %{{x:.0f}}"
                              "<br>%{z} change point(s)<extra></extra>",
            ),
            row=i + 1, col=1,
        )
        fig.update_yaxes(title_text="layer", dtick=1, row=i + 1, col=1)
    width = (last + 1 - first) / n_bins
    fig.update_layout(template=TEMPLATE, title=f"{title} (cells of {width:.4g} steps)",
                      height=max(260, 160 * len(runs) + 100),
                      coloraxis=dict(colorscale="Blues", cmin=0, cmax=zmax, colorbar=dict(title="change points", dtick=1 if zmax <= 10 else None)))
    fig.update_xaxes(title_text="step", row=len(runs), col=1)
    return fig


def ranking(rows: list[dict], title: str) -> go.Figure:
    """Probe families by mean DIS (bars, best on top), each seed's DIS as a point on its bar."""
    probes = list(dict.fromkeys(r["probe_name"] for r in rows))
    fig = make_subplots(rows=1, cols=max(len(probes), 1), subplot_titles=probes, horizontal_spacing=0.12)
    for i, probe in enumerate(probes):
        mine = sorted((r for r in rows if r["probe_name"] == probe), key=lambda r: r["family_rank"], reverse=True)
        families = [r["family_id"] for r in mine]
        fig.add_trace(
            go.Bar(x=[r["mean_dis"] for r in mine], y=families, orientation="h", name="mean DIS",
                   showlegend=i == 0, marker_color="#9ecae1",
                   customdata=[[r["family_rank"], r["n_seeds"]] for r in mine],
                   hovertemplate="%{y}: mean DIS %{x:.4g}<br>rank %{customdata[0]}, %{customdata[1]} seed(s)<extra></extra>"),
            row=1, col=i + 1,
        )
        seed_x = [v for r in mine for v in (r["seed_dis"] or [])]
        seed_y = [r["family_id"] for r in mine for _ in (r["seed_dis"] or [])]
        seed_text = [f"seed {s}" for r in mine for s in (r["seeds"] or [])]
        fig.add_trace(
            go.Scatter(x=seed_x, y=seed_y, mode="markers", name="one seed's DIS", showlegend=i == 0,
                       marker=dict(color="#08519c", size=8, symbol="circle-open", line=dict(width=2)),
                       text=seed_text, hovertemplate="%{y}, %{text}: DIS %{x:.4g}<extra></extra>"),
            row=1, col=i + 1,
        )
        fig.update_xaxes(title_text="DIS", row=1, col=i + 1)
    n = max((sum(1 for r in rows if r["probe_name"] == p) for p in probes), default=1)
    fig.update_layout(template=TEMPLATE, title=title, height=max(260, 40 * n + 140), barmode="overlay")
    return fig


def match_panels(match: Match, max_series: int = 6) -> tuple[go.Figure, int]:
    """Both signatures on the shared normalised time axis the match compared them on.

    Shows the ``max_series`` series that add most to the two vectors' dot product (the
    ones that make the match), each a panel with run a and run b overlaid and their events
    marked. Returns the figure and the number of series the signatures hold.
    """
    a, b = match.a, match.b
    bins = a.values.shape[1]
    contribution = (a.values * b.values).sum(axis=1)
    shown = np.argsort(-contribution, kind="stable")[:max_series]
    x = (np.arange(bins) + 0.5) / bins if match.kind == "trajectory" else np.arange(bins)
    rows, cols = _grid(len(shown))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[a.series[k] for k in shown],
                        horizontal_spacing=0.06, vertical_spacing=min(0.15, 0.3 / rows))
    for i, k in enumerate(shown):
        row, col = divmod(i, cols)
        for side, color, dash in ((a, COLORS[0], "solid"), (b, COLORS[1], "dash")):
            fig.add_trace(
                go.Scatter(x=x, y=side.values[k], mode="lines+markers", name=side.run_id, legendgroup=side.run_id,
                           showlegend=i == 0, line=dict(color=color, dash=dash), marker=dict(size=4),
                           hovertemplate=f"{side.run_id}<br>%{{x:.3g}}: %{{y:.3g}}<extra>{a.series[k]}</extra>"),
                row=row + 1, col=col + 1,
            )
            events = _series_events(side, a.series[k]) if match.kind == "trajectory" else []
            if events:
                low, high = float(np.min(side.values[k])), float(np.max(side.values[k]))
                fig.add_trace(
                    go.Scatter(x=[v for t in events for v in (t, t, None)],
                               y=[v for _ in events for v in (low, high, None)], mode="lines",
                               name=f"{side.run_id} events", legendgroup=side.run_id, showlegend=False,
                               line=dict(color=color, dash=dash, width=1), hoverinfo="skip"),
                    row=row + 1, col=col + 1,
                )
    fig.update_xaxes(title_text="normalised time" if match.kind == "trajectory" else "layer index", row=rows)
    fig.update_layout(template=TEMPLATE, height=PANEL_HEIGHT * rows + 150, title=_match_title(match),
                      margin=dict(t=120))  # room for the title's second line above the panels' titles
    return fig, len(a.series)


def _series_events(side, series_name: str) -> list[float]:
    """Event times of one signature series (``layer:module.descriptor``), its layer's composite ones included."""
    layer, _, metric = series_name.partition(":")
    return [t for t, lay, m in zip(side.event_t, side.event_layers, side.event_metrics)
            if t is not None and str(lay) == layer and m in (metric, "__composite__")]


def _fmt(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _match_title(m: Match) -> str:
    return (f"{m.a.run_id} → {m.b.run_id} (rank {m.rank_a}): score {_fmt(m.score)}"
            f"<br><sup>shape: cosine {_fmt(m.vector_cosine)} · events: F1 {_fmt(m.event_f1)}"
            f" (precision {_fmt(m.event_precision)}, recall {_fmt(m.event_recall)})</sup>")
