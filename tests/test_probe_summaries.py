"""probe_summaries (probe_summary@2.0 with dis@1) against an independent numpy reading of design.md.

The hand-made lakes write runs, geometry_state, geometry_dynamics and events_candidates
directly, and run the model from a copy of ``sql/`` holding no other model, so that every
input is read as producer data. The demo lake runs the real geometry_dynamics model first.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from model_fixtures import only_models_sql
from warehouse import build_catalog, connect, contracts, demo, models, writer
from warehouse.models.state import load_analyses
from warehouse.lake import init_lake

REPO = Path(__file__).resolve().parent.parent
MODULE = "resid_post"
A_DESCRIPTORS = ("eff_rank", "sv_entropy", "sparsity")
B_COLUMNS = ("drift_velocity", "drift_accel", "volatility", "alignment_velocity")
FEATURES = (
    "A_eff_rank_delta", "A_sv_entropy_delta", "A_sparsity_delta", "A_principal_angle_post_vs_pre",
    "B_drift_velocity_by_layer", "B_volatility_by_layer",
)
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


# -- the reference ------------------------------------------------------------------------


def f32(x: float | None) -> float | None:
    """A value as the lake stores it (float32); NaN counts as NULL."""
    return None if x is None or math.isnan(x) else float(np.float32(x))


def mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def summarise(run: dict, state: list[dict], dynamics: list[dict], events: list[dict]) -> dict:
    """probe_summary@2.0's A/B part for one run, from its rows of the three inputs."""
    pooled = [g for g in state if g["run_id"] == run["run_id"] and g["sample_id"] is None]
    row = {k: run[k] for k in ("run_id", "family_id", "seed", "probe_name", "model_id", "base_checkpoint", "run_mode")}
    row["probe_config_hash"] = run["probe_config_hash"] or ""
    row["captures_index_path"] = f"probe_captures_index/run_id={run['run_id']}"
    row["captures_manifest_path"] = None
    row["affected_layers"] = sorted({e["layer"] for e in events if e["run_id"] == run["run_id"]})
    sample_set = min((g["sample_set"] for g in pooled), default=None)
    series = [g for g in pooled if g["sample_set"] == sample_set and g["module"] == MODULE]
    if not series:
        row["layers"] = None
        return row
    steps = sorted({g["step"] for g in series})
    pre, post = steps[0], steps[-1]
    layers = sorted({g["layer"] for g in series})
    at = {(g["layer"], g["step"]): g for g in series}
    row.update(steps=post - pre, capture_steps_used=steps, layers_covered=layers, layers=layers)
    for d in A_DESCRIPTORS:
        pres = [f32(at[(l, pre)][d]) if (l, pre) in at else None for l in layers]
        posts = [f32(at[(l, post)][d]) if (l, post) in at else None for l in layers]
        row[f"A_{d}_pre"], row[f"A_{d}_post"] = pres, posts
        row[f"A_{d}_delta"] = [None if a is None or b is None else f32(b - a) for a, b in zip(pres, posts)]
    row["A_principal_angle_post_vs_pre"] = [
        f32(at[(l, post)]["principal_angle_init"]) if (l, post) in at else None for l in layers
    ]
    dyn = [
        g for g in dynamics
        if g["run_id"] == run["run_id"] and g["sample_id"] is None and g["sample_set"] == sample_set and g["module"] == MODULE
    ]
    for b in B_COLUMNS:
        per_layer = []
        for l in layers:
            velocity = [f32(g["drift_velocity"]) for g in dyn if g["layer"] == l]
            if b == "drift_velocity":
                value = mean(velocity)
            elif b == "drift_accel":
                accel = [f32(g["drift_accel"]) for g in dyn if g["layer"] == l]
                value = mean([None if a is None else abs(a) for a in accel])
            elif b == "volatility":
                vals = [v for v in velocity if v is not None]
                value = float(np.std(vals, ddof=1)) if len(vals) >= 2 else None
            else:
                value = mean([f32(g["alignment_velocity"]) for g in dyn if g["layer"] == l])
            per_layer.append(f32(value))
        row[f"B_{b}_by_layer"] = per_layer
        row[f"B_{b}_global"] = mean(per_layer)
    return row


