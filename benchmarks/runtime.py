"""The operator on the local stack: trigger-to-rollback latency, and memory with 100 rollouts.

1. Time from a rollback trigger's condition becoming true in Prometheus (the error rate above
   its threshold for the whole ``for`` window, read from Prometheus's own history) to the
   route showing canary weight 0 (seen on a watch), over repeated runs.
2. The operator's resident memory while it manages 100 rollouts at a 1s interval, with its
   evaluation lag and status writes (read from its own /metrics).
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from phasegate.demo.stack import stack
from support.world import WeightRecorder, breach_start, release, route, start_world

QUERY = (
    'sum(rate(http_requests_total{service="web-canary",code=~"5.."}[5s])) '
    '/ sum(rate(http_requests_total{service="web-canary"}[5s]))'
)


def rollback_latency(runs: int) -> list[float]:
    latencies = []
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as running:
        world = start_world(running)
        operator = running.start_operator(
            "operator", "--standalone", "--prometheus", running.prometheus_url
        )
        for run in range(runs):
            spec = release()["spec"]
            del spec["revision"]
            spec["phases"] = [
                {
                    **spec["phases"][0],
                    "duration": "5m",
                    "checkpoints": ["5m"],
                    "holdTriggers": [],
                    "rollbackTriggers": [{"metric": "error-rate", "max": 0.015, "for": "2s"}],
                }
            ]
            world.apply(release(revision=f"r{run}", **spec))
            revision = f"r{run}"

            def canary_started(s: dict[str, Any], revision: str = revision) -> bool:
                current = s.get("currentPhase") or {}
                return s.get("revision") == revision and bool(current.get("startedAt"))

            world.wait(canary_started, what="the canary phase")
            time.sleep(2)  # let the healthy canary's rate window fill
            recorder = WeightRecorder(world)
            broken = time.time()
            running.configure_service("web-canary", error_rate=0.3)
            world.wait(lambda s: s.get("state") == "RolledBack", timeout=30)
            zero = recorder.first(0)
            recorder.stop()
            condition = breach_start(running.prometheus_url, QUERY, 0.015, broken - 2, zero) + 2.0
            latencies.append(zero - condition)
            running.configure_service("web-canary", error_rate=0.0)
            time.sleep(6)  # the next run starts from a clean 5s window
        operator.stop()
    return latencies


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]


def metric(text: str, name: str) -> float:
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


def hundred_rollouts(count: int = 100, watch_for: float = 30.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as running:
        world = start_world(running)
        objects = []
        for i in range(count):
            spec = release()["spec"]
            del spec["revision"]
            spec["trafficRouting"]["gatewayAPI"]["httpRoute"] = f"route-{i}"
            spec["phases"][0]["duration"], spec["phases"][0]["checkpoints"] = "1h", ["30m", "1h"]
            objects += [route(f"route-{i}"), release(f"r{i}", **spec)]
        world.apply(*objects)
        operator = running.start_operator(
            "operator", "--standalone", "--prometheus", running.prometheus_url
        )
        port = operator.ports["metrics"]
        started = time.monotonic()

        def all_started() -> bool:
            listing = world.kube.ok(
                "GET", f"/apis/phasegate.dev/v1alpha1/namespaces/{world.ns}/progressiverollouts"
            )
            return (
                sum(
                    bool(((o.get("status") or {}).get("currentPhase") or {}).get("startedAt"))
                    for o in listing["items"]
                )
                == count
            )

        while not all_started():
            time.sleep(0.5)
        ready_after = time.monotonic() - started
        time.sleep(5)  # each rollout's first judgement adds its MetricsAvailable condition
        before = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        peak = 0
        end = time.monotonic() + watch_for
        while time.monotonic() < end:
            peak = max(peak, rss_kib(operator.popen.pid))
            time.sleep(0.5)
        after = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        evaluations = metric(after, "phasegate_evaluations_total") - metric(
            before, "phasegate_evaluations_total"
        )
        writes = metric(after, "phasegate_status_writes_total") - metric(
            before, "phasegate_status_writes_total"
        )
        lag_sum = metric(after, "phasegate_evaluation_lag_seconds_sum") - metric(
            before, "phasegate_evaluation_lag_seconds_sum"
        )
        lag_n = metric(after, "phasegate_evaluation_lag_seconds_count") - metric(
            before, "phasegate_evaluation_lag_seconds_count"
        )
        return {
            "ready_after_s": ready_after,
            "peak_rss_mib": peak / 1024,
            "evaluations": evaluations,
            "status_writes": writes,
            "mean_lag_ms": 1000 * lag_sum / max(lag_n, 1),
            "window_s": watch_for,
        }


def main(parts: tuple[str, ...] = ("latency", "memory")) -> None:
    if "latency" in parts:
        latency()
    if "memory" in parts:
        memory()


def latency() -> None:
    latencies = sorted(rollback_latency(8))
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    print(
        "operator: trigger condition true in Prometheus -> route at canary 0 "
        "(1s interval, 1s scrape)"
    )
    print(
        f"  runs {len(latencies)}, median {statistics.median(latencies):.2f} s, p95 {p95:.2f} s, "
        f"max {latencies[-1]:.2f} s"
    )


def memory() -> None:
    figures = hundred_rollouts()
    print("operator: 100 rollouts at a 1s interval")
    print(f"  all phases started after {figures['ready_after_s']:.1f} s")
    print(f"  peak RSS {figures['peak_rss_mib']:.0f} MiB over {figures['window_s']:.0f} s")
    print(
        f"  {figures['evaluations']:.0f} evaluations, "
        f"{figures['status_writes']:.0f} status writes, "
        f"mean evaluation lag {figures['mean_lag_ms']:.0f} ms"
    )


if __name__ == "__main__":
    main(tuple(sys.argv[1:]) or ("latency", "memory"))
