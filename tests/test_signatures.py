"""signatures (sig@1) against an independent numpy reading of design.md.

events_candidates and probe_summaries are other models' targets: the tests write their rows
by hand and run the signatures model alone from a copy of ``sql/`` holding only it (and the
macros), so those rows are read as producer data.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from model_fixtures import only_models_sql
from warehouse import models, writer
from warehouse.contracts import DESCRIPTORS, GEOMETRY_STATE
from warehouse.demo import write_demo
from warehouse.lake import init_lake

CAPTURE = "capture-v1"
CPD = "cpd-hand"
DIS = "dis-hand"
DIS_FEATURES = ("A_eff_rank_delta", "A_sv_entropy_delta", "A_sparsity_delta",
                "A_principal_angle_post_vs_pre", "B_drift_velocity_by_layer", "B_volatility_by_layer")
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


# -- the reference ------------------------------------------------------------------------


def stored(x: float | None) -> float | None:
    """A descriptor as the model reads it: float32, with NaN and infinity as NULL."""
    return None if x is None or not math.isfinite(x) else float(np.float32(x))


def normalised_t(step: int, first: int, last: int) -> float:
    return 0.0 if last == first else (step - first) / (last - first)


def series_vector(steps: list[int], values: list[float | None], k: int) -> list[float]:
    """design.md sig@1 for one series: K bin means over t, empty bins filled, z-normalised."""
    first, last = min(steps), max(steps)
    in_bin: list[list[float]] = [[] for _ in range(k)]
    for step, value in zip(steps, values):
        b = min(math.floor(normalised_t(step, first, last) * k), k - 1)
        if value is not None:
            in_bin[b].append(value)
    means = [float(np.mean(v)) if v else None for v in in_bin]
    present = [m for m in means if m is not None]
    if not present:  # a series without any value: zeros (the model's documented reading)
        return [0.0] * k
    filled, previous = [], present[0]  # a leading empty bin takes the first non-empty bin's
    for m in means:
        previous = m if m is not None else previous
        filled.append(previous)
    x = np.array(filled)
    std = x.std()  # population std, ddof 0
    return [0.0] * k if std < 1e-12 else list((x - x.mean()) / std)


def analysed(geometry: list[dict], sample_set: str) -> dict[tuple, list[dict]]:
    """Pooled rows of each run's analysed sample set, per (run, layer, module) series."""
    chosen: dict[str, str] = {}
    for r in geometry:
        if r["sample_id"] is None and (not sample_set or r["sample_set"] == sample_set):
            chosen[r["run_id"]] = min(chosen.get(r["run_id"], r["sample_set"]), r["sample_set"])
    series: dict[tuple, list[dict]] = {}
    for r in geometry:
        if r["sample_id"] is None and chosen.get(r["run_id"]) == r["sample_set"]:
            series.setdefault((r["run_id"], r["layer"], r["module"]), []).append(r)
    return series


def event_lists(events: list[dict], spans: dict[tuple, tuple[int, int]]) -> dict[str, list]:
    """The events with their t, ordered by (stored t, layer, metric, step), NULL t last."""
    rows = []
    for e in events:
        module = None if e["metric"] == "__composite__" else e["metric"].split(".")[0]
        span = spans.get((e["run_id"], e["layer"], module))
        t = None if span is None else float(np.float32(normalised_t(e["step"], *span)))
        rows.append((t is None, t or 0.0, e["layer"], e["metric"], e["step"], e["score"]))
    rows.sort()
    return {
        "event_t": [None if r[0] else r[1] for r in rows],
        "event_steps": [r[4] for r in rows],
        "event_layers": [r[2] for r in rows],
        "event_metrics": [r[3] for r in rows],
        "event_scores": [float(np.float32(r[5])) for r in rows],
    }


