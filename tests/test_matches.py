"""matches (match@1) against an independent numpy reading of design.md.

signatures is another model's target: the tests write its rows by hand and run the matches
model alone from a copy of ``sql/`` holding only it (and the macros), so those rows are
read as producer data.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model_fixtures import only_models_sql
from warehouse import build_catalog, connect, models, writer
from warehouse.catalog import parse_view_header
from warehouse.contracts import MATCHES, SIGNATURES
from warehouse.lake import init_lake
from warehouse.models import load_project
from warehouse.models.build import run_models
from warehouse.models.executors import LocalExecutor

REPO = Path(__file__).resolve().parent.parent
SIG = "sig-hand"
F32_005 = float(np.float32(0.05))  # the default tolerance as stored: 0.0500000007...
X, Y, Z = "resid_post.eff_rank", "mlp_out.sparsity", "attn_out.act_norm"


# -- the reference ------------------------------------------------------------------------


def f32(x: float) -> float:
    return float(np.float32(x))


def cosine(a: list[float], b: list[float]) -> float | None:
    va, vb = np.array(a, dtype=np.float32).astype(np.float64), np.array(b, dtype=np.float32).astype(np.float64)
    if len(va) != len(vb) or not (np.isfinite(va).all() and np.isfinite(vb).all()):
        return None
    na, nb = np.linalg.norm(va), np.linalg.norm(vb)
    return None if na == 0 or nb == 0 else float(va @ vb / (na * nb))


def events(sig: dict) -> list[tuple]:
    """(layer, metric, t) as stored: t float32, NaN as None."""
    return [
        (layer, metric, None if t is None or not math.isfinite(t) else f32(t))
        for layer, metric, t in zip(sig["event_layers"], sig["event_metrics"], sig["event_t"])
    ]


def nearest(event: tuple, others: list[tuple], tolerance: float) -> float | None:
    """|delta t| to the nearest event of the same layer and metric within the tolerance."""
    layer, metric, t = event
    offsets = [
        abs(o[2] - t) for o in others
        if t is not None and o[2] is not None and o[0] == layer and o[1] == metric and abs(o[2] - t) <= tolerance
    ]
    return min(offsets) if offsets else None


def pair(a: dict, b: dict, tolerance: float) -> dict:
    tol = f32(tolerance)  # compared on the stored float32 values, tolerance included
    ea, eb = events(a), events(b)
    hits_a = [o for o in (nearest(e, eb, tol) for e in ea) if o is not None]
    hits_b = [o for o in (nearest(e, ea, tol) for e in eb) if o is not None]
    precision = len(hits_a) / len(ea) if ea else None
    recall = len(hits_b) / len(eb) if eb else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    cos = cosine(a["vector"], b["vector"])
    score = None if cos is None else 0.7 * (1 + cos) / 2 + 0.3 * (f1 if f1 is not None else (1 + cos) / 2)
    return {
        "run_id_a": a["run_id"], "run_id_b": b["run_id"], "vector_cosine": cos,
        "event_precision": precision, "event_recall": recall, "event_f1": f1,
        "mean_abs_offset_t": float(np.mean(hits_a)) if hits_a else None, "score": score,
        "timewarp_tolerance": tol, "match_version": "match@1",
    }


def reference(sigs: list[dict], tolerance: float = 0.05, top_k: int = 10) -> dict[tuple, dict]:
    """design.md match@1: every a's top-k partners of the same kind, scope and layout."""
    out = {}
    for a in sigs:
        group = (a["kind"], a["scope"], a["vector_layout"])
        partners = [
            (b["signature_id"], pair(a, b, tolerance)) for b in sigs
            if b["signature_id"] != a["signature_id"] and (b["kind"], b["scope"], b["vector_layout"]) == group
        ]
        # score as stored (float32) descending, NULL last; ties by signature_id_b
        partners.sort(key=lambda p: (p[1]["score"] is None, -f32(p[1]["score"] or 0.0), p[0]))
        for rank, (b_id, row) in enumerate(partners[:top_k], start=1):
            out[(a["signature_id"], b_id)] = row | {"rank_a": rank}
    return out


# -- inputs and outputs ---------------------------------------------------------------------


