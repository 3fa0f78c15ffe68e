"""Measure one child process: wall time, CPU time, peak resident memory, and its output."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measurement:
    seconds: float
    cpu_seconds: float  # user + system
    peak_rss_mib: float
    stdout: str


def measure(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Measurement:
    """Run ``argv`` and measure it; exit with its stderr if it fails.

    The child is reaped with ``os.wait4``, which gives the resource usage of that child
    alone (``getrusage(RUSAGE_CHILDREN)`` would give the maximum over all children so far).
    Its output goes to temporary files, since reading pipes would need Popen to reap it.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} failed:\n{err.read()}")
        out.seek(0)
        return Measurement(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read())
