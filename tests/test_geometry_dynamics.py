"""geometry_dynamics (dyn@1) against an independent numpy reading of design.md's formulas."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from warehouse import models, writer
from warehouse.contracts import DESCRIPTORS, GEOMETRY_STATE
from warehouse.errors import WarehouseError
from warehouse.lake import init_lake

DRIFT = ("eff_rank", "sv_entropy", "sparsity", "act_norm")
KEY = ("run_id", "sample_set", "sample_id", "layer", "module")


# -- the reference ------------------------------------------------------------------------


def median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def scale(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    if not vals:
        return None
    med = median(vals)
    mad = median([abs(x - med) for x in vals])
    return max(1.4826 * mad, 1e-9 + 1e-3 * abs(med))


def sub(a, b):
    return None if a is None or b is None else a - b


def div(a, b):
    return None if a is None or b is None else a / b


def sample_std(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.std(vals, ddof=1)) if len(vals) >= 2 else None


def norm(terms: list[float | None]) -> float | None:
    return None if any(t is None for t in terms) else math.sqrt(sum(t * t for t in terms))


def reference(series: list[dict], w: int) -> list[dict]:
    """design.md's dyn@1 for one series (rows sorted by step)."""
    xs = {d: [None if r[d] is None or math.isnan(r[d]) else float(r[d]) for r in series] for d in DESCRIPTORS}
    steps = [r["step"] for r in series]
    c = {d: scale(xs[d]) for d in DRIFT}
    out = []
    for i, row in enumerate(series):
        gap = steps[i] - steps[i - 1] if i else None
        res = {k: row[k] for k in KEY + ("step", "seed")}
        for d in DESCRIPTORS:
            x = xs[d]
            delta = sub(x[i], x[i - 1]) if i else None
            vel = div(delta, gap) if i else None
            prev_vel = div(sub(x[i - 1], x[i - 2]), steps[i - 1] - steps[i - 2]) if i >= 2 else None
            res[f"{d}_delta"] = delta
            res[f"{d}_velocity"] = vel
            res[f"{d}_accel"] = div(sub(vel, prev_vel), gap) if i >= 2 else None
            window = [
                div(sub(x[j], x[j - 1]), steps[j] - steps[j - 1]) for j in range(max(1, i - w + 1), i + 1)
            ]
            res[f"{d}_volatility"] = sample_std(window)
        res["drift_velocity"] = norm([div(res[f"{d}_velocity"], c[d]) for d in DRIFT]) if i else None
        res["drift_from_init"] = norm([div(sub(xs[d][i], xs[d][0]), c[d]) for d in DRIFT])
        res["alignment_velocity"] = div(xs["principal_angle_prev"][i], gap) if i else None
        out.append(res)
    for i, res in enumerate(out):
        prev = out[i - 1]["drift_velocity"] if i else None
        res["drift_accel"] = div(sub(res["drift_velocity"], prev), steps[i] - steps[i - 1]) if i else None
        res["volatility_window"] = w
    return out


# -- the lakes ----------------------------------------------------------------------------


def hand_rows() -> list[dict]:
    """A run with a pooled and a per-sample series on two layers, irregular steps, a NULL."""
    rows = []
    steps = [0, 10, 15, 40, 41, 60, 100, 130]
    for layer in (0, 3):
        for sample_id in (None, "s1"):
            for i, step in enumerate(steps):
                base = layer + (0.5 if sample_id else 0.0)
                rows.append({
                    "run_id": "0007", "analysis_id": "capture-v1", "step": step, "seed": 3,
                    "sample_set": "fixed_v1", "sample_id": sample_id, "layer": layer, "module": "resid_post",
                    "n_samples": 16, "dim": 32,
                    "eff_rank": 10.0 + base + [0, 1, 1, 4, 4.5, 4, 6, 6.25][i],
                    "sv_entropy": 0.5 + 0.01 * i * (layer + 1),
                    "sparsity": 0.25 if i < 4 else 0.5,  # a flat stretch, then a step: MAD 0.125
                    "principal_angle_prev": None if i == 0 else 0.1 * i,
                    "principal_angle_init": 0.0 if i == 0 else 0.05 * i * i,
                    "act_norm": None if (sample_id and i == 5) else 2.0 + 0.5 * math.sin(i),
                })
    return rows


def random_rows(rng: np.random.Generator, runs: int = 3, captures: int = 40) -> list[dict]:
    rows = []
    for r in range(runs):
        steps = np.cumsum(rng.integers(1, 50, captures))
        for layer in range(2):
            for module in ("resid_pre", "mlp_out"):
                for sample_id in (None, "a", "b"):
                    x = rng.normal(size=(captures, 6)).cumsum(axis=0) + 20
                    for i in range(captures):
                        rows.append({
                            "run_id": f"r{r}", "analysis_id": "capture-v1", "step": int(steps[i]), "seed": r,
                            "sample_set": "fixed_v1", "sample_id": sample_id, "layer": layer, "module": module,
                            "n_samples": 8, "dim": 16,
                            "eff_rank": float(x[i, 0]), "sv_entropy": float(x[i, 1]), "sparsity": float(x[i, 2]),
                            "principal_angle_prev": None if i == 0 else float(abs(x[i, 3])),
                            "principal_angle_init": 0.0 if i == 0 else float(abs(x[i, 4])),
                            "act_norm": float(abs(x[i, 5])),
                        })
    return rows


def as_float32_inputs(rows: list[dict]) -> list[dict]:
    """The descriptors as the lake stores them (float32), which is what the model reads."""
    out = []
    for r in rows:
        r = dict(r)
        for d in DESCRIPTORS:
            if r[d] is not None:
                r[d] = float(np.float32(r[d]))
        out.append(r)
    return out


