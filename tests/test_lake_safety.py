"""The lake's safety primitives: the atomic exchange of partition folders, and the staging
area whose leftovers are told apart from a running process's work by a lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from model_fixtures import REPO
from warehouse import check_lake, lake as lk


def test_replace_dir_never_leaves_the_folder_missing(tmp_path: Path) -> None:
    target = tmp_path / "run_id=r1"
    target.mkdir()
    (target / "part-0.parquet").write_text("0")
    stop, seen = threading.Event(), []

    def watch() -> None:
        while not stop.is_set():
            try:
                seen.append(tuple(os.listdir(target)))
            except FileNotFoundError:
                seen.append(None)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(1, 301):
            fresh = tmp_path / "staging" / f"fresh-{i}"
            fresh.mkdir(parents=True)
            (fresh / f"part-{i}.parquet").write_text(str(i))
            lk.replace_dir(fresh, target, tmp_path / "staging" / f"trash-{i}")
    finally:
        stop.set()
        watcher.join()
    assert lk._renameat2 is not None  # Linux: the exchange was atomic
    assert None not in seen and () not in seen and len(seen) > 300
    assert os.listdir(target) == ["part-300.parquet"]
    assert os.listdir(tmp_path / "staging" / "trash-300") == ["part-299.parquet"]
    assert not (tmp_path / "staging" / "fresh-300").exists()


def test_replace_dir_without_the_exchange_moves_the_old_folder_out_then_the_new_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lk, "_renameat2", None)
    target, fresh, trash = tmp_path / "target", tmp_path / "fresh", tmp_path / "trash"
    target.mkdir()
    (target / "old").write_text("old")
    fresh.mkdir()
    (fresh / "new").write_text("new")
    lk.replace_dir(fresh, target, trash)
    assert os.listdir(target) == ["new"] and os.listdir(trash) == ["old"] and not fresh.exists()
    again = tmp_path / "again"
    again.mkdir()
    lk.replace_dir(again, tmp_path / "absent" / "target", tmp_path / "unused")  # nothing to move out
    assert (tmp_path / "absent" / "target").is_dir() and not (tmp_path / "unused").exists()


HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from warehouse import lake as lk
    with lk.scratch_dir(Path({lake!r}), "build-") as folder:
        (folder / "out.parquet").write_text("being written")
        print(folder, flush=True)
        time.sleep(600)
""")


def test_a_running_processes_staging_is_kept_and_a_killed_ones_is_reclaimed(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(repo=str(REPO), lake=str(lake))],
                            stdout=subprocess.PIPE, text=True)
    try:
        folder = Path(proc.stdout.readline().strip())
        assert not lk.is_stale(folder)
        assert check_lake(lake) == []  # a running build's work is no problem
        assert lk.reclaim_stale(lake) == [] and (folder / "out.parquet").exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lk.is_stale(folder)
    (p,) = check_lake(lake)
    assert (p.path, p.kind) == (f".staging/{folder.name}/out.parquet", "stale_staging")
    assert lk.reclaim_stale(lake) == [folder]
    assert not (lake / lk.STAGING_DIR).exists()


def test_reclaim_removes_odd_entries_without_following_or_waiting_on_them(tmp_path: Path) -> None:
    lake, outside = tmp_path / "lake", tmp_path / "outside"
    (lake / lk.STAGING_DIR).mkdir(parents=True)
    outside.mkdir()
    (outside / "keep.txt").write_text("not the lake's")
    area = lake / lk.STAGING_DIR
    (area / "link").symlink_to(outside)
    os.mkfifo(area / "fifo")
    (area / "loose.parquet").write_text("x")
    kinds = {p.path: p.kind for p in check_lake(lake)}
    assert kinds == {".staging/fifo": "stale_staging", ".staging/link": "stale_staging",
                     ".staging/loose.parquet": "stale_staging"}
    assert sorted(p.name for p in lk.reclaim_stale(lake)) == ["fifo", "link", "loose.parquet"]
    assert (outside / "keep.txt").read_text() == "not the lake's"
    assert not area.exists()
