"""Faults between the operator and its Kubernetes API: an HTTP proxy on 127.0.0.1 that passes
every request through to the API (the local one or a real kube-apiserver), except those a
test armed a fault for.

The operator is given a kubeconfig that points at the proxy; its own credentials (a bearer
token) pass through, so the API sees the operator as it would without the proxy. A fault is
armed for the requests a predicate picks (method, path, body), as a queue: each matching
request takes the next fault, and once the queue is empty they pass again.

Faults:
- ``500`` and ``409`` answer with the API's Status body; the request never reaches the API.
- ``timeout`` holds the request unanswered, and never sends it on: the client gives up.
- ``landed-timeout`` sends the request on, and then holds the answer: the write is stored,
  but the client gives up without knowing it.
- ``kill`` sends the request on and, once the API has answered, SIGKILLs the operator before
  it reads the answer: a crash right after a write.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

FAULTS = ("500", "409", "timeout", "landed-timeout", "kill")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Any  # the JSON body, or None

    def text(self) -> str:
        return json.dumps(self.body, separators=(",", ":"))


@dataclass
class Rule:
    """Faults for the requests ``matches`` picks, one per request, in order."""

    name: str
    matches: Callable[[Request], bool]
    faults: list[str]
    met: list[tuple[str, Request]] = field(default_factory=list)  # fault, request

    @property
    def spent(self) -> bool:
        return len(self.met) == len(self.faults)


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message}
    return web.json_response({**body, "reason": reason, "code": code}, status=code)


class FaultProxy:
    """``with FaultProxy(kubeconfig) as proxy:`` serves on 127.0.0.1 until the block ends."""

    def __init__(self, upstream: Path, hold: float = 30.0) -> None:
        config = yaml.safe_load(upstream.read_text())
        cluster = config["clusters"][0]["cluster"]
        self.server = cluster["server"].rstrip("/")
        self.ssl: ssl.SSLContext | bool = False
        if self.server.startswith("https:"):
            ca = cluster.get("certificate-authority-data")
            cadata = base64.b64decode(ca).decode() if ca else None
            cafile = cluster.get("certificate-authority")
            self.ssl = ssl.create_default_context(cafile=cafile, cadata=cadata)
        self.hold = hold  # how long a held request or answer stays unanswered
        self.rules: list[Rule] = []
        self.answered: list[tuple[Request, int]] = []  # every request sent on, and its status
        self.errors: list[str] = []  # predicates that raised
        self.killed: list[int] = []  # the PIDs a kill fault killed
        # Kill faults whose request was sent on, but whose sender another kill fault (of a
        # request it made at the same time) had killed before the answer came back: a crash
        # right after that write all the same.
        self.died_anyway = 0
        self.victim: Callable[[], int | None] = lambda: None  # the operator's PID, for kill
        self.port = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # ---- the test's side -------------------------------------------------------------

    def arm(self, name: str, matches: Callable[[Request], bool], *faults: str) -> Rule:
        assert all(f in FAULTS for f in faults), faults
        rule = Rule(name, matches, list(faults))
        with self._lock:
            self.rules.append(rule)
        return rule

    def kubeconfig(self, like: Path, to: Path) -> Path:
        """``like``'s kubeconfig (its user's token), pointed at the proxy."""
        config = yaml.safe_load(like.read_text())
        for entry in config["clusters"]:
            entry["cluster"] = {"server": f"http://127.0.0.1:{self.port}"}
        to.write_text(yaml.safe_dump(config))
        return to

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # ---- the proxy -------------------------------------------------------------------

    async def _start(self) -> None:
        self._session = ClientSession(
            connector=TCPConnector(ssl=self.ssl, limit=0),
            timeout=ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=16 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    def _fault_for(self, request: Request) -> str | None:
        with self._lock:
            for rule in self.rules:
                try:
                    matches = not rule.spent and rule.matches(request)
                except Exception as error:  # a predicate's bug fails the test, not the request
                    self.errors.append(f"{rule.name}: {error!r}")
                    continue
                if matches:
                    fault = rule.faults[len(rule.met)]
                    rule.met.append((fault, request))
                    return fault
        return None

    async def _handle(self, incoming: web.Request) -> web.StreamResponse:
        raw = await incoming.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = Request(incoming.method, incoming.path, body)
        fault = self._fault_for(request)
        if fault == "500":
            return _status(500, "InternalError", "injected: an internal error")
        if fault == "409":
            return _status(409, "Conflict", "injected: the object has been modified")
        if fault == "timeout":
            await asyncio.sleep(self.hold)
            return _status(504, "Timeout", "injected: held past the client's timeout")
        try:
            return await self._forward(incoming, raw, request, fault)
        except asyncio.CancelledError:  # the sender hung up: it died
            if fault == "kill":
                self.died_anyway += 1
            raise

    async def _forward(
        self, incoming: web.Request, raw: bytes, request: Request, fault: str | None
    ) -> web.StreamResponse:
        headers = {k: v for k, v in incoming.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._session.request(
            incoming.method,
            self.server + incoming.rel_url.raw_path_qs,
            headers=headers,
            data=raw or None,
            # The request as it came: a body sent without a Content-Type gets none added.
            skip_auto_headers=("Content-Type",),
        ) as answer:
            self.answered.append((request, answer.status))
            if fault == "kill":
                await answer.read()
                pid = self.victim()
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                return _status(503, "ServiceUnavailable", "injected: the operator was killed")
            if fault == "landed-timeout":
                await answer.read()
                await asyncio.sleep(self.hold)
                return _status(504, "Timeout", "injected: the answer was held")
            response = web.StreamResponse(
                status=answer.status,
                headers={k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP},
            )
            await response.prepare(incoming)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