def sig(
    signature_id: str, vector: list[float], evs: list[tuple] = (), *, run_id: str | None = None,
    layout: str = "K3;run", scope: str = "run", kind: str = "trajectory",
) -> dict:
    return {
        "signature_id": signature_id, "analysis_id": SIG, "run_id": run_id or f"run-{signature_id}",
        "kind": kind, "scope": scope, "layer": 0 if scope == "layer" else None, "family_id": None, "seed": 0,
        "probe_name": None, "signature_version": "sig@1", "vector": vector, "vector_layout": layout,
        "norm": float(np.linalg.norm(vector)) if all(map(math.isfinite, vector)) else 0.0,
        "event_t": [e[2] for e in evs], "event_steps": [int(e[2] * 1000) if math.isfinite(e[2]) else 0 for e in evs],
        "event_layers": [e[0] for e in evs], "event_metrics": [e[1] for e in evs],
        "event_scores": [1.0] * len(evs),
    }


@pytest.fixture
def matches_only_sql(tmp_path: Path) -> Path:
    """A copy of sql/ holding the macros and the matches model only."""
    return only_models_sql(tmp_path / "sql", "matches")


def build(lake: Path, sql_dir: Path, **params) -> tuple[str, dict[tuple, dict]]:
    """Run the model; its analysis id and output rows keyed by (signature_id_a, signature_id_b)."""
    [result] = models.run(lake=lake, sql_dir=sql_dir, params={"matches": params} if params else None,
                          report=lambda _: None)
    analysis = result.plan.analysis_id
    folder = lake / "matches" / f"analysis_id={analysis}"
    rows = pq.read_table(folder, partitioning=None).to_pylist() if folder.exists() else []
    return analysis, {(r["signature_id_a"], r["signature_id_b"]): r for r in rows}


def assert_rows(got: dict[tuple, dict], want: dict[tuple, dict]) -> None:
    assert sorted(got) == sorted(want)
    for key, expected in want.items():
        row = got[key]
        for col, value in expected.items():
            if value is None:
                assert row[col] is None, (key, col, row[col])
            elif isinstance(value, float):
                assert row[col] is not None, (key, col)
                assert row[col] == pytest.approx(value, rel=2e-5, abs=1e-6), (key, col)
            else:
                assert row[col] == value, (key, col)


# -- hand-checkable signatures ------------------------------------------------------------------


def hand_signatures() -> list[dict]:
    return [
        # a: two events; the others are read against it
        sig("a", [1, 2, 2], [(0, X, 0.0), (1, Y, 0.5)]),
        # same direction (cosine 1); X exactly at the tolerance (the stored 0.05), Y just above
        # it (the stored 0.55 is 0.55000001, 0.0500000119 after 0.5)
        sig("b", [2, 4, 4], [(0, X, 0.05), (1, Y, 0.55)]),
        # opposite (cosine -1); X matches at 0, a different metric and a different layer do not
        sig("c", [-1, -2, -2], [(0, X, 0.0), (0, Z, 0.0), (2, X, 0.0)]),
        # a zero vector: NULL cosine and score, ranked last, its events still compared
        sig("d", [0, 0, 0], [(1, Y, 0.5)]),
        # no events: a's precision against it 0, recall and F1 NULL
        sig("e", [1, 0, 0]),
        # several candidates within the tolerance: the offset is to the nearest
        sig("f", [2, 1, 2], [(0, X, 0.03125), (0, X, 0.015625), (1, Y, 0.53125), (1, Y, 0.46875), (1, Y, 0.5078125)]),
        # the same vector and events as a under other layouts, scopes or kinds: never paired
        # with a; g and g2 pair with each other only
        sig("g", [1, 2, 2], [(0, X, 0.0), (1, Y, 0.5)], layout="K3;layer0"),
        sig("g2", [1, 2, 2], [(0, X, 0.0)], layout="K3;layer0"),
        sig("h", [1, 2, 2], [(0, X, 0.0), (1, Y, 0.5)], scope="layer"),
        sig("k", [1, 2, 2], [(0, X, 0.0), (1, Y, 0.5)], kind="probe"),
        # equal scores: q's partners z and y tie and rank by signature_id_b (y first)
        sig("q", [1, 0], layout="K2"),
        sig("z", [1, 1], layout="K2"),
        sig("y", [1, 1], layout="K2"),
        sig("x", [0, 1], layout="K2"),
    ]


