"""probe_events_candidates (probe_cpd@1) against a plain-Python reading of its definition.

The planted lake writes geometry with level shifts and runs the real events_candidates and
probe_events_candidates models; the reference groups the change points that build wrote,
read back from the lake, so every output column is checked against the model's actual
input. A hand lake writes events_candidates rows by hand (no model writes them there), with
values checked by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from model_fixtures import edit_model, only_models_sql, snapshot
from warehouse import build_catalog, connect, contracts, models, writer
from warehouse.contracts import DESCRIPTORS
from warehouse.lake import init_lake
from warehouse.models import ModelError

REPO = Path(__file__).resolve().parent.parent
MODEL = "probe_events_candidates"
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
LEVELS = {"eff_rank": 4.0, "sv_entropy": 0.6, "sparsity": 0.3, "principal_angle_prev": 0.1,
          "principal_angle_init": 0.2, "act_norm": 10.0}
NOISE = 0.002  # noise sd of every descriptor; a shift of 0.1 is 50 of them


def quiet(_: str) -> None:
    pass


# -- the reference ------------------------------------------------------------------------


def median(values: list[int]) -> float:
    v = sorted(values)
    n = len(v)
    return float(v[n // 2]) if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def tolerance_steps(steps: list[int], tolerance_captures: int) -> int:
    """tolerance_captures times the median gap between consecutive distinct steps, rounded
    half away from zero; 0 without a gap."""
    distinct = sorted(set(steps))
    gaps = [b - a for a, b in zip(distinct, distinct[1:])]
    return math.floor(tolerance_captures * median(gaps) + 0.5) if gaps else 0


def event_id(run_id: str, analysis: str, t_step: int) -> str:
    return hashlib.sha256(f"{run_id}|{analysis}|{t_step}|change_point".encode()).hexdigest()[:32]


def f32(x: float) -> float:
    return float(np.float32(x))


def reference(
    runs: list[dict], candidates: list[dict], steps: dict[str, list[int]], tolerance_captures: int,
    analysis: str, detector_version: str,
) -> dict[tuple, dict]:
    """The rows of one build, keyed by (run_id, t_step)."""
    out = {}
    for run in runs:
        if run["family_id"] is None or run["probe_name"] is None:
            continue
        members = sorted(
            (c for c in candidates if c["run_id"] == run["run_id"] and c["event_type"] == "change_point"
             and c["magnitude_eff"] is not None and math.isfinite(c["magnitude_eff"])),
            key=lambda c: (c["step"], c["layer"], c["metric"]),
        )
        tol = tolerance_steps(steps.get(run["run_id"], []), tolerance_captures)
        groups: list[list[dict]] = []
        for m in members:
            if groups and m["step"] - groups[-1][-1]["step"] <= tol:
                groups[-1].append(m)
            else:
                groups.append([m])
        for group in groups:
            best = min(group, key=lambda c: (-c["magnitude_eff"], c["step"], c["layer"], c["metric"]))
            series: dict[tuple, float] = {}
            for c in group:
                key = (c["layer"], c["metric"])
                series[key] = max(series.get(key, -math.inf), c["magnitude_eff"])
            per_layer: dict[int, float] = {}
            for (layer, _), value in series.items():
                per_layer[layer] = max(per_layer.get(layer, -math.inf), value)
            out[(run["run_id"], best["step"])] = {
                "run_id": run["run_id"], "family_id": run["family_id"], "seed": run["seed"],
                "probe_name": run["probe_name"], "probe_config_hash": run["probe_config_hash"] or "",
                "schema_version": contracts.get(MODEL).schema_version, "detector_version": detector_version,
                "event_id": event_id(run["run_id"], analysis, best["step"]), "event_type": "change_point",
                "t_step": best["step"], "layers": sorted(per_layer),
                "strength": f32(sum(per_layer.values())),
                "supporting_key": [f"L{layer}:{metric}" for layer, metric in sorted(series)],
                "supporting_val": [series[k] for k in sorted(series)],
                "timewarp_tolerance_steps": tol, "analysis_id": analysis,
            }
    return out


# -- reading the lake ---------------------------------------------------------------------


def read_dataset(lake: Path, dataset: str) -> list[dict]:
    """Every row of an analysed dataset, its partition values included."""
    hive = ds.partitioning(pa.schema([("analysis_id", pa.string()), ("run_id", pa.string())]), flavor="hive")
    folder = lake / dataset
    return pq.read_table(folder, partitioning=hive).to_pylist() if folder.is_dir() else []


def analysis_of(lake: Path, dataset: str = MODEL) -> str:
    [folder] = list((lake / dataset).iterdir())
    return folder.name.split("=", 1)[1]


def built(lake: Path) -> dict[tuple, dict]:
    rows = read_dataset(lake, MODEL)
    return {(r["run_id"], r["t_step"]): r for r in rows}


def header_version(sql: Path, model: str) -> str:
    """The version line of a model file, read as text."""
    return re.search(r"^-- version: (\S+)$", (sql / "models" / f"{model}.sql").read_text(), re.MULTILINE)[1]


def capture_steps(lake: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in read_dataset(lake, "geometry_state"):
        out.setdefault(r["run_id"], []).append(r["step"])
    return out


def assert_matches(got: dict[tuple, dict], want: dict[tuple, dict]) -> None:
    assert got.keys() == want.keys()
    for key, expected in want.items():
        row = got[key]
        assert set(row) == set(expected) | {"created_at_utc"}, key
        assert row["created_at_utc"] is not None
        for col, value in expected.items():
            if col == "strength":
                assert row[col] == pytest.approx(value, rel=1e-6), (key, col)
            else:
                assert row[col] == value, (key, col, row[col], value)


# -- the planted lake ---------------------------------------------------------------------

REGULAR = list(range(0, 400, 10))  # 40 captures, every 10 steps
# 10 gaps of 2, 11 of 10, 6 of 100: the median gap is 10 (the mean 27)
IRREGULAR = list(range(0, 22, 2)) + list(range(30, 140, 10)) + list(range(230, 800, 100))
# 20 gaps of 5, 20 of 6: the median of the even count is 5.5
HALVES = list(range(0, 105, 5)) + list(range(106, 221, 6))
# (run, family, seed, probe, hash, steps, plants (layer, module, descriptor, step, shift))
PLANTED_RUNS = [
    ("pa0", "A", 0, "p", "h1", REGULAR, [
        (0, "resid_post", "eff_rank", 150, 0.12), (1, "resid_post", "sv_entropy", 160, 0.06),
        (2, "mlp_out", "act_norm", 300, 0.1),
    ]),
    ("pa1", "A", 1, "p", "h1", IRREGULAR, [
        (0, "resid_post", "eff_rank", 60, 0.1), (1, "resid_post", "eff_rank", 90, 0.1),
    ]),
    ("pb0", "B", 0, "p", None, HALVES, [
        (0, "resid_post", "sparsity", 106, 0.1), (1, "resid_post", "sparsity", 106, 0.08),
    ]),
    ("pshort", "B", 1, "p", "h1", list(range(0, 80, 10)), [(0, "resid_post", "eff_rank", 40, 0.1)]),
    ("train0", None, 0, None, None, REGULAR, [(0, "resid_post", "eff_rank", 150, 0.1)]),
    ("noprobe", "A", 9, None, "h1", REGULAR, [(0, "resid_post", "eff_rank", 150, 0.1)]),
]


def run_row(run_id: str, family: str | None, seed: int, probe: str | None, probe_hash: str | None) -> dict:
    return {
        "run_id": run_id, "seed": seed, "run_mode": "probe_micro_finetune" if probe else "train_full",
        "model_id": "m", "base_checkpoint": "base/ckpt-1000" if probe else None, "family_id": family,
        "probe_name": probe, "probe_config_hash": probe_hash, "config_json": "{}", "config_hash": f"cfg-{family}",
        "status": "completed", "started_at_utc": START,
    }


def planted_geometry(run_id: str, seed: int, steps: list[int], plants: list[tuple]) -> list[dict]:
    """Pooled rows of layers 0-2 and two modules: noise around fixed levels, plus each plant's
    shift from its step on."""
    rng = np.random.default_rng([seed, sum(map(ord, run_id))])
    rows = []
    for step in steps:
        for layer in range(3):
            for module in ("resid_post", "mlp_out"):
                values = {d: LEVELS[d] + rng.normal(0, NOISE) for d in DESCRIPTORS}
                for p_layer, p_module, descriptor, p_step, shift in plants:
                    if (p_layer, p_module) == (layer, module) and step >= p_step:
                        values[descriptor] += shift
                rows.append({
                    "run_id": run_id, "analysis_id": "capture-v1", "step": step, "seed": seed,
                    "sample_set": "eval", "sample_id": None, "layer": layer, "module": module,
                    "n_samples": 16, "dim": 8, **values,
                })
    return rows


def planted_runs() -> list[dict]:
    return [run_row(r, f, s, p, h) for r, f, s, p, h, _, _ in PLANTED_RUNS]


def two_models_sql(target: Path) -> Path:
    return only_models_sql(target, "events_candidates", MODEL)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, Path]:
    """The planted lake built once by the real models: (lake, sql copy)."""
    tmp = tmp_path_factory.mktemp("planted")
    lake = init_lake(tmp / "lake")
    writer.write("runs", planted_runs(), lake=lake)
    for run_id, _, seed, _, _, steps, plants in PLANTED_RUNS:
        writer.write("geometry_state", planted_geometry(run_id, seed, steps, plants), lake=lake)
    sql = two_models_sql(tmp / "sql")
    models.run(lake=lake, sql_dir=sql, report=quiet)
    return lake, sql


def planted_reference(lake: Path, sql: Path, analysis: str, tolerance_captures: int = 2) -> dict[tuple, dict]:
    """The reference of one build of the planted lake, from the change points it holds."""
    return reference(
        planted_runs(), read_dataset(lake, "events_candidates"), capture_steps(lake), tolerance_captures,
        analysis, header_version(sql, "events_candidates"),
    )


# -- the tests ----------------------------------------------------------------------------


def test_every_column_matches_the_reference(planted) -> None:
    lake, sql = planted
    assert_matches(built(lake), planted_reference(lake, sql, analysis_of(lake)))


def test_planted_shifts_come_out_as_events(planted) -> None:
    lake, _ = planted
    rows = built(lake)
    # pa0: the shifts of layers 0 and 1, 10 steps apart (within 2 x 10), are one event at
    # the larger one; layer 2's is another
    a = rows[("pa0", 150)]
    assert a["layers"] == [0, 1] and a["timewarp_tolerance_steps"] == 20
    assert {"L0:resid_post.eff_rank", "L1:resid_post.sv_entropy"} <= set(a["supporting_key"])
    assert rows[("pa0", 300)]["layers"] == [2]
    # pa1: median gap 10, so 30 steps apart are two events (a mean gap of 27 would join them)
    assert {k for k in rows if k[0] == "pa1"} == {("pa1", 60), ("pa1", 90)}
    assert rows[("pa1", 60)]["timewarp_tolerance_steps"] == 20
    # pb0: median gap 5.5; both layers shift at one step; no probe hash reads as ''
    b = rows[("pb0", 106)]
    assert b["layers"] == [0, 1] and b["timewarp_tolerance_steps"] == 11 and b["probe_config_hash"] == ""


def test_runs_without_events_or_outside_the_probes_have_no_rows(planted) -> None:
    lake, _ = planted
    candidates = {c["run_id"] for c in read_dataset(lake, "events_candidates")}
    # the training run and the run without a probe have change points, the short probe none
    assert {"train0", "noprobe"} <= candidates and "pshort" not in candidates
    assert {k[0] for k in built(lake)} == {"pa0", "pa1", "pb0"}
    assert {p.name for p in (lake / MODEL / f"analysis_id={analysis_of(lake)}").iterdir()} == {
        "run_id=pa0", "run_id=pa1", "run_id=pb0"}


def copy_lake(lake: Path, tmp_path: Path) -> Path:
    """A private copy of the module's lake, for a test that adds to it."""
    return Path(shutil.copytree(lake, tmp_path / "lake"))


