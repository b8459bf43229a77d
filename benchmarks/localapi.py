"""The local Kubernetes API: per-request latency as objects and requests accumulate,
and watch delivery latency. Real HTTP over loopback, one keep-alive connection."""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from phasegate.localapi.testing import running_local_api

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "phasegate.dev_progressiverollouts.yaml"
PATH = "/apis/phasegate.dev/v1alpha1/namespaces/default/progressiverollouts"


class Client:
    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port)

    def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        data = json.dumps(body) if body is not None else None
        self.connection.request(method, path, body=data, headers={"Content-Type": content_type})
        response = self.connection.getresponse()
        payload = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {payload[:200]!r}")
        return json.loads(payload)


def rollout(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "phasegate.dev/v1alpha1",
        "kind": "ProgressiveRollout",
        "metadata": {"name": f"r{i}"},
        "spec": {
            "revision": "v1",
            "stable": {"service": "s"},
            "canary": {"service": "c"},
            "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}},
            "metrics": [{"name": "errors", "query": 'sum(rate(x{service="{{service}}"}[1m]))'}],
            "phases": [
                {
                    "name": "canary",
                    "weight": 10,
                    "duration": "1h",
                    "successCriteria": [{"metric": "errors", "max": 0.01}],
                }
            ],
        },
    }


def timed(calls: int, fn: Any) -> dict[str, float]:
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - started)
    samples.sort()
    return {
        "p50_ms": statistics.median(samples) * 1e3,
        "p99_ms": samples[int(len(samples) * 0.99)] * 1e3,
    }


def mix(client: Client, objects: int, calls: int) -> dict[str, dict[str, float]]:
    merge = "application/merge-patch+json"
    return {
        "get": timed(calls, lambda i: client.call("GET", f"{PATH}/r{i % objects}")),
        "patch status": timed(
            calls,
            lambda i: client.call(
                "PATCH",
                f"{PATH}/r{i % objects}/status",
                {"status": {"message": f"tick {i}"}},
                merge,
            ),
        ),
        "list": timed(max(calls // 10, 20), lambda i: client.call("GET", PATH)),
    }


def watch_latency(url: str, client: Client, rounds: int = 200) -> dict[str, float]:
    parsed = urlparse(url)
    stream = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port)
    mark = client.call("GET", PATH)["metadata"]["resourceVersion"]
    stream.request("GET", f"{PATH}?watch=true&resourceVersion={mark}&timeoutSeconds=120")
    response = stream.getresponse()
    received: dict[str, float] = {}
    ready = threading.Event()

    def reader() -> None:
        ready.set()
        for line in response:
            event = json.loads(line)
            message = (event["object"].get("status") or {}).get("message", "")
            received[message] = time.perf_counter()
            if message == f"watch {rounds - 1}":
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    ready.wait()
    sent: dict[str, float] = {}
    for i in range(rounds):
        sent[f"watch {i}"] = time.perf_counter()
        client.call(
            "PATCH",
            f"{PATH}/r0/status",
            {"status": {"message": f"watch {i}"}},
            "application/merge-patch+json",
        )
    thread.join(timeout=30)
    delays = sorted(received[k] - sent[k] for k in sent if k in received)
    return {
        "p50_ms": statistics.median(delays) * 1e3,
        "p99_ms": delays[int(len(delays) * 0.99)] * 1e3,
        "delivered": len(delays),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, running_local_api(Path(tmp) / "kc") as api:
        client = Client(api.url)
        client.call(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            yaml.safe_load(CRD.read_text()),
        )
        print("local API: per-request latency over HTTP (p50 / p99, ms)")
        created = 0
        for objects in (100, 1000):
            while created < objects:
                client.call("POST", PATH, rollout(created))
                created += 1
            for name, figures in mix(client, objects, 1000).items():
                print(
                    f"  {objects:>5} rollouts  {name:<13} "
                    f"{figures['p50_ms']:6.2f} / {figures['p99_ms']:6.2f}"
                )
        served = api.handler.served
        while api.handler.served - served < 10_000:
            client.call("GET", f"{PATH}/r{api.handler.served % 1000}")
        for name, figures in mix(client, 1000, 1000).items():
            print(
                f"  after {api.handler.served:>6} requests {name:<13} "
                f"{figures['p50_ms']:6.2f} / {figures['p99_ms']:6.2f}"
            )
        latency = watch_latency(api.url, client)
        print(
            f"  watch delivery (write sent -> event read): p50 {latency['p50_ms']:.2f} ms, "
            f"p99 {latency['p99_ms']:.2f} ms over {latency['delivered']:.0f} events"
        )


if __name__ == "__main__":
    main()
