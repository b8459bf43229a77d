"""Notifications delivered to a real HTTP receiver on 127.0.0.1: payloads, signatures,
retries, once per event across a restart, and evaluations never waiting for delivery."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from phasegate.api import State
from phasegate.api.notifications import EventKind, Receiver, ReportsSpec
from phasegate.api.spec import RolloutSpec
from phasegate.engine import ControlAction
from phasegate.notify import slack
from phasegate.notify.delivery import RECEIVER_LABELS, DeliverySettings, Notifier, Target
from phasegate.runtime.telemetry import Telemetry
from support.engine import constant, healthy, minimal_spec, reference_spec
from support.notify import (
    ROLLOUT,
    HttpReceiver,
    MemoryReports,
    MemoryStore,
    NotifyingSim,
    StaticResolver,
    rollout_object,
    serve,
    until,
    with_receivers,
)
from support.reports import approvals, in_phase

KEY = b"shared-signing-key"
FAST = DeliverySettings(timeout=0.5, first_retry=0.05, max_retry=0.2, max_attempts=4)
HOOK = Receiver.model_validate(
    {"name": "audit", "webhook": {"url": {"name": "hook", "key": "url"}}}
)


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    got = HttpReceiver()
    runner = await serve(got)
    yield got
    await runner.cleanup()


def held_release() -> NotifyingSim:
    """The minimal release: a hold (errors 3% for 1m), resumed, then to Succeeded."""
    sim = NotifyingSim(
        with_receivers(minimal_spec(), HOOK), constant({"errors": 0.001, "latency": 0.1})
    )
    sim.run(in_phase("canary"))
    sim.metrics = constant({"errors": 0.03, "latency": 0.1})
    sim.run(sim.state_is(State.HOLDING), limit=timedelta(minutes=5))
    sim.metrics = constant({"errors": 0.001, "latency": 0.1})
    sim.control(ControlAction.RESUME, by="alice")
    sim.run(sim.state_is(State.SUCCEEDED))
    return sim


def notifier(store: MemoryStore, url: str, settings: DeliverySettings = FAST) -> Notifier:
    target = Target(HOOK, "webhook", url=url, signing_key=KEY)
    return Notifier(store, StaticResolver([target]), Telemetry(), settings)


def verify(headers: dict[str, str], body: bytes, now: float, tolerance: float = 300) -> bool:
    """What a receiver does, written from docs/notifications.md, not from phasegate."""
    timestamp = headers["X-Phasegate-Timestamp"]
    expected = hmac.new(KEY, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs(now - int(timestamp)) <= tolerance
    return fresh and hmac.compare_digest(headers["X-Phasegate-Signature"], f"sha256={expected}")


async def test_every_event_reaches_the_webhook_signed_once_in_order(receiver: HttpReceiver) -> None:
    sim = held_release()
    outbox = sim.status.notifications.outbox if sim.status.notifications else []
    store = MemoryStore(rollout_object(sim.spec, sim.status))
    sender = notifier(store, receiver.url)
    sender.wake("learning", "cohort-analyzer")
    await sender.idle()
    await sender.close()

    bodies = [json.loads(r.body) for r in receiver.got]
    assert [b["event"] for b in bodies] == [e.event for e in outbox]
    assert [b["event"] for b in bodies] == [
        "PhaseStarted",
        "Hold",
        "Resumed",
        "CheckpointPassed",
        "CheckpointPassed",
        "PhaseEnded",
        "PhaseStarted",
        "CheckpointPassed",
        "PhaseEnded",
        "Succeeded",
    ]
    assert all(verify(r.headers, r.body, time.time()) for r in receiver.got)
    assert not verify(receiver.got[0].headers, receiver.got[0].body + b" ", time.time())
    assert not verify(receiver.got[0].headers, receiver.got[0].body, time.time() + 3600)
    keys = [r.headers["Idempotency-Key"] for r in receiver.got]
    assert keys == [b["idempotencyKey"] for b in bodies] and len(set(keys)) == len(keys)
    hold = next(b for b in bodies if b["event"] == "Hold")
    assert hold["decision"]["action"] == "Hold"
    assert hold["decision"]["evidence"][0]["value"] == 0.03
    assert hold["nextSteps"] == [
        "kubectl phasegate resume cohort-analyzer -n learning",
        "kubectl phasegate promote cohort-analyzer -n learning",
        "kubectl phasegate abort cohort-analyzer -n learning",
    ]
    assert store.box.outbox == [] and store.box.delivered == keys
    assert "secret-token" not in json.dumps(store.obj["status"])


async def test_500s_and_timeouts_are_retried_until_delivered(receiver: HttpReceiver) -> None:
    sim = NotifyingSim(with_receivers(minimal_spec(), HOOK), held_release().metrics)
    sim.run(in_phase("canary"))
    assert sim.status.notifications is not None
    assert [e.event for e in sim.status.notifications.outbox] == ["PhaseStarted"]
    receiver.answers = [(500, 0.0), (503, 0.0), (200, 2.0)]  # the third answers too late
    store = MemoryStore(rollout_object(sim.spec, sim.status))
    sender = notifier(store, receiver.url)
    sender.wake("learning", "cohort-analyzer")
    await sender.idle()
    await sender.close()
    assert len(receiver.got) == 4
    assert len({r.headers["Idempotency-Key"] for r in receiver.got}) == 1, "one event, retried"
    assert store.box.outbox == [] and len(store.box.delivered) == 1
    failures = sender.telemetry.counters["phasegate_notification_failures_total"]
    assert sum(failures.values()) == 3


async def test_a_receiver_that_keeps_failing_is_given_up_on_and_shown(
    receiver: HttpReceiver,
) -> None:
    sim = NotifyingSim(with_receivers(minimal_spec(), HOOK), held_release().metrics)
    sim.run(in_phase("canary"))
    receiver.answers = [(500, 0.0)] * FAST.max_attempts
    store = MemoryStore(rollout_object(sim.spec, sim.status))
    warnings: list[str] = []
    sender = notifier(store, receiver.url)
    sender.warn = lambda ns, name, message: warnings.append(message)
    sender.wake("learning", "cohort-analyzer")
    await sender.idle()
    await sender.close()
    assert len(receiver.got) == FAST.max_attempts
    assert store.box.dropped == 1 and store.box.outbox == []
    assert [f.receiver for f in store.box.failing] == ["audit"]
    assert store.box.failing[0].reason == "HTTP 500 from the receiver"
    assert "failed: HTTP 500" in warnings[0] and "given up after 4 attempts" in warnings[-1]
    assert "secret-token" not in json.dumps(store.obj["status"]) + " ".join(warnings)


async def test_a_restart_neither_resends_nor_loses_an_event(receiver: HttpReceiver) -> None:
    sim = NotifyingSim(with_receivers(minimal_spec(), HOOK), held_release().metrics)
    sim.run(in_phase("canary"))
    store = MemoryStore(rollout_object(sim.spec, sim.status))
    receiver.answers = [(500, 0.0)]
    first = notifier(store, receiver.url)
    first.wake("learning", "cohort-analyzer")
    await receiver.wait_for(1)
    await first.close()  # the operator dies before its retry: the event is not delivered
    assert len(store.box.outbox) == 1
    second = notifier(store, receiver.url)
    second.wake("learning", "cohort-analyzer")
    await second.idle()
    await second.close()
    third = notifier(store, receiver.url)  # and restarted again, after delivery
    third.wake("learning", "cohort-analyzer")
    await third.idle()
    await third.close()
    delivered = [r for r in receiver.got if r.status == 200]
    assert len(delivered) == 1, "delivered after the crash, and not again after the restart"
    assert len(receiver.got) == 2
    assert len({r.headers["Idempotency-Key"] for r in receiver.got}) == 1
    assert store.box.outbox == []


async def test_a_slow_receiver_does_not_slow_evaluations(receiver: HttpReceiver) -> None:
    receiver.answers = [(200, 1.0)] * 50
    spec = with_receivers(minimal_spec(), HOOK)
    sim = NotifyingSim(spec, held_release().metrics)
    store = MemoryStore(rollout_object(sim.spec, sim.status))
    sender = notifier(store, receiver.url, DeliverySettings(timeout=5.0))
    ticks: list[float] = []
    for _ in range(30):
        started = time.perf_counter()
        sim.step()
        store.obj["status"] = rollout_object(sim.spec, sim.status)["status"]
        sender.wake("learning", "cohort-analyzer")
        ticks.append(time.perf_counter() - started)
        sim.advance(timedelta(seconds=10))
        await asyncio.sleep(0)
    assert len(receiver.got) <= 1, "the receiver was still busy with the first request"
    assert max(ticks) < 0.2, f"an evaluation waited for delivery: {max(ticks):.3f}s"
    await receiver.wait_for(1)
    await sender.close()


def test_slack_messages_of_the_reference_release_stay_within_block_kit_limits() -> None:
    hook = Receiver.model_validate({"name": "team", "slack": {"url": {"name": "s", "key": "u"}}})
    spec = with_receivers(reference_spec(), hook, digest="15m")
    sim = NotifyingSim(spec, healthy())
    sim.step(approvals("ramp", "rollout"))
    entries = []
    while sim.status.state is not State.SUCCEEDED:
        result = sim.step()
        if sim.status.notifications:
            entries += sim.status.notifications.outbox
            sim.status.notifications.outbox = []
        sim.advance(max(result.next_evaluation, timedelta(milliseconds=1)))
    events = {e.event for e in entries}
    assert {"CheckpointPassed", "PhaseStarted", "PhaseEnded", "Digest", "Succeeded"} <= events
    for entry in entries:
        message = slack.message(json.loads(entry.payload))
        assert len(message["blocks"]) <= slack.MAX_BLOCKS
        for block in message["blocks"]:
            if block["type"] == "header":
                assert len(block["text"]["text"]) <= slack.HEADER_TEXT
            elif "fields" in block:
                assert len(block["fields"]) <= slack.MAX_FIELDS
                assert all(len(f["text"]) <= slack.FIELD_TEXT for f in block["fields"])
            else:
                assert len(block["text"]["text"]) <= slack.SECTION_TEXT
    ended = next(json.loads(e.payload) for e in entries if e.event == "PhaseEnded")
    texts = [b["text"]["text"] for b in slack.message(ended)["blocks"] if "text" in b]
    assert (
        "Report of canary: `kubectl phasegate report cohort-analyzer -n learning --phase canary "
        "--format md`" in texts
    )
    huge = json.loads(entries[0].payload) | {"message": "x" * 10_000}
    assert len(slack.message(huge)["blocks"][1]["text"]["text"]) == slack.SECTION_TEXT
    assert EventKind.DIGEST in events


def reporting(spec: RolloutSpec) -> RolloutSpec:
    config = spec.notifications
    assert config is not None
    update = {"reports": ReportsSpec(config_maps=True)}
    return spec.model_copy(update={"notifications": config.model_copy(update=update)})


def finished_release(spec: RolloutSpec) -> MemoryStore:
    sim = NotifyingSim(spec, constant({"errors": 0.001, "latency": 0.1}))
    sim.run(sim.state_is(State.SUCCEEDED))
    return MemoryStore(rollout_object(sim.spec, sim.status))


async def test_a_phase_report_is_written_before_the_notification_that_links_it(
    receiver: HttpReceiver,
) -> None:
    store = finished_release(reporting(with_receivers(minimal_spec(), HOOK)))
    reports = MemoryReports(receiver)
    sender = notifier(store, receiver.url)
    sender.reports = reports
    sender.wake("learning", "cohort-analyzer")
    await sender.idle()
    await sender.close()
    bodies = [json.loads(r.body) for r in receiver.got]
    for name, got_before in reports.order:
        linking = next(
            i
            for i, b in enumerate(bodies)
            if b["report"] and b["report"]["configMap"]["name"] == name
        )
        assert got_before <= linking, f"{name} was linked before it was written"
    assert list(reports.written) == [
        "cohort-analyzer-report-canary",
        "cohort-analyzer-report-full",
        "cohort-analyzer-report",
    ]
    assert "## Phase canary" in reports.written["cohort-analyzer-report-canary"]["report.md"]
    assert store.box.outbox == [] and store.box.failing == []
    deliveries = sender.telemetry.counters["phasegate_notification_deliveries_total"]
    assert (
        deliveries[(("outcome", "delivered"), ("receiver", "ConfigMap"), ("service", "configmap"))]
        == 3
    )


async def test_a_report_that_cannot_be_written_is_shown_and_the_notifications_still_go(
    receiver: HttpReceiver,
) -> None:
    store = finished_release(reporting(with_receivers(minimal_spec(), HOOK)))
    reports = MemoryReports(receiver, refuse="configmaps is forbidden")
    sender = notifier(store, receiver.url)
    sender.reports = reports
    warnings: list[str] = []
    sender.warn = lambda ns, name, message: warnings.append(message)
    events = [e.event for e in store.box.outbox]
    sender.wake("learning", "cohort-analyzer")
    await sender.idle()
    await sender.close()
    assert [json.loads(r.body)["event"] for r in receiver.got] == events
    assert store.box.dropped == 3, "the three reports, given up after every attempt"
    (failing,) = store.box.failing
    assert failing.receiver == "ConfigMap"
    assert failing.reason == (
        "cannot write ConfigMap learning/cohort-analyzer-report: configmaps is forbidden"
    ), "the latest failure: the release's report"
    assert "to receiver ConfigMap failed: cannot write ConfigMap" in warnings[0]
    gauge = sender.telemetry.gauges["phasegate_notification_receivers_failing"]
    assert gauge[(("receiver", "ConfigMap"), ("service", "configmap"))] == 1


async def test_delivery_metrics_count_by_receiver_and_outcome_with_bounded_labels(
    receiver: HttpReceiver,
) -> None:
    sim = NotifyingSim(with_receivers(minimal_spec(), HOOK), held_release().metrics)
    sim.run(in_phase("canary"))
    store = MemoryStore(rollout_object(sim.spec, sim.status))
    receiver.answers = [(500, 0.0), (500, 0.0)]
    sender = notifier(store, receiver.url)
    sender.wake("learning", "cohort-analyzer")
    await sender.idle()
    counters = sender.telemetry.counters
    audit = (("receiver", "audit"), ("service", "webhook"))
    deliveries = counters["phasegate_notification_deliveries_total"]
    assert deliveries[(("outcome", "delivered"), *audit)] == 1
    assert deliveries[(("outcome", "failed"), *audit)] == 2
    assert counters["phasegate_notification_retries_total"][audit] == 2
    gauge = sender.telemetry.gauges["phasegate_notification_receivers_failing"]
    assert gauge[audit] == 0, "no longer failing once delivered"

    names = [f"r{i}" for i in range(80)]
    labels = [sender.metric_label(n) for n in names]
    assert labels[: RECEIVER_LABELS - 1] == names[: RECEIVER_LABELS - 1], "audit took one"
    assert set(labels[RECEIVER_LABELS - 1 :]) == {"other"}
    assert sender.metric_label("audit") == "audit"
    await sender.close()


async def test_a_receiver_waiting_for_its_retry_does_not_hold_back_the_others(
    receiver: HttpReceiver,
) -> None:
    down = Receiver.model_validate({"name": "down", "webhook": HOOK.webhook})
    spec = with_receivers(minimal_spec(), HOOK, down)
    sim = NotifyingSim(spec, constant({"errors": 0.001, "latency": 0.1}))
    sim.run(in_phase("canary"))
    store = MemoryStore(rollout_object(sim.spec, sim.status))
    targets = [
        Target(HOOK, "webhook", url=receiver.url, signing_key=KEY),
        Target(down, "webhook", url="http://127.0.0.1:9/closed"),  # nothing listens on port 9
    ]
    slow_retries = DeliverySettings(timeout=0.5, first_retry=600.0, max_retry=600.0)
    sender = Notifier(store, StaticResolver(targets), Telemetry(), slow_retries)
    sender.wake("learning", "cohort-analyzer")
    await until(lambda: [f.receiver for f in store.box.failing] == ["down"])
    assert len(receiver.got) == 1

    sim.run(lambda s: len(s.status.checkpoints) >= 1)  # a checkpoint: one more event
    store.obj["status"] = rollout_object(sim.spec, sim.status)["status"]
    sender.wake("learning", "cohort-analyzer")
    await receiver.wait_for(2)  # within 10 s; "down" retries in 600 s
    await sender.close()
    assert [json.loads(r.body)["event"] for r in receiver.got] == [
        "PhaseStarted",
        "CheckpointPassed",
    ]


class Stores:
    """One :class:`MemoryStore` per rollout."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.by = {(o["metadata"]["namespace"], ROLLOUT.name): MemoryStore(o) for o in objects}

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.by[namespace, name].get(namespace, name)

    async def update(self, namespace: str, name: str, change: Any) -> None:
        await self.by[namespace, name].update(namespace, name, change)


