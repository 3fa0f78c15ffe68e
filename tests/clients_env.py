"""Throwaway virtual environments holding one real client each (an older DuckDB, its CLI,
SQLAlchemy with duckdb-engine), for the tests that open the catalog as a user's tools do.

Each environment is made once, with ``python -m venv`` and pip from the package index, in
``$SQUIGGLE_CLIENTS_CACHE/<name>-<key>`` (default ``~/.cache/squiggle-warehouse/clients``,
outside the repository so that a fresh clone on the same machine reuses it), the key being
a hash of its requirements and of the Python it is made from: it is reused by every later
test session until they change. A folder without its ``.ready`` marker (an interrupted
install) or without its interpreter is made again. A failed install fails the test with
pip's output: these tests never skip.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(
    os.environ.get("SQUIGGLE_CLIENTS_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "squiggle-warehouse" / "clients"
)
SCRIPTS = Path(__file__).resolve().parent / "clients"
READY = ".ready"  # written last
_FAILED: dict[str, str] = {}  # environments whose install failed in this session: not tried again


@dataclass(frozen=True)
class ClientEnv:
    """A client environment: a name and the exact requirements pip installs into it."""

    name: str
    requirements: tuple[str, ...]

    @property
    def folder(self) -> Path:
        key = json.dumps([sys.version, sys.base_prefix, sorted(self.requirements)]).encode()
        return CACHE / f"{self.name}-{hashlib.sha256(key).hexdigest()[:12]}"

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.folder / "bin" / name


def ensure(env: ClientEnv) -> ClientEnv:
    """``env``, made now if it is not in the cache yet (under a lock: parallel runs wait)."""
    if env.name in _FAILED:
        pytest.fail(_FAILED[env.name], pytrace=False)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ((env.folder / READY).is_file() and env.python.exists()):
            _make(env)
    return env


def _make(env: ClientEnv) -> None:
    for old in CACHE.glob(f"{env.name}-*"):  # this client's environments of other requirements
        shutil.rmtree(old, ignore_errors=True)
    venv.create(env.folder, with_pip=True)
    # Short timeouts and few retries: an unreachable index fails in about a minute, not 15.
    pip = subprocess.run(
        [str(env.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--timeout", "30", "--retries", "2", *env.requirements],
        capture_output=True, text=True, timeout=900,
    )
    if pip.returncode != 0:
        shutil.rmtree(env.folder, ignore_errors=True)
        _FAILED[env.name] = (
            f"could not install the {env.name} client environment ({' '.join(env.requirements)}) from the "
            f"package index: is PyPI reachable? pip said:\n{pip.stderr[-3000:]}"
        )
        pytest.fail(_FAILED[env.name], pytrace=False)
    (env.folder / READY).write_text("\n".join(env.requirements) + "\n")


def run_client(env: ClientEnv, script: str, config: dict, *, timeout: float = 600, extra_env: dict | None = None) -> dict:
    """Run ``tests/clients/<script>`` in ``env`` with ``config`` (JSON on stdin); its JSON result.

    The script prints exactly one JSON document on stdout; anything else fails the test,
    showing the client's stderr.
    """
    result = subprocess.run(
        [str(env.python), str(SCRIPTS / script)], input=json.dumps(config), capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(extra_env or {})},
    )
    if result.returncode != 0:
        pytest.fail(f"{script} in {env.name} exited {result.returncode}:\n{result.stderr[-5000:]}", pytrace=False)
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"{script} in {env.name} printed no JSON:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}", pytrace=False)
