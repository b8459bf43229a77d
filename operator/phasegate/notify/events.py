"""Which notifications an evaluation causes, as outbox entries in the status it writes.

Pure. An entry is written in the same status write as the decision that caused it, so a
crash before delivery still delivers (the entry is there after a restart), and it leaves
the outbox only once every receiver has it, so a restart does not send it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from phasegate.api.durations import format_duration
from phasegate.api.notifications import EventKind
from phasegate.api.outbox import NotificationsStatus, OutboxEntry
from phasegate.api.spec import RolloutSpec
from phasegate.api.status import Condition, CriterionResult, RolloutStatus, State
from phasegate.engine import Evaluation
from phasegate.report.configmap import config_map_name, report_command

SCHEMA_VERSION = "phasegate.dev/notification/v1"
ZERO = timedelta(0)
OUTBOX_LIMIT = 50
DELIVERED_KEPT = 64
ACTIVE = (State.PROGRESSING, State.HOLDING, State.PAUSED, State.WAITING_FOR_APPROVAL)
FROM_ENGINE = {
    "CheckpointPassed": EventKind.CHECKPOINT_PASSED,
    "CheckpointFailed": EventKind.CHECKPOINT_FAILED,
    "CheckpointInconclusive": EventKind.CHECKPOINT_FAILED,
    "Holding": EventKind.HOLD,
    "RolledBack": EventKind.ROLLBACK,
    "WaitingForApproval": EventKind.APPROVAL_NEEDED,
    "Approved": EventKind.APPROVED,
    "Rejected": EventKind.REJECTED,
    "Paused": EventKind.PAUSED,
    "Resumed": EventKind.RESUMED,
    "Succeeded": EventKind.SUCCEEDED,
    "Degraded": EventKind.DEGRADED,
}
CHECKPOINTS = (EventKind.CHECKPOINT_PASSED, EventKind.CHECKPOINT_FAILED)
NEXT_STEPS = {
    EventKind.HOLD: ("resume", "promote", "abort"),
    EventKind.CHECKPOINT_FAILED: ("pause", "abort"),
    EventKind.ROLLBACK: ("retry",),
    EventKind.PAUSED: ("resume", "abort"),
    EventKind.APPROVAL_NEEDED: ("approve",),
    EventKind.REJECTED: ("retry", "abort"),
}
REPORTED = (EventKind.PHASE_ENDED, EventKind.SUCCEEDED, EventKind.ROLLBACK)  # link a report


@dataclasses.dataclass(frozen=True)
class Rollout:
    """Who the notifications are about."""

    namespace: str
    name: str
    uid: str


def idempotency_key(rollout: Rollout, revision: str | None, event: str, *parts: str) -> str:
    """The same event always gets the same key; a receiver can drop what it has seen."""
    text = "|".join([rollout.uid, rollout.namespace, rollout.name, revision or "", event, *parts])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def plan_notifications(
    spec: RolloutSpec,
    before: RolloutStatus,
    evaluation: Evaluation,
    rollout: Rollout,
    now: datetime,
    *,
    delivered: Mapping[str, frozenset[str]] | None = None,
    latest: Mapping[str, CriterionResult] | None = None,
) -> Evaluation:
    """The evaluation with the events it caused added to the outbox.

    ``delivered`` is what was delivered since ``before`` was read (key -> receivers), so
    the outbox written never brings back what is done. ``latest`` are this evaluation's
    results, for the digest.
    """
    after = evaluation.status
    config = spec.notifications
    if config is None or not (config.receivers or config.report_config_maps):
        return evaluation
    box = _settled(after.notifications or NotificationsStatus(), delivered or {})
    at = _At(rollout, after, spec, now)
    payloads = [_payload(at, *event) for event in _events(before, evaluation)]
    due = config.digest is not None and after.state in ACTIVE
    if (
        due
        and config.digest
        and (box.last_digest is None or now - box.last_digest >= config.digest)
    ):
        payloads.append(_digest(at, latest or {}))
        box.last_digest = now
    known = {e.key for e in box.outbox} | set(box.delivered)
    for payload in payloads:
        if payload["idempotencyKey"] not in known:
            box.outbox.append(_entry(payload))
    overflow = len(box.outbox) - OUTBOX_LIMIT
    if overflow > 0:
        box.outbox, box.dropped = box.outbox[overflow:], box.dropped + overflow
    conditions = [*after.conditions, _condition(before, box, now)]
    if box == (after.notifications or NotificationsStatus()) and conditions == after.conditions:
        return evaluation
    changed = after.model_copy(update={"notifications": box, "conditions": conditions})
    return evaluation._replace(status=changed)


def _condition(before: RolloutStatus, box: NotificationsStatus, now: datetime) -> Condition:
    """``NotificationsDelivered``: False while a receiver fails, naming it and why."""
    ok = not box.failing
    message = "; ".join(f"receiver {f.receiver}: {f.reason}" for f in box.failing)
    status = "True" if ok else "False"
    old = next((c for c in before.conditions if c.type == "NotificationsDelivered"), None)
    return Condition(
        type="NotificationsDelivered",
        status=status,
        reason="Delivered" if ok else "DeliveryFailing",
        message=message or "every receiver answered",
        last_transition_time=old.last_transition_time
        if old is not None and old.status == status
        else now,
    )


def _settled(
    box: NotificationsStatus, delivered: Mapping[str, frozenset[str]]
) -> NotificationsStatus:
    """A copy of ``box`` with what was delivered in the meantime marked."""
    outbox = []
    for entry in box.outbox:
        done = delivered.get(entry.key, frozenset())
        merged = sorted(set(entry.delivered_to) | done)
        outbox.append(entry.model_copy(update={"delivered_to": merged}))
    return box.model_copy(update={"outbox": outbox, "delivered": list(box.delivered)})


Happened = tuple[EventKind, str, str | None]  # the event, what happened, the phase it ended


def _events(before: RolloutStatus, evaluation: Evaluation) -> list[Happened]:
    """In the order they happened: checkpoints, a phase ending, decisions, a phase starting."""
    after = evaluation.status
    engine: list[Happened] = [
        (FROM_ENGINE[e.reason], e.message, None)
        for e in evaluation.events
        if e.reason in FROM_ENGINE
    ]
    checkpoints = [e for e in engine if e[0] in CHECKPOINTS]
    ended: list[Happened] = []
    started: list[Happened] = []
    old = {r.name: r for r in before.phase_history}
    for record in after.phase_history:
        was = old.get(record.name)
        if record.started_at is not None and (was is None or was.started_at is None):
            started.append((EventKind.PHASE_STARTED, f"{record.name} started", None))
        if record.ended_at is not None and (was is None or was.ended_at is None):
            ended.append((EventKind.PHASE_ENDED, f"{record.name} ended", record.name))
    return checkpoints + ended + [e for e in engine if e[0] not in CHECKPOINTS] + started


def _phase(status: RolloutStatus, spec: RolloutSpec, now: datetime) -> dict[str, Any] | None:
    cp = status.current_phase
    if cp is None:
        return None
    duration = spec.phases[cp.index].duration if cp.index < len(spec.phases) else None
    elapsed = cp.elapsed(now)
    return {
        "name": cp.name,
        "index": cp.index,
        "weight": cp.weight,
        "elapsed": format_duration(elapsed),
        "remaining": None if duration is None else format_duration(max(duration - elapsed, ZERO)),
        "checkpointsPassed": cp.checkpoints_passed,
        "checkpointsTotal": cp.checkpoints_total,
    }


@dataclasses.dataclass(frozen=True)
class _At:
    """The rollout as one evaluation left it."""

    rollout: Rollout
    status: RolloutStatus
    spec: RolloutSpec
    now: datetime


def _base(at: _At, kind: EventKind, message: str) -> dict[str, Any]:
    rollout, status, now = at.rollout, at.status, at.now
    phase = _phase(status, at.spec, now)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "idempotencyKey": idempotency_key(
            rollout, status.revision, kind.value, now.isoformat(), message
        ),
        "event": kind.value,
        "time": now.isoformat(),
        "rollout": {
            "namespace": rollout.namespace,
            "name": rollout.name,
            "uid": rollout.uid,
            "revision": status.revision,
        },
        "state": status.state.value,
        "message": message,
        "status": status.message,
        "canaryWeight": status.canary_weight,
        "phase": phase,
    }


def _payload(at: _At, kind: EventKind, message: str, ended: str | None) -> dict[str, Any]:
    body, status, now = _base(at, kind, message), at.status, at.now
    checkpoint = None
    if kind in (EventKind.CHECKPOINT_PASSED, EventKind.CHECKPOINT_FAILED) and status.checkpoints:
        checkpoint = status.checkpoints[-1].model_dump(mode="json", by_alias=True)
    decision = None
    if status.decision is not None and status.decision.time == now:
        decision = status.decision.model_dump(mode="json", by_alias=True)
    body["checkpoint"] = checkpoint
    body["decision"] = decision
    body["nextSteps"] = _next_steps(at.rollout, status, kind)
    body["report"] = _report(at, ended) if kind in REPORTED else None
    return body


def _report(at: _At, phase: str | None) -> dict[str, Any]:
    """Where the report of the phase that ended (of the release, without a phase) is read:
    the command always, the ConfigMap when the operator writes reports."""
    namespace, name = at.rollout.namespace, at.rollout.name
    config = at.spec.notifications
    written = config is not None and config.report_config_maps
    return {
        "phase": phase,
        "command": report_command(namespace, name, phase),
        "configMap": {"namespace": namespace, "name": config_map_name(name, phase)}
        if written
        else None,
    }


def _digest(at: _At, latest: Mapping[str, CriterionResult]) -> dict[str, Any]:
    body = _base(at, EventKind.DIGEST, at.status.message)
    body["latest"] = [r.model_dump(mode="json", by_alias=True) for r in latest.values()]
    body["failing"] = [r.rule for r in latest.values() if r.verdict.value != "Pass"]
    body["checkpoint"] = body["decision"] = body["report"] = None
    body["nextSteps"] = []
    return body


def _next_steps(rollout: Rollout, status: RolloutStatus, kind: EventKind) -> list[str]:
    where = f"{rollout.name} -n {rollout.namespace}"
    steps = []
    for verb in NEXT_STEPS.get(kind, ()):
        if verb == "approve" and status.decision is not None:
            steps.append(
                f"kubectl phasegate approve {where} --phase {status.decision.phase} --group GROUP"
            )
        elif verb != "approve":
            steps.append(f"kubectl phasegate {verb} {where}")
    return steps


def _entry(payload: dict[str, Any]) -> OutboxEntry:
    return OutboxEntry(
        key=payload["idempotencyKey"],
        event=payload["event"],
        time=datetime.fromisoformat(payload["time"]),
        payload=json.dumps(payload, separators=(",", ":"), sort_keys=True),
    )
