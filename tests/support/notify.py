"""A real HTTP receiver on loopback, an in-memory outbox store, and a simulator that fills
the outbox as the operator does after each evaluation."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from phasegate.api import RolloutStatus
from phasegate.api.notifications import NotificationsSpec, Receiver
from phasegate.api.outbox import NotificationsStatus
from phasegate.api.spec import RolloutSpec
from phasegate.engine import Control, Evaluation
from phasegate.notify.delivery import Target
from phasegate.notify.events import Rollout, plan_notifications
from support.reports import RecordingSim

ROLLOUT = Rollout(namespace="learning", name="cohort-analyzer", uid="6f1c0d3e")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class HttpReceiver:
    """Answers each POST with the next of ``answers`` (status, delay seconds), then 200."""

    answers: list[tuple[int, float]] = field(default_factory=list)
    got: list[Received] = field(default_factory=list)
    url: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    hold: asyncio.Event | None = None  # when given: every answer waits until it is set

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status, delay = self.answers.pop(0) if self.answers else (200, 0.0)
        self.got.append(Received(request.path, dict(request.headers), body, status))
        self.changed.set()
        if delay:
            await asyncio.sleep(delay)  # the request has arrived; the answer comes late
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=status, text="ok" if status < 300 else "no")

    async def wait_for(self, count: int, within: float = 10.0) -> None:
        async def enough() -> None:
            while len(self.got) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(enough(), within)


async def serve(receiver: HttpReceiver) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/hook/secret-token"
    return runner


class MemoryStore:
    """The rollout as the API would hold it; ``update`` changes only the outbox."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = copy.deepcopy(obj)
        self.updates = 0

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.obj)

    async def update(
        self,
        namespace: str,
        name: str,
        change: Callable[[NotificationsStatus], NotificationsStatus],
    ) -> None:
        status = RolloutStatus.model_validate(self.obj.get("status") or {})
        box = change(status.notifications or NotificationsStatus())
        self.obj["status"]["notifications"] = box.model_dump(mode="json", by_alias=True)
        self.updates += 1

    @property
    def box(self) -> NotificationsStatus:
        status = RolloutStatus.model_validate(self.obj["status"])
        return status.notifications or NotificationsStatus()


class StaticResolver:
    def __init__(self, targets: list[Target]) -> None:
        self.list = targets

    async def targets(self, namespace: str, spec: RolloutSpec) -> list[Target]:
        return self.list


@dataclass
class NotifyingSim(RecordingSim):
    """:class:`RecordingSim` that also writes the outbox, as the operator does."""

    def step(self, controls: Iterable[Control] = ()) -> Evaluation:
        before = self.status
        result = plan_notifications(self.spec, before, super().step(controls), ROLLOUT, self.now)
        self.status = result.status
        self.history[-1] = result
        return result


def with_receivers(
    spec: RolloutSpec, *receivers: Receiver, digest: str | None = None
) -> RolloutSpec:
    config = NotificationsSpec.model_validate({"receivers": list(receivers), "digest": digest})
    return spec.model_copy(update={"notifications": config})


def rollout_object(spec: RolloutSpec, status: RolloutStatus) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ROLLOUT.namespace, "name": ROLLOUT.name, "uid": ROLLOUT.uid},
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "status": status.model_dump(mode="json", by_alias=True),
    }


@dataclass
class MemoryReports:
    """Report ConfigMaps as the operator would write them; each write notes how many
    requests ``receiver`` had got by then. ``refuse`` makes every write fail with it."""

    receiver: HttpReceiver
    written: dict[str, dict[str, str]] = field(default_factory=dict)
    order: list[tuple[str, int]] = field(default_factory=list)
    refuse: str | None = None

    async def write(self, obj: dict[str, Any], phase: str | None) -> None:
        from phasegate.report.configmap import report_config_map

        if self.refuse:
            raise PermissionError(self.refuse)
        made = report_config_map(obj, phase)
        self.written[made.name] = made.data
        self.order.append((made.name, len(self.receiver.got)))


class LoopbackReceiver:
    """A webhook receiver on 127.0.0.1, served by threads of the test process for operators
    that run as processes: it records every request and holds those ``hold`` picks (given the
    body and the requests so far) until :meth:`release`."""

    def __init__(self, hold: Callable[[dict[str, Any], list[Received]], bool] | None = None):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.got: list[Received] = []
        self.answered = 0
        self.holding = threading.Event()
        self.released = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    before = list(receiver.got)
                    receiver.got.append(Received(self.path, dict(self.headers), body, 200))
                if hold is not None and hold(json.loads(body), before):
                    receiver.holding.set()
                    receiver.released.wait(120)
                with receiver.lock:
                    receiver.answered += 1
                try:
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the operator that sent it was killed meanwhile

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r.body) for r in self.got]

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    """Wait, polling, until ``check()`` holds; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)
