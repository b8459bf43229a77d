"""A real browser for the tests: Debian's headless Chromium, driven over the Chrome DevTools
Protocol (a websocket; websocket-client comes with the kubernetes client).

Only what a person does is offered: open a page, read what it shows, click where an element
is drawn (real mouse events at its coordinates), take a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import websocket

from phasegate.demo.stack import wait_until

LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed: run scripts/install-chromium (Debian's chromium)")


class Page:
    """One tab, over its DevTools websocket."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        sent = next(self.ids)
        self.ws.send(json.dumps({"id": sent, "method": method, "params": params}))
        while True:  # events arriving meanwhile are not needed: skipped
            message = json.loads(self.ws.recv())
            if message.get("id") == sent:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result") or {}

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float, what: str) -> Any:
        """Poll a JavaScript expression until it is truthy (the page refreshes itself)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.evaluate(expression)
            except RuntimeError as error:  # the page is loading
                last = str(error)
            if last:
                return last
            time.sleep(0.1)
        text = self.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
        raise AssertionError(f"the page never showed {what} in {timeout}s; it shows:\n{text}")

    def text(self, selector: str) -> str:
        found = self.evaluate(
            f"(() => {{ const n = document.querySelector({json.dumps(selector)});"
            " return n ? n.textContent : null; })()"
        )
        return str(found) if found is not None else ""

    def click(self, selector: str) -> None:
        """A person's click: scrolled into view, then mouse down and up at its centre."""
        box = self.evaluate(
            f"(() => {{ const n = document.querySelector({json.dumps(selector)});"
            " if (!n) return null; n.scrollIntoView({block: 'center'});"
            " const r = n.getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
        )
        if not box:
            raise AssertionError(f"nothing to click: {selector}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                type=kind, x=box["x"], y=box["y"], button="left", clickCount=1,
            )  # fmt: skip

    def screenshot(self, path: Path) -> Path:
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@contextmanager
def chromium(workdir: Path, width: int = 1400, height: int = 1800) -> Iterator[Page]:
    """Headless Chromium with a throw-away profile, stopped (by PID) afterwards."""
    profile, log = workdir / "chromium-profile", workdir / "chromium.log"
    with log.open("w") as out:  # a file, not a pipe: a pipe nobody reads would fill and block
        process = subprocess.Popen(
            [
                chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-dev-shm-usage", "--no-first-run",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    try:
        found = wait_until(
            lambda: process.poll() is None and LISTENING.search(log.read_text()), 30, "Chromium"
        )
        port = found.group(1).split(":")[2].split("/")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        tab = next(t for t in targets if t["type"] == "page")
        page = Page(tab["webSocketDebuggerUrl"])
        page.call("Page.enable")
        page.call("Runtime.enable")
        try:
            yield page
        except BaseException:  # what the page showed when the test failed, beside its log
            with contextlib.suppress(Exception):
                page.screenshot(workdir / "browser-at-failure.png")
            raise
        finally:
            page.ws.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
