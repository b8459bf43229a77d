"""evaluate() never changes the status it is given: it works on a copy of its fields and makes
a new status only when something changed (most evaluations change nothing: then the status
given is the answer)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phasegate.api import RolloutStatus
from phasegate.engine import ControlAction, evaluate
from support.engine import Sim, constant, minimal_spec

LEVELS = {"good": 0.001, "hold": 0.03, "bad": 0.08, "nodata": None}
CONTROLS = [None, None, None, ControlAction.PAUSE, ControlAction.RESUME, ControlAction.RETRY]
steps = st.lists(
    st.tuples(
        st.sampled_from(sorted(LEVELS)),
        st.sampled_from(CONTROLS),
        st.sampled_from([1, 10, 60, 300]),
    ),
    min_size=1,
    max_size=40,
)


def wire(status: RolloutStatus) -> object:
    return status.model_dump(mode="json", by_alias=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_the_status_given_is_left_as_it_was(history: list[tuple[str, object, int]]) -> None:
    sim = Sim(minimal_spec(breachRollbackAfter="3m"), constant({}))
    for level, action, seconds in history:
        sim.metrics = constant({"errors": LEVELS[level], "latency": 0.1})
        given_status = sim.status
        before = wire(given_status)
        phase = given_status.current_phase
        phase_before = None if phase is None else phase.model_dump()
        if action is None:
            result = sim.step()
        else:
            assert isinstance(action, ControlAction)
            result = sim.control(action)
        assert wire(given_status) == before
        if phase is not None:
            assert phase.model_dump() == phase_before
        # shared exactly when nothing changed
        assert (result.status is given_status) == (wire(result.status) == before)
        sim.advance(timedelta(seconds=seconds))


def test_a_checkpoint_changes_a_copy_of_the_phase() -> None:
    sim = Sim(minimal_spec(), constant({"errors": 0.001, "latency": 0.1}))
    sim.step()
    sim.step()  # the route shows the weight: the phase starts
    started = sim.status
    assert started.current_phase is not None and started.current_phase.started_at is not None
    sim.advance(timedelta(minutes=5))
    after = evaluate(sim.spec, started, sim.observe(), sim.now, namespace=sim.namespace)
    assert after.status.current_phase is not None
    assert after.status.current_phase.checkpoints_judged == 1
    assert started.current_phase.checkpoints_judged == 0


def test_a_quiet_evaluation_answers_with_the_status_given() -> None:
    sim = Sim(minimal_spec(), constant({"errors": 0.001, "latency": 0.1}))
    sim.step()
    sim.step()  # the phase starts
    sim.advance(timedelta(seconds=10))
    sim.step()  # (the first measurements after the start change the conditions)
    quiet = sim.status
    sim.advance(timedelta(seconds=10))  # no checkpoint is due yet
    result = evaluate(sim.spec, quiet, sim.observe(), sim.now, namespace=sim.namespace)
    assert result.status is quiet
    assert result.events == ()
