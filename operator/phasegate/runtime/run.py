"""``phasegate run``: the operator process (kopf underneath), its health and metrics."""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
from dataclasses import dataclass

import kopf
import structlog
from aiohttp import web
from kopf._core.engines.peering import Identity  # kopf.operator's type, not re-exported

from phasegate.runtime import logs
from phasegate.runtime.health import Readiness, health_app
from phasegate.runtime.operator import configure_kopf, finalizer, make_context, register
from phasegate.runtime.peering import await_peerings, peerings
from phasegate.runtime.sharding import Presence, Shard, peer_identity
from phasegate.runtime.telemetry import metrics_app

log = structlog.get_logger("phasegate")


@dataclass(frozen=True)
class RunOptions:
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    peering: str | None = "phasegate"  # None: standalone, no peering
    prometheus: str | None = None
    prometheus_max_in_flight: int = 64
    prometheus_coalesce_window: float = 0.5
    # The providers whose routes are watched and read from the watch (the chart passes
    # rbac.trafficProviders); None: those whose kinds the API lets the operator list and watch.
    traffic_providers: tuple[str, ...] | None = None
    health_port: int = 8080
    metrics_port: int = 8081
    log_level: str = "INFO"
    log_format: str = "json"
    priority: int = 0
    peering_lifetime: int = 15
    hub: bool = False  # drive ProgressiveReleases across regions instead of rollouts here
    shard: Shard | None = None  # own only this shard's rollouts
    selector: str | None = None  # watch only the rollouts with these labels


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner


async def run(options: RunOptions) -> None:
    logs.configure(options.log_level, options.log_format)
    context = await asyncio.to_thread(  # (its access review is an API call: off the loop)
        make_context,
        options.prometheus,
        max_in_flight=options.prometheus_max_in_flight,
        coalesce_window=options.prometheus_coalesce_window,
        traffic_providers=options.traffic_providers,
        namespaces=options.namespaces,
    )
    if options.selector:
        where = options.namespaces[0] if options.namespaces else None
        refusal = await asyncio.to_thread(context.kube.refuses_selector, options.selector, where)
        if refusal:
            raise SystemExit(f"--selector {options.selector!r}: {refusal}")
    registry = kopf.OperatorRegistry()
    if options.hub:
        from phasegate.hub.daemon import Hub, register_hub

        register_hub(
            registry,
            Hub(context.kube),
            lambda settings: configure_kopf(
                settings,
                peering=options.peering,
                priority=options.priority,
                peering_lifetime=options.peering_lifetime,
            ),
        )
    else:
        register(
            registry,
            context,
            peering=options.peering,
            priority=options.priority,
            peering_lifetime=options.peering_lifetime,
            shard=options.shard,
            selector=options.selector,
            presence=Presence(
                context.kube,
                clusterwide=not options.namespaces,
                family=options.selector or "",
                standalone=options.peering is None,
            ),
        )
    readiness = Readiness({"kopf": "kopf is starting"})
    runners = [  # our health server, not kopf's liveness endpoint: it also answers /readyz
        await _serve(health_app(readiness), options.health_port),
        await _serve(metrics_app(context.telemetry), options.metrics_port),
    ]
    log.info(
        "starting",
        role="hub" if options.hub else "rollouts",
        namespaces=list(options.namespaces) or "all",
        peering=options.peering,
        priority=options.priority,
        shard=str(options.shard) if options.shard else None,
        selector=options.selector,
        health=f":{options.health_port}/healthz",
        readiness=f":{options.health_port}/readyz",
        metrics=f":{options.metrics_port}/metrics",
    )
    started = asyncio.Event()
    helpers = [
        asyncio.create_task(_when_started(started, readiness)),
        asyncio.create_task(
            await_peerings(context.kube, peerings(options.peering, options.namespaces), readiness)
        ),
    ]
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=not options.namespaces,
            namespaces=list(options.namespaces),
            standalone=options.peering is None,
            peering_name=options.peering,
            priority=options.priority,
            ready_flag=started,
            # Other layouts see this one in the peering by its finalizer (runtime.sharding).
            identity=None
            if options.hub
            else Identity(
                peer_identity(finalizer(options.shard), options.selector or "", _own_id())
            ),
        )
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        for runner in runners:
            await runner.cleanup()
        await context.close()
        log.info("stopped")


def _own_id() -> str:
    """``$POD_ID`` where it is set (kopf reads the same), else user, host and process (the
    host is the pod's name in a pod)."""
    return os.environ.get("POD_ID") or f"{getpass.getuser()}@{socket.gethostname()}/{os.getpid()}"


async def _when_started(started: asyncio.Event, readiness: Readiness) -> None:
    await started.wait()
    readiness.done("kopf")


def main(options: RunOptions) -> int:
    asyncio.run(run(options))
    return 0