def reference(
    geometry: list[dict], events: list[dict], runs: list[dict], probes: list[dict], k: int = 16, sample_set: str = ""
) -> dict[tuple, dict]:
    """Every signature design.md asks for, keyed by (run_id, kind, scope, layer, probe_name)."""
    series = analysed(geometry, sample_set)
    run_row = {r["run_id"]: r for r in runs}
    blocks: dict[tuple, list[tuple]] = {}  # (run, layer) -> (module, descriptor, values)
    spans: dict[tuple, tuple[int, int]] = {}  # (run, layer, module or None for the layer)
    for (run, layer, module), rows in series.items():
        steps = [r["step"] for r in rows]
        spans[(run, layer, module)] = (min(steps), max(steps))
        lo, hi = spans.get((run, layer, None), (min(steps), max(steps)))
        spans[(run, layer, None)] = (min(lo, min(steps)), max(hi, max(steps)))
        for d in sorted(DESCRIPTORS):
            values = series_vector(steps, [stored(r[d]) for r in rows], k)
            blocks.setdefault((run, layer), []).append((module, d, values))
    seeds = {r["run_id"]: r["seed"] for r in geometry}

    def meta(run: str) -> dict:
        r = run_row.get(run, {})
        return {"family_id": r.get("family_id"), "seed": r.get("seed", seeds.get(run)), "probe_name": r.get("probe_name")}

    def trajectory(run: str, layers: list[int], scope: str) -> dict:
        vector, names = [], []
        for layer in layers:
            for module, d, values in sorted(blocks[(run, layer)]):
                vector += values
                names.append(f"{layer}:{module}.{d}")
        chosen = [e for e in events if e["run_id"] == run and (scope == "run" or e["layer"] == layers[0])]
        return meta(run) | {
            "vector": vector, "vector_layout": f"trajectory:K={k};series=" + ",".join(names),
            "norm": float(np.linalg.norm(vector)),
        } | event_lists(chosen, spans)

    out: dict[tuple, dict] = {}
    for run in sorted({run for run, _ in blocks}):
        layers = sorted(layer for r, layer in blocks if r == run)
        sig = trajectory(run, layers, "run")
        out[(run, "trajectory", "run", None, sig["probe_name"])] = sig
        for layer in layers:
            sig = trajectory(run, [layer], "layer")
            out[(run, "trajectory", "layer", layer, sig["probe_name"])] = sig
    for p in probes:
        if p.get("signature_vector") is None:
            continue
        vector = [float(np.float32(v)) for v in p["signature_vector"]]
        norm = p.get("signature_norm")
        layers = ",".join(str(x) for x in p.get("layers_covered") or [])
        out[(p["run_id"], "probe", "run", None, p["probe_name"])] = {
            "family_id": p["family_id"], "seed": p["seed"], "probe_name": p["probe_name"],
            "vector": vector, "vector_layout": f"probe:layers={layers};features=" + ",".join(DIS_FEATURES),
            "norm": float(np.linalg.norm(vector)) if norm is None else norm,
        } | event_lists([e for e in events if e["run_id"] == p["run_id"]], spans)
    return out


# -- lakes, runs and reading --------------------------------------------------------------


def signatures_sql(tmp_path: Path) -> Path:
    """A copy of ``sql/`` with the signatures model alone: other targets are producer data."""
    return only_models_sql(tmp_path / "sql", "signatures")


def build(lake: Path, sql: Path, **params) -> str:
    [result] = models.run(lake=lake, sql_dir=sql, params={"signatures": params} if params else None,
                          report=lambda _: None)
    return result.plan.analysis_id


def built(lake: Path, analysis: str) -> dict[tuple, dict]:
    folder = lake / "signatures" / f"analysis_id={analysis}"
    # run_id folders are strings, never inferred as numbers
    hive = ds.partitioning(pa.schema([("run_id", pa.string())]), flavor="hive")
    rows = pq.read_table(folder, partitioning=hive).to_pylist()
    out = {(r["run_id"], r["kind"], r["scope"], r["layer"], r["probe_name"]): r for r in rows}
    assert len(out) == len(rows)
    return out


def close(got: list, want: list) -> bool:
    return len(got) == len(want) and all(
        (g is None and w is None) or (g is not None and w is not None and g == pytest.approx(w, rel=2e-5, abs=1e-6))
        for g, w in zip(got, want)
    )


def assert_matches(got: dict[tuple, dict], want: dict[tuple, dict]) -> None:
    assert sorted(got, key=str) == sorted(want, key=str)
    for key, exp_row in want.items():
        row = got[key]
        assert row["signature_version"] == "sig@1"
        for col in ("family_id", "seed", "probe_name", "vector_layout", "event_steps", "event_layers", "event_metrics"):
            assert row[col] == exp_row[col], (key, col)
        for col in ("vector", "event_t", "event_scores"):
            assert close(row[col], exp_row[col]), (key, col, row[col], exp_row[col])
        assert row["norm"] == pytest.approx(exp_row["norm"], rel=2e-5, abs=1e-6), key