@pytest.mark.parametrize("tolerance_captures", [0, 3])
def test_tolerance_parameter(planted, tmp_path: Path, tolerance_captures: int) -> None:
    default = analysis_of(planted[0])
    lake, sql = copy_lake(planted[0], tmp_path), planted[1]
    models.run(lake=lake, sql_dir=sql, params={MODEL: {"tolerance_captures": tolerance_captures}}, report=quiet)
    [analysis] = [p.name.split("=", 1)[1] for p in (lake / MODEL).iterdir() if p.name != f"analysis_id={default}"]
    want = planted_reference(lake, sql, analysis, tolerance_captures)
    got = {(r["run_id"], r["t_step"]): r for r in read_dataset(lake, MODEL) if r["analysis_id"] == analysis}
    assert_matches(got, want)
    tolerances = {r["run_id"]: r["timewarp_tolerance_steps"] for r in got.values()}
    # 3 x 5.5 = 16.5 rounds half away from zero; 0 joins only change points at one step
    assert tolerances["pb0"] == {0: 0, 3: 17}[tolerance_captures]
    if tolerance_captures == 0:
        assert got[("pa0", 150)]["layers"] == [0] and got[("pa0", 160)]["layers"] == [1]


def test_a_rebuild_with_nothing_new_does_nothing(planted) -> None:
    lake, sql = planted
    lines: list[str] = []
    models.run(lake=lake, sql_dir=sql, report=lines.append)
    # its units are the four probe runs: the training run and the one without a probe are none
    assert any(line.startswith(f"{MODEL} probe_cpd@1") and line.endswith("up to date (4 runs)") for line in lines), lines


