"""The capture session: rows, capture files and their index as written to a real lake.

Descriptor values are compared with the independent numpy version of
tests/capture_reference.py; hashes, checksums, sizes and sketches are recomputed here
from the inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pytest

import capture_reference as ref
from warehouse import check_lake
from warehouse.capture import CaptureSession
from warehouse.contracts import DESCRIPTORS
from warehouse.errors import CaptureError, UnsafeIdentifier, ValidationError

IDS = [f"q{i:02d}" for i in range(20)]
SERIES = {(0, "resid_pre"): 12, (0, "mlp_out"): 12, (1, "resid_post"): 80}  # (layer, module): width
STEPS = [0, 10, 25, 50, 100, 200]
CONFIG = {"model": {"width": 12, "layers": 2}, "lr": 0.01, "seed": 3}


def read(lake: Path, dataset: str, order: str = "") -> list[dict]:
    """A dataset's rows as dicts, partition values included; [] when it has no file yet."""
    glob = lake / dataset / "**" / "*.parquet"
    if not list((lake / dataset).rglob("*.parquet")):
        return []
    sql = f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false)"
    rel = duckdb.sql(sql + (f" ORDER BY {order}" if order else ""))
    return [dict(zip(rel.columns, row)) for row in rel.fetchall()]


def activations(seed: int = 0) -> dict[tuple[int, str], list[np.ndarray]]:
    """Per series, one drifting (20 x width) matrix per step."""
    g = np.random.default_rng(seed)
    out = {}
    for key, width in SERIES.items():
        x = g.normal(size=(len(IDS), width)).astype(np.float32)
        out[key] = [x]
        for _ in STEPS[1:]:
            x = (x + 0.4 * g.normal(size=x.shape)).astype(np.float32)
            out[key].append(x)
    return out


def record(lake: Path, acts: dict, run_id: str = "r1", config: dict = CONFIG, **kw) -> CaptureSession:
    with CaptureSession(run_id, config, model_id="tiny", lake=lake, sample_set="probe-a", **kw) as s:
        for i, step in enumerate(STEPS):
            s.log_metrics(step, {"accuracy": i / 10}, split="val")
            s.checkpoint(step, train_loss=2.0 - i / 10, tokens_seen=step * 64)
            for (layer, module), xs in acts.items():
                s.log(step, layer, module, xs[i], sample_ids=IDS)
    return s


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, dict]:
    lake = tmp_path_factory.mktemp("session") / "lake"
    acts = activations()
    record(lake, acts, flush_every=4, embeddings="pooled")
    return lake, acts


def test_geometry_matches_the_reference(recorded) -> None:
    lake, acts = recorded
    rows = read(lake, "geometry_state", "layer, module, step")
    assert len(rows) == len(SERIES) * len(STEPS)
    for (layer, module), xs in acts.items():
        got = [r for r in rows if (r["layer"], r["module"]) == (layer, module)]
        assert [r["step"] for r in got] == STEPS
        for row, expected in zip(got, ref.series(xs)):
            for name in DESCRIPTORS:
                if expected[name] is None:
                    assert row[name] is None, (layer, module, row["step"], name)
                else:
                    assert row[name] == pytest.approx(expected[name], rel=1e-5, abs=1e-7), (layer, module, name)
            assert (row["n_samples"], row["dim"], row["seed"]) == (len(IDS), xs[0].shape[1], 3)
            assert (row["run_id"], row["analysis_id"], row["sample_set"], row["sample_id"]) == ("r1", "capture-v1", "probe-a", None)