def rank_dis(rows: list[dict]) -> None:
    """dis@1 over the summaries (in place): signatures, magnitude, coherence, novelty, DIS."""
    populations: dict[tuple, list[dict]] = {}
    for r in rows:
        r.update(signature_version="sig@1", score_version="dis@1")
        r.update(signature_vector=None, signature_norm=None, magnitude=None, coherence=None, novelty=None, DIS=None)
        if r["layers"]:
            populations.setdefault((r["probe_name"], r["probe_config_hash"]), []).append(r)
    for pop in populations.values():
        for r in pop:
            z = []
            for i, layer in enumerate(r["layers"]):
                for feature in FEATURES:
                    x = r[feature][i]
                    values = [
                        o[feature][o["layers"].index(layer)] for o in pop if layer in o["layers"]
                    ]
                    values = [v for v in values if v is not None]
                    if x is None:
                        z.append(0.0)
                        continue
                    centre = median(values)
                    scale = 1.4826 * median([abs(v - centre) for v in values])
                    z.append(0.0 if scale == 0 else (x - centre) / scale)
            r["vector"] = z
            r["signature_vector"] = z
            r["signature_norm"] = float(np.linalg.norm(z))
            r["magnitude"] = r["signature_norm"] / math.sqrt(len(z))
        families = {r["family_id"] for r in pop}
        for r in pop:
            others = [o for o in pop if o["family_id"] == r["family_id"] and o is not r]
            cos = [
                cosine(r["vector"], o["vector"]) for o in others
                if o["layers"] == r["layers"] and r["signature_norm"] > 0 and o["signature_norm"] > 0
            ]
            r["coherence"] = max(0.0, mean(cos)) if cos else None
            if len(families) == 1:
                r["novelty"] = 1.0
                continue
            best = None
            for fam in families - {r["family_id"]}:
                members = [o["vector"] for o in pop if o["family_id"] == fam and o["layers"] == r["layers"]]
                if not members:
                    continue
                centroid = np.mean(members, axis=0)
                if r["signature_norm"] > 0 and np.linalg.norm(centroid) > 0:
                    c = cosine(r["vector"], list(centroid))
                    best = c if best is None else max(best, c)
            r["novelty"] = None if best is None else (1 - best) / 2
        for r in pop:
            parts = (r["magnitude"], r["coherence"], r["novelty"])
            r["DIS"] = None if any(p is None for p in parts) else parts[0] * parts[1] * parts[2]


def reference(runs: list[dict], state: list[dict], dynamics: list[dict], events: list[dict]) -> dict[str, dict]:
    probe = [r for r in runs if r.get("family_id") is not None and r.get("probe_name") is not None]
    rows = [summarise(r, state, dynamics, events) for r in probe]
    rank_dis(rows)
    for r in rows:
        del r["layers"]
        r.pop("vector", None)
    return {r["run_id"]: r for r in rows}