def test_parameter_out_of_range_is_refused_before_anything_runs(planted) -> None:
    lake, sql = planted
    before = snapshot(lake, content=True)
    with pytest.raises(ModelError) as err:
        models.run(lake=lake, sql_dir=sql, params={MODEL: {"tolerance_captures": -1}}, report=quiet)
    assert str(err.value) == f"model {MODEL}: parameter tolerance_captures = -1 is outside its range [0, 1000]"
    assert snapshot(lake, content=True) == before


def test_detector_version_is_the_upstream_models(tmp_path: Path) -> None:
    """Not a constant: the version of whatever model wrote the events_candidates analysis."""
    lake = init_lake(tmp_path / "lake")
    writer.write("runs", planted_runs()[:1], lake=lake)
    run_id, _, seed, _, _, steps, plants = PLANTED_RUNS[0]
    writer.write("geometry_state", planted_geometry(run_id, seed, steps, plants), lake=lake)
    sql = two_models_sql(tmp_path / "sql")
    edit_model(sql, "events_candidates", f"-- version: {header_version(REPO / 'sql', 'events_candidates')}\n",
               "-- version: cpd@97\n")
    models.run(lake=lake, sql_dir=sql, report=quiet)
    rows = built(lake)
    assert rows and {r["detector_version"] for r in rows.values()} == {"cpd@97"}