def run_row(run: str, seed: int, family: str | None = None, probe: str | None = None) -> dict:
    return {
        "run_id": run, "seed": seed, "run_mode": "probe_micro_finetune" if probe else "train_full",
        "model_id": "tiny", "family_id": family, "probe_name": probe, "probe_config_hash": "h1" if probe else None,
        "config_json": "{}", "config_hash": "cfg", "status": "completed", "started_at_utc": START,
    }


def geometry(run: str, sample_set: str, layer: int, module: str, steps: list[int], seed: int = 0,
             sample_id: str | None = None, **values: list) -> list[dict]:
    """One series; a descriptor not given is 1.0 + 0.1 * capture index."""
    rows = []
    for i, step in enumerate(steps):
        row = {
            "run_id": run, "analysis_id": CAPTURE, "step": step, "seed": seed, "sample_set": sample_set,
            "sample_id": sample_id, "layer": layer, "module": module, "n_samples": 8, "dim": 4,
        }
        for d in DESCRIPTORS:
            row[d] = values[d][i] if d in values else 1.0 + 0.1 * i
        rows.append(row)
    return rows


def event(run: str, layer: int, metric: str, step: int, score: float) -> dict:
    return {
        "run_id": run, "analysis_id": CPD, "event_id": f"{run}-{layer}-{metric}-{step}", "layer": layer,
        "metric": metric, "step": step,
        "event_type": "change_point_composite" if metric == "__composite__" else "change_point", "score": score,
    }


def probe_row(run: str, family: str, seed: int, probe: str, vector: list | None, norm: float | None,
              layers: list[int] | None) -> dict:
    return {
        "run_id": run, "analysis_id": DIS, "family_id": family, "seed": seed, "probe_name": probe,
        "probe_config_hash": "h1", "layers_covered": layers, "signature_version": "sig@1",
        "signature_vector": vector, "signature_norm": norm,
    }


STEPS = [0, 10, 70, 100]  # with K = 4: t = 0, 0.1, 0.7, 1 -> bins 0, 0, 2, 3 (bin 1 empty)


def hand_geometry() -> list[dict]:
    rows = []
    # r1, layer 0, resid_post: one series per hand-checked case
    rows += geometry("r1", "fixed_v1", 0, "resid_post", STEPS, seed=7,
                     eff_rank=[1.0, 3.0, 5.0, 9.0],                # empty bin 1 in the middle
                     sv_entropy=[None, None, 5.0, 9.0],            # leading empty bins 0 and 1
                     sparsity=[0.5, 0.5, 0.5, 0.5],                # flat: zeros
                     principal_angle_prev=[None, 0.1, 0.2, 0.4],   # NULL at the first capture
                     principal_angle_init=[0.0, 0.05, 0.3, 0.3],
                     act_norm=[None, None, None, None])            # no value at all: zeros
    rows += geometry("r1", "fixed_v1", 0, "attn_out", STEPS, seed=7)
    rows += geometry("r1", "fixed_v1", 2, "resid_post", STEPS, seed=7, eff_rank=[4.0, 2.0, 2.0, 8.0])
    # attn_out of layer 2 runs longer: the layer's span (for composite events) is 0..200
    rows += geometry("r1", "fixed_v1", 2, "attn_out", STEPS + [200], seed=7)
    # neither per-sample rows nor another pooled sample set reach the default signature
    rows += geometry("r1", "fixed_v1", 0, "resid_post", [0, 5, 100], seed=7, sample_id="s0", eff_rank=[50.0, -9.0, 3.0])
    rows += geometry("r1", "zz_other", 0, "resid_post", [0, 30, 60], seed=7, eff_rank=[3.0, 1.0, 2.0])
    # r2: single captures (t = 0): every series is flat
    rows += geometry("r2", "fixed_v1", 0, "resid_post", [50], seed=8)
    rows += geometry("r2", "fixed_v1", 0, "attn_out", [50], seed=8)
    # r3: the layers and modules of r1, other steps and values, no runs row, no events
    for layer in (0, 2):
        for module in ("attn_out", "resid_post"):
            rows += geometry("r3", "fixed_v1", layer, module, [3, 5, 8, 13, 21, 34, 55], seed=9,
                             act_norm=[2.0, 1.0, 4.0, 3.0, 6.0, 5.0, 8.0 + layer])
    # p1: a probe run
    rows += geometry("p1", "fixed_v1", 0, "resid_post", [0, 4, 8, 20, 200], seed=1, sparsity=[0.1, 0.2, 0.3, 0.3, 0.9])
    return rows