def family_ranking(rows: dict[str, dict]) -> dict[tuple, tuple]:
    """The view's reading: per (probe_name, family) the mean non-NULL DIS, rank 1 highest, NULL last."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows.values():
        groups.setdefault((r["probe_name"], r["family_id"]), []).append(r)
    out = {}
    for probe in {k[0] for k in groups}:
        fams = sorted((k for k in groups if k[0] == probe), key=lambda k: k[1])
        scored = {k: mean([r["DIS"] for r in groups[k]]) for k in fams}
        order = sorted(fams, key=lambda k: (scored[k] is None, -(scored[k] or 0.0), k[1]))
        for rank, k in enumerate(order, 1):
            members = sorted(groups[k], key=lambda r: (r["seed"], r["run_id"]))
            out[k] = (rank, scored[k], len(members), [r["seed"] for r in members], [r["DIS"] for r in members])
    return out


# -- reading the output -------------------------------------------------------------------


def only_sql(tmp_path: Path, keep: tuple[str, ...] = ("probe_summaries",)) -> Path:
    """A copy of sql/ with only the models in ``keep``: every other dataset is producer data."""
    return only_models_sql(tmp_path / "sql", *keep)


def analysis_of(lake: Path) -> str:
    [folder] = list((lake / "probe_summaries").iterdir())
    return folder.name.split("=", 1)[1]


def built(lake: Path, analysis: str) -> dict[str, dict]:
    folder = lake / "probe_summaries" / f"analysis_id={analysis}"
    hive = ds.partitioning(pa.schema([("run_id", pa.string())]), flavor="hive")
    table = pq.read_table(folder, partitioning=hive)
    return {r["run_id"]: r for r in table.to_pylist()}


def close(got, want) -> bool:
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(close(g, w) for g, w in zip(got, want))
    if isinstance(want, float):
        return got == pytest.approx(want, rel=2e-5, abs=2e-6)
    return got == want


def assert_matches(got: dict[str, dict], want: dict[str, dict]) -> None:
    assert got.keys() == want.keys()
    for run_id, exp_row in want.items():
        row = got[run_id]
        assert row["schema_version"] == "probe_summary@2.0"
        for col, value in exp_row.items():
            assert close(row[col], value), (run_id, col, row[col], value)


# -- the hand-made lake ---------------------------------------------------------------------


def run_row(run_id: str, family: str | None, seed: int, probe: str | None = "p", probe_hash: str | None = "h1") -> dict:
    return {
        "run_id": run_id, "seed": seed, "run_mode": "probe_micro_finetune", "model_id": f"m-{probe}",
        "base_checkpoint": "base/ckpt-1000", "family_id": family, "probe_name": probe, "probe_config_hash": probe_hash,
        "config_json": "{}", "config_hash": f"cfg-{family}-{probe}", "code_version": None, "status": "completed",
        "started_at_utc": START, "ended_at_utc": None, "notes": None,
    }


# (run_id, family, seed, probe, hash): populations p/h1 (A x3, B x3, C x1), p/NULL (D alone,
# two seeds), p/h2 (A and B again), r/h1 (one run: a zero signature); two runs are skipped.
HAND_RUNS = [
    ("a0", "A", 0, "p", "h1"), ("a1", "A", 1, "p", "h1"), ("a2", "A", 2, "p", "h1"),
    ("b0", "B", 0, "p", "h1"), ("b1", "B", 1, "p", "h1"), ("b2", "B", 2, "p", "h1"),
    ("c0", "C", 0, "p", "h1"),
    ("d0", "D", 0, "p", None), ("d1", "D", 1, "p", None),
    ("a-h2", "A", 5, "p", "h2"), ("b-h2", "B", 5, "p", "h2"), ("b-h2b", "B", 6, "p", "h2"),
    ("solo", "E", 0, "r", "h1"),
    ("train0", None, 0, None, None),  # a training run: no family, no probe
    ("noprobe", "A", 9, None, "h1"),  # a family but no probe
]
STEPS = [0, 10, 20, 40]


def state_row(run_id, seed, step, layer, values, *, sample_set="fixed", sample_id=None, module=MODULE) -> dict:
    eff_rank, sv_entropy, sparsity, angle_prev, angle_init, act_norm = values
    return {
        "run_id": run_id, "analysis_id": "capture-v1", "step": step, "seed": seed, "sample_set": sample_set,
        "sample_id": sample_id, "layer": layer, "module": module, "n_samples": 64, "dim": 16,
        "eff_rank": eff_rank, "sv_entropy": sv_entropy, "sparsity": sparsity,
        "principal_angle_prev": angle_prev, "principal_angle_init": angle_init, "act_norm": act_norm,
    }


def dyn_row(g: dict, drift_velocity, drift_accel, alignment_velocity) -> dict:
    keys = ("run_id", "step", "seed", "sample_set", "sample_id", "layer", "module")
    return {k: g[k] for k in keys} | {
        "analysis_id": "dyn-by-hand", "drift_velocity": drift_velocity, "drift_accel": drift_accel,
        "drift_from_init": None, "alignment_velocity": alignment_velocity, "volatility_window": 5,
    }


def hand_inputs() -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    rng = np.random.default_rng(11)
    runs = [run_row(r, f, s, p, h) for r, f, s, p, h in HAND_RUNS]
    state, dynamics = [], []
    effect = {"A": 2.0, "B": -1.0, "C": 0.5, "D": 1.0, "E": 3.0}
    for run_id, family, seed, probe, _ in HAND_RUNS:
        if probe is None and family is None:
            continue
        steps = [0, 10, 25, 50] if run_id == "a1" else STEPS
        layers = (0, 1) if run_id == "b2" else (0, 1, 2)
        for i, step in enumerate(steps):
            for layer in layers:
                if run_id == "a1" and layer == 2 and step == steps[-1]:
                    continue  # layer 2 of a1 is missing at post
                t = i / (len(steps) - 1)
                shift = (effect.get(family, 0.0) if layer == 1 else 0.3) * t
                values = [
                    10.0 - shift + rng.normal(0, 0.2),
                    0.8 - 0.05 * shift + rng.normal(0, 0.01),
                    # sparsity of layer 0 is flat in every run but c0: its deltas have MAD 0
                    0.3 + (0.2 * t if (layer == 0 and run_id == "c0") else 0.0) if layer == 0
                    else 0.3 + 0.02 * shift + rng.normal(0, 0.005),
                    None if i == 0 else 0.1 + rng.uniform(0, 0.05),
                    0.0 if i == 0 else 0.1 * shift + rng.uniform(0, 0.05),
                    5.0 + rng.normal(0, 0.1),
                ]
                if run_id == "d1" and layer == 1 and i == 0:
                    values[0] = float("nan")  # another tool's NaN: NULL at pre
                g = state_row(run_id, seed, step, layer, values)
                state.append(g)
                velocity = None if i == 0 else abs(effect.get(family, 0.0)) * 0.01 + rng.uniform(0, 0.02)
                accel = None if i < 2 else rng.normal(0, 0.001)
                if run_id == "d0" and layer == 2 and i == 3:
                    velocity = float("nan")
                dynamics.append(dyn_row(g, velocity, accel, None if i == 0 else rng.uniform(0, 0.01)))
                # rows the model must ignore: per-sample, another module, a later sample set
                noise = [99.0, 99.0, 99.0, 9.0, 9.0, 99.0]
                for extra in (
                    state_row(run_id, seed, step, layer, noise, sample_id="s1"),
                    state_row(run_id, seed, step, layer, noise, module="mlp_out"),
                    state_row(run_id, seed, step + 1, layer, noise, sample_set="zzz"),
                ):
                    state.append(extra)
                    dynamics.append(dyn_row(extra, 99.0, 99.0, 99.0))
    events = [
        event_row("a0", 2, "resid_post.eff_rank", 20),
        event_row("a0", 0, "__composite__", 20, "change_point_composite"),
        event_row("a0", 5, "mlp_out.sparsity", 10),
        event_row("b1", 1, "resid_post.sparsity", 10),
        event_row("b1", 1, "resid_post.sv_entropy", 20),
        event_row("train0", 3, "resid_post.eff_rank", 10),
    ]
    return runs, state, dynamics, events


def event_row(run_id: str, layer: int, metric: str, step: int, event_type: str = "change_point") -> dict:
    return {
        "run_id": run_id, "analysis_id": "cpd-by-hand", "event_id": f"{run_id}-{layer}-{metric}-{step}",
        "layer": layer, "metric": metric, "step": step, "start_step": step, "end_step": step,
        "event_type": event_type, "score": 1.0,
    }


def has_nan(row: dict) -> bool:
    return any(isinstance(v, float) and math.isnan(v) for v in row.values())


def write_other_tool(lake: Path, dataset: str, rows: list[dict]) -> None:
    """Rows as another tool would write them, NaN included (our writer refuses NaN)."""
    contract = contracts.get(dataset)
    fields = [c.field for c in contract.file_columns]
    for row in rows:
        folder = lake / dataset
        for key in contract.partition_by:
            folder = folder / f"{key}={row[key]}"
        folder.mkdir(parents=True, exist_ok=True)
        full = {f.name: row.get(f.name) for f in fields} | {"schema_version": contract.schema_version, "created_at_utc": START}
        table = pa.Table.from_pylist([full], schema=pa.schema(fields))
        pq.write_table(table, folder / f"part-other-tool-{row['step']}-{row['layer']}.parquet")


def write_inputs(lake: Path, runs, state, dynamics, events) -> None:
    writer.write("runs", runs, lake=lake)
    for dataset, rows in (("geometry_state", state), ("geometry_dynamics", dynamics)):
        writer.write(dataset, [r for r in rows if not has_nan(r)], lake=lake)
        write_other_tool(lake, dataset, [r for r in rows if has_nan(r)])
    if events:
        writer.write("events_candidates", events, lake=lake)


@pytest.fixture(scope="module")
def hand_lake(tmp_path_factory) -> tuple[Path, Path, dict[str, dict]]:
    """The hand-made lake, built once: (lake, sql copy, expected rows)."""
    tmp = tmp_path_factory.mktemp("hand")
    lake = init_lake(tmp / "lake")
    inputs = hand_inputs()
    write_inputs(lake, *inputs)
    sql = only_sql(tmp)
    models.run(lake=lake, sql_dir=sql, report=lambda _: None)
    return lake, sql, reference(*inputs)


# -- the tests ----------------------------------------------------------------------------


def test_hand_checkable_values(hand_lake) -> None:
    lake, _, _ = hand_lake
    got = built(lake, analysis_of(lake))
    # skipped: no family, or no probe
    assert "train0" not in got and "noprobe" not in got and len(got) == len(HAND_RUNS) - 2
    a0, a1, c0 = got["a0"], got["a1"], got["c0"]
    assert a0["layers_covered"] == [0, 1, 2] and a0["steps"] == 40 and a0["capture_steps_used"] == STEPS
    assert a0["affected_layers"] == [0, 2, 5] and got["b1"]["affected_layers"] == [1] and c0["affected_layers"] == []
    assert a0["captures_index_path"] == "probe_captures_index/run_id=a0" and a0["captures_manifest_path"] is None
    assert (a0["signature_version"], a0["score_version"], a0["run_mode"]) == ("sig@1", "dis@1", "probe_micro_finetune")
    assert len(a0["signature_vector"]) == 18
    # a1: layer 2 has no capture at post (50): NULL elements, the other layers are there
    assert a1["steps"] == 50 and a1["capture_steps_used"] == [0, 10, 25, 50]
    assert a1["A_eff_rank_post"][2] is None and a1["A_eff_rank_delta"][2] is None
    assert a1["A_principal_angle_post_vs_pre"][2] is None and a1["A_eff_rank_pre"][2] is not None
    assert a1["A_eff_rank_delta"][0] == pytest.approx(a1["A_eff_rank_post"][0] - a1["A_eff_rank_pre"][0])
    # d1: NaN at pre of layer 1 reads as NULL
    assert got["d1"]["A_eff_rank_pre"][1] is None and got["d1"]["A_eff_rank_delta"][1] is None
    # sparsity of layer 0 moves only in c0: MAD 0, so even c0's z is 0 (layer 0, feature 3)
    assert c0["A_sparsity_delta"][0] == pytest.approx(0.2, abs=1e-6)
    assert c0["signature_vector"][2] == 0.0
    # C has one seed: no coherence, no DIS
    assert c0["coherence"] is None and c0["DIS"] is None and c0["magnitude"] > 0
    # D is alone in its population (probe p, no hash): novelty 1, written with hash ''
    assert got["d0"]["novelty"] == 1.0 and got["d0"]["probe_config_hash"] == ""
    # b2 covers layers 0 and 1 only: no cosine to its seeds, nor to another family's centroid
    assert got["b2"]["layers_covered"] == [0, 1] and got["b2"]["coherence"] is None and got["b2"]["novelty"] is None
    # one run in its population: every scale is 0, a zero vector
    solo = got["solo"]
    assert solo["signature_norm"] == 0.0 and solo["magnitude"] == 0.0 and solo["novelty"] == 1.0
    assert solo["coherence"] is None and solo["DIS"] is None


def test_hand_lake_matches_numpy(hand_lake) -> None:
    lake, _, want = hand_lake
    assert_matches(built(lake, analysis_of(lake)), want)


def test_populations_are_separate(hand_lake) -> None:
    """The h2 rows of families A and B are standardised and compared among themselves only."""
    lake, _, want = hand_lake
    got = built(lake, analysis_of(lake))
    # a-h2 is A's only run in p/h2; b-h2 and b-h2b are B's two: coherence only for B
    assert got["a-h2"]["coherence"] is None and got["b-h2"]["coherence"] is not None
    # with three runs per (layer, feature), the median run of each feature has z = 0 ...
    vectors = np.array([got[r]["signature_vector"] for r in ("a-h2", "b-h2", "b-h2b")])
    assert (np.sort(np.abs(vectors), axis=0)[0] == 0).all()
    assert_matches({r: got[r] for r in ("a-h2", "b-h2", "b-h2b")}, {r: want[r] for r in ("a-h2", "b-h2", "b-h2b")})


def test_module_and_sample_set_parameters(hand_lake, tmp_path: Path) -> None:
    """Other parameters write other analyses, over the chosen module's or sample set's series."""
    lake = tmp_path / "lake"
    shutil.copytree(hand_lake[0], lake)
    default = analysis_of(lake)
    sql = hand_lake[1]
    models.run(lake=lake, sql_dir=sql, params={"probe_summaries": {"module": "mlp_out"}}, report=lambda _: None)
    models.run(lake=lake, sql_dir=sql, params={"probe_summaries": {"sample_set": "zzz"}}, report=lambda _: None)
    analyses = sorted(p.name.split("=", 1)[1] for p in (lake / "probe_summaries").iterdir())
    assert len(analyses) == 3 and default in analyses
    by_param = {}
    for analysis in set(analyses) - {default}:
        rows = built(lake, analysis)
        by_param["zzz" if rows["a0"]["capture_steps_used"][0] == 1 else "mlp_out"] = rows
    # mlp_out of the fixed sample set: the flat rows written at 99 (dynamics 99 throughout)
    mlp = by_param["mlp_out"]["a0"]
    assert mlp["A_eff_rank_delta"] == [0.0] * 3 and mlp["A_principal_angle_post_vs_pre"] == [9.0] * 3
    assert mlp["B_drift_velocity_by_layer"] == [99.0] * 3 and mlp["B_volatility_by_layer"] == [0.0] * 3
    # the zzz sample set: captured one step later, at 1, 11, 21 and 41
    zzz = by_param["zzz"]["a0"]
    assert zzz["capture_steps_used"] == [1, 11, 21, 41] and zzz["steps"] == 40 and zzz["A_sparsity_pre"] == [99.0] * 3


def test_family_ranking_view(hand_lake, tmp_path: Path) -> None:
    lake, sql, want = hand_lake
    analysis = analysis_of(lake)
    db = build_catalog(lake, tmp_path / "w.duckdb", views_dir=REPO / "views", sql_dir=sql)
    with connect(db) as con:
        rows = con.execute(
            "SELECT analysis_id, probe_name, family_id, family_rank, mean_dis, n_seeds, seeds, seed_dis "
            "FROM family_ranking ORDER BY probe_name, family_rank"
        ).fetchall()
        documented = con.execute(
            "SELECT count(*), count(comment) FROM duckdb_columns() WHERE table_name = 'family_ranking'"
        ).fetchone()
    assert documented[0] == documented[1] == 8
    expected = family_ranking(want)
    assert {(r[1], r[2]) for r in rows} == set(expected)
    for analysis_id, probe, family, rank, mean_dis, n, seeds, seed_dis in rows:
        e_rank, e_mean, e_n, e_seeds, e_dis = expected[(probe, family)]
        assert analysis_id == analysis
        assert (rank, n, seeds) == (e_rank, e_n, e_seeds), (probe, family)
        assert close(mean_dis, e_mean) and close(seed_dis, e_dis), (probe, family)
    # C (one seed, DIS NULL) ranks last in probe p
    p = [r for r in rows if r[1] == "p"]
    assert p[-1][2] == "C" and p[-1][4] is None and p[-1][3] == len(p)


def random_inputs() -> tuple[list[dict], list[dict], list[dict]]:
    """Four families (one with a single seed, one alone without a hash), irregular steps."""
    rng = np.random.default_rng(3)
    runs, state, dynamics = [], [], []
    for f in range(4):
        for seed in range(4 if f else 1):
            run_id = f"f{f}-s{seed}"
            runs.append(run_row(run_id, f"fam{f}", seed, "p", "h" if f < 3 else None))
            steps = np.cumsum(rng.integers(1, 30, 6)) - 1
            for i, step in enumerate(steps):
                for layer in range(3):
                    x = rng.normal(0, 1, 6) + (f * i * 1.0 if layer == f % 3 else 0.0)
                    g = state_row(run_id, seed, int(step), layer,
                                  [float(10 + x[0]), float(0.5 + 0.1 * x[1]), float(0.3 + 0.05 * x[2]),
                                   None if i == 0 else float(abs(x[3])), 0.0 if i == 0 else float(abs(x[4])), 5.0])
                    state.append(g)
                    dynamics.append(dyn_row(g, None if i == 0 else float(abs(x[5])),
                                            None if i < 2 else float(x[0] / 10), None if i == 0 else float(abs(x[3]) / 10)))
    return runs, state, dynamics


def test_random_lake_matches_numpy(tmp_path: Path) -> None:
    """Many families and seeds with random values, a new run changing the others' rows."""
    runs, state, dynamics = random_inputs()
    lake = init_lake(tmp_path / "lake")
    write_inputs(lake, runs, state, dynamics, [])
    sql = only_sql(tmp_path)
    models.run(lake=lake, sql_dir=sql, report=lambda _: None)
    first = analysis_of(lake)
    assert_matches(built(lake, first), reference(runs, state, dynamics, []))
    files = {r: sorted(f.name for f in (lake / "probe_summaries" / f"analysis_id={first}" / f"run_id={r}").iterdir())
             for r in ("f0-s0", "f3-s0")}

    # a training run (no family): not read at all, so nothing to do
    training = [dict(g, run_id="train", seed=0) for g in state if g["run_id"] == "f1-s0"]
    write_inputs(lake, [run_row("train", None, 0, None, None)], training,
                 [dict(g, run_id="train", seed=0) for g in dynamics if g["run_id"] == "f1-s0"], [])
    [result] = models.run(lake=lake, sql_dir=sql, report=lambda _: None)
    assert result.plan.build == {} and "train" not in result.plan.inputs["geometry_state"].files
    # the condition's verdicts: the first build's recorded, the new run's asked now
    recorded = load_analyses(lake)[first].run_scope
    assert sorted(r for r, (_, chosen) in recorded.items() if chosen) == sorted(r["run_id"] for r in runs)
    assert result.plan.run_scope["train"][1] is False and "train" not in recorded

    # a new seed of fam1: the whole population is recomputed (same analysis, new rows)
    extra_runs = [run_row("f1-s9", "fam1", 9, "p", "h")]
    extra_state = [dict(g, run_id="f1-s9", seed=9) for g in state if g["run_id"] == "f1-s0"]
    extra_state = [dict(g, eff_rank=g["eff_rank"] + 0.5 * g["step"] / 50) for g in extra_state]
    extra_dyn = [dict(g, run_id="f1-s9", seed=9) for g in dynamics if g["run_id"] == "f1-s0"]
    write_inputs(lake, extra_runs, extra_state, extra_dyn, [])
    models.run(lake=lake, sql_dir=sql, report=lambda _: None)
    assert analysis_of(lake) == first
    after = built(lake, first)
    want = reference(runs + extra_runs, state + extra_state, dynamics + extra_dyn, [])
    assert_matches(after, want)
    # fam3's population (no hash) came out the same: its files stayed; fam0's did not
    folder = lake / "probe_summaries" / f"analysis_id={first}"
    assert sorted(f.name for f in (folder / "run_id=f3-s0").iterdir()) == files["f3-s0"]
    assert sorted(f.name for f in (folder / "run_id=f0-s0").iterdir()) != files["f0-s0"]


