"""The demo lake: deterministic, complete, in range, and its planted truth recoverable.

The recovery checks are small numpy implementations of design.md's cpd@1 (change points),
sig@1 (trajectory signatures) and dyn@1 + probe_summaries + dis@1 (family ranking), written
independently of the SQL models so that the demo is checked against the formulas themselves.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from warehouse import demo
from warehouse.contracts import DESCRIPTORS
from warehouse.hashing import config_hash

W, Z_MIN, TOLERANCE = 5, 4.0, 2
MODULES = ("resid_pre", "attn_out", "mlp_out", "resid_post")


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "lake"
    demo.write_demo(lake=root, seed=0)
    return root


def read(lake: Path, dataset: str) -> pa.Table:
    """A dataset as written, partition values included, through DuckDB like any reader."""
    glob = str(lake / dataset / "**" / "*.parquet")
    return duckdb.sql(
        f"select * from read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false)"
    ).to_arrow_table()


def pooled_series(geometry: pa.Table) -> tuple[list[tuple], np.ndarray, np.ndarray]:
    """Pooled series of every (run, layer, module, descriptor), in capture order.

    Returns the keys (run_id, layer, metric), the values (series x captures, NaN for NULL)
    and the steps (series x captures). Every run of a kind has the same number of captures.
    """
    con = duckdb.connect()
    con.register("g", geometry)
    rows = con.sql("select * from g where sample_id is null order by run_id, layer, module, step").to_arrow_table()
    run, layer, module = (rows.column(c).to_numpy(zero_copy_only=False) for c in ("run_id", "layer", "module"))
    n_series = len(set(zip(run, layer, module)))
    n = rows.num_rows // n_series
    keys, values, steps = [], [], []
    heads = np.arange(0, rows.num_rows, n)
    step = rows.column("step").to_numpy().reshape(n_series, n)
    for d in DESCRIPTORS:
        col = rows.column(d).to_numpy(zero_copy_only=False).astype(float).reshape(n_series, n)
        values.append(col)
        steps.append(step)
        keys += [(run[h], int(layer[h]), f"{module[h]}.{d}") for h in heads]
    return keys, np.concatenate(values), np.concatenate(steps)


# ---------------------------------------------------------------------------------------
# cpd@1 in numpy


def cpd_events(x: np.ndarray) -> list[tuple[int, float]]:
    """design.md's cpd@1 on one series: (peak capture index, metric_z at the peak) per event."""
    n = len(x)
    with np.errstate(all="ignore"):
        diffs = np.abs(np.diff(x))
        sigma = 1.4826 * np.nanmedian(diffs) / math.sqrt(2)
        z, contrast = np.full(n, np.nan), np.full(n, np.nan)
        for i in range(W, n - W + 1):
            b, p = x[i - W:i], x[i:i + W]
            b, p = b[~np.isnan(b)], p[~np.isnan(p)]
            if not len(b) or not len(p):
                continue
            bm = np.median(b)
            m = max(np.median(np.abs(b - bm)), sigma / 1.4826, 1e-6 * abs(bm), 1e-12)
            z[i] = abs(np.median(p) - bm) / (1.4826 * m)
            contrast[i] = abs(p.mean() - b.mean())
    events, i = [], 0
    while i < n:
        if z[i] >= Z_MIN:  # NaN compares False: a NULL metric_z breaks a run
            j = i
            while j + 1 < n and z[j + 1] >= Z_MIN:
                j += 1
            peak = i + int(np.argmax(contrast[i:j + 1]))
            events.append((peak, float(z[peak])))
            i = j + 1
        else:
            i += 1
    return events


def detect(geometry: pa.Table) -> dict[tuple, list[int]]:
    keys, values, _ = pooled_series(geometry)
    return {k: [peak for peak, _ in cpd_events(v)] for k, v in zip(keys, values)}


def precision_recall(detected: dict[tuple, list[int]], truth: pa.Table) -> tuple[float, float, int, int]:
    """Precision and recall with design.md's tolerance of 2 captures, plus the counts."""
    planted: dict[tuple, list[int]] = {}
    for r in truth.to_pylist():
        planted.setdefault((r["run_id"], r["layer"], r["metric"]), []).append(r["capture_index"])
    found = [(k, i) for k, peaks in detected.items() for i in peaks]
    hits = sum(any(abs(i - t) <= TOLERANCE for t in planted.get(k, [])) for k, i in found)
    recalled = sum(any(abs(i - t) <= TOLERANCE for i in detected.get(k, [])) for k, ts in planted.items() for t in ts)
    n_truth = sum(len(ts) for ts in planted.values())
    return hits / max(len(found), 1), recalled / n_truth, len(found), n_truth


