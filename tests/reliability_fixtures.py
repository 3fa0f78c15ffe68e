"""Helpers for the reliability tests: lake checksums, real small or read-only file systems,
and a process without privileges."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

NOBODY = 65534


def sha256s(root: Path) -> dict[str, str]:
    """Every file under ``root``: relative path -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``path`` (skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    result = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def read_only_view(source: Path, path: Path) -> Iterator[Path]:
    """``source`` seen read-only at ``path`` (a bind mount remounted read-only; skips if not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    result = _mount("--bind", str(source), str(path))
    if result.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {result.stderr.strip()}")
    try:
        result = _mount("-o", "remount,ro,bind", str(path))
        if result.returncode != 0:
            pytest.skip(f"cannot remount read-only: {result.stderr.strip()}")
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file that takes every free byte of ``disk``."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


@contextmanager
def shared_folder() -> Iterator[Path]:
    """A folder every user may enter (tests' own tmp folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="squiggle-shared-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_unprivileged(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run Python ``code`` as a user without privileges: as nobody with no capabilities when
    this process is root (root ignores file permissions), else as this user."""
    python = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv is needed to run a process as nobody")
        python = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                  "--inh-caps=-all", "--bounding-set=-all", *python]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    return subprocess.run(python, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


# ---------------------------------------------------------------------------------------
# Comparing builds


MODEL_TARGETS = ("events_candidates", "geometry_dynamics", "events", "probe_summaries", "probe_events_candidates", "signatures",
                 "matches")
ENGINE_STATE = ("_meta/analyses", "_meta/snapshots", "_meta/build.lock", ".staging")


def model_contents(lake: Path) -> dict[str, str]:
    """Per model dataset, a hash of its sorted rows without created_at_utc: equal for equal outputs."""
    from model_fixtures import read_rows

    return {d: hashlib.sha256(repr(read_rows(lake, d)).encode()).hexdigest() for d in MODEL_TARGETS}


def recorded_units(lake: Path) -> dict[str, dict]:
    """Per analysis, its rows and the rows of each unit it records (not the input digests: those
    name upstream output files, whose content hashes differ with every build's timestamps)."""
    from warehouse.models.state import load_analyses

    return {a: {"rows": r.rows, "units": {u: v.rows for u, v in r.units.items()}}
            for a, r in load_analyses(lake).items()}


def copy_inputs(lake: Path, dest: Path) -> Path:
    """``lake`` without what builds write (model outputs, records, snapshots, locks, staging)."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).relative_to(lake)
        return {n for n in names if str(rel / n) in ENGINE_STATE or (rel == Path(".") and n in MODEL_TARGETS)}

    shutil.copytree(lake, dest, ignore=ignore)
    return dest