# -- the demo lake ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory) -> tuple[Path, Path]:
    """The demo lake with geometry_dynamics (the real model) and probe_summaries built."""
    tmp = tmp_path_factory.mktemp("probe-demo")
    lake = init_lake(tmp / "lake")
    demo.write_demo(lake=lake)
    sql = only_sql(tmp, keep=("geometry_dynamics", "probe_summaries"))
    models.run(lake=lake, sql_dir=sql, report=lambda _: None)
    return lake, sql


def read_all(lake: Path, dataset: str, where: str = "") -> list[dict]:
    glob = str(lake / dataset / "**" / "*.parquet")
    return duckdb.sql(
        f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false) {where}"
    ).to_arrow_table().to_pylist()


def test_demo_ranking_recovers_planted_families(demo_lake, tmp_path: Path) -> None:
    lake, sql = demo_lake
    [analysis] = [p.name.split("=", 1)[1] for p in (lake / "probe_summaries").iterdir()]
    db = build_catalog(lake, tmp_path / "w.duckdb", views_dir=REPO / "views", sql_dir=sql)
    with connect(db) as con:
        ranking = con.execute(
            "SELECT family_id, family_rank, n_seeds FROM family_ranking WHERE analysis_id = ? ORDER BY family_rank",
            [analysis],
        ).fetchall()
    planted = pq.read_table(lake / "_meta" / "demo" / "planted_families.parquet").to_pylist()
    expected = sorted((p["family_id"], p["expected_rank"]) for p in planted)
    assert sorted((f, r) for f, r, _ in ranking) == expected
    assert all(n == 3 for _, _, n in ranking)