def expected(rows: list[dict], w: int) -> dict[tuple, dict]:
    series: dict[tuple, list[dict]] = {}
    for r in as_float32_inputs(rows):
        series.setdefault(tuple(r[k] for k in KEY), []).append(r)
    result = {}
    for s in series.values():
        for res in reference(sorted(s, key=lambda r: r["step"]), w):
            result[tuple(res[k] for k in KEY) + (res["step"],)] = res
    return result


def built(lake: Path, analysis: str) -> dict[tuple, dict]:
    folder = lake / "geometry_dynamics" / f"analysis_id={analysis}"
    # run_id folders are strings ('0007'), never inferred as numbers
    hive = ds.partitioning(pa.schema([("run_id", pa.string())]), flavor="hive")
    table = pq.read_table(folder, partitioning=hive)
    return {tuple(r[k] for k in KEY) + (r["step"],): r for r in table.to_pylist()}


def assert_matches(got: dict[tuple, dict], want: dict[tuple, dict]) -> None:
    assert got.keys() == want.keys()
    for key, exp_row in want.items():
        row = got[key]
        for col, value in exp_row.items():
            if col in KEY or col == "step":
                continue
            if value is None:
                assert row[col] is None, (key, col, row[col])
            else:
                assert row[col] is not None, (key, col)
                assert row[col] == pytest.approx(value, rel=2e-5, abs=1e-6), (key, col)


def only_analysis(lake: Path) -> str:
    [folder] = list((lake / "geometry_dynamics").iterdir())
    return folder.name.split("=", 1)[1]


# -- the tests ----------------------------------------------------------------------------


def test_hand_checkable_values(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    writer.write("geometry_state", hand_rows(), lake=lake)
    models.run(lake=lake, report=lambda _: None)
    got = built(lake, only_analysis(lake))
    # A few values worked out by hand from design.md, before the general comparison.
    pooled0 = {k: v for k, v in got.items() if k[2] is None and k[3] == 0}
    row = pooled0[("0007", "fixed_v1", None, 0, "resid_post", 15)]
    assert row["eff_rank_delta"] == 0.0
    assert row["eff_rank_velocity"] == 0.0
    assert row["eff_rank_accel"] == pytest.approx((0.0 - 0.1) / 5)
    assert row["alignment_velocity"] == pytest.approx(0.2 / 5)
    first = pooled0[("0007", "fixed_v1", None, 0, "resid_post", 0)]
    assert first["drift_from_init"] == 0.0
    assert first["eff_rank_delta"] is None and first["drift_velocity"] is None
    # sparsity 0.25 x4 then 0.5 x4: median 0.375, MAD 0.125 -> scale 1.4826 * 0.125
    jump = pooled0[("0007", "fixed_v1", None, 0, "resid_post", 41)]
    assert jump["sparsity_velocity"] == pytest.approx(0.25)
    assert all(r["seed"] == 3 and r["volatility_window"] == 5 for r in got.values())
    assert_matches(got, expected(hand_rows(), 5))


def test_random_series_match_numpy_at_two_windows(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    rows = random_rows(np.random.default_rng(7))
    writer.write("geometry_state", rows, lake=lake)
    models.run(lake=lake, report=lambda _: None)
    first = only_analysis(lake)
    assert_matches(built(lake, first), expected(rows, 5))
    models.run(lake=lake, params={"geometry_dynamics": {"volatility_window": 3}}, report=lambda _: None)
    second = next(p.name.split("=", 1)[1] for p in (lake / "geometry_dynamics").iterdir() if first not in p.name)
    assert_matches(built(lake, second), expected(rows, 3))
    assert_matches(built(lake, first), expected(rows, 5))  # the old analysis stays as it was


def test_nan_from_another_tool_counts_as_null(tmp_path: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    rows = hand_rows()
    # A producer other than our writer may store NaN; the model must read it as NULL.
    rows_nan = [dict(r, eff_rank=float("nan")) if (r["step"] == 40 and r["layer"] == 3) else r for r in rows]
    folder = lake / "geometry_state" / "analysis_id=capture-v1" / "run_id=0007"
    folder.mkdir(parents=True)
    file_fields = [c.field for c in GEOMETRY_STATE.file_columns]
    table = pa.Table.from_pylist(
        [{f.name: r.get(f.name) for f in file_fields} | {"schema_version": "geometry_state@2.0",
          "created_at_utc": pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()} for r in rows_nan],
        schema=pa.schema(file_fields),
    )
    pq.write_table(table, folder / "part-other-tool.parquet")
    models.run(lake=lake, report=lambda _: None)
    rows_null = [dict(r, eff_rank=None) if (r["step"] == 40 and r["layer"] == 3) else r for r in rows]
    assert_matches(built(lake, only_analysis(lake)), expected(rows_null, 5))


@pytest.mark.parametrize("window", [2, 8])
def test_other_volatility_windows(tmp_path: Path, window: int) -> None:
    lake = init_lake(tmp_path / "lake")
    writer.write("geometry_state", hand_rows(), lake=lake)
    models.run(lake=lake, params={"geometry_dynamics": {"volatility_window": window}}, report=lambda _: None)
    got = built(lake, only_analysis(lake))
    assert_matches(got, expected(hand_rows(), window))


def test_a_window_of_one_capture_is_refused(tmp_path: Path) -> None:
    """One velocity per window is never enough for a sample std: the analysis would be NULLs."""
    lake = init_lake(tmp_path / "lake")
    writer.write("geometry_state", hand_rows(), lake=lake)
    with pytest.raises(WarehouseError, match=r"volatility_window = 1 is outside its range \[2, 100\]"):
        models.run(lake=lake, params={"geometry_dynamics": {"volatility_window": 1}}, report=lambda _: None)
    assert not (lake / "geometry_dynamics").exists()
