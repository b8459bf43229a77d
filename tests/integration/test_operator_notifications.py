"""Notifications from the operator as a process, to a webhook receiver on 127.0.0.1.

Given the local stack and a release whose notifications go to a receiver of the test, when
the operator is killed with SIGKILL and started again, or the receiver stalls, or receivers
are misconfigured, then what the receiver gets, the rollout's status and its Events say
what users meet. The local API only: the operator reads the test's Secrets and writes
report ConfigMaps with the API's own rights (the chart's grants are tested in tests/packaging).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phasegate.demo.stack import Process, free_ports, stack, wait_until
from support.notify import LoopbackReceiver
from support.world import Cluster, World, release, start_world

KEY = b"a-key-both-sides-know"
EVENTS = [
    "PhaseStarted",
    "CheckpointPassed",
    "CheckpointPassed",
    "CheckpointPassed",
    "PhaseEnded",
    "PhaseStarted",
    "CheckpointPassed",
    "CheckpointPassed",
    "PhaseEnded",
    "Succeeded",
]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with stack(tmp_path) as running:
        world = start_world(running, Cluster.from_environment())
        yield world
        world.clean_up()


def restart(world: World, name: str) -> Process:
    """The operator started again; what it does next is awaited in the rollout's status."""
    stack = world.stack
    health, metrics = free_ports(2)
    process = stack.phasegate(
        name, "run", "--all-namespaces", "--standalone", "--prometheus", stack.prometheus_url,
        "--health-port", str(health), "--metrics-port", str(metrics),
        kubeconfig=stack.operator_kubeconfig,
    )  # fmt: skip
    world.operators.append(process)
    return process


def secret(name: str, **data: str) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}


def notified(receivers: list[dict[str, Any]], reports: bool = False) -> dict[str, Any]:
    rollout = release()
    rollout["spec"]["notifications"] = {
        "receivers": receivers,
        "reports": {"configMaps": reports},
    }
    return rollout


AUDIT = {
    "name": "audit",
    "webhook": {
        "url": {"name": "hooks", "key": "url"},
        "signingKey": {"name": "hooks", "key": "key"},
    },
}


def verify(headers: dict[str, str], body: bytes) -> bool:
    """As a receiver checks a request, from docs/notifications.md alone."""
    timestamp = headers["X-Phasegate-Timestamp"]
    expected = hmac.new(KEY, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(timestamp)) <= 300
    return fresh and hmac.compare_digest(headers["X-Phasegate-Signature"], f"sha256={expected}")


def box(status: dict[str, Any]) -> dict[str, Any]:
    return status.get("notifications") or {}


def delivered_to(status: dict[str, Any], receiver: str) -> set[str]:
    """Keys of the events ``receiver`` has, as status records it."""
    done = set(box(status).get("delivered") or [])
    return done | {
        e["key"] for e in box(status).get("outbox") or [] if receiver in e.get("deliveredTo", [])
    }


def every_key(status: dict[str, Any]) -> set[str]:
    return set(box(status).get("delivered") or []) | {
        e["key"] for e in box(status).get("outbox") or []
    }


def first_arrivals(receiver: LoopbackReceiver) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for body in receiver.bodies():
        seen.setdefault(body["idempotencyKey"], body)
    return list(seen.values())


def test_a_killed_operator_neither_resends_what_was_delivered_nor_loses_what_was_not(
    world: World,
) -> None:
    def first_checkpoint(body: dict[str, Any], before: list[Any]) -> bool:
        return body["event"] == "CheckpointPassed" and b"CheckpointPassed" not in b"".join(
            r.body for r in before
        )

    receiver = LoopbackReceiver(hold=first_checkpoint)
    try:
        world.apply(secret("hooks", url=receiver.url, key=KEY.decode()))
        world.apply(notified([AUDIT], reports=True))
        first = world.start_operator("first")
        assert receiver.holding.wait(60), "the first checkpoint's notification never came"
        (started,) = [b for b in receiver.bodies() if b["event"] == "PhaseStarted"]
        (held,) = [b for b in receiver.bodies() if b["event"] == "CheckpointPassed"]
        at_kill = world.wait(
            lambda s: (
                started["idempotencyKey"] in delivered_to(s, "audit")
                and len(s.get("checkpoints") or []) >= 2
            ),
            what="PhaseStarted recorded as delivered, a second checkpoint in the outbox",
        )
        first.kill()  # the receiver holds the first CheckpointPassed: sent, never answered
        unsent = every_key(at_kill) - {b["idempotencyKey"] for b in receiver.bodies()}
        receiver.release()
        restart(world, "second")
        status = world.wait(
            lambda s: s.get("state") == "Succeeded" and every_key(s) == delivered_to(s, "audit"),
            timeout=90,
            what="Succeeded, every event delivered",
        )
    finally:
        receiver.close()

    arrivals = Counter(b["idempotencyKey"] for b in receiver.bodies())
    assert [b["event"] for b in first_arrivals(receiver)] == EVENTS
    assert set(arrivals) == every_key(status)
    assert arrivals[started["idempotencyKey"]] == 1, "delivered before the kill: not again"
    assert arrivals[held["idempotencyKey"]] == 2, "in flight at the kill: again, same key"
    assert unsent, "an event was written before the kill and never sent"
    assert all(arrivals[k] == 1 for k in unsent), "written before the kill: delivered after it"
    assert all(n == 1 for k, n in arrivals.items() if k != held["idempotencyKey"])
    assert all(verify(r.headers, r.body) for r in receiver.got)
    assert [r.headers["Idempotency-Key"] for r in receiver.got] == [
        b["idempotencyKey"] for b in receiver.bodies()
    ]

    reports = {b["report"]["phase"]: b["report"] for b in receiver.bodies() if b["report"]}
    assert {p: r["configMap"]["name"] for p, r in reports.items()} == {
        "canary": "web-report-canary",
        "full": "web-report-full",
        None: "web-report",
    }
    uid = world.rollout()["metadata"]["uid"]
    for phase, link in reports.items():
        made = world.kube.ok(
            "GET", f"/api/v1/namespaces/{world.ns}/configmaps/{link['configMap']['name']}"
        )
        assert [o["uid"] for o in made["metadata"]["ownerReferences"]] == [uid]
        title = f"# Phase {phase} report" if phase else "# Release report"
        assert made["data"]["report.md"].startswith(f"{title}: {world.ns}/web v1")
        assert "| checkpoint | | |" in made["data"]["report.md"]