# ---------------------------------------------------------------------------------------
# sig@1 (run scope) in numpy


def trajectory_signatures(geometry: pa.Table, k: int = 16) -> dict[str, np.ndarray]:
    keys, values, steps = pooled_series(geometry)
    by_run: dict[str, list[np.ndarray]] = {}
    for key, x, st in zip(keys, values, steps):
        t = (st - st[0]) / (st[-1] - st[0])
        bins = np.minimum(np.floor(t * k), k - 1).astype(int)
        means = np.full(k, np.nan)
        for b in range(k):
            sel = (bins == b) & ~np.isnan(x)
            if sel.any():
                means[b] = x[sel].mean()
        first = means[~np.isnan(means)][0]
        for b in range(k):  # an empty bin takes the previous bin's value (the first: the first non-empty)
            if np.isnan(means[b]):
                means[b] = means[b - 1] if b else first
        sd = means.std()
        by_run.setdefault(key[0], []).append((means - means.mean()) / sd if sd >= 1e-12 else np.zeros(k))
    return {run: np.concatenate(parts) for run, parts in by_run.items()}


# ---------------------------------------------------------------------------------------
# dyn@1 drift + probe_summaries + dis@1 in numpy (module resid_post)


def _scale(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    med = np.median(x)
    return max(1.4826 * np.median(np.abs(x - med)), 1e-9 + 1e-3 * abs(med))


def dis_family_ranking(geometry: pa.Table, runs: pa.Table) -> list[str]:
    """Families ranked by mean DIS over their seeds (dis@1), from the pooled resid_post series."""
    family = dict(zip(runs.column("run_id").to_pylist(), runs.column("family_id").to_pylist()))
    con = duckdb.connect()
    con.register("g", geometry)
    rows = con.sql(
        "select * from g where sample_id is null and module = 'resid_post' order by run_id, layer, step"
    ).to_arrow_table().to_pydict()
    series: dict[tuple, dict[str, list]] = {}
    for i, run in enumerate(rows["run_id"]):
        if family.get(run):
            s = series.setdefault((run, rows["layer"][i]), {c: [] for c in ("step", *DESCRIPTORS)})
            for c in s:
                s[c].append(np.nan if rows[c][i] is None else rows[c][i])
    features: dict[str, list[np.ndarray]] = {}
    for (run, layer), s in sorted(series.items()):
        x = {c: np.array(v, dtype=float) for c, v in s.items()}
        dt = np.diff(x["step"])
        drift = np.sqrt(sum((np.diff(x[d]) / dt / _scale(x[d])) ** 2 for d in ("eff_rank", "sv_entropy", "sparsity", "act_norm")))
        a = [x[d][-1] - x[d][0] for d in ("eff_rank", "sv_entropy", "sparsity")]
        features.setdefault(run, []).append(np.array(a + [x["principal_angle_init"][-1], drift.mean(), drift.std(ddof=1)]))
    run_ids = sorted(features)
    f = np.array([np.concatenate(features[r]) for r in run_ids])
    med = np.median(f, axis=0)
    scale = 1.4826 * np.median(np.abs(f - med), axis=0)
    z = np.where(scale > 0, (f - med) / np.where(scale > 0, scale, 1), 0.0)
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    fam = np.array([family[r] for r in run_ids])
    dis = {}
    for i, r in enumerate(run_ids):
        same = (fam == fam[i]) & (np.arange(len(run_ids)) != i)
        coherence = max(0.0, float((unit[same] @ unit[i]).mean()))
        cos_other = []
        for g in sorted(set(fam) - {fam[i]}):
            c = z[fam == g].mean(axis=0)
            cos_other.append(float(c @ z[i] / (np.linalg.norm(c) * np.linalg.norm(z[i]))))
        novelty = (1 - max(cos_other)) / 2
        dis[r] = np.linalg.norm(z[i]) / math.sqrt(z.shape[1]) * coherence * novelty
    mean = {str(g): float(np.mean([dis[r] for r in run_ids if family[r] == g])) for g in set(fam)}
    return sorted(mean, key=lambda g: (-mean[g], g))


# ---------------------------------------------------------------------------------------
# Tests


def test_same_seed_gives_identical_files(lake: Path, tmp_path: Path) -> None:
    other = tmp_path / "lake"
    demo.write_demo(lake=other, seed=0)
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    a, b = files(lake), files(other)
    assert sorted(a) == sorted(b)
    # the writer's stamps name the same folders; their modification times differ
    stamps = [p for p in a if p.parts[:2] == ("_meta", "checked")]
    assert stamps and all(json.loads(a[p]).keys() == json.loads(b[p]).keys() for p in stamps)
    assert {p: v for p, v in a.items() if p not in stamps} == {p: v for p, v in b.items() if p not in stamps}
    data = [p for p in a if p.suffix == ".parquet" and p.parts[0] != "_meta"]
    # Data files are named by a hash of their content.
    assert data and all(p.name == f"part-{hashlib.sha256(a[p]).hexdigest()[:32]}.parquet" for p in data)


def test_writing_the_demo_twice_is_a_no_op(lake: Path) -> None:
    before = sorted(p for p in lake.rglob("*") if p.is_file())
    summary = demo.write_demo(lake=lake, seed=0)
    assert sum(summary.rows_written.values()) == 0
    assert sorted(p for p in lake.rglob("*") if p.is_file()) == before
    assert "planted_events.parquet" in str(summary) and "make models" in str(summary)


def test_another_seed_changes_the_data() -> None:
    a, b = demo.build_demo(0), demo.build_demo(1)
    assert not a.tables["geometry_state"].equals(b.tables["geometry_state"])


def test_every_written_dataset_has_rows(lake: Path) -> None:
    for name in demo.WRITE_ORDER:
        assert read(lake, name).num_rows > 0, name


def test_runs_cohorts_and_seeds(lake: Path) -> None:
    runs = read(lake, "runs").to_pylist()
    train = [r for r in runs if r["run_mode"] == "train_full"]
    probe = [r for r in runs if r["run_mode"] == "probe_micro_finetune"]
    assert len(train) == 9 and all(r["status"] == "completed" for r in runs)
    cohorts = {}
    for r in train:
        cohorts.setdefault(r["config_hash"], set()).add(r["seed"])
        assert config_hash(json.loads(r["config_json"])) == r["config_hash"]
    assert len(cohorts) == 3 and all(len(s) == 3 for s in cohorts.values())
    assert {r["run_id"] for r in train} == {f"c{c}-s{s}" for c in (1, 2, 3) for s in (0, 1, 2)}
    fams = {}
    for r in probe:
        assert r["probe_name"] == "math_probe" and r["probe_config_hash"] and r["base_checkpoint"]
        fams.setdefault(r["family_id"], set()).add(r["seed"])
    assert len(fams) >= 6 and all(len(s) == 3 for s in fams.values())
    assert len({r["probe_config_hash"] for r in probe}) == 1
    families = read(lake, "families").column("family_id").to_pylist()
    assert set(fams) <= set(families)
    samples = read(lake, "samples").to_pylist()
    assert {s["split"] for s in samples} == {"probe"} and set(families) == {s["family_id"] for s in samples}


def test_geometry_shape(lake: Path) -> None:
    g = read(lake, "geometry_state")
    con = duckdb.connect()
    con.register("g", g)
    assert con.sql("select distinct analysis_id, sample_set from g").fetchall() == [("capture-v1", "fixed_v1")]
    per_run = con.sql("""
        select run_id, count(distinct step), count(distinct layer), list(distinct module order by module),
               count(*) filter (where sample_id is null), count(distinct sample_id),
               bool_and(n_samples > 1 and dim > 1)
        from g group by run_id order by run_id""").fetchall()
    for run, n_steps, n_layers, modules, pooled, n_samples, plausible in per_run:
        assert n_layers >= 4 and set(modules) >= set(MODULES) and pooled > 0 and plausible
        if run.startswith("c"):
            assert n_steps >= 60 and n_samples >= 8, run
        else:
            assert 16 <= n_steps <= 32, run  # a probe: short, but long enough for cpd@2 (16 captures)
    steps = np.array(con.sql("select distinct step from g where run_id = 'c1-s0' order by step").fetchnumpy()["step"])
    gaps = np.diff(steps)
    assert len(set(gaps.tolist())) > 10, "the capture grid is irregular"
    assert np.median(gaps[: len(gaps) // 3]) < np.median(gaps[-len(gaps) // 3:]) / 3, "denser early"


def test_descriptor_ranges(lake: Path) -> None:
    g = read(lake, "geometry_state")
    con = duckdb.connect()
    con.register("g", g)
    bad = con.sql("""
        select count(*) filter (where not eff_rank between 1 and least(dim, n_samples)),
               count(*) filter (where not (sv_entropy > 0 and sv_entropy <= 1)),
               count(*) filter (where not sparsity between 0 and 1),
               count(*) filter (where not principal_angle_prev between 0 and pi() / 2),
               count(*) filter (where not principal_angle_init between 0 and pi() / 2),
               count(*) filter (where not act_norm > 0)
        from g""").fetchall()[0]
    assert bad == (0,) * 6
    first = con.sql("""
        select bool_and(principal_angle_prev is null), bool_and(principal_angle_init = 0)
        from g where (run_id, step) in (select run_id, min(step) from g group by run_id)""").fetchall()[0]
    assert first == (True, True)
    later = con.sql("""
        select count(*) filter (where principal_angle_prev is null), min(principal_angle_init)
        from g where (run_id, step) not in (select run_id, min(step) from g group by run_id)""").fetchall()[0]
    assert later[0] == 0 and later[1] > 0


def test_capture_files_match_the_index(lake: Path) -> None:
    index = read(lake, "probe_captures_index").to_pylist()
    assert len(index) >= 18
    for row in index:
        path = lake / row["path"]
        assert row["path"] == f"captures/{row['run_id']}/{row['probe_name']}/{row['shard_id']}.npy"
        data = path.read_bytes()
        assert len(data) == row["bytes"]
        assert row["checksum"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert np.load(path).dtype == np.float32
    assert not list((lake / "captures").rglob(".tmp-*"))


def test_planted_changes_are_recovered_by_cpd(lake: Path) -> None:
    truth = pq.read_table(lake / "_meta" / "demo" / "planted_events.parquet")
    g = read(lake, "geometry_state")
    train = g.filter(pc.starts_with(g.column("run_id"), "c"))
    precision, recall, n_found, n_truth = precision_recall(detect(train), truth)
    print(f"cpd@1 (numpy): {n_found} events found, {n_truth} planted; precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.9 and recall >= 0.9
    # The planted step is the first capture at the new level, and every plant keeps w from the ends.
    steps = {(r["run_id"], r["step"]) for r in read(lake, "checkpoints").to_pylist()}
    assert all((r["run_id"], r["step"]) in steps for r in truth.to_pylist())
    assert min(truth.column("capture_index").to_pylist()) >= W
    assert max(truth.column("capture_index").to_pylist()) <= 64 - W


def test_cohorts_are_each_others_nearest_neighbours(lake: Path) -> None:
    g = read(lake, "geometry_state")
    sig = trajectory_signatures(g.filter(pc.starts_with(g.column("run_id"), "c")))
    runs = sorted(sig)
    v = np.array([sig[r] / np.linalg.norm(sig[r]) for r in runs])
    cos = v @ v.T
    np.fill_diagonal(cos, -np.inf)
    nearest = {r: runs[int(np.argmax(cos[i]))] for i, r in enumerate(runs)}
    print("nearest neighbours:", nearest)
    assert all(r.split("-")[0] == n.split("-")[0] for r, n in nearest.items())


def test_family_ranking_follows_the_planted_effects(lake: Path) -> None:
    planted = pq.read_table(lake / "_meta" / "demo" / "planted_families.parquet").to_pylist()
    expected = [r["family_id"] for r in sorted(planted, key=lambda r: r["expected_rank"])]
    got = dis_family_ranking(read(lake, "geometry_state"), read(lake, "runs"))
    print("dis@1 ranking (numpy):", got)
    assert got == expected


def test_val_accuracy_jumps(lake: Path) -> None:
    m = read(lake, "metrics_scalar")
    con = duckdb.connect()
    con.register("m", m)
    jumps = con.sql("""
        select run_id, max(d) from (
            select run_id, value - lag(value) over (partition by run_id order by step) as d
            from m where metric_name = 'val_accuracy')
        group by run_id""").fetchall()
    assert len(jumps) == 9 and all(d > 0.2 for _, d in jumps)


def test_another_seed_into_the_same_lake_is_refused_before_writing(lake: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in lake.rglob("*") if p.is_file()}
    with pytest.raises(demo.WarehouseError, match="already exists with other content"):
        demo.write_demo(lake=lake, seed=1)
    assert {p: p.stat().st_mtime_ns for p in lake.rglob("*") if p.is_file()} == before


def test_config_hash_ignores_the_seed_and_key_order() -> None:
    a = {"lr": 0.001, "model": {"width": 128, "layers": 6}, "seed": 0}
    b = {"seed": 7, "model": {"layers": 6, "width": 128}, "lr": 0.001}
    assert config_hash(a) == config_hash(b) != config_hash({**a, "lr": 0.003})
    assert len(config_hash(a)) == 64