class ByNamespace:
    def __init__(self, targets: dict[str, list[Target]]) -> None:
        self.of = targets

    async def targets(self, namespace: str, spec: RolloutSpec) -> list[Target]:
        return self.of[namespace]


async def test_a_stalled_receiver_takes_only_its_own_share_of_requests_in_flight(
    receiver: HttpReceiver,
) -> None:
    stalled = HttpReceiver(hold=asyncio.Event())  # takes each request, answers when told
    runner = await serve(stalled)
    sim = NotifyingSim(with_receivers(minimal_spec(), HOOK), constant({"errors": 0.001}))
    sim.run(in_phase("canary"))
    namespaces = ["slow-0", "slow-1", "slow-2", "slow-3", "slow-4", "fine"]
    objects = []
    for namespace in namespaces:
        obj = rollout_object(sim.spec, sim.status)
        obj["metadata"]["namespace"] = namespace
        objects.append(obj)
    targets = {n: [Target(HOOK, "webhook", url=stalled.url)] for n in namespaces[:-1]}
    targets["fine"] = [Target(HOOK, "webhook", url=receiver.url)]
    settings = DeliverySettings(timeout=20.0, concurrency=4, per_receiver=2)
    sender = Notifier(Stores(objects), ByNamespace(targets), Telemetry(), settings)
    try:
        for namespace in namespaces:
            sender.wake(namespace, "cohort-analyzer")
        await receiver.wait_for(1)  # within 10 s, while the stalled one holds its requests
        assert len(stalled.got) == settings.per_receiver
    finally:
        assert stalled.hold is not None
        stalled.hold.set()
        await sender.close()
        await runner.cleanup()
