"""Pictures of the catalog for notebooks: each function returns a plotly figure.

Every function reads the catalog through ``con`` (default: ``warehouse.connect()``, the
catalog ``$SQUIGGLE_DB`` or ``./warehouse.duckdb`` names, read-only) and shows the current
analyses, as the catalog's views do. Jupyter and marimo display the figure inline;
``fig.write_html(path)`` saves it, ``fig.data`` holds the points drawn.

>>> from warehouse import plots
>>> plots.trajectory("c1-s0", "resid_post.eff_rank", layers=[2, 3])   # doctest: +SKIP

Needs the ``plots`` extra: ``pip install 'squiggle-warehouse[plots]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb

from ..errors import WarehouseError

if TYPE_CHECKING:
    import plotly.graph_objects as go

# Points per drawn series at most: a longer series keeps each slice's extremes.
MAX_POINTS = 2000


def _plotting():
    try:
        from . import figures
    except ImportError as exc:  # plotly missing: say how to get it
        raise WarehouseError(
            f"warehouse.plots needs plotly ({exc}): pip install 'squiggle-warehouse[plots]'"
        ) from None
    return figures


def _connection(con: duckdb.DuckDBPyConnection | None) -> duckdb.DuckDBPyConnection:
    if con is not None:
        return con
    from ..catalog import connect

    return connect()


def trajectory(
    run_id: str, metric: str, layers: list[int] | None = None, *, con: duckdb.DuckDBPyConnection | None = None
) -> go.Figure:
    """One run's ``<module>.<descriptor>`` per layer (a panel each), its change points marked.

    >>> plots.trajectory("c1-s0", "resid_post.eff_rank", layers=[2, 3])   # doctest: +SKIP
    """
    from . import data

    figures, con = _plotting(), _connection(con)
    data.require_run(con, run_id)
    series = data.series(con, [run_id], metric, layers, data.chosen_sample_set(con), MAX_POINTS)
    if series["step"].size == 0:
        data.require_module(con, metric)
        raise WarehouseError(f"run {run_id!r} has no {metric} values" + (f" in layers {layers}" if layers else ""))
    cands = data.candidates(con, [run_id], metric)
    return figures.squiggles(series, cands, metric, f"{run_id}: {metric}")


def cohort(config_hash: str, metric: str, *, con: duckdb.DuckDBPyConnection | None = None) -> go.Figure:
    """A cohort's seeds overlaid per layer, their change points and the consensus events shaded.

    >>> plots.cohort(con.execute("SELECT min(config_hash) FROM runs").fetchone()[0], "resid_post.sv_entropy")   # doctest: +SKIP
    """
    from . import data

    figures, con = _plotting(), _connection(con)
    found = data.require_cohort(con, config_hash)
    series = data.series(con, found.run_ids, metric, None, data.chosen_sample_set(con), MAX_POINTS)
    if series["step"].size == 0:
        data.require_module(con, metric)
        raise WarehouseError(f"cohort {config_hash!r} has no {metric} values")
    cands = data.candidates(con, found.run_ids, metric)
    labels = {r: f"{r} (seed {s})" for r, s in zip(found.run_ids, found.seeds)}
    title = f"cohort {config_hash[:12]}: {metric}"
    return figures.squiggles(series, cands, metric, title, data.consensus(con, config_hash, metric), labels)


def events(run_id: str, *, con: duckdb.DuckDBPyConnection | None = None) -> go.Figure:
    """A layer x step heat map of the run's change points (every metric).

    >>> plots.events("c1-s0")   # doctest: +SKIP
    """
    from . import data

    figures, con = _plotting(), _connection(con)
    data.require_run(con, run_id)
    where = data.shape(con, [run_id])
    return figures.timeline(data.candidates(con, [run_id]), where.layers, where.span,
                            f"{run_id}: change points per layer and step")


def family_ranking(*, con: duckdb.DuckDBPyConnection | None = None) -> go.Figure:
    """Probe families ranked by mean DIS, each seed's DIS beside its family's bar.

    >>> plots.family_ranking()   # doctest: +SKIP
    """
    from . import data

    figures, con = _plotting(), _connection(con)
    rows = data.family_ranking(con)
    if not rows:
        raise WarehouseError("family_ranking is empty: build probe_summaries (warehouse models run) on a lake with probe runs")
    return figures.ranking(rows, "Probe families by DIS")


def match(match_id: str, *, con: duckdb.DuckDBPyConnection | None = None) -> go.Figure:
    """Both signatures of a match on the normalised time it compared them on.

    >>> plots.match(con.execute("SELECT match_id FROM best_matches WHERE rank_a = 1").fetchone()[0])   # doctest: +SKIP
    """
    from . import data

    figures, con = _plotting(), _connection(con)
    fig, _ = figures.match_panels(data.match(con, match_id))
    return fig


__all__ = ["cohort", "events", "family_ranking", "match", "trajectory"]