def hand_events() -> list[dict]:
    return [
        event("r1", 0, "resid_post.eff_rank", 70, 2.5),     # t 0.7
        event("r1", 0, "__composite__", 10, 1.0),           # t 0.1 over the layer
        event("r1", 2, "resid_post.sv_entropy", 70, 0.75),  # t 0.7: after layer 0's at the same t
        event("r1", 2, "__composite__", 100, 3.0),          # t 0.5: the layer spans 0..200
        event("r1", 2, "attn_out.act_norm", 100, 0.5),      # t 0.5: after __composite__ by metric
        event("r1", 2, "resid_post.eff_rank", 100, 1.5),    # t 1.0 over its own series
        event("r1", 5, "resid_post.eff_rank", 40, 0.25),    # no series: t NULL, listed last
        event("r2", 0, "attn_out.eff_rank", 50, 4.0),       # t 0 in a single-capture series
        event("p1", 0, "resid_post.sparsity", 20, 2.0),     # t 0.1
    ]


def hand_runs() -> list[dict]:
    return [run_row("r1", 7), run_row("r2", 8), run_row("p1", 1, "fam-a", "math_probe")]


def hand_probes() -> list[dict]:
    return [
        probe_row("p1", "fam-a", 1, "math_probe", [0.5, -1.0, 0.0, 2.0, 1.5, -0.25], 2.75, [0]),
        # another probe of the same run, without a stored norm: the vector's L2 norm
        probe_row("p1", "fam-a", 1, "other_probe", [3.0, 4.0] + [0.0] * 10, None, [0, 2]),
        # no signature vector: nothing to match, no signature
        probe_row("p2", "fam-b", 0, "math_probe", None, None, [0]),
    ]


def write_hand_lake(lake: Path, geometry_rows: list[dict] | None = None) -> None:
    writer.write("runs", hand_runs(), lake=lake)
    if geometry_rows is None:
        writer.write("geometry_state", hand_geometry(), lake=lake)
    writer.write("events_candidates", hand_events(), lake=lake)
    writer.write("probe_summaries", hand_probes(), lake=lake)


@pytest.fixture
def hand(tmp_path: Path) -> tuple[Path, Path]:
    lake = init_lake(tmp_path / "lake")
    write_hand_lake(lake)
    return lake, signatures_sql(tmp_path)


def want(k: int = 16, sample_set: str = "", geometry_rows: list[dict] | None = None) -> dict[tuple, dict]:
    return reference(geometry_rows or hand_geometry(), hand_events(), hand_runs(), hand_probes(), k, sample_set)


# -- the tests ----------------------------------------------------------------------------