def test_demo_matches_numpy(demo_lake) -> None:
    lake, _ = demo_lake
    probe = "WHERE run_id LIKE 'p-%'"
    runs = read_all(lake, "runs")
    state = read_all(lake, "geometry_state", probe + " AND sample_id IS NULL")
    dynamics = read_all(lake, "geometry_dynamics", probe + " AND sample_id IS NULL")
    want = reference(runs, state, dynamics, [])
    assert len(want) == 18
    got = built(lake, analysis_of(lake))
    assert_matches(got, want)


def test_a_condition_choosing_no_run_is_asked_once_per_runs_file(tmp_path: Path, monkeypatch) -> None:
    """A lake of training runs only: probe_summaries has nothing to build and so no record;
    the verdicts of its runs condition are kept in _meta, and a later build asks the condition
    only of a run whose runs file is new or changed."""
    runs, state, dynamics = random_inputs()
    training = [run_row(f"t{k}", None, 0, None, None) for k in range(3)]
    names = {r["run_id"]: f"t{k}" for k, r in enumerate(runs[:3])}
    lake = init_lake(tmp_path / "lake")
    write_inputs(lake, training, [dict(g, run_id=names[g["run_id"]]) for g in state if g["run_id"] in names],
                 [dict(g, run_id=names[g["run_id"]]) for g in dynamics if g["run_id"] in names], [])
    sql = only_sql(tmp_path)
    [first] = models.run(lake=lake, sql_dir=sql, report=lambda _: None)
    assert first.plan.build == {} and load_analyses(lake) == {}
    verdicts = json.loads((lake / "_meta" / "run_verdicts.json").read_text())
    assert {run: chosen for run, (_, chosen) in verdicts[first.plan.model.spec.runs].items()} == dict.fromkeys(
        ["t0", "t1", "t2"], False)

    import warehouse.models.plan as plan_module
    asked: list[str] = []
    real = plan_module.select_dataset
    monkeypatch.setattr(plan_module, "select_dataset", lambda d, files, **kw: asked.extend(map(str, files)) or real(d, files, **kw))
    [again] = models.run(lake=lake, sql_dir=sql, report=lambda _: None)
    assert again.plan.build == {} and asked == []
    writer.write("runs", [run_row("t9", None, 0, None, None)], lake=lake)
    models.run(lake=lake, sql_dir=sql, report=lambda _: None)
    assert len(asked) == 1 and "run_id=t9" in asked[0]
