"""Invariants of the engine over random metric histories (hypothesis)."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phasegate.api import Action, RolloutStatus, State
from phasegate.engine import Measurement, Outcome, QueryRequest, evaluate
from support.engine import Sim, minimal_spec

LEVELS = {
    "good": 0.001,
    "hold": 0.03,  # above the hold trigger, below the rollback trigger
    "bad": 0.08,  # above the rollback trigger
    "nodata": None,
    "error": "error",
}
Tick = tuple[str, str, int]
ticks = st.lists(
    st.tuples(
        st.sampled_from(sorted(LEVELS)),
        st.sampled_from(["good", "bad", "nodata"]),
        st.sampled_from([1, 10, 60, 300]),
    ),
    min_size=1,
    max_size=60,
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def metrics_for(errors: str, latency: str):  # type: ignore[no-untyped-def]
    latencies = {"good": 0.1, "bad": 0.5, "nodata": None}

    def answer(request: QueryRequest, now: datetime) -> Measurement:
        level = LEVELS[errors] if request.metric == "errors" else latencies[latency]
        if level == "error":
            return Measurement(request.query, Outcome.UNAVAILABLE, message="refused")
        if level is None:
            return Measurement(request.query, Outcome.NO_DATA)
        assert isinstance(level, float)
        return Measurement.value(request.query, level)

    return answer


def walk(history: list[Tick], **changes: object) -> Sim:
    sim = Sim(minimal_spec(breachRollbackAfter="3m", **changes), metrics_for("good", "good"))
    for errors, latency, seconds in history:
        sim.metrics = metrics_for(errors, latency)
        sim.step()
        sim.advance(timedelta(seconds=seconds))
    return sim


@SETTINGS
@given(ticks)
def test_weight_never_decreases_except_on_hold_or_rollback(history: list[Tick]) -> None:
    sim = walk(history)
    previous = 0
    for result in sim.history:
        if result.weight is not None and result.weight < previous:
            assert result.status.state in (State.HOLDING, State.ROLLED_BACK), result.status.message
            decision = result.status.decision
            assert decision is not None
            assert decision.action in (Action.HOLD, Action.ROLLBACK)
        if result.weight is not None:
            previous = result.weight


@SETTINGS
@given(ticks)
def test_a_rollback_or_hold_always_carries_its_evidence(history: list[Tick]) -> None:
    sim = walk(history)
    for result in sim.history:
        decision = result.status.decision
        if decision is not None and decision.action in (Action.HOLD, Action.ROLLBACK):
            assert decision.evidence, decision.reason
            assert all(e.query and e.threshold and e.reason for e in decision.evidence)


@SETTINGS
@given(st.lists(st.sampled_from([1, 10, 60, 300, 3600]), min_size=1, max_size=40))
def test_no_data_never_advances_a_phase(gaps: list[int]) -> None:
    sim = Sim(minimal_spec(), metrics_for("nodata", "nodata"))
    for seconds in gaps:
        sim.step()
        sim.advance(timedelta(seconds=seconds))
        phase = sim.status.current_phase
        assert phase is None or phase.index == 0
        assert sim.status.state is not State.ROLLED_BACK


@SETTINGS
@given(ticks)
def test_feeding_the_same_observations_twice_changes_nothing(history: list[Tick]) -> None:
    sim = walk(history)
    observations = sim.observe()
    once = evaluate(sim.spec, sim.status, observations, sim.now)
    replay = evaluate(sim.spec, once.status, observations, sim.now)
    assert replay.status == once.status
    assert replay.events == ()


@SETTINGS
@given(ticks)
def test_status_round_trips_through_the_models(history: list[Tick]) -> None:
    sim = walk(history)
    wire = sim.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert RolloutStatus.model_validate(wire) == sim.status