def test_lineage_reaches_the_upstream_analysis(planted) -> None:
    _, sql = planted
    text = models.lineage(f"{MODEL}.detector_version", models.load_project(sql))
    assert "events_candidates.analysis_id  (written by the engine)" in text
    assert "geometry_state.step" in models.lineage(f"{MODEL}.timewarp_tolerance_steps", models.load_project(sql))


# -- the BI view --------------------------------------------------------------------------


def test_probe_events_view(planted, tmp_path: Path) -> None:
    lake, sql = copy_lake(planted[0], tmp_path), planted[1]
    # family A is registered, B is not
    families = [
        {"family_id": "A", "family_version": "1", "source": "hand", "tags": ["x", "y"], "created_at_utc": START},
    ]
    writer.write("families", families, lake=lake)
    db = build_catalog(lake, tmp_path / "w.duckdb", views_dir=REPO / "views", sql_dir=sql)
    with connect(db) as con:
        got = con.sql("SELECT * FROM probe_events").to_arrow_table().to_pylist()
        documented = con.execute(
            "SELECT count(*), count(comment) FROM duckdb_columns() WHERE table_name = 'probe_events'"
        ).fetchone()
    assert documented[0] == documented[1] == len(got[0])
    rows = built(lake)
    steps = capture_steps(lake)
    assert len(got) == len(rows)
    for v in got:
        e = rows[(v["run_id"], v["event_step"])]
        first, last = min(steps[v["run_id"]]), max(steps[v["run_id"]])
        strengths = sorted(
            ((r["strength"], r["t_step"]) for r in rows.values() if r["run_id"] == v["run_id"]),
            key=lambda x: (-x[0], x[1]),
        )
        assert v == {
            "probe_name": e["probe_name"], "probe_config_hash": e["probe_config_hash"], "family_id": e["family_id"],
            "family_source": "hand" if e["family_id"] == "A" else None,
            "family_tags": ["x", "y"] if e["family_id"] == "A" else None,
            "run_id": e["run_id"], "seed": e["seed"], "base_checkpoint": "base/ckpt-1000",
            "event_step": e["t_step"], "t": pytest.approx((e["t_step"] - first) / (last - first)),
            "layers": e["layers"], "n_layers": len(e["layers"]), "strength": e["strength"],
            "rank_in_run": strengths.index((e["strength"], e["t_step"])) + 1,
            "supporting_series": e["supporting_key"], "supporting_values": e["supporting_val"],
            "tolerance_steps": e["timewarp_tolerance_steps"], "detector_version": e["detector_version"],
            "event_id": e["event_id"], "analysis_id": e["analysis_id"],
        }


