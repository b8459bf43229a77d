"""The reference release of PRODUCT.md, walked through the engine in virtual time."""

from __future__ import annotations

from datetime import timedelta

from phasegate.api import Action, CheckpointVerdict, State
from phasegate.engine import Control, ControlAction
from support.engine import Sim, healthy, reference_spec

APPROVERS = ("engineering", "operations", "product", "finance")


def approvals(*phases: str) -> list[Control]:
    return [
        Control(id=f"{phase}-{group}", action=ControlAction.APPROVE, phase=phase, by=group)
        for phase in phases
        for group in APPROVERS
    ]


def test_healthy_release_walks_canary_ramp_rollout_to_succeeded() -> None:
    sim = Sim(reference_spec(), healthy())
    weights_seen = [sim.route]
    sim.step(approvals("ramp", "rollout"))
    result = sim.run(lambda s: (weights_seen.append(s.route), s.status.state is State.SUCCEEDED)[1])

    status = result.status
    offsets = {"canary": 5, "ramp": 6, "rollout": 8}
    for phase, count in offsets.items():
        records = [c for c in status.checkpoints if c.phase == phase]
        assert len(records) == count, phase
        assert all(c.verdict is CheckpointVerdict.PASSED for c in records)
    detailed = [c for c in status.checkpoints if c.results]
    assert all(
        r.value is not None or r.metric == "critical-alerts"
        for c in detailed
        for r in c.results or []
    )
    assert sorted(set(weights_seen)) == [0, 1, 10, 100]
    assert weights_seen == sorted(weights_seen), "the weight never moves backwards"
    assert status.decision is not None
    assert status.decision.action is Action.COMPLETE
    assert "promoting the canary to stable is yours to do" in status.message.lower()
    assert sim.route == 100, "without deployment the route keeps the last phase's weights"


def test_ramp_waits_for_its_not_before_time() -> None:
    sim = Sim(reference_spec(), healthy())
    sim.step(approvals("ramp", "rollout"))
    sim.run(sim.state_is(State.SCHEDULED))
    assert sim.status.current_phase is not None
    assert sim.status.current_phase.name == "canary"
    not_before = reference_spec().phases[1].not_before
    assert not_before is not None
    assert sim.now < not_before
    sim.run(lambda s: s.status.current_phase is not None and s.status.current_phase.name == "ramp")
    assert sim.now >= not_before


def test_error_rate_breach_in_ramp_rolls_back_with_evidence() -> None:
    sim = Sim(reference_spec(), healthy())
    sim.step(approvals("ramp", "rollout"))
    sim.run(
        lambda s: (
            s.status.current_phase is not None
            and s.status.current_phase.name == "ramp"
            and s.status.current_phase.started_at is not None
        )
    )
    sim.advance(timedelta(minutes=20))
    sim.metrics = healthy({"error-rate": 0.03})
    breach_start = sim.now
    result = sim.run(sim.state_is(State.ROLLED_BACK), limit=timedelta(hours=1))

    decision = result.status.decision
    assert decision is not None
    assert decision.action is Action.ROLLBACK
    assert result.weight == 0
    assert sim.now - breach_start >= timedelta(minutes=2)
    assert sim.now - breach_start <= timedelta(minutes=2) + reference_spec().interval
    assert "rollbackTriggers[0]" in decision.reason
    assert "for 2m" in decision.reason
    evidence = {e.rule: e for e in decision.evidence}
    assert evidence["rollbackTriggers[0]"].value == 0.03
    assert evidence["rollbackTriggers[0]"].threshold == "<= 0.015"
    sim.step()
    assert sim.route == 0