def test_hand_checkable_values(hand: tuple[Path, Path]) -> None:
    lake, sql = hand
    got = built(lake, build(lake, sql, bins=4))
    r1 = got[("r1", "trajectory", "layer", 0, None)]
    block = {name: r1["vector"][4 * i: 4 * i + 4] for i, name in enumerate(r1["vector_layout"].split("=", 2)[2].split(","))}
    assert r1["vector_layout"].startswith("trajectory:K=4;series=0:attn_out.act_norm,0:attn_out.eff_rank,")
    assert list(block)[6:] == [f"0:resid_post.{d}" for d in sorted(DESCRIPTORS)]
    # eff_rank 1, 3 | - | 5 | 9 -> bin means 2, 2 (empty: the previous bin's), 5, 9
    mean, std = 4.5, math.sqrt(33 / 4)
    assert close(block["0:resid_post.eff_rank"], [(v - mean) / std for v in (2, 2, 5, 9)])
    # leading empty bins 0 and 1 take bin 2's value: 5, 5, 5, 9 (mean 6, std sqrt 3)
    s3 = math.sqrt(3)
    assert close(block["0:resid_post.sv_entropy"], [-1 / s3, -1 / s3, -1 / s3, s3])
    assert block["0:resid_post.sparsity"] == [0.0] * 4  # flat
    assert block["0:resid_post.act_norm"] == [0.0] * 4  # no value at all
    # NULL at step 0: bin 0 is the mean of step 10 alone
    assert close(block["0:resid_post.principal_angle_prev"], (np.array([0.1, 0.1, 0.2, 0.4]) - 0.2) / np.std([0.1, 0.1, 0.2, 0.4]))
    assert close(block["0:resid_post.principal_angle_init"], [-1.0, -1.0, 1.0, 1.0])
    assert r1["norm"] == pytest.approx(math.sqrt(4 * sum(1 for v in block.values() if any(v))))
    # a single capture (t = 0): every series flat, the event at t 0
    r2 = got[("r2", "trajectory", "run", None, None)]
    assert r2["vector"] == [0.0] * 48 and r2["norm"] == 0.0
    assert (r2["event_t"], r2["event_steps"], r2["event_metrics"]) == ([0.0], [50], ["attn_out.eff_rank"])
    # run scope: every event, composite included, by (t, layer, metric, step), NULL t last
    run = got[("r1", "trajectory", "run", None, None)]
    assert run["event_layers"] == [0, 2, 2, 0, 2, 2, 5]
    assert run["event_metrics"] == ["__composite__", "__composite__", "attn_out.act_norm", "resid_post.eff_rank",
                                    "resid_post.sv_entropy", "resid_post.eff_rank", "resid_post.eff_rank"]
    assert close(run["event_t"], [0.1, 0.5, 0.5, 0.7, 0.7, 1.0, None])
    assert run["event_steps"] == [10, 100, 100, 70, 70, 100, 40]
    assert run["event_scores"] == [1.0, 3.0, 0.5, 2.5, 0.75, 1.5, 0.25]
    # layer scope: that layer's events only
    assert got[("r1", "trajectory", "layer", 0, None)]["event_steps"] == [10, 70]
    layer2 = got[("r1", "trajectory", "layer", 2, None)]
    assert (layer2["event_layers"], layer2["event_steps"]) == ([2, 2, 2, 2], [100, 100, 70, 100])
    # no events: empty lists, never NULL
    r3 = got[("r3", "trajectory", "run", None, None)]
    assert all(r3[c] == [] for c in ("event_t", "event_steps", "event_layers", "event_metrics", "event_scores"))
    assert r3["seed"] == 9 and r3["family_id"] is None  # no runs row: the seed of its geometry
    assert_matches(got, want(4))


def test_probe_signatures(hand: tuple[Path, Path]) -> None:
    lake, sql = hand
    got = built(lake, build(lake, sql))
    probe = got[("p1", "probe", "run", None, "math_probe")]
    assert probe["vector"] == [0.5, -1.0, 0.0, 2.0, 1.5, -0.25] and probe["norm"] == 2.75
    assert probe["vector_layout"] == "probe:layers=0;features=" + ",".join(DIS_FEATURES)
    assert (probe["family_id"], probe["seed"], probe["signature_version"]) == ("fam-a", 1, "sig@1")
    assert (probe["event_steps"], probe["event_metrics"]) == ([20], ["resid_post.sparsity"])
    assert probe["event_t"] == [pytest.approx(0.1)]
    other = got[("p1", "probe", "run", None, "other_probe")]
    assert other["norm"] == 5.0 and other["vector_layout"].startswith("probe:layers=0,2;features=")
    assert not any(key[0] == "p2" for key in got)  # its summary has no vector
    # the probe run has its trajectory signatures too
    assert got[("p1", "trajectory", "run", None, "math_probe")]["family_id"] == "fam-a"
    assert_matches(got, want())


def test_vector_layout_equal_across_runs_with_the_same_layers_and_modules(hand: tuple[Path, Path]) -> None:
    lake, sql = hand
    got = built(lake, build(lake, sql))
    r1, r2, r3 = (got[(r, "trajectory", "run", None, None)] for r in ("r1", "r2", "r3"))
    assert r1["vector_layout"] == r3["vector_layout"] and len(r1["vector"]) == len(r3["vector"]) == 4 * 6 * 16
    assert r2["vector_layout"] != r1["vector_layout"]  # r2 has layer 0 only
    layer0 = {r: got[(r, "trajectory", "layer", 0, None)]["vector_layout"] for r in ("r1", "r2", "r3")}
    assert len(set(layer0.values())) == 1  # the same layer and modules
    assert got[("r1", "trajectory", "layer", 2, None)]["vector_layout"] != layer0["r1"]  # another layer
    assert layer0["r1"].startswith("trajectory:K=16;series=0:attn_out.act_norm,")


