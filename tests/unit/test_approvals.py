"""Approvals name a group and a user; a rejection (NO-GO) holds the gate until a retry or a
new revision. The engine's side, in virtual time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from phasegate.api import RolloutStatus, State
from phasegate.api.status import ApprovalRecord
from phasegate.engine import ControlAction, Observations, evaluate
from support.engine import T0, Sim, constant, minimal_spec

GOOD: dict[str, float | None] = {"errors": 0.001, "latency": 0.1}
BAD: dict[str, float | None] = {
    "errors": 0.9,
    "latency": 0.1,
}  # past the rollback trigger (0.05 for 1m)


def gated(
    required: tuple[str, ...] = ("engineering", "finance"), values: dict[str, float | None] = GOOD
) -> Sim:
    """The minimal release whose second phase, full, needs approvals; its canary running."""
    phases = minimal_spec().model_dump(by_alias=True, mode="json")["phases"]
    phases[1]["approval"] = {"required": list(required)}
    sim = Sim(minimal_spec(phases=phases), constant(values))
    sim.run(
        lambda s: s.status.current_phase is not None and bool(s.status.current_phase.started_at)
    )
    return sim


def events(sim: Sim) -> list[tuple[str, str, str]]:
    return [(e.type, e.reason, e.message) for e in sim.history[-1].events]


def rejected_by_fiona(sim: Sim) -> None:
    sim.control(
        ControlAction.REJECT, phase="full", group="finance", by="fiona", reason="quarter close"
    )


def test_an_approval_records_the_group_and_the_user_apart() -> None:
    sim = gated()
    sim.control(ControlAction.APPROVE, phase="full", group="engineering", by="alice")
    (record,) = sim.status.approvals
    assert (record.phase, record.group, record.by) == ("full", "engineering", "alice")
    assert events(sim) == [("Normal", "Approved", "full approved for engineering by alice")]


def test_the_gate_counts_groups_not_users() -> None:
    sim = gated()
    sim.control(ControlAction.APPROVE, phase="full", group="engineering", by="alice")
    sim.control(ControlAction.APPROVE, phase="full", group="engineering", by="bob")
    assert [a.by for a in sim.status.approvals] == ["alice"], "a group approves once"
    sim.run(sim.state_is(State.WAITING_FOR_APPROVAL))
    assert sim.status.message == "waiting for approval of full by finance"
    sim.control(ControlAction.APPROVE, phase="full", group="finance", by="fiona")
    sim.step()
    assert sim.status.current_phase is not None and sim.status.current_phase.name == "full"


def test_an_approval_for_a_group_the_phase_does_not_need_is_ignored() -> None:
    sim = gated()
    sim.control(ControlAction.APPROVE, phase="full", group="product", by="paula")
    assert sim.status.approvals == []
    assert events(sim) == [
        (
            "Warning",
            "ControlIgnored",
            "approve by paula ignored: 'product' is not an approver of full (engineering, finance)",
        )
    ]


def test_an_older_approval_without_a_group_speaks_for_the_group_in_by() -> None:
    sim = gated()
    sim.control(ControlAction.APPROVE, phase="full", by="finance")
    (record,) = sim.status.approvals
    assert (record.group, record.by) == ("finance", "finance")


def test_an_older_approval_record_in_status_reads_with_by_as_its_group() -> None:
    old = RolloutStatus.model_validate(
        {"approvals": [{"phase": "full", "by": "finance", "time": "2025-11-01T10:00:00Z"}]}
    )
    assert old.approvals == [ApprovalRecord(phase="full", group="finance", by="finance", time=T0)]


def test_a_rejection_holds_at_once_and_says_who_and_why() -> None:
    sim = gated()
    sim.advance(timedelta(minutes=2))
    weight = sim.route
    rejected_by_fiona(sim)
    s = sim.status
    assert s.state is State.HOLDING and s.hold_reason == "Rejected"
    assert sim.route == weight == 10, "the weight is kept: a NO-GO adds no exposure"
    assert s.message == (
        "holding at canary 10%: full rejected by fiona for finance: quarter close. "
        "Retry, or change spec.revision"
    )
    (record,) = s.rejections
    assert (record.phase, record.group, record.by, record.reason) == (
        "full",
        "finance",
        "fiona",
        "quarter close",
    )
    assert record.time == sim.now
    condition = next(c for c in s.conditions if c.type == "Rejected")
    assert (condition.status, condition.reason) == ("True", "Rejected")
    assert "full rejected by fiona for finance" in condition.message
    assert "quarter close" in condition.message
    assert [(e[0], e[1]) for e in events(sim)] == [("Warning", "Rejected")]
    assert s.decision is not None and s.decision.action.value == "Hold"


def test_a_rejection_stops_the_phase_clock() -> None:
    sim = gated()
    rejected_by_fiona(sim)
    elapsed = sim.status.current_phase.elapsed(sim.now)  # type: ignore[union-attr]
    sim.advance(timedelta(hours=3))
    sim.step()
    assert sim.status.current_phase.elapsed(sim.now) == elapsed  # type: ignore[union-attr]
    assert sim.status.checkpoints == [] and sim.status.state is State.HOLDING


@pytest.mark.parametrize(
    "action",
    [ControlAction.RESUME, ControlAction.PROMOTE, ControlAction.PROMOTE_FULL, ControlAction.PAUSE],
)
def test_only_retry_or_a_new_revision_goes_on_after_a_rejection(action: ControlAction) -> None:
    sim = gated()
    rejected_by_fiona(sim)
    sim.control(action, by="alice")
    assert sim.status.state is State.HOLDING and sim.status.hold_reason == "Rejected"
    ((kind, reason, message),) = events(sim)
    assert (kind, reason) == ("Warning", "ControlIgnored")
    assert "full was rejected by fiona; only retry or a new spec.revision goes on" in message


def test_approvals_after_a_rejection_are_recorded_and_the_gate_stays_shut() -> None:
    sim = gated(required=("finance",))
    rejected_by_fiona(sim)
    sim.control(ControlAction.APPROVE, phase="full", group="finance", by="frank")
    sim.advance(timedelta(hours=1))
    sim.step()
    assert sim.status.state is State.HOLDING
    assert [a.by for a in sim.status.approvals] == ["frank"]


def test_retry_clears_the_hold_and_keeps_the_record_for_the_report() -> None:
    sim = gated()
    rejected_by_fiona(sim)
    sim.control(ControlAction.RETRY, by="alice")
    sim.run(lambda s: s.status.state is State.PROGRESSING and bool(s.status.current_phase))
    assert sim.status.hold_reason is None
    assert [r.by for r in sim.status.rejections] == ["fiona"]
    condition = next(c for c in sim.status.conditions if c.type == "Rejected")
    assert (condition.status, condition.reason, condition.message) == ("False", "GoneOn", "")


def test_a_new_revision_clears_the_hold_and_the_records() -> None:
    sim = gated()
    rejected_by_fiona(sim)
    sim.spec = sim.spec.model_copy(update={"revision": "v3"})
    sim.run(lambda s: s.status.state is State.PROGRESSING and bool(s.status.current_phase))
    assert sim.status.rejections == [] and sim.status.approvals == []


def test_a_rollback_trigger_still_rolls_back_a_rejected_release() -> None:
    sim = gated(values=BAD)
    rejected_by_fiona(sim)
    sim.run(sim.state_is(State.ROLLED_BACK), limit=timedelta(minutes=5))
    assert sim.route == 0


def test_a_rejection_while_waiting_for_approval_holds_at_the_gate() -> None:
    sim = gated()
    sim.run(sim.state_is(State.WAITING_FOR_APPROVAL))
    rejected_by_fiona(sim)
    sim.control(ControlAction.APPROVE, phase="full", group="engineering", by="alice")
    sim.control(ControlAction.APPROVE, phase="full", group="finance", by="fiona")
    sim.advance(timedelta(hours=1))
    sim.step()
    assert sim.status.state is State.HOLDING and sim.route == 10, "all approved, still NO-GO"


@pytest.mark.parametrize(
    ("phase", "group", "why"),
    [
        ("canary", "finance", "phase 'canary' has no approval gate"),
        ("full", "product", "'product' is not an approver of full (engineering, finance)"),
        ("nope", "finance", "phase 'nope' has no approval gate"),
    ],
)
def test_a_rejection_that_speaks_for_no_gate_is_ignored(phase: str, group: str, why: str) -> None:
    sim = gated()
    sim.control(ControlAction.REJECT, phase=phase, group=group, by="paula")
    assert sim.status.state is State.PROGRESSING and sim.status.rejections == []
    assert events(sim) == [("Warning", "ControlIgnored", f"reject by paula ignored: {why}")]


def test_a_rejection_of_a_gate_already_passed_is_ignored() -> None:
    sim = gated()
    for group, user in (("engineering", "alice"), ("finance", "fiona")):
        sim.control(ControlAction.APPROVE, phase="full", group=group, by=user)
    sim.run(lambda s: s.status.current_phase is not None and s.status.current_phase.name == "full")
    rejected_by_fiona(sim)
    assert sim.status.state is State.PROGRESSING and sim.status.rejections == []
    assert "full has been entered already; pause or abort instead" in events(sim)[0][2]


def test_a_rejected_release_that_is_degraded_comes_back_to_the_hold() -> None:
    sim = gated()
    rejected_by_fiona(sim)
    broken = Observations(route_weight=None, route_error="HTTPRoute app not found")
    degraded = evaluate(sim.spec, sim.status, broken, sim.now)
    assert degraded.status.state is State.DEGRADED
    sim.status = degraded.status
    sim.advance(timedelta(seconds=10))
    sim.step()
    assert sim.status.state is State.HOLDING and sim.status.hold_reason == "Rejected"