def test_runs_row_and_cohort_hash(recorded) -> None:
    lake, _ = recorded
    (run,) = read(lake, "runs")
    without_seed = {k: v for k, v in CONFIG.items() if k != "seed"}
    expected_hash = hashlib.sha256(json.dumps(without_seed, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert run["config_hash"] == expected_hash
    assert json.loads(run["config_json"]) == CONFIG
    assert (run["run_id"], run["seed"], run["status"], run["model_id"], run["run_mode"]) == ("r1", 3, "completed", "tiny", "train_full")
    assert run["started_at_utc"] <= run["ended_at_utc"]


def test_seeds_of_one_config_share_the_cohort(tmp_path: Path) -> None:
    acts = activations()
    record(tmp_path, acts, "a", {**CONFIG, "seed": 1})
    record(tmp_path, acts, "b", {**CONFIG, "seed": 2})
    record(tmp_path, acts, "c", {**CONFIG, "lr": 0.02, "seed": 1})
    hashes = {r["run_id"]: r["config_hash"] for r in read(tmp_path, "runs")}
    assert hashes["a"] == hashes["b"] != hashes["c"]


def test_checkpoints_and_metrics(recorded) -> None:
    lake, _ = recorded
    checkpoints = read(lake, "checkpoints", "step")
    assert [(r["step"], r["tokens_seen"]) for r in checkpoints] == [(s, s * 64) for s in STEPS]
    assert [r["train_loss"] for r in checkpoints] == pytest.approx([2.0 - i / 10 for i in range(len(STEPS))])
    assert all(r["wall_time_s"] >= 0 for r in checkpoints)
    metrics = read(lake, "metrics_scalar", "step")
    assert [(r["step"], r["metric_name"], r["split"], r["value"]) for r in metrics] == [
        (s, "accuracy", "val", pytest.approx(i / 10)) for i, s in enumerate(STEPS)]


def test_capture_files_are_indexed_with_size_and_checksum(recorded) -> None:
    lake, acts = recorded
    index = read(lake, "probe_captures_index", "step")
    assert [r["step"] for r in index] == STEPS
    for row in index:
        data = (lake / row["path"]).read_bytes()
        assert row["bytes"] == len(data) == os.path.getsize(lake / row["path"])
        assert row["checksum"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert row["path"] == f"captures/r1/probe-a/step-{row['step']:06d}.npz"
        assert (row["probe_name"], row["capture_type"], row["shard_id"]) == ("probe-a", "activations_sketch", f"step-{row['step']:06d}")
        with np.load(lake / row["path"], allow_pickle=False) as archive:
            assert archive["sample_ids"].tolist() == IDS
            i = STEPS.index(row["step"])
            for layer, module in [(0, "resid_pre"), (0, "mlp_out")]:  # 12 features: kept raw
                assert np.array_equal(archive[f"L{layer}.{module}"], acts[(layer, module)][i])
            assert archive["L1.resid_post"].shape == (len(IDS), 64)  # 80 features: projected
    assert len({r["probe_config_hash"] for r in index}) == 1


def test_wide_captures_share_one_linear_projection(recorded) -> None:
    """Every step's sketch of an 80-feature series is x @ R for one R that roughly keeps norms."""
    lake, acts = recorded
    xs = acts[(1, "resid_post")]
    index = read(lake, "probe_captures_index", "step")
    sketches = []
    for row in index:
        with np.load(lake / row["path"]) as archive:
            sketches.append(archive["L1.resid_post"].astype(np.float64))
    stacked_x = np.concatenate([x.astype(np.float64) for x in xs])  # 120 rows x 80 features: R is determined
    r, *_ = np.linalg.lstsq(stacked_x, np.concatenate(sketches), rcond=None)
    assert np.allclose(stacked_x @ r, np.concatenate(sketches), rtol=1e-4, atol=1e-4)
    ratio = np.linalg.norm(np.concatenate(sketches), axis=1) / np.linalg.norm(stacked_x, axis=1)
    assert 0.7 < np.median(ratio) < 1.3


def test_pooled_embeddings_are_the_mean_sketch(recorded) -> None:
    lake, acts = recorded
    rows = read(lake, "embeddings", "layer, module, step")
    assert len(rows) == len(SERIES) * len(STEPS)
    for row in rows:
        i = STEPS.index(row["step"])
        path = lake / f"captures/r1/probe-a/step-{row['step']:06d}.npz"
        with np.load(path) as archive:
            expected = archive[f"L{row['layer']}.{row['module']}"].astype(np.float64).mean(axis=0)
        assert row["vector"] == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-6)
        assert row["dim"] == len(row["vector"]) == min(64, acts[(row["layer"], row["module"])][i].shape[1])
        assert row["method"] == ("raw" if row["dim"] == 12 else "random_projection")
        assert row["sample_id"] is None


def test_samples_describe_the_probe_set(tmp_path: Path) -> None:
    with CaptureSession("r1", CONFIG, model_id="tiny", lake=tmp_path, sample_set="probe-a") as s:
        s.samples(["a", "b"], texts=["1 + 2 =", "3 + 4 ="], family_ids=["add", "add"], payloads=[{"x": 1}, {"x": 2}])
        s.samples(["c"], split="val")
    rows = read(tmp_path, "samples", "sample_id")
    assert [(r["sample_set"], r["sample_id"], r["split"], r["text"], r["family_id"], r["payload_json"]) for r in rows] == [
        ("probe-a", "a", "probe", "1 + 2 =", "add", '{"x":1}'),
        ("probe-a", "b", "probe", "3 + 4 =", "add", '{"x":2}'),
        ("probe-a", "c", "val", None, None, None),
    ]


def test_rows_are_flushed_in_batches_of_steps(tmp_path: Path) -> None:
    acts = activations()
    s = CaptureSession("r1", CONFIG, model_id="tiny", lake=tmp_path, flush_every=2)
    steps_in_lake = []
    for i, step in enumerate(STEPS):
        s.log(step, 0, "resid_pre", acts[(0, "resid_pre")][i], sample_ids=IDS)
        steps_in_lake.append(sorted({r["step"] for r in read(tmp_path, "geometry_state")}) if i else [])
    # The first row of a step flushes the steps before it once two are buffered.
    assert steps_in_lake == [[], [], [0, 10], [0, 10], [0, 10, 25, 50], [0, 10, 25, 50]]
    s.close()
    assert sorted(r["step"] for r in read(tmp_path, "geometry_state")) == STEPS
    assert len(list((tmp_path / "geometry_state").rglob("*.parquet"))) == 3
    assert check_lake(tmp_path) == []


def test_a_step_flushed_half_way_gets_a_second_capture_file(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(len(IDS), 5))
    with CaptureSession("r1", CONFIG, model_id="tiny", lake=tmp_path) as s:
        s.log(7, 0, "resid_pre", x, sample_ids=IDS)
        s.flush()
        s.log(7, 0, "resid_post", x, sample_ids=IDS)
    index = read(tmp_path, "probe_captures_index", "shard_id")
    assert [r["shard_id"] for r in index] == ["step-000007", "step-000007-1"]
    with np.load(tmp_path / index[1]["path"]) as archive:
        assert sorted(archive.files) == ["L0.resid_post", "sample_ids"]


@pytest.mark.parametrize("raised, status", [(RuntimeError, "failed"), (KeyboardInterrupt, "interrupted"), (SystemExit, "interrupted")])
def test_an_exception_flushes_and_records_the_status(tmp_path: Path, raised: type[BaseException], status: str) -> None:
    acts = activations()
    with pytest.raises(raised):
        with CaptureSession("r1", CONFIG, model_id="tiny", lake=tmp_path, flush_every=100) as s:
            for i, step in enumerate(STEPS[:3]):
                s.log(step, 0, "resid_pre", acts[(0, "resid_pre")][i], sample_ids=IDS)
            raise raised()
    assert sorted(r["step"] for r in read(tmp_path, "geometry_state")) == STEPS[:3]
    assert [r["status"] for r in read(tmp_path, "runs")] == [status]
    assert check_lake(tmp_path) == []


# ---------------------------------------------------------------------------------------
# Bad calls: a clear error at the call, nothing of it buffered


@pytest.fixture
def session(tmp_path: Path) -> CaptureSession:
    s = CaptureSession("r1", CONFIG, model_id="tiny", lake=tmp_path)
    s.log(10, 0, "resid_pre", np.eye(len(IDS), 4), sample_ids=IDS)
    s.log_metrics(10, {"loss": 1.0}, split="train")
    s.checkpoint(10, train_loss=1.0)
    return s


@pytest.mark.parametrize("call, message", [
    (lambda s: s.log(20, 0, "resid_pre", np.full((20, 4), np.nan), sample_ids=IDS),
     "activations at step 20, layer 0, module resid_pre: non-finite value nan at row 0, column 0"),
    (lambda s: s.log(20, 0, "resid_mid", np.eye(20, 4), sample_ids=IDS),
     "capture at step 20, layer 0, module resid_mid: module 'resid_mid' is not one of resid_pre"),
    (lambda s: s.log(10, 0, "resid_pre", np.eye(20, 4), sample_ids=IDS),
     "capture at step 10, layer 0, module resid_pre: steps of a series must increase; the previous capture was at step 10"),
    (lambda s: s.log(20, 0, "resid_pre", np.eye(19, 4), sample_ids=IDS[:19]),
     "sample_ids differ from the earlier captures'"),
    (lambda s: s.log(20, 0, "resid_pre", np.eye(19, 4), sample_ids=IDS),
     "capture at step 20, layer 0, module resid_pre: 19 activation rows but 20 sample_ids"),
    (lambda s: s.log(20, -1, "resid_pre", np.eye(20, 4), sample_ids=IDS), "a layer must be an integer from 0 to 32767, not -1"),
    (lambda s: s.log(1.5, 0, "resid_pre", np.eye(20, 4), sample_ids=IDS), "a step (or token count) must be a non-negative integer, not 1.5"),
    (lambda s: s.log(True, 0, "resid_pre", np.eye(20, 4), sample_ids=IDS), "must be a non-negative integer, not True"),
    (lambda s: s.log_metrics(10, {"loss": 2.0}, split="train"), "metric loss (split train, sample_set None) already logged at step 10"),
    (lambda s: s.log_metrics(20, {"loss": float("inf")}), "metric loss at step 20 is inf: the lake holds finite numbers only"),
    (lambda s: s.log_metrics(20, {"loss": "low"}), "metric loss at step 20 must be a number, not 'low'"),
    (lambda s: s.log_metrics(20, {"loss": 1.0}, split="test"), "split 'test' is not one of train, val, probe"),
    (lambda s: s.log_metrics(20, {"loss": 1.0}, sample_set="a/b"), "sample_set 'a/b' is not a safe identifier"),
    (lambda s: s.checkpoint(10), "checkpoint of step 10 already logged"),
    (lambda s: s.checkpoint(20, val_loss=float("nan")), "val_loss at step 20 is nan"),
    (lambda s: s.samples(["x", "y"], texts=["only one"]), "samples: 1 texts for 2 sample_ids"),
    (lambda s: s.samples(["x", "y", "x"]), "samples: sample_id 'x' is described twice"),
    (lambda s: s.samples(["x"], family_ids=["../f"]), "column family_id, row 1, value '../f': unsafe identifier"),
    (lambda s: s.samples(["x"], payloads=[{"v": float("nan")}]), "a payload must be JSON-serialisable without NaN"),
])
def test_a_bad_call_is_refused_and_buffers_nothing(session: CaptureSession, call, message: str) -> None:
    with pytest.raises((CaptureError, UnsafeIdentifier, ValidationError)) as err:
        call(session)
    assert message in str(err.value)
    session.close()
    lake = session.root
    assert [(r["step"], r["module"]) for r in read(lake, "geometry_state")] == [(10, "resid_pre")]
    assert [(r["step"], r["metric_name"], r["value"]) for r in read(lake, "metrics_scalar")] == [(10, "loss", 1.0)]
    assert [r["step"] for r in read(lake, "checkpoints")] == [10]
    assert read(lake, "samples") == []
    assert check_lake(lake) == []


def test_sample_ids_must_be_unique_strings(tmp_path: Path) -> None:
    s = CaptureSession("r1", CONFIG, model_id="tiny", lake=tmp_path)
    with pytest.raises(CaptureError, match="sample_id 'a' appears more than once"):
        s.log(0, 0, "resid_pre", np.eye(3), sample_ids=["a", "b", "a"])
    with pytest.raises(CaptureError, match="sample_ids must be non-empty strings"):
        s.log(0, 0, "resid_pre", np.eye(3), sample_ids=["a", 2, "c"])


def test_a_closed_session_refuses_more_rows(tmp_path: Path) -> None:
    s = CaptureSession("r1", CONFIG, model_id="tiny", lake=tmp_path)
    s.close()
    s.close()  # a second close does nothing
    with pytest.raises(CaptureError, match="capture session of run r1 is closed \\(completed\\)"):
        s.log(0, 0, "resid_pre", np.eye(3), sample_ids=["a", "b", "c"])
    assert [r["status"] for r in read(tmp_path, "runs")] == ["completed"]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"run_id": "../x"}, UnsafeIdentifier, "run_id '../x' is not a safe identifier"),
    ({"sample_set": "a b"}, UnsafeIdentifier, "sample_set 'a b' is not a safe identifier"),
    ({"run_mode": "pretrain"}, ValidationError, "column run_mode"),
    ({"config": {"lr": 0.1}}, CaptureError, "the run's seed must be an int32, given as config['seed'] or seed=; got None"),
    ({"config": {"lr": 0.1, "seed": 2}, "seed": 3}, CaptureError, "seed 3 differs from the config's seed 2"),
    ({"config": {"lr": float("nan"), "seed": 2}}, CaptureError, "config must be JSON-serialisable without NaN"),
    ({"config": {"lr": object(), "seed": 2}}, CaptureError, "config must be JSON-serialisable"),
    ({"embeddings": "all"}, CaptureError, "embeddings 'all' is not one of pooled, samples"),
    ({"projection_dim": 65}, CaptureError, "projection dim must be an integer from 1 to 64, not 65"),
    ({"flush_every": 0}, CaptureError, "flush_every must be a positive integer, not 0"),
])
def test_a_bad_session_is_refused_before_writing(tmp_path: Path, kwargs: dict, error: type, message: str) -> None:
    args = {"run_id": "r1", "config": CONFIG, "model_id": "tiny", "lake": tmp_path, **kwargs}
    with pytest.raises(error) as err:
        CaptureSession(args.pop("run_id"), args.pop("config"), **args)
    assert message in str(err.value)
    assert not tmp_path.exists() or not any(tmp_path.rglob("*.parquet"))


