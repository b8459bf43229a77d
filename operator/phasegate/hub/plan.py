"""The hub's decision, pure: from the release, its status and what each region showed, the
next status and what to write to which region. No I/O here; :mod:`phasegate.hub.daemon`
reads the regions, calls :func:`plan` and carries out what it returns.

The rules:
- waves run in order; a wave starts when every region of the earlier waves is seen
  ``Succeeded`` on this revision (a region the hub cannot see holds the release), the bake
  time since the previous wave has passed, and its approvals are in;
- a wave succeeds when each of its regions is seen ``Succeeded`` on this revision;
- a region rolled back (or invalid) halts the release: the rest of its wave is paused, no
  wave starts; with ``RollbackAll`` every region that took the revision is rolled back;
- a new revision starts again from the first wave; each region keeps the old one until its
  wave comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from phasegate.api.release import (
    OWNER_ANNOTATION,
    TERMINAL,
    FailurePolicy,
    RegionDecision,
    RegionStatus,
    ReleaseSpec,
    ReleaseState,
    ReleaseStatus,
    WaveApprovalRecord,
    WaveState,
    WaveStatus,
    hub_control_id,
    normalized,
    region_rollout,
)
from phasegate.api.status import Condition

DONE = "Succeeded"
FAILED = ("RolledBack", "Invalid")
HANDLED_CONTROLS = 50


@dataclass(frozen=True)
class RegionView:
    """What one region showed the hub this time."""

    name: str
    rollout: dict[str, Any] | None = None  # as read; None: there is none (or unreadable)
    error: str | None = None  # why the region could not be read; None: it was
    credentials: tuple[str, str] | None = None  # (reason, message): its Secret is the cause
    last_contact: datetime | None = None  # the last time it was read

    @property
    def reachable(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Release:
    """The release's identity and spec as read from the hub."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    spec: ReleaseSpec

    def rollout(self, region: str) -> dict[str, Any]:
        return region_rollout(self.spec, region, self.namespace, self.name)

    @property
    def owner(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class RegionWrite:
    """Create or update the region's rollout (``rollout``), and/or send it controls."""

    region: str
    rollout: dict[str, Any] | None = None
    controls: tuple[tuple[str, dict[str, Any]], ...] = ()  # (id, body)


@dataclass
class Plan:
    status: ReleaseStatus
    writes: list[RegionWrite] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # type, reason, message
    next_in: timedelta = timedelta(seconds=10)


def plan(
    release: Release,
    status: ReleaseStatus,
    views: dict[str, RegionView],
    requests: list[tuple[str, dict[str, Any]]],
    now: datetime,
) -> Plan:
    """The next status, the writes to regions and the events, from one look at the regions."""
    return _Planner(release, status.model_copy(deep=True), views, now).run(requests)


class _Planner:
    def __init__(
        self, release: Release, status: ReleaseStatus, views: dict[str, RegionView], now: datetime
    ) -> None:
        self.r, self.spec, self.s, self.views, self.now = release, release.spec, status, views, now
        self.out = Plan(status=status, next_in=release.spec.interval)
        self.names = self.spec.wave_names()

    # ---- the steps ---------------------------------------------------------------------

    def run(self, requests: list[tuple[str, dict[str, Any]]]) -> Plan:
        s = self.s
        s.observed_generation = self.r.generation
        if s.revision != self.spec.revision or len(s.waves) != len(self.spec.waves):
            self.restart()
        self.shape()
        for region in s.regions:
            self.look(region)
        self.conditions()
        for control_id, body in requests:
            if control_id not in s.handled_controls:
                self.control(body)
                s.handled_controls = [*s.handled_controls, control_id][-HANDLED_CONTROLS:]
        before = s.state
        if s.state not in TERMINAL:
            self.check_failures()
        if s.state not in TERMINAL and s.state is not ReleaseState.PAUSED:
            self.advance()
        if s.state is ReleaseState.HOLDING and before is not ReleaseState.HOLDING:
            self.event("Warning", "Holding", s.message)
        self.apply_started()
        self.send_controls()
        self.summarize()
        return self.out

    def restart(self) -> None:
        s = self.s
        if s.revision is not None and s.revision != self.spec.revision:
            self.event(
                "Normal", "NewRevision", f"{self.spec.revision}: starting from the first wave"
            )
        s.revision = self.spec.revision
        s.state = ReleaseState.PENDING
        s.waves = [WaveStatus(name=n) for n in self.names]
        s.approvals = []
        s.failed_region = None
        for region in s.regions:
            region.requested = []

    def shape(self) -> None:
        """One entry per region of the spec, in wave order, keeping what is known."""
        known = {r.name: r for r in self.s.regions}
        entries = []
        for i, wave in enumerate(self.spec.waves):
            for name in wave.regions:
                entry = known.get(name) or RegionStatus(name=name, wave=self.names[i])
                entry.wave = self.names[i]
                entries.append(entry)
        self.s.regions = entries

    def look(self, region: RegionStatus) -> None:
        """Fill a region's entry from what it showed; unreachable: keep what was known."""
        view = self.views.get(region.name)
        if view is None or not view.reachable:
            region.reachable = False
            region.message = view.error if view and view.error else "not looked at yet"
            if view is not None and view.last_contact is not None:
                region.last_seen = view.last_contact
            return
        region.reachable = True
        region.last_seen = self.now
        rollout = view.rollout
        started = self.wave_status(region.wave).started_at is not None
        if rollout is None:
            region.state, region.phase, region.weight, region.revision = (
                ("Pending" if started else "NotStarted"),
                None,
                None,
                None,
            )
            region.last_decision = None
            region.message = "creating its rollout" if started else ""
            return
        owner = (rollout.get("metadata", {}).get("annotations") or {}).get(OWNER_ANNOTATION)
        if owner != self.r.owner:
            meta = rollout["metadata"]
            region.message = (
                f"ProgressiveRollout {meta.get('namespace')}/{meta.get('name')} there is not "
                f"this release's ({OWNER_ANNOTATION}: {owner or 'none'}); left alone: rename "
                "template.metadata.name or delete that rollout"
            )
            region.state = "Conflict"
            return
        st = rollout.get("status") or {}
        region.revision = st.get("revision")
        ours = (rollout.get("spec") or {}).get("revision") == self.spec.revision
        if not ours or region.revision != self.spec.revision:
            region.state = "Pending" if started else "NotStarted"
            region.phase, region.weight, region.last_decision = None, None, None
            region.message = (
                f"waiting for its operator to take {self.spec.revision}"
                if started
                else (f"runs {region.revision}" if region.revision else "")
            )
            return
        region.state = st.get("state") or "Pending"
        region.phase = (st.get("currentPhase") or {}).get("name")
        region.weight = st.get("canaryWeight")
        region.message = st.get("message") or ""
        decision = st.get("decision")
        region.last_decision = (
            RegionDecision(
                action=str(decision.get("action")),
                reason=str(decision.get("reason", "")),
                time=decision.get("time"),
            )
            if isinstance(decision, dict) and decision.get("action")
            else None
        )

    def conditions(self) -> None:
        self.condition("Valid", "True", "Valid", "the spec and each region's rollout are valid")
        credentials = [
            (n, v.credentials) for n, v in sorted(self.views.items()) if v.credentials is not None
        ]
        if credentials:
            self.condition(
                "RegionCredentials",
                "False",
                credentials[0][1][0],
                "; ".join(f"{n}: {c[1]}" for n, c in credentials),
            )
        else:
            self.condition(
                "RegionCredentials", "True", "Found", "every region's kubeconfig Secret is usable"
            )
        unreachable = [r for r in self.s.regions if r.reachable is False]
        if unreachable:
            self.condition(
                "RegionsReachable",
                "False",
                "Unreachable",
                "; ".join(f"{r.name}: {r.message}" for r in unreachable),
            )
        else:
            self.condition("RegionsReachable", "True", "Reachable", "every region answered")

    def control(self, body: dict[str, Any]) -> None:
        s, action, by = self.s, body["action"], str(body.get("by") or "unknown")
        if action == "approve":
            wave_name, group = str(body["wave"]), str(body.get("group") or by)
            index = self.names.index(wave_name) if wave_name in self.names else None
            wave = self.spec.waves[index] if index is not None else None
            if wave is None or wave.approval is None:
                self.ignored(action, by, f"wave {wave_name!r} has no approval")
            elif group not in wave.approval.required:
                required = ", ".join(wave.approval.required)
                self.ignored(
                    action, by, f"{group!r} is not an approver of {wave_name} ({required})"
                )
            elif not any(a.wave == wave_name and a.group == group for a in s.approvals):
                s.approvals = [
                    *s.approvals,
                    WaveApprovalRecord(wave=wave_name, group=group, by=by, time=self.now),
                ]
                self.event("Normal", "Approved", f"{wave_name} approved by {by} for {group}")
        elif action == "pause":
            if s.state in TERMINAL or s.state is ReleaseState.PAUSED:
                self.ignored(action, by, f"the release is {s.state.value}")
            else:
                s.state = ReleaseState.PAUSED
                self.event("Normal", "Paused", f"paused by {by}: no wave starts, regions paused")
        elif action == "resume":
            if s.state is not ReleaseState.PAUSED:
                self.ignored(action, by, f"nothing to resume while {s.state.value}")
            else:
                s.state = ReleaseState.PROGRESSING
                self.event("Normal", "Resumed", f"resumed by {by}")
        elif action == "abort":
            if s.state in (ReleaseState.ROLLED_BACK, ReleaseState.SUCCEEDED):
                self.ignored(action, by, f"the release is {s.state.value}")
            else:
                reason = f"aborted by {by}" + (f": {body['reason']}" if body.get("reason") else "")
                self.roll_back(reason)

    def check_failures(self) -> None:
        for region in self.s.regions:
            started = self.wave_status(region.wave).started_at is not None
            if started and region.state in FAILED and region.revision == self.spec.revision:
                reason = f"region {region.name} {region.state}" + (
                    f": {region.last_decision.reason}" if region.last_decision else ""
                )
                self.s.failed_region = region.name
                self.wave_status(region.wave).state = WaveState.FAILED
                if self.spec.failure_policy is FailurePolicy.ROLLBACK_ALL:
                    self.roll_back(reason)
                else:
                    self.s.state = ReleaseState.HALTED
                    self.s.message = f"halted: {reason}"
                    self.event("Warning", "Halted", self.s.message)
                return

    def roll_back(self, reason: str) -> None:
        self.s.state = ReleaseState.ROLLED_BACK
        self.s.message = f"rolled back everywhere: {reason}"
        self.event("Warning", "RolledBack", self.s.message)

    def advance(self) -> None:
        s = self.s
        for i, wave in enumerate(self.spec.waves):
            ws = s.waves[i]
            if ws.state is WaveState.SUCCEEDED:
                continue
            s.current_wave = ws.name
            if ws.started_at is None and not self.start(i):
                return
            regions = [self.region(n) for n in wave.regions]
            if all(r.reachable and r.state == DONE for r in regions):
                ws.state, ws.finished_at = WaveState.SUCCEEDED, self.now
                self.event("Normal", "WaveSucceeded", f"{ws.name}: {', '.join(wave.regions)}")
                continue
            ws.state = WaveState.PROGRESSING
            unseen = [r for r in regions if not r.reachable]
            where = ", ".join(self.describe(r) for r in regions)
            if unseen:
                s.state = ReleaseState.HOLDING
                s.message = (
                    f"{ws.name} holds: cannot see {', '.join(r.name for r in unseen)}; "
                    f"it goes on when they answer ({where})"
                )
            else:
                s.state, s.message = ReleaseState.PROGRESSING, f"{ws.name}: {where}"
            return
        s.state, s.current_wave = ReleaseState.SUCCEEDED, None
        s.message = f"{self.spec.revision} succeeded in every region"
        self.event("Normal", "Succeeded", s.message)

    def start(self, i: int) -> bool:
        """Start wave ``i`` when nothing stands in the way; else say what it waits for."""
        s, wave, ws = self.s, self.spec.waves[i], self.s.waves[i]
        earlier = [r for r in s.regions if self.names.index(r.wave) < i]
        unseen = [r.name for r in earlier if not r.reachable]
        if unseen:
            s.state = ReleaseState.HOLDING
            s.message = (
                f"{ws.name} waits: cannot see {', '.join(unseen)}, which took the release before; "
                "it starts when they answer"
            )
            return False
        not_done = [r.name for r in earlier if r.state != DONE]
        if not_done:  # seen, but no longer Succeeded on this revision (e.g. someone changed it)
            s.state = ReleaseState.HOLDING
            s.message = f"{ws.name} waits: {', '.join(not_done)} no longer Succeeded"
            return False
        if i > 0 and self.spec.bake_time > timedelta(0):
            finished = s.waves[i - 1].finished_at or self.now
            until = finished + self.spec.bake_time
            if self.now < until:
                ws.state, s.state = WaveState.BAKING, ReleaseState.BAKING
                s.message = f"baking {s.waves[i - 1].name}; {ws.name} starts at {until:%H:%M:%S}"
                self.out.next_in = min(self.out.next_in, until - self.now)
                return False
        if wave.approval is not None:
            given = {a.group for a in s.approvals if a.wave == ws.name}
            missing = [g for g in wave.approval.required if g not in given]
            if missing:
                if ws.state is not WaveState.WAITING_FOR_APPROVAL:
                    self.event(
                        "Normal", "WaitingForApproval", f"{ws.name} waits for {', '.join(missing)}"
                    )
                ws.state, s.state = (
                    WaveState.WAITING_FOR_APPROVAL,
                    ReleaseState.WAITING_FOR_APPROVAL,
                )
                s.message = f"{ws.name} waits for approval by {', '.join(missing)}"
                return False
        ws.state, ws.started_at = WaveState.PROGRESSING, self.now
        self.event("Normal", "WaveStarted", f"{ws.name}: {', '.join(wave.regions)}")
        for name in wave.regions:
            region = self.region(name)
            if region.reachable and region.state == "NotStarted":
                region.state, region.message = "Pending", "creating its rollout"
        return True

    def apply_started(self) -> None:
        """Each region of a started wave has the rollout the release asks for there."""
        if self.s.state in (ReleaseState.HALTED, ReleaseState.ROLLED_BACK):
            return  # halted: nothing new goes out; controls only
        for region in self.s.regions:
            view = self.views.get(region.name)
            if (
                self.wave_status(region.wave).started_at is None
                or view is None
                or not view.reachable
                or region.state == "Conflict"
            ):
                continue
            desired = self.r.rollout(region.name)
            current = view.rollout
            if current is None or normalized(current.get("spec")) != normalized(desired["spec"]):
                self.out.writes.append(RegionWrite(region.name, rollout=desired))

    def send_controls(self) -> None:
        """Pause, resume or roll back regions as the release's state asks, each once."""
        s, writes = self.s, {w.region: w for w in self.out.writes}
        for region in s.regions:
            wanted = self.wanted(region)
            if not wanted:
                continue
            n = len(region.requested)
            sent = tuple(
                (
                    hub_control_id(self.r.uid, self.spec.revision, n + k + 1, action),
                    {"action": action, "reason": f"release {self.r.owner}: {s.message}"},
                )
                for k, action in enumerate(wanted)
            )
            view = self.views.get(region.name)
            if view is None or not view.reachable or region.state == "Conflict":
                continue  # sent when the region answers again
            previous = writes.get(region.name)
            write = RegionWrite(region.name, previous.rollout if previous else None, sent)
            writes[region.name] = write
        self.out.writes = list(writes.values())

    def wanted(self, region: RegionStatus) -> list[str]:
        """The controls this region should get now (none when already sent)."""
        s = self.s
        last = region.requested[-1].rsplit("-", 1)[-1] if region.requested else None
        took = self.wave_status(region.wave).started_at is not None and region.state not in (
            "NotStarted",
            "Conflict",
        )
        if not took:
            return []
        if s.state is ReleaseState.ROLLED_BACK:
            if last == "abort" or region.state in FAILED:
                return []
            return ["retry", "abort"] if region.state == DONE else ["abort"]
        in_flight = region.state not in (DONE, *FAILED)
        if s.state in (ReleaseState.HALTED, ReleaseState.PAUSED):
            return ["pause"] if in_flight and last != "pause" else []
        if last == "pause" and in_flight:
            return ["resume"]
        return []

    def summarize(self) -> None:
        s = self.s
        done = sum(w.state is WaveState.SUCCEEDED for w in s.waves)
        s.progress = f"{done}/{len(s.waves)}"
        succeeded = sum(r.state == DONE and r.revision == self.spec.revision for r in s.regions)
        s.regions_succeeded = f"{succeeded}/{len(s.regions)}"
        if s.state is ReleaseState.PAUSED:
            s.message = f"paused at {s.current_wave}; resume to continue"
        elif s.state is ReleaseState.ROLLED_BACK:
            waiting = [r.name for r in s.regions if self.wanted(r) and not r.reachable]
            if waiting:
                base = s.message.split("; still to roll back")[0]
                s.message = f"{base}; still to roll back when they answer: {', '.join(waiting)}"

    # ---- helpers -----------------------------------------------------------------------

    def region(self, name: str) -> RegionStatus:
        return next(r for r in self.s.regions if r.name == name)

    def wave_status(self, name: str) -> WaveStatus:
        return next(w for w in self.s.waves if w.name == name)

    def describe(self, r: RegionStatus) -> str:
        if not r.reachable:
            return (
                f"{r.name} unreachable (last seen {r.last_seen:%H:%M:%S})"
                if r.last_seen
                else (f"{r.name} unreachable")
            )
        where = f" {r.phase} {r.weight}%" if r.phase is not None and r.weight is not None else ""
        return f"{r.name} {r.state}{where}"

    def condition(self, kind: str, status: str, reason: str, message: str) -> None:
        old = next((c for c in self.s.conditions if c.type == kind), None)
        since = old.last_transition_time if old is not None and old.status == status else self.now
        new = Condition(
            type=kind, status=status, reason=reason, message=message, last_transition_time=since
        )
        self.s.conditions = [c for c in self.s.conditions if c.type != kind] + [new]

    def event(self, kind: str, reason: str, message: str) -> None:
        self.out.events.append((kind, reason, message))

    def ignored(self, action: str, by: str, why: str) -> None:
        self.event("Warning", "ControlIgnored", f"{action} by {by} ignored: {why}")
