"""A small HTTP service for demos and tests, exporting Prometheus metrics.

``GET /`` answers a request; its error rate and latency come from flags and can be changed
at runtime with ``POST /config`` (JSON: ``error_rate``, ``latency``, ``revenue``). ``/metrics``
exports ``http_requests_total{service,code,segment}``, the latency histogram
``http_request_duration_seconds`` and the business counter ``revenue_total{service,segment}``;
a labelled series exists only once a request with its labels was answered.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.5)
SEGMENTS = ("consumer", "enterprise")


@dataclass
class Behaviour:
    error_rate: float = 0.0
    latency: float = 0.01  # seconds, the typical answer time
    revenue: float = 1.0  # per successful request


@dataclass
class Counters:
    requests: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    revenue: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    count: int = 0
    total: float = 0.0


def build_app(service: str, behaviour: Behaviour, seed: int | None = None) -> web.Application:
    # As with prometheus_client: a labelled series appears with its first observation.
    counters = Counters()
    rng = random.Random(seed)

    async def answer(request: web.Request) -> web.Response:
        segment = request.query.get("segment") or rng.choice(SEGMENTS)
        delay = max(0.0, rng.gauss(behaviour.latency, behaviour.latency / 5))
        await asyncio.sleep(min(delay, 0.05))  # keep the load generator's loop moving
        code = "500" if rng.random() < behaviour.error_rate else "200"
        counters.requests[(code, segment)] += 1
        if code == "200":
            counters.revenue[segment] += behaviour.revenue
        for i, bound in enumerate(BUCKETS):
            if delay <= bound:
                counters.buckets[i] += 1
        counters.count += 1
        counters.total += delay
        return web.Response(status=int(code), text=f"{service} {code}\n")

    async def metrics(_: web.Request) -> web.Response:
        lines = ["# TYPE http_requests_total counter"]
        for (code, segment), n in sorted(counters.requests.items()):
            lines.append(
                f'http_requests_total{{service="{service}",code="{code}",segment="{segment}"}} {n}'
            )
        lines.append("# TYPE revenue_total counter")
        for segment, amount in sorted(counters.revenue.items()):
            lines.append(f'revenue_total{{service="{service}",segment="{segment}"}} {amount:g}')
        lines.append("# TYPE http_request_duration_seconds histogram")
        for bound, n in zip(BUCKETS, counters.buckets, strict=True):  # already cumulative
            lines.append(
                f'http_request_duration_seconds_bucket{{service="{service}",le="{bound:g}"}} {n}'
            )
        lines.append(
            f'http_request_duration_seconds_bucket{{service="{service}",le="+Inf"}} '
            f"{counters.count}"
        )
        lines.append(f'http_request_duration_seconds_sum{{service="{service}"}} {counters.total:g}')
        lines.append(f'http_request_duration_seconds_count{{service="{service}"}} {counters.count}')
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def configure(request: web.Request) -> web.Response:
        changes = await request.json()
        for key in ("error_rate", "latency", "revenue"):
            if key in changes:
                setattr(behaviour, key, float(changes[key]))
        return web.json_response(behaviour.__dict__)

    app = web.Application()
    app.router.add_get("/", answer)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/config", configure)
    app.router.add_get("/healthz", lambda _: web.Response(text="ok"))  # type: ignore[arg-type,return-value]
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phasegate demo-service", description=__doc__)
    parser.add_argument("--service", required=True, help="the service label in the metrics")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--latency", type=float, default=0.01)
    parser.add_argument("--revenue", type=float, default=1.0)
    args = parser.parse_args(argv)
    behaviour = Behaviour(args.error_rate, args.latency, args.revenue)
    web.run_app(
        build_app(args.service, behaviour),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )
    return 0
