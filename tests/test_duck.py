"""The resource settings of the warehouse's DuckDB work connections."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse import duck
from warehouse.duck import memory_bytes, work_connection


def _setting(con, name: str) -> str:
    return con.execute("SELECT current_setting(?)", [name]).fetchone()[0]


def test_threads_and_memory_limit_come_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SQUIGGLE_THREADS", "1")
    monkeypatch.setenv("SQUIGGLE_MEMORY_LIMIT", "64MB")
    with work_connection(tmp_path / "spill") as con:
        assert _setting(con, "threads") == 1
        # 64 MB = 64e6 bytes = 61.0 MiB, as DuckDB prints it
        assert _setting(con, "memory_limit") == "61.0 MiB"


def test_temp_directory_gives_each_connection_its_own_spill_folder(tmp_path: Path, monkeypatch) -> None:
    base = tmp_path / "fast" / "tmp"  # missing: it is created
    monkeypatch.setenv("SQUIGGLE_TEMP_DIRECTORY", str(base))
    monkeypatch.setenv("SQUIGGLE_MEMORY_LIMIT", "32MB")
    monkeypatch.setenv("SQUIGGLE_THREADS", "1")
    with work_connection(tmp_path / "spill") as a, work_connection(tmp_path / "spill") as b:
        folders = {Path(_setting(c, "temp_directory")) for c in (a, b)}
        assert len(folders) == 2 and all(f.parent == base for f in folders)
        # 4 million doubles and their row ids (64 MB) sorted under a 32 MB limit must spill
        a.execute("CREATE TABLE t AS SELECT range AS r, hash(range)::DOUBLE AS x FROM range(4000000)")
        first = a.execute("SELECT r FROM t ORDER BY x LIMIT 1 OFFSET 2000000").fetchone()
        spilled = Path(_setting(a, "temp_directory"))
        assert first is not None and spilled.is_dir() and any(spilled.iterdir())
    assert not (tmp_path / "spill").exists()
    assert not spilled.exists(), "DuckDB removes the spill folder it created when the connection closes"


@pytest.mark.parametrize("value", ["", None])
def test_an_empty_temp_directory_setting_is_ignored(tmp_path: Path, monkeypatch, value) -> None:
    if value is None:
        monkeypatch.delenv("SQUIGGLE_TEMP_DIRECTORY", raising=False)
    else:
        monkeypatch.setenv("SQUIGGLE_TEMP_DIRECTORY", value)
    with work_connection(tmp_path / "spill") as con:
        assert _setting(con, "temp_directory") == str(tmp_path / "spill")


def test_checks_honour_the_memory_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """warehouse check (and a build's input checks) stay within SQUIGGLE_MEMORY_LIMIT too."""
    from warehouse.check import _connection

    monkeypatch.setenv("SQUIGGLE_MEMORY_LIMIT", "300MB")
    with _connection() as con:
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit in {"286.1 MiB", "300.0 MB"}, limit


def _physical_ram() -> int:
    with open("/proc/meminfo") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return kib * 1024


def test_unset_the_memory_limit_is_a_quarter_of_ram_at_most_4_gib(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SQUIGGLE_MEMORY_LIMIT", raising=False)
    monkeypatch.setattr(duck, "available_memory", _physical_ram)
    expected_mib = min(_physical_ram() // 4, 4 * 2**30) // 2**20
    with work_connection(tmp_path / "spill") as con, duck.bounded_connection() as bounded:
        for c in (con, bounded):
            assert memory_bytes(_setting(c, "memory_limit")) == pytest.approx(expected_mib * 2**20, rel=0.001)


def test_a_small_container_gets_a_quarter_of_its_own_limit(monkeypatch) -> None:
    monkeypatch.setattr(duck, "available_memory", lambda: 2 * 2**30)
    assert duck.default_memory_limit() == "512MiB"


def test_duckdb_keeps_duckdbs_own_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SQUIGGLE_MEMORY_LIMIT", "duckdb")
    with work_connection(tmp_path / "spill") as con:
        ours = memory_bytes(_setting(con, "memory_limit"))
    # DuckDB's default: 80% of the memory it sees
    assert ours == pytest.approx(0.8 * duck.available_memory(), rel=0.05)


def test_a_bounded_connection_honours_the_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SQUIGGLE_MEMORY_LIMIT", "300MB")
    with duck.bounded_connection() as con:
        assert _setting(con, "memory_limit") in {"286.1 MiB", "300.0 MB"}
