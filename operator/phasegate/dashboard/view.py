"""What the dashboard shows of a rollout, from the object as the API returns it. Pure.

Status is read leniently (as plain JSON): the dashboard must show an object written by an
older or newer operator rather than fail on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from phasegate.api.durations import parse_duration
from phasegate.api.spec import Criterion, RolloutSpec
from phasegate.api.validation import validate_spec
from phasegate.engine.queries import requests_for, rules_of

KINDS = {"successCriteria": "success", "rollbackTriggers": "rollback", "holdTriggers": "hold"}


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _seconds(text: Any) -> float:
    try:
        return parse_duration(text).total_seconds() if isinstance(text, str) else 0.0
    except ValueError:
        return 0.0


def summary(obj: dict[str, Any]) -> dict[str, Any]:
    """One row of the rollouts table."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    current = status.get("currentPhase") or {}
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "revision": spec.get("revision", ""),
        "state": status.get("state", "Pending"),
        "phase": current.get("name"),
        "phases": len(spec.get("phases") or []),
        "phaseIndex": current.get("index"),
        "weight": status.get("canaryWeight"),
        "progress": status.get("progress"),
        "message": status.get("message", ""),
    }


def phase_clock(current: dict[str, Any], now: datetime) -> float:
    """Seconds the phase clock has run: now - startedAt - heldFor, less a running hold."""
    started = _time(current.get("startedAt"))
    if started is None:
        return 0.0
    held = _seconds(current.get("heldFor"))
    held_since = _time(current.get("heldSince"))
    stopped = (now - held_since).total_seconds() if held_since else 0.0
    return max(0.0, (now - started).total_seconds() - held - stopped)


def timeline(obj: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The phases with their weights and checkpoints, where the release is, and the time
    elapsed and remaining in the phase and in the release (planned phase time: waits for an
    approval or a schedule are not known in advance)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    current = status.get("currentPhase") or {}
    index = current.get("index")
    state = status.get("state", "Pending")
    judged: dict[tuple[str, float], str] = {}
    for record in status.get("checkpoints") or []:
        judged[(record.get("phase"), _seconds(record.get("offset")))] = record.get("verdict")
    phases = []
    for i, phase in enumerate(spec.get("phases") or []):
        duration = _seconds(phase.get("duration"))
        offsets = [_seconds(o) for o in phase.get("checkpoints") or []] or [duration]
        where = "pending"
        if (index is not None and i < index) or state == "Succeeded":
            where = "done"
        elif i == index:
            where = "current"
        phases.append(
            {
                "name": phase.get("name"),
                "weight": phase.get("weight"),
                "duration": duration,
                "where": where,
                "approval": (phase.get("approval") or {}).get("required") or [],
                "notBefore": phase.get("notBefore"),
                "checkpoints": [
                    {"offset": o, "verdict": judged.get((phase.get("name"), o))} for o in offsets
                ],
            }
        )
    duration = phases[index]["duration"] if index is not None and index < len(phases) else 0.0
    elapsed = phase_clock(current, now) if index is not None else 0.0
    if duration:  # past its end the phase waits at its gate: its clock shows the whole phase
        elapsed = min(elapsed, duration)
    ended = state in ("Succeeded", "RolledBack")
    after = sum(p["duration"] for p in phases[(index if index is not None else -1) + 1 :])
    history = status.get("phaseHistory") or []
    first = _time(history[0].get("startedAt")) if history else _time(current.get("startedAt"))
    return {
        "phases": phases,
        "index": index,
        "phase": {
            "elapsed": elapsed,
            "duration": duration,
            "remaining": 0.0 if ended else max(0.0, duration - elapsed),
        },
        "release": {
            "elapsed": (now - first).total_seconds() if first else 0.0,
            "remaining": 0.0 if ended else max(0.0, duration - elapsed) + after,
        },
    }


def approvals_waiting(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The gate waiting for people: its phase, the groups required, given and missing."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if status.get("state") != "WaitingForApproval":
        return None
    current = status.get("currentPhase")
    index = 0 if current is None else int(current.get("index", -1)) + 1
    phases = spec.get("phases") or []
    if not 0 <= index < len(phases):
        return None
    phase = phases[index]
    required = list((phase.get("approval") or {}).get("required") or [])
    given = [
        {"group": a.get("group") or a.get("by"), "by": a.get("by"), "time": a.get("time")}
        for a in status.get("approvals") or []
        if a.get("phase") == phase.get("name")
    ]
    done = {g["group"] for g in given}
    return {
        "phase": phase.get("name"),
        "required": required,
        "given": given,
        "missing": [g for g in required if g not in done],
        "rejections": [
            r for r in status.get("rejections") or [] if r.get("phase") == phase.get("name")
        ],
    }


@dataclass(frozen=True)
class RuleChart:
    """One criterion or trigger of the current phase, and the range queries its chart needs."""

    rule: str
    kind: str
    metric: str
    threshold: str
    max: float | None
    min: float | None
    compare: bool
    segments_by: str | None
    absolute_spread: bool
    sustain: float
    queries: dict[str, str]  # "canary" (and "stable" when it compares) -> PromQL

    def describe(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "kind": self.kind,
            "metric": self.metric,
            "threshold": self.threshold,
            "max": self.max,
            "min": self.min,
            "compare": self.compare,
            "segmentsBy": self.segments_by,
            "for": self.sustain,
            "queries": self.queries,
        }


def _chart(rule_id: str, rule: Criterion, queries: dict[str, str]) -> RuleChart:
    consistency = rule.consistency
    return RuleChart(
        rule=rule_id,
        kind=KINDS[rule_id.split("[", 1)[0]],
        metric=rule.metric,
        threshold=rule.describe_threshold(),
        max=consistency.max_spread if consistency else rule.max,
        min=None if consistency else rule.min,
        compare=rule.compare == "stable",
        segments_by=consistency.by if consistency else None,
        absolute_spread=bool(consistency and consistency.absolute),
        sustain=getattr(rule, "for_", timedelta(0)).total_seconds(),
        queries=queries,
    )


def charts(obj: dict[str, Any]) -> tuple[RolloutSpec | None, list[RuleChart], list[str]]:
    """The spec, a chart per rule of the current phase (the first phase before it starts),
    and the spec's problems when it is invalid."""
    spec, problems = validate_spec(obj.get("spec"))
    if spec is None:
        return None, [], problems
    status = obj.get("status") or {}
    index = (status.get("currentPhase") or {}).get("index") or 0
    if not 0 <= index < len(spec.phases):
        return spec, [], []
    phase = spec.phases[index]
    namespace = (obj.get("metadata") or {}).get("namespace", "default")
    out = []
    for rule_id, rule in rules_of(phase):
        requests = requests_for(spec, namespace, phase, rule)
        out.append(_chart(rule_id, rule, {b: r.query for b, r in requests.items()}))
    return spec, out, []


def window(obj: dict[str, Any], now: datetime, points: int = 240) -> tuple[float, float, float]:
    """The range the charts cover: the current phase from its start (the last 5 minutes
    before it starts), and a step giving about ``points`` points."""
    started = _time(((obj.get("status") or {}).get("currentPhase") or {}).get("startedAt"))
    start = started if started is not None and started < now else now - timedelta(minutes=5)
    span = max(1.0, (now - start).total_seconds())
    step = max(1.0, round(span / points))
    return start.timestamp(), now.timestamp(), step


def relative(canary: list[list[float]], stable: list[list[float]]) -> list[list[float]]:
    """(canary - stable) / |stable| at the timestamps both have; none where stable is 0."""
    base = {t: v for t, v in stable}
    return [[t, (v - base[t]) / abs(base[t])] for t, v in canary if base.get(t)]


def spread(series: dict[str, list[list[float]]], absolute: bool) -> list[list[float]]:
    """The segments' spread at each timestamp two or more of them share, as judged."""
    at: dict[float, list[float]] = {}
    for points in series.values():
        for t, v in points:
            at.setdefault(t, []).append(v)
    out = []
    for t in sorted(at):
        values = at[t]
        if len(values) < 2:
            continue
        width = max(values) - min(values)
        if absolute:
            out.append([t, width])
        else:
            mean = sum(values) / len(values)
            if mean:
                out.append([t, width / abs(mean)])
    return out