def test_a_run_id_with_rows_in_the_lake_is_refused(tmp_path: Path) -> None:
    s = CaptureSession("r1", CONFIG, model_id="tiny", lake=tmp_path)
    s.checkpoint(0, train_loss=1.0)
    s.flush()  # killed here: checkpoints but no runs row
    with pytest.raises(CaptureError, match="run r1 already has checkpoints rows in the lake"):
        CaptureSession("r1", CONFIG, model_id="tiny", lake=tmp_path)


# ---------------------------------------------------------------------------------------
# Killed outright


KILLED_RUN = textwrap.dedent("""
    import sys
    import numpy as np
    from warehouse.capture import CaptureSession

    g = np.random.default_rng(5)
    ids = [f"s{i}" for i in range(16)]
    session = CaptureSession("killed", {"seed": 0, "lr": 0.1}, model_id="m", lake=sys.argv[1], flush_every=3)
    for step in range(12):
        for layer in range(2):
            session.log(step, layer, "resid_post", g.normal(size=(16, 8)), sample_ids=ids)
        session.checkpoint(step, train_loss=1.0 / (step + 1))
        if step % 3 == 0:
            print("flushed before step", step, flush=True)
    print("steps 9-11 buffered; training on", flush=True)
    while True:  # a training step that never ends
        np.linalg.svd(g.normal(size=(64, 64)))
""")


