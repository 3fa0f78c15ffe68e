"""Render an HTML file in headless Chromium: a PNG screenshot and the page's console errors.

Talks the DevTools protocol over the pipe Chromium opens on file descriptors 3 and 4
(``--remote-debugging-pipe``): no port, no driver, no extra package. Used by the tests
(the report must draw, without errors) and to make the README's pictures.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import WarehouseError

# Flags for a closed network and a root user: no sandbox, no background fetches.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--remote-debugging-pipe",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    """The browser ``$SQUIGGLE_CHROMIUM`` names, else the first Chromium on ``PATH``."""
    named = os.environ.get("SQUIGGLE_CHROMIUM")
    if named:
        return named
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@dataclass
class Rendering:
    """What a page did: its screenshot (PNG bytes), errors, and the figures drawn."""

    png: bytes = b""
    errors: list[str] = field(default_factory=list)
    figures_drawn: int = 0


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int) -> None:
        self._out = os.fdopen(write_fd, "wb", buffering=0)
        self._in = os.fdopen(read_fd, "rb", buffering=0)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        self._out.close()
        self._in.close()

    def call(self, method: str, session: str | None = None, deadline: float = 0.0, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        while True:
            reply = self.receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise WarehouseError(f"chromium: {method} failed: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if deadline and time.monotonic() > deadline:
                raise WarehouseError("chromium did not answer in time")
            chunk = self._in.read(1 << 16)
            if not chunk:
                raise WarehouseError("chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)


def render(html: Path, width: int = 1400, settle: float = 1.0, timeout: float = 60.0) -> Rendering:
    """Load ``html`` (a file) headless, let it draw, and screenshot the whole page.

    Errors are uncaught exceptions and console or log messages of level error. The
    figures drawn are the plotly figures whose SVG exists after loading.
    """
    exe = find_chromium()
    if exe is None:
        raise WarehouseError("no Chromium found: install Debian's chromium (apt-get install chromium) or set SQUIGGLE_CHROMIUM")
    deadline = time.monotonic() + timeout
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    with tempfile.TemporaryDirectory(prefix="squiggle-chromium-") as profile:

        def wire() -> None:  # the child reads commands on fd 3 and answers on fd 4
            # through fresh copies: dup2 onto the same number would keep close-on-exec
            commands, answers = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(commands, 3)
            os.dup2(answers, 4)

        proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},1000", "about:blank"],
            preexec_fn=wire, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its renderers and helpers form one group, stopped together
        )
        os.close(to_child_r)
        os.close(from_child_w)
        pipe = _Pipe(to_child_w, from_child_r)
        try:
            return _drive(pipe, Path(html).resolve().as_uri(), width, settle, deadline)
        finally:
            _stop(proc)
            pipe.close()


def _stop(proc: subprocess.Popen) -> None:
    """End the browser and every process it started, before its profile folder goes."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    # helpers may outlive the leader for a moment; wait until the group is gone
    for _ in range(100):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _drive(pipe: _Pipe, url: str, width: int, settle: float, deadline: float) -> Rendering:
    target = pipe.call("Target.createTarget", deadline=deadline, url="about:blank")["targetId"]
    session = pipe.call("Target.attachToTarget", deadline=deadline, targetId=target, flatten=True)["sessionId"]
    for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
        pipe.call(domain, session, deadline)
    pipe.call("Emulation.setDeviceMetricsOverride", session, deadline, width=width, height=1000,
              deviceScaleFactor=1, mobile=False)
    pipe.call("Page.navigate", session, deadline, url=url)
    while not any(e.get("method") == "Page.loadEventFired" for e in pipe.events):
        pipe.events.append(pipe.receive(deadline))
    time.sleep(settle)
    drawn = pipe.call("Runtime.evaluate", session, deadline,
                      expression="document.querySelectorAll('.plotly-graph-div .main-svg').length > 0 ? "
                                 "[...document.querySelectorAll('.plotly-graph-div')].filter("
                                 "d => d.querySelector('.main-svg')).length : 0",
                      returnByValue=True)["result"].get("value", 0)
    height = pipe.call("Runtime.evaluate", session, deadline, expression="document.documentElement.scrollHeight",
                       returnByValue=True)["result"].get("value", 1000)
    shot = pipe.call("Page.captureScreenshot", session, deadline, format="png", captureBeyondViewport=True,
                     clip=dict(x=0, y=0, width=width, height=min(int(height), 16000), scale=1))
    return Rendering(base64.b64decode(shot["data"]), _errors(pipe.events), int(drawn))


def _errors(events: list[dict]) -> list[str]:
    found = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            found.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            found.append(params["entry"].get("text", ""))
    return found