def test_ids_are_stable_hashes_of_the_analysis(hand: tuple[Path, Path]) -> None:
    lake, sql = hand
    first = build(lake, sql)
    ids = {k: r["signature_id"] for k, r in built(lake, first).items()}
    assert len(set(ids.values())) == len(ids) and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids.values())
    models.run(lake=lake, sql_dir=sql, full_refresh=True, report=lambda _: None)
    assert {k: r["signature_id"] for k, r in built(lake, first).items()} == ids
    other = build(lake, sql, bins=8)
    assert other != first
    assert not set(ids.values()) & {r["signature_id"] for r in built(lake, other).values()}
    assert_matches(built(lake, other), want(8))


def test_chosen_sample_set(hand: tuple[Path, Path]) -> None:
    lake, sql = hand
    got = built(lake, build(lake, sql, sample_set="zz_other"))
    assert {k[0] for k in got if k[1] == "trajectory"} == {"r1"}  # the only run with that set
    assert_matches(got, want(16, "zz_other"))


def test_nan_from_another_tool_counts_as_null(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    write_hand_lake(lake, geometry_rows=[])
    rows = hand_geometry()
    nan_at = {("r1", 0, "resid_post", 10), ("r3", 2, "attn_out", 13)}

    def hit(r: dict) -> bool:
        return (r["run_id"], r["layer"], r["module"], r["step"]) in nan_at and r["sample_id"] is None

    rows_nan = [dict(r, eff_rank=float("nan"), act_norm=float("inf")) if hit(r) else r for r in rows]
    file_fields = [c.field for c in GEOMETRY_STATE.file_columns]
    for run in sorted({r["run_id"] for r in rows}):
        folder = lake / "geometry_state" / f"analysis_id={CAPTURE}" / f"run_id={run}"
        folder.mkdir(parents=True)
        table = pa.Table.from_pylist(
            [{f.name: r.get(f.name) for f in file_fields} | {"schema_version": "geometry_state@2.0", "created_at_utc": START}
             for r in rows_nan if r["run_id"] == run],
            schema=pa.schema(file_fields),
        )
        pq.write_table(table, folder / "part-other-tool.parquet")
    got = built(lake, build(lake, signatures_sql(tmp_path)))
    rows_null = [dict(r, eff_rank=None, act_norm=None) if hit(r) else r for r in rows]
    assert_matches(got, want(16, geometry_rows=rows_null))


# -- the demo lake ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("signatures-demo")
    lake = init_lake(base / "lake")
    write_demo(lake=lake)
    return lake, build(lake, signatures_sql(base))


def test_demo_run_vectors_match_numpy(demo_built: tuple[Path, str]) -> None:
    lake, analysis = demo_built
    hive = ds.partitioning(pa.schema([("analysis_id", pa.string()), ("run_id", pa.string())]), flavor="hive")
    pooled = pq.read_table(lake / "geometry_state", partitioning=hive, filters=ds.field("sample_id").is_null())
    runs = pq.read_table(lake / "runs", partitioning=ds.partitioning(pa.schema([("run_id", pa.string())]), flavor="hive"))
    expected = reference(pooled.to_pylist(), [], runs.to_pylist(), [], 16)
    got = built(lake, analysis)
    run_scope = {k: v for k, v in expected.items() if k[2] == "run"}
    assert len(run_scope) == 27  # 9 training and 18 probe runs
    for key, exp_row in run_scope.items():
        row = got[key]
        assert row["vector_layout"] == exp_row["vector_layout"], key
        assert len(row["vector"]) == 6 * 4 * 6 * 16
        assert close(row["vector"], exp_row["vector"]), key
        assert row["norm"] == pytest.approx(exp_row["norm"], rel=2e-5), key
    assert sum(1 for k in got if k[2] == "layer") == 27 * 6


def test_a_new_run_builds_only_its_own_signatures(tmp_path: Path) -> None:
    """Signatures read their own run only: a run added later is built alone, and the
    signatures are those of the reference over every run."""
    lake, sql = init_lake(tmp_path / "lake"), signatures_sql(tmp_path)
    writer.write("runs", hand_runs(), lake=lake)
    writer.write("geometry_state", [r for r in hand_geometry() if r["run_id"] != "r3"], lake=lake)
    writer.write("events_candidates", hand_events(), lake=lake)
    writer.write("probe_summaries", hand_probes(), lake=lake)
    first = build(lake, sql)
    writer.write("geometry_state", [r for r in hand_geometry() if r["run_id"] == "r3"], lake=lake)
    [result] = models.run(lake=lake, sql_dir=sql, report=lambda _: None)
    assert result.plan.analysis_id == first
    assert result.plan.build == {"r3": "new run"}
    assert_matches(built(lake, first), want())