def test_a_killed_session_leaves_a_clean_lake_with_every_flushed_capture(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(lake)], stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(5)]
        assert lines[-1].startswith("steps 9-11 buffered"), lines
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    check = subprocess.run([sys.executable, "-m", "warehouse.cli", "check", "--lake", str(lake)],
                           capture_output=True, text=True, timeout=120)
    # no broken file: the one finding is the run the kill left without its runs row
    assert check.returncode == 1, check.stdout + check.stderr
    assert check.stdout.splitlines() == [
        "geometry_state/analysis_id=capture-v1/run_id=killed: missing_run: run killed has geometry but no runs "
        "row: its cohort is unknown, so events (consensus across seeds) and the views joining runs leave it out; "
        "write its runs row (`warehouse schema runs`)",
        # and a note: its 8 captures are too few for the change-point model
        "note: geometry_state/analysis_id=capture-v1/run_id=killed: 12 of run killed's 12 series have fewer than "
        "16 captures (the shortest: 8): events_candidates tests a series only from 4 x min_scale = 16 captures on, "
        "so they give no change point (a smaller --param events_candidates.min_scale tests shorter series)",
        "1 problem(s) found",
    ]

    # Every capture of steps 0-8 (flushed before the kill), none of 9-11 (buffered), with
    # the values the reference computes from the same random draws.
    g = np.random.default_rng(5)
    drawn = {0: [], 1: []}
    for _ in range(12):
        for layer in range(2):
            drawn[layer].append(g.normal(size=(16, 8)))
    rows = read(lake, "geometry_state", "layer, step")
    assert [(r["layer"], r["step"]) for r in rows] == [(layer, step) for layer in range(2) for step in range(9)]
    for layer in range(2):
        for row, expected in zip([r for r in rows if r["layer"] == layer], ref.series(drawn[layer][:9])):
            assert row["eff_rank"] == pytest.approx(expected["eff_rank"], rel=1e-5)
            assert row["principal_angle_init"] == pytest.approx(expected["principal_angle_init"], rel=1e-5, abs=1e-7)
    assert [r["step"] for r in read(lake, "checkpoints", "step")] == list(range(9))
    index = read(lake, "probe_captures_index", "step")
    assert [r["step"] for r in index] == list(range(9))
    for row in index:
        assert row["checksum"] == "sha256:" + hashlib.sha256((lake / row["path"]).read_bytes()).hexdigest()
    assert not (lake / "runs").exists()  # the runs row is written when a session ends
