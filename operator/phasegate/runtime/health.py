"""The health port: ``/healthz`` says the process answers (liveness), ``/readyz`` says whether
the operator can act and, when it cannot, what it waits for (readiness)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Readiness:
    """What the operator still waits for, by topic; ready when it waits for nothing."""

    waiting: dict[str, str] = field(default_factory=dict)

    def wait_for(self, topic: str, reason: str) -> None:
        self.waiting[topic] = reason

    def done(self, topic: str) -> None:
        self.waiting.pop(topic, None)

    @property
    def ready(self) -> bool:
        return not self.waiting


def health_app(readiness: Readiness) -> web.Application:
    async def alive(_: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def ready(_: web.Request) -> web.Response:
        if readiness.ready:
            return web.json_response({"ready": True})
        body = {"ready": False, "waitingFor": list(readiness.waiting.values())}
        return web.json_response(body, status=503)

    app = web.Application()
    app.router.add_get("/healthz", alive)
    app.router.add_get("/readyz", ready)
    return app
