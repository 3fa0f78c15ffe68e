"""A real Ray cluster on this machine for the ray executor's tests (``make test-ray``).

``ray start --head`` starts a head node with ``cpus`` CPUs on a free port: the tests' builds
join it as a user's build joins a cluster, by its address. Its token authentication is off
(``RAY_AUTH_MODE=disabled``): a driver reads that mode when it imports Ray, and the test
process imports Ray once for all its tests. ``ray stop --force`` ends the cluster, and with it
every Ray process of this user on the machine: run these tests where no other Ray runs.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest

RAY = Path(sys.executable).with_name("ray")
RAY_INSTALLED = importlib.util.find_spec("ray") is not None  # not imported: collecting the default run stays light
NO_RAY = "the ray extra is not installed: make test-ray installs it"
BENCH = Path(__file__).resolve().parent.parent / "bench"
AUTH = {"RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict[str, str]:
    return {**os.environ, **AUTH}


@contextmanager
def ray_cluster(cpus: int = 2) -> Iterator[str]:
    """A head node with ``cpus`` CPUs; its address while the block runs."""
    address = f"127.0.0.1:{free_port()}"
    subprocess.run([str(RAY), "start", "--head", "--port", address.split(":")[1], "--num-cpus", str(cpus),
                    "--include-dashboard=false", "--disable-usage-stats"],
                   check=True, capture_output=True, text=True, env=ray_env(), timeout=120)
    try:
        yield address
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, env=ray_env(), timeout=120)


@contextmanager
def hidden_lake_node(address: str, hidden: Path) -> Iterator[subprocess.Popen]:
    """A worker node joining ``address`` from a mount namespace in which an empty tmpfs covers
    ``hidden``: a node that cannot see the lake there. Needs ``unshare`` and root."""
    command = (f"mount -t tmpfs none {hidden} && exec {RAY} start --address {address} --num-cpus 1 --block "
               "--disable-usage-stats")
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c", command], env=ray_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for_nodes(address: str, count: int, timeout: float = 60) -> None:
    """Until ``count`` nodes are alive in the cluster (``ray status`` lists them)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = subprocess.run([str(RAY), "status", "--address", address], capture_output=True, text=True,
                                env=ray_env(), timeout=60).stdout
        active = status.split("Active:", 1)[-1].split("Pending:", 1)[0]
        if active.count("node_") >= count:
            return
        time.sleep(1)
    raise TimeoutError(f"the cluster at {address} did not reach {count} nodes in {timeout} s")


def can_unshare() -> bool:
    """Whether this process may make a mount namespace and mount a tmpfs in it."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A two-CPU cluster for a test module's builds."""
    with ray_cluster(cpus=2) as address:
        yield address


def lake_state(lake: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``lake`` with its size and modification time: equal when nothing was written."""
    return {str(p.relative_to(lake)): (p.stat().st_size, p.stat().st_mtime_ns) for p in lake.rglob("*")}


def scale_lake_module() -> ModuleType:
    """bench/scale_lake.py (bench/ is a folder of scripts, not a package)."""
    sys.path.insert(0, str(BENCH))
    try:
        import scale_lake
    finally:
        sys.path.remove(str(BENCH))
    return scale_lake
