"""Progress inside a model: each batch a model writes is reported (batches done of total,
rows, seconds); the command shows it on a terminal only."""

from __future__ import annotations

import os
import pty
import select
import subprocess
from pathlib import Path

import pytest

from model_fixtures import CLI, REPO, only_models_sql, write_runs
from warehouse import models
from warehouse.models import Progress

DYN = "geometry_dynamics"
RUNS = {f"r{i}": range(0, 100, 10) for i in range(4)}  # ten captures per series
ROWS_PER_RUN = 10 * 2 * 2  # geometry_dynamics: a row per input row (two layers, a pooled and a per-sample series)


@pytest.fixture
def dyn_sql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    sql = only_models_sql(tmp_path / "sql", DYN)
    monkeypatch.setenv("SQUIGGLE_SQL", str(sql))
    return sql


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    write_runs(lake, RUNS)
    return lake


def test_callback_hears_each_batch(lake: Path, dyn_sql: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUIGGLE_BATCH_BYTES", "1")  # every run is a batch of its own
    heard: list[Progress] = []
    results = models.run(lake=lake, report=lambda _: None, progress=heard.append)
    assert [(p.plan.name, p.done, p.total, p.rows) for p in heard] == [
        (DYN, k, 4, k * ROWS_PER_RUN) for k in (1, 2, 3, 4)
    ]
    assert results[0].rows == 4 * ROWS_PER_RUN
    seconds = [p.seconds for p in heard]
    assert seconds == sorted(seconds) and seconds[0] > 0
    # nothing to do: no batch, nothing heard
    heard.clear()
    models.run(lake=lake, report=lambda _: None, progress=heard.append)
    assert heard == []


def test_one_batch_when_the_budget_holds_every_run(lake: Path, dyn_sql: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUIGGLE_BATCH_BYTES", str(10**9))
    heard: list[Progress] = []
    models.run(lake=lake, report=lambda _: None, progress=heard.append)
    assert [(p.done, p.total, p.rows) for p in heard] == [(1, 1, 4 * ROWS_PER_RUN)]


def test_a_model_s_batch_divisor_shrinks_its_batches(lake: Path, dyn_sql: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``-- batch_divisor: N``: a batch reads at most memory_limit / N input bytes. A divisor
    larger than the memory limit leaves each run a batch of its own, with the same rows."""
    monkeypatch.delenv("SQUIGGLE_BATCH_BYTES", raising=False)
    heard: list[Progress] = []
    models.run(lake=lake, report=lambda _: None, progress=heard.append)
    assert [(p.done, p.total) for p in heard] == [(1, 1)]  # the default: one batch holds every run
    model = dyn_sql / "models" / f"{DYN}.sql"
    model.write_text(model.read_text().replace("-- grain:", "-- batch_divisor: 1000000000000\n-- grain:", 1))
    heard.clear()
    results = models.run(lake=lake, report=lambda _: None, progress=heard.append, full_refresh=True)
    assert [(p.done, p.total) for p in heard] == [(k, 4) for k in (1, 2, 3, 4)]
    assert results[0].rows == 4 * ROWS_PER_RUN


@pytest.mark.parametrize("value", ["0", "-3", "many", "1.5"])
def test_a_bad_batch_divisor_is_refused(lake: Path, dyn_sql: Path, value: str) -> None:
    model = dyn_sql / "models" / f"{DYN}.sql"
    model.write_text(model.read_text().replace("-- grain:", f"-- batch_divisor: {value}\n-- grain:", 1))
    with pytest.raises(models.ModelError, match=f"batch_divisor must be a whole number, 1 or more; got '{value}'"):
        models.run(lake=lake, report=lambda _: None)
    assert not (lake / DYN).exists()


@pytest.mark.parametrize(
    ("done", "total", "rows", "seconds", "text"),
    [
        (3, 10, 150_000, 3.0, "batch 3/10, 50,000 rows/s, 0:07 left"),
        (1, 4, 1_000, 40.0, "batch 1/4, 25 rows/s, 2:00 left"),
        (4, 4, 800, 2.0, "batch 4/4, 400 rows/s, 0:00 left"),
    ],
)
def test_progress_text(done: int, total: int, rows: int, seconds: float, text: str) -> None:
    assert Progress(None, done, total, rows, seconds).describe() == text  # type: ignore[arg-type]


def _env(dyn_sql: Path) -> dict[str, str]:
    return {**os.environ, "SQUIGGLE_SQL": str(dyn_sql), "SQUIGGLE_BATCH_BYTES": "1"}


def test_piped_output_has_no_progress(lake: Path, dyn_sql: Path) -> None:
    r = subprocess.run([str(CLI), "models", "run", "--lake", str(lake)], capture_output=True, text=True,
                       env=_env(dyn_sql), cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{DYN} dyn@1 -> ") and "4 runs (first build)" in lines[0]
    assert "batch" not in r.stdout and "rows/s" not in r.stdout and "\r" not in r.stdout and "\x1b" not in r.stdout


def test_terminal_shows_batches_then_the_result(lake: Path, dyn_sql: Path) -> None:
    main, child = pty.openpty()
    proc = subprocess.Popen([str(CLI), "models", "run", "--lake", str(lake)], stdout=child, stderr=subprocess.PIPE,
                            env=_env(dyn_sql), cwd=REPO)
    os.close(child)
    out = b""
    while True:
        ready, _, _ = select.select([main], [], [], 300)
        try:
            chunk = os.read(main, 4096) if ready else b""
        except OSError:  # the command closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    text = out.decode()
    for k in (1, 2, 3, 4):
        assert f"batch {k}/4, " in text
    assert text.count(" left") == 4
    # the last thing on the line is the model's result, written over the progress
    assert text.rstrip().rsplit("\r\x1b[K", 1)[1].startswith(f"{DYN} dyn@1 -> ")
