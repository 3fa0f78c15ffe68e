"""A cache of compiled and checked models, so that a build with nothing to do parses no SQL.

Rendering, parsing and qualifying every model with sqlglot takes about half a second, and
its result depends only on the files under ``sql/``, the parameters, the dataset contracts,
the engine's own code and the versions of sqlglot and Jinja2. Those are hashed into the
key of an entry; an entry holds what planning and running need of each model (rendered
SQL, dependencies, logic fingerprint, output columns) and the build order. A model's
syntax tree is parsed again only when something asks for it (lineage).

Entries live in ``$SQUIGGLE_CACHE`` (default ``~/.cache/squiggle-warehouse``). A missing,
unreadable or unwritable cache only makes loading slower; it never changes a result.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from .. import contracts

# The engine's code that decides what a compiled model is: a change there invalidates entries.
_ENGINE_SOURCES = [Path(__file__).with_name(n) for n in ("compile.py", "kinds.py", "project.py", "spec.py")] + [
    Path(contracts.__file__)
]
FORMAT = 1


def cache_dir() -> Path:
    """Where compiled models are kept: ``$SQUIGGLE_CACHE`` or ``~/.cache/squiggle-warehouse``."""
    configured = os.environ.get("SQUIGGLE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "squiggle-warehouse"


def project_key(sql_dir: Path, params: Mapping[str, Mapping[str, Any]]) -> str:
    """A hash of everything a compiled project depends on."""
    h = hashlib.sha256(json.dumps([FORMAT, str(sql_dir.resolve()), params], sort_keys=True, default=repr).encode())
    for package in ("sqlglot", "jinja2"):
        h.update(f"{package}={metadata.version(package)}".encode())
    files = sorted(p for p in sql_dir.rglob("*.sql") if p.is_file())
    for path in [*files, *_ENGINE_SOURCES]:
        h.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def load(key: str) -> dict[str, Any] | None:
    """The entry stored under ``key``, or None."""
    try:
        return json.loads((cache_dir() / "models" / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def save(key: str, entry: dict[str, Any]) -> None:
    """Store ``entry`` under ``key`` (written whole, then renamed: a reader never sees part)."""
    folder = cache_dir() / "models"
    temp = folder / f".{key}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps(entry))
        os.replace(temp, folder / f"{key}.json")
    except OSError:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass
