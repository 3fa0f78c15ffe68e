"""``make models`` in one process (``warehouse models run --full-refresh``, then ``warehouse
catalog``) that kills itself with SIGKILL at a chosen point, for the fault-injection tests.

    python tests/fault_child.py LAKE DB PLAN LOG

PLAN is JSON: ``{"trace": true}`` lets the build run and records every point it passes;
``{"point": [KIND, N, "before" | "after"]}`` sends SIGKILL to this process just before or
just after the N-th point of that kind. The points are the build's steps that change the
lake, each a plain call of the warehouse's code, watched from here:

- ``publish``: a staged output file renamed into its partition folder (``lake.publish``);
- ``swap``: a partition folder exchanged with its successor (``lake.replace_dir``);
- ``record``: an analysis record written (``save_analysis``); ``record-rename`` its rename;
- ``snapshot``: a hard link of the catalog's snapshot (``os.link``);
- ``catalog-swap``: the new catalog renamed onto the old one.

LOG receives a line per phase as it begins (``phase NAME SECONDS``) and per point passed
(``point KIND N``): a kill sent from outside at a random time is placed by its last line.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

STARTED = time.monotonic()


def main() -> None:
    lake, db, plan, log_path = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]), Path(sys.argv[4])
    log = open(log_path, "a", buffering=1)
    target = tuple(plan["point"]) if "point" in plan else None
    watch(lake, db, log, target)
    from warehouse import cli

    for argv in (["models", "run", "--lake", str(lake), "--full-refresh"], ["catalog", "--lake", str(lake), "--db", str(db)]):
        status = cli.main(argv)
        if status:
            sys.exit(status)


def watch(lake: Path, db: Path, log, target: tuple[str, int, str] | None) -> None:
    """Wrap the calls that mark phases and points; die at ``target``."""
    from warehouse import catalog, lake as lk, snapshots
    from warehouse.models import compute, inputs, publish, record

    counts: dict[str, int] = {}

    def point(kind: str, call: Callable[[], Any]) -> Any:
        counts[kind] = counts.get(kind, 0) + 1
        here = (kind, counts[kind])
        log.write(f"point {kind} {counts[kind]}\n")
        if target and here == target[:2] and target[2] == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = call()
        if target and here == target[:2] and target[2] == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    def phase(name: str, function: Callable) -> Callable:
        def wrapped(*args, **kw):
            log.write(f"phase {name} {time.monotonic() - STARTED:.3f}\n")
            return function(*args, **kw)
        return wrapped

    def pointed(kind: str, function: Callable) -> Callable:
        return lambda *args, **kw: point(kind, lambda: function(*args, **kw))

    analyses = lake / "_meta" / "analyses"
    replace, link = os.replace, os.link

    def watched_replace(src, dst, *args, **kw):
        dst = Path(dst)
        if dst.parent == analyses:
            return point("record-rename", lambda: replace(src, dst, *args, **kw))
        if dst == db:
            return point("catalog-swap", lambda: replace(src, dst, *args, **kw))
        return replace(src, dst, *args, **kw)

    lk.publish = pointed("publish", lk.publish)
    lk.replace_dir = pointed("swap", lk.replace_dir)
    record.save_analysis = pointed("record", record.save_analysis)
    os.replace = watched_replace
    os.link = pointed("snapshot", link)
    inputs.screen = phase("check inputs", inputs.screen)
    compute.compute = phase("model SQL", compute.compute)
    publish.publish = phase("publish outputs", publish.publish)
    record.record_build = phase("write record", record.record_build)
    snapshots.take_snapshot = phase("catalog snapshot", snapshots.take_snapshot)
    catalog._write_catalog = phase("catalog write", catalog._write_catalog)


if __name__ == "__main__":
    main()