def test_a_stalled_receiver_does_not_hold_evaluations(world: World) -> None:
    receiver = LoopbackReceiver(hold=lambda body, before: True)  # answers nothing until released
    try:
        world.apply(secret("hooks", url=receiver.url, key=KEY.decode()))
        world.apply(notified([AUDIT]))
        operator = world.start_operator()
        assert receiver.holding.wait(60), "no notification came"
        status = world.wait(
            lambda s: s.get("state") in ("Succeeded", "RolledBack", "Holding"),
            timeout=90,
            what="the release's end while the receiver answers nothing",
        )
        answered_meanwhile = receiver.answered
        metrics = operator_metrics(operator.ports["metrics"])
        receiver.release()
        wait_until(
            lambda: every_key(world.status()) == delivered_to(world.status(), "audit"),
            60,
            "every event delivered once the receiver answers",
        )
    finally:
        receiver.close()

    assert status["state"] == "Succeeded", status["message"]
    assert [(c["phase"], c["offset"]) for c in status["checkpoints"]] == [
        ("canary", "4s"),
        ("canary", "6s"),
        ("canary", "8s"),
        ("full", "3s"),
        ("full", "6s"),
    ]
    assert answered_meanwhile == 0
    # An evaluation that waited on the receiver would start at least one request timeout
    # (10 s) late; each started within 5 s of its schedule.
    lags = histogram(metrics, "phasegate_evaluation_lag_seconds")
    assert lags["+Inf"] > 10 and lags["5"] == lags["+Inf"], lags
    assert [b["event"] for b in first_arrivals(receiver)] == EVENTS


def test_misconfigured_receivers_are_named_in_a_condition_and_events_and_the_release_goes_on(
    world: World,
) -> None:
    closed = LoopbackReceiver()
    unreachable = closed.url
    closed.close()  # nothing listens there any more
    good = LoopbackReceiver()
    try:
        world.apply(
            secret("hooks", url=good.url, key=KEY.decode(), bad="hooks.example/no-scheme"),
            secret("down", url=unreachable),
        )
        receivers = [
            AUDIT,
            {"name": "missing", "webhook": {"url": {"name": "gone", "key": "url"}}},
            {"name": "invalid", "slack": {"url": {"name": "hooks", "key": "bad"}}},
            {"name": "unreachable", "teams": {"url": {"name": "down", "key": "url"}}},
        ]
        world.apply(notified(receivers))
        operator = world.start_operator()
        status = world.wait(
            lambda s: (
                s.get("state") in ("Succeeded", "RolledBack", "Holding")
                and every_key(s) == delivered_to(s, "audit")
                and len(condition(s)["message"].split(";")) == 3
            ),
            timeout=90,
            what="the release's end, every event at audit, the three others failing",
        )
    finally:
        good.close()

    assert status["state"] == "Succeeded", status["message"]
    assert [b["event"] for b in first_arrivals(good)] == EVENTS
    named = condition(status)
    assert named["status"] == "False" and named["reason"] == "DeliveryFailing"
    port = unreachable.split(":")[2].split("/")[0]
    assert named["message"] == (
        f"receiver invalid: the URL in Secret {world.ns}/hooks key bad is not an http(s) URL; "
        f"receiver missing: cannot read Secret {world.ns}/gone key url: Not Found; "
        f"receiver unreachable: cannot connect: Connect call failed ('127.0.0.1', {port})"
    )
    events = world.kube.ok("GET", f"/api/v1/namespaces/{world.ns}/events")["items"]
    warned = {e["message"] for e in events if e["reason"] == "NotificationFailed"}
    for name in ("missing", "invalid", "unreachable"):
        assert any(f"to receiver {name} failed" in m for m in warned), (name, warned)
    shown = str(status) + " ".join(warned) + operator.log.read_text()
    assert "secret-token" not in shown, "a receiver's URL is a secret"


def condition(status: dict[str, Any]) -> dict[str, Any]:
    found = [c for c in status.get("conditions") or [] if c["type"] == "NotificationsDelivered"]
    return found[0] if found else {"status": "Unknown", "message": ""}


def operator_metrics(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def histogram(text: str, name: str) -> dict[str, float]:
    """Bucket counts by ``le``, summed over the series."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="')[1].split('"')[0]
            out[le] = out.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    return out
