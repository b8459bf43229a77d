"""The demo's data plane: sends requests to stable and canary in the proportion the traffic
object says, as a service mesh would. It reads the canary's weight from the Kubernetes API
(every half second) with phasegate's own router for the provider (HTTPRoute, VirtualService,
TrafficSplit or the NGINX canary Ingress); it is a stand-in for the mesh, not a part of
phasegate.
"""

from __future__ import annotations

import argparse
import asyncio
import random

import aiohttp
import kubernetes

from phasegate.kube import Kube
from phasegate.traffic import ROUTERS, Router


async def follow(router: Router, stable: str, canary: str, shared: dict[str, int]) -> None:
    """Keep ``shared`` at the route's weights; the last ones stay while it cannot be read."""
    while True:
        try:
            weight = await asyncio.to_thread(router.read_weight)
            shared.update({stable: 100 - weight, canary: weight})
        except Exception:  # the API may be restarting, the route may be broken for a while
            pass
        await asyncio.sleep(0.5)


async def generate(
    rate: float, backends: dict[str, str], shared: dict[str, int], seed: int = 7
) -> None:
    rng = random.Random(seed)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        in_flight: set[asyncio.Task[None]] = set()

        async def one(url: str) -> None:
            try:
                async with session.get(url) as response:
                    await response.read()
            except (aiohttp.ClientError, TimeoutError):
                pass

        while True:
            if shared and sum(shared.values()) > 0 and len(in_flight) < 200:
                names = list(shared)
                target = rng.choices(names, weights=[shared[n] for n in names])[0]
                task = asyncio.create_task(one(backends[target]))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            await asyncio.sleep(1 / rate)


async def run(args: argparse.Namespace) -> None:
    backends = dict(pair.split("=", 1) for pair in args.backend)
    names = list(backends)
    stable, canary = args.stable or names[0], args.canary or names[1]
    kube = Kube(kubernetes.config.new_client_from_config(args.kubeconfig))  # type: ignore[no-untyped-call]
    router = ROUTERS[args.provider](kube, args.namespace, args.route, stable, canary)
    shared: dict[str, int] = {}
    await asyncio.gather(
        follow(router, stable, canary, shared), generate(args.rate, backends, shared)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phasegate demo-load", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--provider", choices=sorted(ROUTERS), default="gatewayAPI")
    parser.add_argument(
        "--route", required=True, help="the provider's object (for nginx: the stable Ingress)"
    )
    parser.add_argument("--backend", action="append", required=True, help="service=url, repeatable")
    parser.add_argument("--stable", help="the stable Service (default: the first backend)")
    parser.add_argument("--canary", help="the canary Service (default: the second backend)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    asyncio.run(run(parser.parse_args(argv)))
    return 0
