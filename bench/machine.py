"""The machine a benchmark ran on: CPU model, cores, memory, OS and library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Iterable


def describe() -> dict[str, str]:
    """What a result depends on besides the code, as short strings."""
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{_memory_bytes() / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "duckdb": _version("duckdb"),
        "pyarrow": _version("pyarrow"),
        "pandas": _version("pandas"),
    }


def one_line(machine: dict[str, str]) -> str:
    return (f"{machine['cpu']}, {machine['cores']} cores, {machine['memory']} RAM; {machine['os']};"
            f" Python {machine['python']}, DuckDB {machine['duckdb']}, pyarrow {machine['pyarrow']},"
            f" pandas {machine['pandas']}")


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def versions(packages: Iterable[str]) -> dict[str, str]:
    """Each of ``packages`` with its installed version, or "not installed"."""
    return {p: _version(p) for p in packages}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
