"""Measure one child process: wall time, CPU time, peak resident memory, and its output."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Linux starts a child's peak RSS at the resident size of the process it was forked from
# (and exec keeps it), so a measuring process that holds a few hundred MiB would put them
# into every child's figure. A bare interpreter (-I -S: no site, nothing imported but what
# is below) forks the command instead, reaps it with wait4 (the usage of that child alone)
# and writes what it measured to a file; its own few MiB are all that can leak in.
LAUNCHER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(report, "w") as f:
    json.dump([seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024], f)
sys.exit(os.waitstatus_to_exitcode(status))
"""


class CommandFailed(SystemExit):
    """A measured command failed: a script that does not catch it exits with its message."""

    def __init__(self, argv: list[str], code: int, stdout: str, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} failed (exit status {code}):\n{stderr}")
        self.stdout, self.stderr = stdout, stderr


@dataclass
class Measurement:
    seconds: float
    cpu_seconds: float  # user + system
    peak_rss_mib: float
    stdout: str


def measure(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float | None = None) -> Measurement:
    """Run ``argv`` and measure it; raise :class:`CommandFailed` (with its stderr) if it fails,
    or if it runs longer than ``timeout`` seconds (it and its children are killed then).

    Its output goes to temporary files, which also keeps a full pipe from stalling it.
    """
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "out", "w+") as out, \
            open(Path(tmp) / "err", "w+") as err:
        report = Path(tmp) / "measured.json"
        launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(report)]
        proc = subprocess.Popen(launcher + argv, stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher's session: the command too
            proc.wait()
            raise CommandFailed(argv, -signal.SIGKILL, "", f"error: timed out after {timeout:g} s (killed)") from None
        out.seek(0)
        err.seek(0)
        if code:
            raise CommandFailed(argv, code, out.read(), err.read())
        seconds, cpu_seconds, peak_rss_mib = json.loads(report.read_text())
        return Measurement(seconds, cpu_seconds, peak_rss_mib, out.read())


class Laps:
    """Phases timed inside a script: each call prints ``<name> <phase>: <seconds> s``, the
    time since the previous call (or since it was made)."""

    def __init__(self, name: str) -> None:
        self.name, self.clock = name, time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        print(f"{self.name} {phase}: {now - self.clock:.2f} s", flush=True)
        self.clock = now


def peer_arguments(description: str) -> argparse.ArgumentParser:
    """The options every peer of the models takes: the lake it reads, the folder it writes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for the two Parquet files")
    return parser
