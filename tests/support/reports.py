"""The engine simulator with the operator's phase history, and the reference scenarios."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from phasegate.api import State
from phasegate.engine import Control, ControlAction, Evaluation, Observations
from phasegate.report.history import judge_phase, record_history
from support.engine import Sim, healthy, reference_spec

APPROVERS = ("engineering", "operations", "product", "finance")
PEOPLE = {"engineering": "alice", "operations": "oscar", "product": "paula", "finance": "fiona"}


@dataclass
class RecordingSim(Sim):
    """:class:`Sim` that also keeps the phase history, as the operator does after evaluating."""

    last: Observations = field(default_factory=Observations)

    def observe(self, controls: Iterable[Control] = ()) -> Observations:
        self.last = super().observe(controls)
        return self.last

    def step(self, controls: Iterable[Control] = ()) -> Evaluation:
        before = self.status
        evaluation = super().step(controls)  # observes: self.last
        judged = judge_phase(self.spec, before, self.last.measurements, "learning")
        result = record_history(before, evaluation, judged, self.now)
        self.status = result.status
        self.history[-1] = result
        return result


def approvals(*phases: str) -> list[Control]:
    return [
        Control(
            id=f"{phase}-{group}",
            action=ControlAction.APPROVE,
            phase=phase,
            group=group,
            by=PEOPLE[group],
        )
        for phase in phases
        for group in APPROVERS
    ]


def in_phase(name: str) -> Any:
    def started(sim: Sim) -> bool:
        cp = sim.status.current_phase
        return cp is not None and cp.name == name and cp.started_at is not None

    return started


def breached(phase: str, overrides: dict[str, float]) -> RecordingSim:
    """The reference release, approved up front, with ``overrides`` from 20m into ``phase``."""
    sim = RecordingSim(reference_spec(), healthy())
    sim.step(approvals("ramp", "rollout"))
    sim.run(in_phase(phase))
    sim.advance(timedelta(minutes=20))
    sim.metrics = healthy(overrides)
    return sim


def held_then_succeeded() -> RecordingSim:
    """A hold in canary (error rate over 0.75% for 2m), resumed by a person 10m later, then
    canary -> ramp -> rollout to Succeeded."""
    sim = breached("canary", {"error-rate": 0.008})
    sim.run(sim.state_is(State.HOLDING), limit=timedelta(minutes=10))
    sim.metrics = healthy()
    sim.advance(timedelta(minutes=10))
    sim.control(ControlAction.RESUME, by="alice")
    sim.run(sim.state_is(State.SUCCEEDED))
    return sim


def rolled_back_in_ramp() -> RecordingSim:
    """Rolled back 20m into ramp: error rate 3% for 2m."""
    sim = breached("ramp", {"error-rate": 0.03})
    sim.run(sim.state_is(State.ROLLED_BACK), limit=timedelta(hours=1))
    return sim
