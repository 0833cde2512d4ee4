"""Debian's headless Chromium driven over the DevTools protocol, for the report's browser tests.

A small client on `websocket-client`: it starts /usr/bin/chromium with a fresh profile and a
DevTools port chosen by the browser, attaches to every frame (sandboxed iframes run in their own
process, so each is a target of its own), and records every network request and every console
or log error of every target while a page loads.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]


@dataclass
class PageLoad:
    """What a page did while it loaded: requests, errors, and the session to ask it things."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Browser:
    """One headless Chromium and a flat DevTools session on one page."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=10) as r:
            info = json.load(r)
        self.ws = websocket.create_connection(info["webSocketDebuggerUrl"], timeout=30)
        self._next = 0
        self._events: list[dict[str, Any]] = []
        self._replies: dict[int, dict[str, Any]] = {}
        self._watched: set[str] = set()
        self.load = PageLoad()
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self._prepare(self.session)

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    # -- the protocol ----------------------------------------------------------------------

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Call a DevTools method and wait for its answer (events meanwhile are handled)."""
        self._next += 1
        ident = self._next
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while ident not in self._replies:
            self._pump()
        reply = self._replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def _pump(self) -> None:
        """Read one message: keep a reply for its caller, handle an event now."""
        message = json.loads(self.ws.recv())
        if "id" in message:
            self._replies[message["id"]] = message
        elif "method" in message:
            self._event(message)

    def _prepare(self, session: str) -> None:
        """Watch a target: its requests, its console, its log; and its own child frames."""
        if session in self._watched:
            return
        self._watched.add(session)
        for method in ("Network.enable", "Runtime.enable", "Log.enable", "Page.enable"):
            with contextlib.suppress(RuntimeError):  # a worker has no Page domain
                self.send(method, session)
        self.send(
            "Target.setAutoAttach",
            session,
            autoAttach=True,
            waitForDebuggerOnStart=True,
            flatten=True,
        )

    def _event(self, event: dict[str, Any]) -> None:
        method = event["method"]
        params = event.get("params", {})
        if method == "Target.attachedToTarget":
            child = params["sessionId"]
            self._prepare(child)
            self.send("Runtime.runIfWaitingForDebugger", child)
        elif method == "Network.requestWillBeSent":
            self.load.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.load.errors.append(
                "console: "
                + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            self.load.errors.append("exception: " + json.dumps(params["exceptionDetails"]))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.load.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        self._events.append(event)

    def _wait_for(self, method: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self._events:
                if event["method"] == method and event.get("sessionId") == self.session:
                    self._events.remove(event)
                    return
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self._pump()
        raise TimeoutError(f"no {method} within {timeout} s")

    # -- what the tests use ----------------------------------------------------------------

    def open(self, url: str, *, width: int = 1200, timeout: float = 60) -> PageLoad:
        """Load `url` and wait for its load event and a quiet moment; what happened meanwhile."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            self.session,
            width=width,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        self._events.clear()
        self.load = PageLoad()
        self.send("Page.navigate", self.session, url=url)
        self._wait_for("Page.loadEventFired", timeout=timeout)
        # Late requests (an image in an iframe, a font) would come within moments.
        self.ws.settimeout(0.5)
        try:
            while True:
                self._pump()
        except websocket.WebSocketTimeoutException:
            pass
        self.ws.settimeout(30)
        return self.load

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.send(
            "Runtime.evaluate",
            self.session,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(json.dumps(result["exceptionDetails"]))
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (not only the viewport)."""
        metrics = self.send("Page.getLayoutMetrics", self.session)
        size = metrics["cssContentSize"]
        # A viewport as tall as the page, rather than captureBeyondViewport: that one leaves
        # out-of-process frames (the sandboxed email previews) blank.
        self.send(
            "Emulation.setDeviceMetricsOverride",
            self.session,
            width=round(size["width"]),
            height=round(size["height"]),
            deviceScaleFactor=1,
            mobile=False,
        )
        self.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 300)))")
        shot = self.send("Page.captureScreenshot", self.session, format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium with a new, empty profile, stopped afterwards."""
    profile = Path(tempfile.mkdtemp(prefix="outreach-chromium-"))
    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own temporary folder inside the profile: the org.chromium.Chromium.* folder it
        # makes there for its singleton socket goes with the profile.
        env={**os.environ, "TMPDIR": str(profile)},
    )
    browser = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {process.poll()})")
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        browser = Browser(process, port)
        yield browser
    finally:
        if browser is not None:
            browser.close()
        else:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)