def test_hand_checkable_values(tmp_path: Path, matches_only_sql: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    sigs = hand_signatures()
    writer.write("signatures", sigs, lake=lake)
    analysis, got = build(lake, matches_only_sql)

    ab = got[("a", "b")]
    assert ab["vector_cosine"] == pytest.approx(1.0)
    assert (ab["event_precision"], ab["event_recall"], ab["event_f1"]) == (0.5, 0.5, 0.5)
    assert ab["mean_abs_offset_t"] == pytest.approx(F32_005, rel=1e-7)
    assert ab["score"] == pytest.approx(0.7 + 0.3 * 0.5)

    ac = got[("a", "c")]
    assert ac["vector_cosine"] == pytest.approx(-1.0)
    assert (ac["event_precision"], ac["event_recall"]) == (0.5, pytest.approx(1 / 3))
    assert ac["event_f1"] == pytest.approx(0.4)
    assert ac["mean_abs_offset_t"] == 0.0
    assert ac["score"] == pytest.approx(0.3 * 0.4, abs=1e-7)

    ad = got[("a", "d")]
    assert ad["vector_cosine"] is None and ad["score"] is None
    assert (ad["event_precision"], ad["event_recall"], ad["event_f1"]) == (0.5, 1.0, pytest.approx(2 / 3))

    ae, ea = got[("a", "e")], got[("e", "a")]
    assert ae["vector_cosine"] == pytest.approx(1 / 3)
    assert (ae["event_precision"], ae["event_recall"], ae["event_f1"], ae["mean_abs_offset_t"]) == (0.0, None, None, None)
    assert (ea["event_precision"], ea["event_recall"], ea["event_f1"]) == (None, 0.0, None)
    assert ae["score"] == pytest.approx((1 + 1 / 3) / 2)  # the cosine term stands in for F1

    af, fa = got[("a", "f")], got[("f", "a")]
    assert af["vector_cosine"] == pytest.approx(8 / 9)
    assert (af["event_precision"], af["event_recall"], af["event_f1"]) == (1.0, 1.0, 1.0)
    assert af["mean_abs_offset_t"] == (0.015625 + 0.0078125) / 2  # each of a's events to its nearest
    assert fa["mean_abs_offset_t"] == (3 * 0.03125 + 0.015625 + 0.0078125) / 5
    assert af["score"] == pytest.approx(0.7 * (1 + 8 / 9) / 2 + 0.3)

    # ranks: score descending, the NULL score (zero vector d) last
    assert [b for (a, b), r in sorted(got.items(), key=lambda kv: kv[1]["rank_a"]) if a == "a"] == ["f", "b", "e", "c", "d"]
    # d's partners all have NULL scores: ranked by signature_id_b
    assert [got[("d", b)]["rank_a"] for b in "abcef"] == [1, 2, 3, 4, 5]
    # a tie in score: signature_id_b decides
    assert [got[("q", b)]["rank_a"] for b in "yzx"] == [1, 2, 3]
    assert got[("q", "y")]["score"] == got[("q", "z")]["score"]
    # other layouts, scopes and kinds are never paired with a
    assert {b for a, b in got if a == "a"} == set("bcdef")
    assert {k for k in got if "g" in k or "g2" in k} == {("g", "g2"), ("g2", "g")}
    assert not any("h" in k or "k" in k for k in got)

    assert all(r["timewarp_tolerance"] == np.float32(0.05) and r["match_version"] == "match@1" for r in got.values())
    assert all(r["run_id_a"] == f"run-{a}" and r["run_id_b"] == f"run-{b}" for (a, b), r in got.items())
    assert_rows(got, reference(sigs))


def test_top_k_and_tolerance_parameters(tmp_path: Path, matches_only_sql: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    sigs = hand_signatures()
    writer.write("signatures", sigs, lake=lake)
    _, got = build(lake, matches_only_sql, top_k=2)
    assert {b for a, b in got if a == "a"} == {"f", "b"}
    assert {b for a, b in got if a == "q"} == {"y", "z"}
    assert all(r["rank_a"] in (1, 2) for r in got.values())
    assert_rows(got, reference(sigs, top_k=2))
    # a wider tolerance: a's Y event now finds b's, 0.0500000119 later
    _, got = build(lake, matches_only_sql, tolerance=0.0625)
    assert got[("a", "b")]["event_precision"] == 1.0
    assert all(r["timewarp_tolerance"] == 0.0625 for r in got.values())
    assert_rows(got, reference(sigs, tolerance=0.0625))


def test_tolerance_boundary_on_stored_float32(tmp_path: Path, matches_only_sql: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    # exactly at 0.125 (every value exact in binary) matches; the next float32 above does not
    above = float(np.nextafter(np.float32(0.625), np.float32(1)))
    sigs = [
        sig("a", [1, 0], [(0, X, 0.5)]),
        sig("at", [1, 0], [(0, X, 0.625)]),
        sig("above", [1, 0], [(0, X, above)]),
        sig("below", [1, 0], [(0, X, 0.375)]),
    ]
    writer.write("signatures", sigs, lake=lake)
    _, got = build(lake, matches_only_sql, tolerance=0.125)
    assert got[("a", "at")]["event_precision"] == 1.0
    assert got[("a", "at")]["mean_abs_offset_t"] == 0.125
    assert got[("a", "above")]["event_precision"] == 0.0
    assert got[("a", "above")]["mean_abs_offset_t"] is None
    assert got[("a", "below")]["event_precision"] == 1.0
    assert_rows(got, reference(sigs, tolerance=0.125))


def test_random_signatures_match_numpy(tmp_path: Path, matches_only_sql: Path) -> None:
    rng = np.random.default_rng(11)
    sigs = []
    layouts = {"K4;run": 4, "K4;layer0": 4, "K6;layer1": 6}
    for i in range(45):
        layout = list(layouts)[i % 3]
        dim = layouts[layout]
        vector = rng.normal(size=dim).round(2).tolist()
        if i == 7:
            vector = [0.0] * dim
        n = int(rng.integers(0, 6))
        evs = [(int(rng.integers(0, 2)), [X, Y, Z][rng.integers(0, 3)], int(rng.integers(0, 33)) / 32) for _ in range(n)]
        sigs.append(sig(f"s{i:02d}", vector, evs, run_id=f"r{i // 3}", layout=layout,
                        scope="run" if layout.endswith("run") else "layer"))
    # a vector that duplicates another: tied scores
    sigs.append(sig("s99", sigs[4]["vector"], [], run_id="r99", layout=sigs[4]["vector_layout"], scope="layer"))
    lake = init_lake(tmp_path / "lake")
    writer.write("signatures", sigs, lake=lake)
    _, got = build(lake, matches_only_sql)
    assert_rows(got, reference(sigs))
    # a tolerance on the grid of the event times (1/32): many events exactly at it
    _, got = build(lake, matches_only_sql, tolerance=0.0625, top_k=4)
    assert_rows(got, reference(sigs, tolerance=0.0625, top_k=4))


def test_groups_computed_one_at_a_time_give_the_same_matches(
    tmp_path: Path, matches_only_sql: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a batch budget below the signatures' size, each (kind, scope, vector_layout)
    group is computed by its own query into its own file: the rows are the reference's."""
    rng = np.random.default_rng(5)
    layouts = ["K4;run", "K4;layer0", "K6;layer1"]
    sigs = [
        sig(f"s{i:02d}", rng.normal(size=6 if i % 3 == 2 else 4).round(2).tolist(),
            [(0, X, int(rng.integers(0, 9)) / 8)], run_id=f"r{i // 3}", layout=layouts[i % 3],
            scope="run" if i % 3 == 0 else "layer")
        for i in range(24)
    ]
    lake = init_lake(tmp_path / "lake")
    writer.write("signatures", sigs, lake=lake)
    monkeypatch.setenv("SQUIGGLE_BATCH_BYTES", "1")
    analysis, got = build(lake, matches_only_sql)
    assert_rows(got, reference(sigs))
    files = list((lake / "matches" / f"analysis_id={analysis}").glob("*.parquet"))
    # one file per group: 8 signatures, each with its 7 partners (fewer than top_k)
    assert sorted(pq.read_metadata(f).num_rows for f in files) == [56, 56, 56]
    # within the default budget: one query, one file, the same rows
    monkeypatch.delenv("SQUIGGLE_BATCH_BYTES")
    models.run(lake=lake, sql_dir=matches_only_sql, full_refresh=True, report=lambda _: None)
    files = list((lake / "matches" / f"analysis_id={analysis}").glob("*.parquet"))
    assert len(files) == 1
    assert_rows({(r["signature_id_a"], r["signature_id_b"]): r for r in pq.read_table(files[0]).to_pylist()},
                reference(sigs))


@pytest.mark.parametrize("slots", [2, 5])
def test_blocks_of_pairs_give_the_same_matches(tmp_path: Path, matches_only_sql: Path, slots: int) -> None:
    """Planned for workers, a group with more than its share of the pairs is computed in
    blocks of runs (block j: the pairs between its runs and those of blocks 1..j), and one
    more step per group merges the blocks' top k: the rows are the reference's, ties of
    score across blocks included. A small group is computed whole."""
    rng = np.random.default_rng(11)
    sigs = random_signatures(rng, range(30)) + [
        sig(f"small-{i}", rng.integers(-2, 3, size=6).astype(float).tolist(), run_id=f"r{i:02d}", layout="K6;layer1",
            scope="layer")
        for i in range(3)
    ]
    lake = init_lake(tmp_path / "lake")
    writer.write("signatures", sigs, lake=lake)
    seen: list[models.Progress] = []
    [result] = run_models(load_project(matches_only_sql, {"matches": {"top_k": 3}}), lake, report=lambda _: None,
                          progress=seen.append, executor=LocalExecutor(slots))
    # the two groups of 30 have 435 pairs each, above a 2 x slots-th of the 873: each is
    # split into 435 / that share blocks, merged by one step; the small group is one step
    blocks = math.ceil(435 / (873 // (2 * slots)))
    assert [(p.done, p.total) for p in seen] == [(i, 2 * blocks + 3) for i in range(1, 2 * blocks + 4)]
    folder = lake / "matches" / f"analysis_id={result.plan.analysis_id}"
    assert sorted(pq.read_metadata(f).num_rows for f in folder.glob("*.parquet")) == [6, 90, 90]
    got = {(r["signature_id_a"], r["signature_id_b"]): r for r in pq.read_table(folder, partitioning=None).to_pylist()}
    assert_rows(got, reference(sigs, top_k=3))


def random_signatures(rng: np.random.Generator, runs: range) -> list[dict]:
    """Per run a run-scope and a layer-scope signature, with events on a coarse t grid
    (many exact ties of t, offsets and scores)."""
    out = []
    for r in runs:
        for layout, scope in (("K4;run", "run"), ("K4;layer0", "layer")):
            evs = [(0, [X, Y][rng.integers(0, 2)], int(rng.integers(0, 9)) / 8) for _ in range(rng.integers(0, 4))]
            out.append(sig(f"{scope}-r{r:02d}", rng.integers(-2, 3, size=4).astype(float).tolist(), evs,
                           run_id=f"r{r:02d}", layout=layout, scope=scope))
    return out


def test_new_runs_are_merged_into_the_last_matches(tmp_path: Path, matches_only_sql: Path) -> None:
    """Signatures of new runs are merged into the last build's matches (only pairs with a
    new side are computed); the table equals the reference and a full build, ties included."""
    rng = np.random.default_rng(8)
    lake = init_lake(tmp_path / "lake")
    old = random_signatures(rng, range(12))
    writer.write("signatures", old, lake=lake)
    analysis, got = build(lake, matches_only_sql, top_k=3)
    assert_rows(got, reference(old, top_k=3))

    new = random_signatures(rng, range(12, 16))
    writer.write("signatures", new, lake=lake)
    [result] = models.run(lake=lake, sql_dir=matches_only_sql, params={"matches": {"top_k": 3}}, report=lambda _: None)
    assert result.plan.build == {"*": "4 new runs merged in"} and result.plan.analysis_id == analysis
    merged = {(r["signature_id_a"], r["signature_id_b"]): r
              for r in pq.read_table(lake / "matches" / f"analysis_id={analysis}", partitioning=None).to_pylist()}
    assert_rows(merged, reference(old + new, top_k=3))
    # some earlier signatures took a new partner into their top 3
    assert any(a.startswith(("run-r0", "layer-r0")) and b.endswith(("r12", "r13", "r14", "r15")) for a, b in merged)

    # a full build gives the same table, match ids included
    [full] = models.run(lake=lake, sql_dir=matches_only_sql, params={"matches": {"top_k": 3}}, full_refresh=True,
                        report=lambda _: None)
    again = {(r["signature_id_a"], r["signature_id_b"]): r
             for r in pq.read_table(lake / "matches" / f"analysis_id={analysis}", partitioning=None).to_pylist()}
    drop = lambda rows: {k: {c: v for c, v in r.items() if c != "created_at_utc"} for k, r in rows.items()}  # noqa: E731
    assert drop(again) == drop(merged)


def test_a_changed_earlier_run_rebuilds_all_matches(tmp_path: Path, matches_only_sql: Path) -> None:
    """New runs beside a changed earlier one: not a merge (the changed signatures' old pairs
    are stale), a full build, which gives the reference."""
    rng = np.random.default_rng(9)
    lake = init_lake(tmp_path / "lake")
    sigs = random_signatures(rng, range(6))
    writer.write("signatures", sigs, lake=lake)
    build(lake, matches_only_sql)
    shutil.rmtree(lake / "signatures" / f"analysis_id={SIG}" / "run_id=r02")
    changed = [s | {"vector": [1.0, 0.0, 0.0, 0.0]} for s in sigs if s["run_id"] == "r02"]
    added = random_signatures(rng, range(6, 7))
    writer.write("signatures", changed + added, lake=lake)
    [result] = models.run(lake=lake, sql_dir=matches_only_sql, report=lambda _: None)
    assert result.plan.build == {"*": "changed input"}
    _, rows = build(lake, matches_only_sql)  # up to date: reads the table back
    assert_rows(rows, reference([s for s in sigs if s["run_id"] != "r02"] + changed + added))


def test_nan_from_another_tool_counts_as_null(tmp_path: Path, matches_only_sql: Path) -> None:
    """A producer other than our writer may store NaN in a vector or an event time."""
    sigs = [
        sig("a", [1.0, 2.0], [(0, X, 0.5), (0, X, math.nan)], run_id="r"),
        sig("b", [1.0, math.nan], [(0, X, 0.5)], run_id="r"),
        sig("c", [2.0, 1.0], [(0, X, math.nan)], run_id="r"),
    ]
    folder = Path(tmp_path / "lake" / "signatures" / f"analysis_id={SIG}" / "run_id=r")
    folder.mkdir(parents=True)
    fields = [c.field for c in SIGNATURES.file_columns]
    rows = [{f.name: s.get(f.name) for f in fields} | {"schema_version": "signatures@2.0",
            "created_at_utc": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)} for s in sigs]
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(fields)), folder / "part-other-tool.parquet")
    _, got = build(tmp_path / "lake", matches_only_sql)
    # a vector with NaN has no cosine; an event at NaN counts as an event that matches nothing
    assert got[("a", "b")]["vector_cosine"] is None and got[("a", "b")]["score"] is None
    assert got[("a", "b")]["event_precision"] == 0.5 and got[("a", "b")]["event_recall"] == 1.0
    assert got[("a", "c")]["event_precision"] == 0.0 and got[("c", "a")]["event_precision"] == 0.0
    assert got[("a", "c")]["vector_cosine"] == pytest.approx(0.8)
    assert_rows(got, reference(sigs))


def test_vectors_of_different_lengths_under_one_layout_have_no_cosine(tmp_path: Path, matches_only_sql: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    writer.write("signatures", [sig("a", [1, 0]), sig("b", [1, 0, 0]), sig("c", [1, 1])], lake=lake)
    _, got = build(lake, matches_only_sql)
    assert got[("a", "b")]["vector_cosine"] is None and got[("a", "b")]["rank_a"] == 2
    assert got[("a", "c")]["vector_cosine"] == pytest.approx(math.sqrt(0.5))


def test_match_ids_are_stable_per_analysis(tmp_path: Path, matches_only_sql: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    writer.write("signatures", hand_signatures(), lake=lake)
    first, got = build(lake, matches_only_sql)
    ids = {k: r["match_id"] for k, r in got.items()}
    assert len(set(ids.values())) == len(ids) and all(len(i) == 32 for i in ids.values())
    # rebuilt: the same ids
    again, got = build(lake, matches_only_sql, top_k=10)
    assert again == first
    models.run(lake=lake, sql_dir=matches_only_sql, full_refresh=True, report=lambda _: None)
    _, got = build(lake, matches_only_sql)
    assert {k: r["match_id"] for k, r in got.items()} == ids
    # another analysis (other parameters): other ids for the same pairs
    _, other = build(lake, matches_only_sql, tolerance=0.1)
    assert not set(ids.values()) & {r["match_id"] for r in other.values()}
    # the output has the contract's schema
    table = pq.read_table(lake / "matches" / f"analysis_id={first}", partitioning=None)
    file_fields = {c.name: c.type for c in MATCHES.file_columns}
    assert {f.name: f.type for f in table.schema if f.name in file_fields} == file_fields


# -- the BI view --------------------------------------------------------------------------


def run_row(run_id: str, seed: int, cohort: str, family: str | None = None) -> dict:
    return {
        "run_id": run_id, "seed": seed, "run_mode": "probe_micro_finetune" if family else "train_full",
        "model_id": "m", "base_checkpoint": None, "family_id": family, "probe_name": "p" if family else None,
        "probe_config_hash": None, "config_json": "{}", "config_hash": cohort, "code_version": None,
        "status": "completed", "started_at_utc": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        "ended_at_utc": None, "notes": None,
    }


def test_best_matches_view(tmp_path: Path, matches_only_sql: Path) -> None:
    lake = init_lake(tmp_path / "lake")
    writer.write("runs", [run_row("r1", 0, "cA"), run_row("r2", 1, "cA"), run_row("r3", 0, "cB", "fam1")], lake=lake)
    writer.write("signatures", [
        sig("s1", [1, 0], [(0, X, 0.5)], run_id="r1"),
        sig("s2", [1, 0.1], [(0, X, 0.5)], run_id="r2"),
        sig("s3", [0, 1], run_id="r3"),
        sig("s4", [1, 1], run_id="r-unknown"),
    ], lake=lake)
    analysis, got = build(lake, matches_only_sql)
    views = tmp_path / "views"
    views.mkdir()
    shutil.copy(REPO / "views" / "best_matches.sql", views / "best_matches.sql")
    db = build_catalog(lake, tmp_path / "w.duckdb", views_dir=views, sql_dir=matches_only_sql)
    with connect(db) as con:
        rows = con.execute("SELECT * FROM best_matches").fetchall()
        names = [d[0] for d in con.description]
        view = [dict(zip(names, r)) for r in rows]
        comments = dict(con.execute(
            "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'best_matches'"
        ).fetchall())
    assert len(view) == len(got) == 12
    by_pair = {(r["signature_id_a"], r["signature_id_b"]): r for r in view}
    s1s2, s1s3, s1s4 = by_pair[("s1", "s2")], by_pair[("s1", "s3")], by_pair[("s1", "s4")]
    assert s1s2["same_cohort"] is True and (s1s2["cohort_id_a"], s1s2["cohort_id_b"]) == ("cA", "cA")
    assert (s1s2["seed_a"], s1s2["seed_b"], s1s2["rank_a"]) == (0, 1, 1)
    assert s1s3["same_cohort"] is False
    assert (s1s3["run_mode_b"], s1s3["family_id_b"], s1s3["probe_name_b"]) == ("probe_micro_finetune", "fam1", "p")
    assert (s1s3["run_mode_a"], s1s3["family_id_a"], s1s3["probe_name_a"]) == ("train_full", None, None)
    assert s1s4["same_cohort"] is None and s1s4["cohort_id_b"] is None  # run not in runs
    assert all(r["analysis_id"] == analysis for r in view)
    for (a, b), r in by_pair.items():
        assert r["score"] == got[(a, b)]["score"] and r["match_id"] == got[(a, b)]["match_id"]
    # every column is documented in the header, and nothing else
    header = parse_view_header((REPO / "views" / "best_matches.sql").read_text())
    assert header.name == "best_matches" and header.description
    assert set(header.columns) == set(names) and all(comments[c] for c in names)