# -- the hand lake: events_candidates written by hand --------------------------------------


def hand_candidate(layer: int, metric: str, step: int, magnitude_eff: float | None,
                   event_type: str = "change_point") -> dict:
    return {
        "run_id": "h0", "analysis_id": "cpd-by-hand", "event_id": f"h0-{layer}-{metric}-{step}",
        "layer": layer, "metric": metric, "step": step, "start_step": step, "end_step": step,
        "event_type": event_type, "score": 0.0, "magnitude_eff": magnitude_eff,
    }


def test_hand_checkable_values(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    writer.write("runs", [run_row("h0", "F", 3, "p", None)], lake=lake)
    # steps 0, 10, 20, 30, 40, 60, 80: median gap 10, tolerance 20
    writer.write("geometry_state", planted_geometry("h0", 3, [0, 10, 20, 30, 40, 60, 80], []), lake=lake)
    writer.write("events_candidates", [
        hand_candidate(0, "resid_post.eff_rank", 20, 5.0),
        hand_candidate(1, "resid_post.eff_rank", 30, 7.0),
        hand_candidate(1, "resid_post.sv_entropy", 40, 3.0),
        hand_candidate(0, "resid_post.eff_rank", 40, 6.0),  # the same series again: its largest counts
        # neither bridges the gap from 40 to 80: a composite, and one without magnitude_eff
        hand_candidate(0, "__composite__", 60, 9.0, "change_point_composite"),
        hand_candidate(3, "resid_post.eff_rank", 60, None),
        hand_candidate(2, "mlp_out.act_norm", 80, 4.0),
        hand_candidate(3, "resid_post.eff_rank", 90, 4.0),  # ties with 80: the earlier wins
    ], lake=lake)
    sql = only_models_sql(tmp_path / "sql", MODEL)
    models.run(lake=lake, sql_dir=sql, report=quiet)
    analysis = analysis_of(lake)
    rows = built(lake)
    assert rows.keys() == {("h0", 30), ("h0", 80)}
    first, second = rows[("h0", 30)], rows[("h0", 80)]
    assert (first["layers"], first["strength"]) == ([0, 1], 13.0)  # 6 (layer 0) + 7 (layer 1)
    assert first["supporting_key"] == ["L0:resid_post.eff_rank", "L1:resid_post.eff_rank", "L1:resid_post.sv_entropy"]
    assert first["supporting_val"] == [6.0, 7.0, 3.0]
    assert (second["layers"], second["strength"]) == ([2, 3], 8.0)
    assert second["supporting_key"] == ["L2:mlp_out.act_norm", "L3:resid_post.eff_rank"]
    for row in (first, second):
        # events_candidates written outside the engine has no record: named by its analysis
        assert row["detector_version"] == "cpd-by-hand"
        assert (row["family_id"], row["seed"], row["probe_name"], row["probe_config_hash"]) == ("F", 3, "p", "")
        assert row["timewarp_tolerance_steps"] == 20 and row["event_type"] == "change_point"
        assert row["event_id"] == hashlib.sha256(f"h0|{analysis}|{row['t_step']}|change_point".encode()).hexdigest()[:32]
        assert row["schema_version"] == "probe_events_candidates@2.0"
