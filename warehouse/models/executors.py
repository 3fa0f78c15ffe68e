"""Executors: where a model's batches run.

``local`` (the default) computes them in the build's own process, one after another
(:class:`LocalExecutor`).
``ray`` sends each batch, as a Ray task, to the workers of a Ray cluster: the task runs the
same rendered SQL (:class:`~.compute.Work`) in a DuckDB of its own, reads its input files
from the lake and writes its output into the build's staging folder, which every node sees
at the same path. The driver plans, publishes and records as with ``local``: the lake's
lock, the atomic swap and the records do not change with the executor. A model computed in
one batch (a merge of new runs, a small cross-run model) runs on the driver.

A task writes into an attempt folder of its own and renames it into place only when its
``COPY`` is complete; a worker killed midway leaves an attempt folder that nothing reads,
Ray runs the task again, and the staging folder goes with the build.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import duckdb

from .. import lake as lk
from ..duck import work_connection
from .spec import ModelError

if TYPE_CHECKING:
    from .compute import Tracker, Work
    from .kinds import Batch

EXECUTORS = ("local", "ray")
INSTALL_RAY = "pip install 'squiggle-warehouse[ray]' (in a clone: make ray)"
CONNECT_SECONDS = 30  # an address that does not answer within this fails the build
TASK_RETRIES = 3  # Ray runs a batch again this often when its worker dies


@dataclass(frozen=True)
class TaskStat:
    """One batch computed by a worker: for the benchmark and ``--verbose`` readers."""

    model: str
    rows: int
    sent_bytes: int  # the task's arguments as pickled (its SQL and file lists)
    written_bytes: int  # the Parquet it wrote to the lake
    started: float  # when the task began (seconds since the epoch, the worker's clock)
    waited: float  # seconds from submission to the task's start
    seconds: float  # the task's own time
    node: str
    ahead: int  # tasks in flight when it was submitted: below the slots, ``waited`` is Ray's latency alone


class Executor(Protocol):
    """Where batches run: ``slots`` of them at once; :meth:`run` computes ``batches`` of
    ``work`` (each with the input views ``views`` gives it) into ``out``, telling ``track``
    of each batch written, or of one out of memory."""

    slots: int

    def run(self, work: Work, batches: list[Batch], views: Callable[[Batch], str], out: Path,
            track: Tracker) -> None: ...


class LocalExecutor:
    """Batches computed here, one after another, in one DuckDB connection. ``slots``: the
    workers the batches are planned for: 1 (this process), or more to compute here the
    batches a cluster of that size would get (tests of that plan)."""

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots

    def run(self, work: Work, batches: list[Batch], views: Callable[[Batch], str], out: Path, track: Tracker) -> None:
        from .compute import copy_batch, remove_runs

        steps, index = deque(batches), 0
        con = work_connection(out.parent / "spill")
        try:
            for statement in work.setup:
                con.execute(statement)
            while steps:
                batch = steps.popleft()
                con.execute(views(batch))
                try:
                    written = copy_batch(con, work, batch, out, index)
                except duckdb.OutOfMemoryException as exc:
                    remove_runs(batch, out)
                    steps = deque(track.split(batch, list(steps), work.by_run, str(exc)))
                    continue
                index += 1
                track.finished(written)
        finally:
            con.close()


def executor_from(name: str | None = None, address: str | None = None) -> str:
    """The executor's name: ``name``, else ``$SQUIGGLE_EXECUTOR``, else ``local``."""
    chosen = (name or os.environ.get("SQUIGGLE_EXECUTOR") or "local").strip().lower()
    if chosen not in EXECUTORS:
        raise ModelError(f"unknown executor {chosen!r}: the executors are {', '.join(EXECUTORS)}")
    if chosen == "local" and address:
        raise ModelError(f"--address {address} is for the ray executor: add --executor ray")
    return chosen


