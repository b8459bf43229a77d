"""Notifications against evaluations: the operator's evaluation lag while every rollout's
webhook receiver stalls (takes each request and answers nothing during the window), against
the same with a receiver that answers at once.

Each of the rollouts passes a checkpoint every 3 s, so each sends a notification every 3 s;
the lag is how late an evaluation started against its schedule, read from the operator's own
/metrics (``phasegate_evaluation_lag_seconds``), over the window only.
"""

from __future__ import annotations

import base64
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from phasegate.demo.stack import stack, wait_until
from support.notify import LoopbackReceiver
from support.world import release, route, start_world

ROLLOUTS = 20
WINDOW = 20.0  # seconds observed
AUDIT = {"name": "audit", "webhook": {"url": {"name": "hooks", "key": "url"}}}


def metrics(port: int) -> dict[str, float]:
    """Every series of the operator's /metrics, summed over labels."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            name = series.split("{")[0]
            if name.endswith("_bucket"):
                name += "{" + series.split("le=")[1].rstrip("}").strip('"') + "}"
            out[name] = out.get(name, 0.0) + float(value)
    return out


def run(stall: bool) -> dict[str, Any]:
    receiver = LoopbackReceiver(hold=(lambda body, before: True) if stall else None)
    try:
        with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as running:
            world = start_world(running)
            url = base64.b64encode(receiver.url.encode()).decode()
            hooks = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks"}}
            objects: list[dict[str, Any]] = [hooks | {"data": {"url": url}}]
            for i in range(ROLLOUTS):
                spec = release()["spec"]
                spec["trafficRouting"]["gatewayAPI"]["httpRoute"] = f"route-{i}"
                canary = spec["phases"][0]
                canary["duration"] = "10m"
                canary["checkpoints"] = [f"{3 * n}s" for n in range(1, 31)]
                spec["notifications"] = {"receivers": [AUDIT]}
                objects += [route(f"route-{i}"), release(f"r{i}", **spec)]
            world.apply(*objects)
            operator = running.start_operator(
                "operator", "--standalone", "--prometheus", running.prometheus_url
            )
            port = operator.ports["metrics"]
            wait_until(lambda: len(receiver.got) >= ROLLOUTS, 120, "every rollout's first event")
            before, got_before = metrics(port), len(receiver.got)
            time.sleep(WINDOW)  # the window measured
            after = metrics(port)
            got, answered = len(receiver.got) - got_before, receiver.answered
    finally:
        receiver.close()

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    count = delta("phasegate_evaluation_lag_seconds_count")
    return {
        "evaluations": count,
        "mean_lag_ms": 1000 * delta("phasegate_evaluation_lag_seconds_sum") / max(count, 1),
        "within_250ms": delta("phasegate_evaluation_lag_seconds_bucket{0.25}") / max(count, 1),
        "within_1s": delta("phasegate_evaluation_lag_seconds_bucket{1}") / max(count, 1),
        "requests": got,
        "answered": answered,
    }


def main() -> None:
    print(
        f"notifications: {ROLLOUTS} rollouts, a checkpoint (and a notification) every 3 s each, "
        f"evaluation lag over {WINDOW:.0f} s"
    )
    for stall in (False, True):
        figures = run(stall)
        what = "stalled receiver (answers nothing)" if stall else "receiver answering at once"
        print(
            f"  {what:<36} {figures['evaluations']:.0f} evaluations, "
            f"mean lag {figures['mean_lag_ms']:.0f} ms, "
            f"{100 * figures['within_250ms']:.0f}% within 250 ms, "
            f"{100 * figures['within_1s']:.0f}% within 1 s; "
            f"receiver got {figures['requests']} requests in the window, "
            f"answered {figures['answered']} in all"
        )


if __name__ == "__main__":
    main()
