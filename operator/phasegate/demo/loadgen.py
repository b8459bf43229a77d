"""The demo's data plane: sends requests to stable and canary in the proportion the
HTTPRoute says, as a service mesh would. It reads the route from the Kubernetes API (every
half second) and nothing else; it is a stand-in for the mesh, not a part of phasegate.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from typing import Any, cast

import aiohttp
import kubernetes


def weights_of(route: dict[str, Any], backends: dict[str, str]) -> dict[str, int]:
    """The weights of the known backends in the route's first rule that has them."""
    for rule in (route.get("spec") or {}).get("rules") or []:
        refs = {r.get("name"): int(r.get("weight", 1)) for r in rule.get("backendRefs") or []}
        known = {name: w for name, w in refs.items() if name in backends}
        if known:
            return known
    return {}


async def follow_route(
    client: Any, namespace: str, name: str, backends: dict[str, str], shared: dict[str, int]
) -> None:
    api = kubernetes.client.CustomObjectsApi(client)
    while True:
        try:
            route = await asyncio.to_thread(
                api.get_namespaced_custom_object,
                "gateway.networking.k8s.io",
                "v1",
                namespace,
                "httproutes",
                name,
            )
            found = weights_of(cast(dict[str, Any], route), backends)
            shared.clear()
            shared.update(found)
        except Exception:  # the API may be restarting; keep the last weights
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
    client = kubernetes.config.new_client_from_config(args.kubeconfig)  # type: ignore[no-untyped-call]
    shared: dict[str, int] = {}
    await asyncio.gather(
        follow_route(client, args.namespace, args.route, backends, shared),
        generate(args.rate, backends, shared),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phasegate demo-load", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--route", required=True, help="HTTPRoute name")
    parser.add_argument("--backend", action="append", required=True, help="service=url, repeatable")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    asyncio.run(run(parser.parse_args(argv)))
    return 0