class RayExecutor:
    """Batches as Ray tasks on the cluster at ``address`` (``$SQUIGGLE_RAY_ADDRESS``; none:
    a Ray instance started here for the build), each task with ``task_cpus`` CPUs
    (``$SQUIGGLE_RAY_TASK_CPUS``, default 1) and as many DuckDB threads."""

    def __init__(self, root: Path, address: str | None = None, task_cpus: int | None = None) -> None:
        self.root = root.absolute()
        self.address = address or os.environ.get("SQUIGGLE_RAY_ADDRESS") or None
        self.task_cpus = task_cpus or _positive_env("SQUIGGLE_RAY_TASK_CPUS", 1)
        self.stats: list[TaskStat] = []
        self._ray = _import_ray()
        self._started = False

    def __enter__(self) -> RayExecutor:
        self.connect()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def connect(self) -> None:
        """Join the cluster (within :data:`CONNECT_SECONDS`) and check that every node sees
        the lake; before anything is written."""
        ray = self._ray
        if self.address and self.address not in ("auto", "local"):
            _answers(self.address)
        try:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING, configure_logging=False)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError alike
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise ModelError(f"cannot connect to {where}: {exc}") from None
        self._started = True
        try:
            self._check_nodes()
        except BaseException:
            self.close()
            raise
        self.slots = max(1, int(ray.cluster_resources().get("CPU", 1)) // self.task_cpus)
        self._task = ray.remote(run_batch).options(num_cpus=self.task_cpus, max_retries=TASK_RETRIES)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False

    def run(self, work: Work, batches: list[Batch], views: Callable[[Batch], str], out: Path, track: Tracker) -> None:
        """Every batch as a task, at most two per slot queued; each finished batch's output
        moved into ``out``. A batch out of memory is split as :meth:`~.compute.Tracker.split`
        says, and its parts queued."""
        ray = self._ray
        attempts = Path(tempfile.mkdtemp(prefix="tasks-", dir=out.parent))
        shared = ray.put(work)
        queue, running, index = deque(batches), {}, 0
        try:
            while queue or running:
                while queue and len(running) < 2 * self.slots:
                    batch = queue.popleft()
                    sql = views(batch)
                    ref = self._task.remote(shared, sql, batch, str(attempts), index, self.task_cpus)
                    running[ref] = (batch, len(running), time.time(), len(pickle.dumps((work, sql, batch))))
                    index += 1
                [ref], _ = ray.wait(list(running), num_returns=1)
                batch, ahead, submitted, sent = running.pop(ref)
                result = self._result(ref, work, batch)
                if "out_of_memory" in result:
                    error = f"{result['out_of_memory']} (on Ray node {result['node']})"
                    queue = deque(track.split(batch, list(queue), work.by_run, error, len(running)))
                    continue
                written = _collect(Path(result["folder"]), out, work.by_run)
                self.stats.append(TaskStat(work.model, result["rows"], sent, written, result["began"], result["began"] - submitted,
                                           result["ended"] - result["began"], result["node"], ahead))
                track.finished(result["rows"])
        finally:
            for ref in running:
                ray.cancel(ref, force=True)

    def _result(self, ref: Any, work: Work, batch: Batch) -> dict:
        try:
            result = self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:  # the worker died more than TASK_RETRIES times
            raise ModelError(f"{work.model}: a Ray task computing {_batch_text(batch)} failed: {exc}") from None
        if "error" in result:
            raise duckdb.Error(f"{result['error']} (on Ray node {result['node']})")
        return result

    def _check_nodes(self) -> None:
        """Every live node must see the lake at the driver's path, with its folders, writable."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != lk.STAGING_DIR)
        probe = ray.remote(lake_problem)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = {probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(self.root), folders): n for n in nodes}
        ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=CONNECT_SECONDS)
        for ref in late:
            raise ModelError(f"Ray node {_node_name(refs[ref])} did not answer within {CONNECT_SECONDS} s whether it "
                             f"sees the lake at {self.root}")
        for ref in ready:
            problem = ray.get(ref)
            if problem:
                raise ModelError(f"Ray node {_node_name(refs[ref])} cannot use the lake at {self.root}: {problem}; "
                                 "every node must mount the lake at the same path, writable")


def run_batch(work: Work, views: str, batch: Batch, attempts: str, index: int, threads: int) -> dict:
    """One batch in a DuckDB of its own (a Ray task): its output written into a fresh attempt
    folder, renamed to ``attempts/batch-INDEX`` once complete. Out of memory or a failed
    statement is answered, not raised, so the driver splits the batch or reports the SQL."""
    from .compute import copy_batch

    began, node = time.time(), socket.gethostname()
    os.environ["SQUIGGLE_THREADS"] = str(threads)
    attempt = Path(attempts) / f"batch-{index}.{uuid.uuid4().hex}"
    attempt.mkdir()  # not parents: a build that is gone does not get its folder back
    try:
        con = work_connection(attempt / "spill")
        try:
            for statement in work.setup:
                con.execute(statement)
            con.execute(views)
            rows = copy_batch(con, work, batch, attempt / "out", index)
        finally:
            con.close()
    except duckdb.OutOfMemoryException as exc:
        return {"out_of_memory": str(exc), "node": node}
    except duckdb.Error as exc:
        return {"error": str(exc), "node": node}
    final = Path(attempts) / f"batch-{index}"
    if final.exists():  # an attempt completed before its worker died: this one is equal
        shutil.rmtree(final)
    (attempt / "out").mkdir(exist_ok=True)  # a batch without rows wrote nothing
    os.rename(attempt / "out", final)
    shutil.rmtree(attempt, ignore_errors=True)
    return {"folder": str(final), "rows": rows, "node": node, "began": began, "ended": time.time()}


def lake_problem(root: str, folders: list[str]) -> str | None:
    """What keeps this node from using the lake at ``root`` (None: nothing)."""
    path = Path(root)
    if not path.is_dir():
        return "the path does not exist here" if not path.exists() else "the path is not a folder here"
    missing = [f for f in folders if not (path / f).is_dir()]
    if missing:
        return f"the lake here has no {', '.join(missing[:3])} folder{'s' if len(missing) > 1 else ''} (another filesystem?)"
    if not os.access(path, os.W_OK | os.X_OK):
        return "the lake is not writable here"
    return None


def _collect(folder: Path, out: Path, by_run: bool) -> int:
    """Move a finished task's output into ``out`` (run folders, or its one file); its bytes."""
    written = 0
    for item in sorted(folder.glob("run_id=*" if by_run else "*.parquet")):
        written += sum(f.stat().st_size for f in item.glob("*.parquet")) if by_run else item.stat().st_size
        os.rename(item, out / item.name)
    return written


def _answers(address: str, seconds: float = CONNECT_SECONDS) -> None:
    """Fail naming ``address`` unless a Ray cluster answers there within ``seconds``: a port
    that refuses fails at once; one that accepts must pass Ray's own health check (run as a
    command, so that a peer that never answers cannot hang the build)."""
    deadline = time.monotonic() + seconds
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ModelError(f"Ray address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
        check = subprocess.run(
            [sys.executable, "-m", "ray.scripts.scripts", "health-check", "--address", address, "--skip-version-check"],
            capture_output=True, text=True, timeout=max(1.0, deadline - time.monotonic()),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = "no answer" if isinstance(exc, (TimeoutError, subprocess.TimeoutExpired)) else exc.strerror or str(exc)
        raise ModelError(f"the Ray cluster at {address} does not answer ({reason} within {seconds:.0f} s); "
                         "nothing was written") from None
    if check.returncode != 0:
        if "AuthenticationError" in check.stderr:
            raise ModelError(f"the Ray cluster at {address} refused this client's token: set RAY_AUTH_MODE=token (and "
                             "RAY_AUTH_TOKEN, or the token in ~/.ray/auth_token) as on the cluster; nothing was written")
        last = (check.stderr.strip().splitlines() or ["no message"])[-1]
        raise ModelError(f"the Ray cluster at {address} failed its health check: {last}; nothing was written")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ModelError(f"the ray executor needs Ray, which is not installed: {INSTALL_RAY}") from None
    return ray


def _positive_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ModelError(f"{name}={value!r} is not a whole number of CPUs (1 or more)")
    return int(value)


def _node_name(node: dict) -> str:
    """``10.0.0.7 (gpu-3, node 3078c859)``: nodes may share an address and a host name."""
    return f"{node.get('NodeManagerAddress', '?')} ({node.get('NodeManagerHostname', '?')}, node {node['NodeID'][:8]})"


def _batch_text(batch: Batch) -> str:
    if batch.filters:
        part = f"{batch.part} of " if batch.part else ""
        return f"{part}the rows where {' and '.join(batch.filters.values())}"
    return f"{len(batch.units)} runs from {batch.units[0]}" if len(batch.units) > 1 else f"run {batch.units[0]}"
