"""One test per rule of PRODUCT.md's Semantics, on a small one-phase-plus-one spec."""

from __future__ import annotations

from datetime import timedelta

import pytest

from phasegate.api import Action, CheckpointVerdict, State, Verdict
from phasegate.api.status import RolloutStatus
from phasegate.engine import (
    ControlAction,
    Evaluation,
    Measurement,
    Observations,
    Outcome,
    QueryRequest,
    WorkloadAction,
    evaluate,
    invalid,
)
from support.engine import T0, Sim, constant, minimal_spec

GOOD = {"errors": 0.001, "latency": 0.1}
MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)


def started(sim: Sim) -> Sim:
    """Run until the first phase's clock runs."""
    sim.run(
        lambda s: (
            s.status.current_phase is not None and s.status.current_phase.started_at is not None
        )
    )
    return sim


def good_sim(**changes: object) -> Sim:
    return started(Sim(minimal_spec(**changes), constant(GOOD)))


def phase_name(sim: Sim) -> str | None:
    return sim.status.current_phase.name if sim.status.current_phase else None


def test_phase_clock_starts_when_the_route_reads_the_weight_back() -> None:
    sim = Sim(minimal_spec(), constant(GOOD))
    first = sim.step()
    assert first.weight == 10
    assert sim.status.current_phase is not None
    assert sim.status.current_phase.started_at is None, "not started before the read-back"
    sim.advance(SEC)
    sim.step()
    assert sim.status.current_phase.started_at == T0 + SEC


def test_phase_clock_does_not_start_while_the_route_shows_another_weight() -> None:
    sim = Sim(minimal_spec(), constant(GOOD))
    sim.step()
    sim.route = 3  # someone else's weight, or a route that did not take the write
    sim.advance(SEC)
    result = sim.step()
    assert sim.status.current_phase is not None
    assert sim.status.current_phase.started_at is None
    assert result.weight == 10
    assert result.next_evaluation <= SEC


def test_checkpoint_is_the_first_evaluation_at_or_after_its_offset() -> None:
    sim = good_sim()
    start = sim.status.current_phase.started_at  # type: ignore[union-attr]
    sim.run(lambda s: len(s.status.checkpoints) == 1)
    record = sim.status.checkpoints[0]
    assert record.offset == timedelta(minutes=5)
    assert record.time - start == timedelta(minutes=5)


def test_checkpoint_keeps_query_value_threshold_verdict_and_reason_per_criterion() -> None:
    sim = good_sim()
    sim.run(lambda s: len(s.status.checkpoints) == 1)
    results = sim.status.checkpoints[0].results or []
    assert [r.metric for r in results] == ["errors", "latency"]
    errors = results[0]
    assert errors.query == 'errors{service="app-canary"}'
    assert errors.value == 0.001
    assert errors.threshold == "<= 0.01"
    assert errors.verdict is Verdict.PASS
    assert "0.001" in errors.reason


def test_default_checkpoint_is_the_end_of_the_phase() -> None:
    sim = good_sim()
    sim.run(lambda s: phase_name(s) == "full" and s.status.current_phase.started_at is not None)  # type: ignore[union-attr]
    assert sim.status.current_phase.checkpoints_total == 1  # type: ignore[union-attr]
    sim.run(lambda s: len([c for c in s.status.checkpoints if c.phase == "full"]) == 1)
    assert sim.status.checkpoints[-1].offset == timedelta(minutes=10)


def test_gate_advances_when_every_checkpoint_passed() -> None:
    sim = good_sim()
    sim.run(lambda s: phase_name(s) == "full")
    assert sim.status.decision is not None
    assert sim.status.decision.action is Action.ADVANCE
    assert sim.route == 100 or sim.status.desired_weight == 100


def test_gate_holds_at_hold_weight_when_a_checkpoint_failed() -> None:
    sim = good_sim()
    sim.metrics = constant({"errors": 0.001, "latency": 0.5})  # fails the checkpoint only
    result = sim.run(sim.state_is(State.HOLDING))
    assert sim.status.hold_reason == "Gate"
    assert result.weight == 5
    assert sim.status.checkpoints[0].verdict is CheckpointVerdict.FAILED


def test_no_data_never_advances_a_phase() -> None:
    sim = good_sim()
    sim.metrics = constant({"errors": None, "latency": 0.1})
    sim.run(sim.state_is(State.HOLDING, State.ROLLED_BACK))
    assert sim.status.state is State.HOLDING, "NoData never rolls back by itself"
    assert all(c.verdict is CheckpointVerdict.INCONCLUSIVE for c in sim.status.checkpoints)
    assert phase_name(sim) == "canary"


@pytest.mark.parametrize(
    ("policy", "verdict", "state"),
    [("Pass", Verdict.PASS, State.PROGRESSING), ("Fail", Verdict.FAIL, State.ROLLED_BACK)],
)
def test_on_no_data_overrides_the_verdict(policy: str, verdict: Verdict, state: State) -> None:
    metrics = [
        {"name": "errors", "query": "errors", "onNoData": policy},
        {"name": "latency", "query": "latency"},
    ]
    sim = good_sim(metrics=metrics)
    sim.metrics = constant({"errors": None, "latency": 0.1})
    sim.advance(timedelta(minutes=5))
    sim.step()
    sim.advance(MIN)
    sim.step()
    result = sim.history[-1].status
    first = result.checkpoints[0].results[0]  # type: ignore[index]
    assert first.verdict is verdict
    assert f"onNoData: {policy}" in first.reason
    assert result.state is state or (
        state is State.PROGRESSING and result.state is State.PROGRESSING
    )


def test_rollback_trigger_sustained_for_its_window_rolls_back_with_evidence() -> None:
    sim = good_sim()
    sim.metrics = constant({"errors": 0.08, "latency": 0.1})
    sim.step()
    breach = sim.now
    result = sim.run(sim.state_is(State.ROLLED_BACK))
    assert sim.now - breach == timedelta(minutes=1)
    assert result.weight == 0
    decision = sim.status.decision
    assert decision is not None
    assert decision.action is Action.ROLLBACK
    trigger = next(e for e in decision.evidence if e.rule == "rollbackTriggers[0]")
    assert trigger.value == 0.08
    assert trigger.threshold == "<= 0.05"
    assert trigger.verdict is Verdict.FAIL
    assert "for 1m" in decision.reason
    assert "failing for 1m" in decision.reason


def test_a_pass_inside_the_window_restarts_it() -> None:
    sim = good_sim()
    bad, ok = constant({"errors": 0.08, "latency": 0.1}), constant(GOOD)
    for metrics in (bad, bad, bad, ok, bad, bad, bad, bad):
        sim.metrics = metrics
        sim.step()
        sim.advance(timedelta(seconds=10))
    assert sim.status.state is not State.ROLLED_BACK, "only 40s of continuous breach"


def test_no_data_inside_the_window_keeps_it_open_without_firing() -> None:
    sim = good_sim()
    bad, none = (
        constant({"errors": 0.08, "latency": 0.1}),
        constant({"errors": None, "latency": 0.1}),
    )
    sim.metrics = bad
    sim.step()
    opened = sim.now
    sim.metrics = none
    for _ in range(8):  # 80s of no data: longer than the window, but no Fail to fire on
        sim.advance(timedelta(seconds=10))
        sim.step()
    assert sim.status.state is not State.ROLLED_BACK
    assert any(b.rule == "rollbackTriggers[0]" and b.since == opened for b in sim.status.breaches)
    sim.metrics = bad
    sim.advance(timedelta(seconds=10))
    sim.step()
    assert sim.status.state is State.ROLLED_BACK


def test_breach_rollback_after_rolls_back_on_a_failing_success_criterion() -> None:
    sim = good_sim(breachRollbackAfter="2m")
    sim.metrics = constant({"errors": 0.001, "latency": 0.5})
    sim.step()
    breach = sim.now
    sim.run(sim.state_is(State.ROLLED_BACK))
    assert sim.now - breach == timedelta(minutes=2)
    assert sim.status.decision.evidence[0].rule == "successCriteria[1]"  # type: ignore[union-attr]


def test_hold_trigger_holds_at_hold_weight_and_stops_the_clock() -> None:
    sim = good_sim()
    sim.metrics = constant({"errors": 0.03, "latency": 0.1})  # above hold, below rollback
    result = sim.run(sim.state_is(State.HOLDING))
    assert result.weight == 5
    assert sim.status.hold_reason == "HoldTrigger"
    cp = sim.status.current_phase
    assert cp is not None
    assert cp.held_since == sim.now
    frozen = cp.elapsed(sim.now)
    sim.advance(timedelta(hours=1))
    sim.step()
    assert sim.status.current_phase.elapsed(sim.now) == frozen  # type: ignore[union-attr]
    assert sim.status.decision.evidence[0].rule == "holdTriggers[0]"  # type: ignore[union-attr]


def test_resume_continues_the_phase_clock_from_where_it_stopped() -> None:
    sim = good_sim()
    sim.metrics = constant({"errors": 0.03, "latency": 0.1})
    sim.run(sim.state_is(State.HOLDING))
    frozen = sim.status.current_phase.elapsed(sim.now)  # type: ignore[union-attr]
    sim.advance(timedelta(hours=1))
    sim.metrics = constant(GOOD)
    result = sim.control(ControlAction.RESUME, by="alice")
    assert sim.status.state is State.PROGRESSING
    assert result.weight == 10
    assert sim.status.current_phase.held_for == timedelta(hours=1) + (  # type: ignore[union-attr]
        sim.status.current_phase.held_for - timedelta(hours=1)  # type: ignore[union-attr]
    )
    assert sim.status.current_phase.elapsed(sim.now) == frozen  # type: ignore[union-attr]


def test_holding_never_adds_exposure() -> None:
    sim = good_sim(holdWeight=50)
    sim.metrics = constant({"errors": 0.03, "latency": 0.1})
    result = sim.run(sim.state_is(State.HOLDING))
    assert result.weight == 10


def test_rollback_is_judged_while_holding() -> None:
    sim = good_sim()
    sim.metrics = constant({"errors": 0.03, "latency": 0.1})
    sim.run(sim.state_is(State.HOLDING))
    sim.metrics = constant({"errors": 0.09, "latency": 0.1})
    sim.run(sim.state_is(State.ROLLED_BACK), limit=timedelta(minutes=5))
    assert sim.route == 0 or sim.history[-1].weight == 0


def test_query_errors_defer_checkpoints_then_hold_as_metrics_unavailable() -> None:
    sim = good_sim()
    sim.advance(timedelta(minutes=4, seconds=50))

    def down(request: QueryRequest, now: object) -> Measurement:
        return Measurement(request.query, Outcome.UNAVAILABLE, message="connection refused")

    sim.metrics = down
    for _ in range(3):
        sim.step()
        sim.advance(timedelta(seconds=10))
    assert sim.status.checkpoints == [], "an outage is not a verdict"
    assert sim.status.state is State.PROGRESSING
    sim.step()  # the fourth consecutive failing evaluation
    assert sim.status.state is State.HOLDING
    assert sim.status.hold_reason == "MetricsUnavailable"
    assert sim.history[-1].weight == 10, "an outage does not move traffic"
    metrics_condition = next(c for c in sim.status.conditions if c.type == "MetricsAvailable")
    assert metrics_condition.status == "False"
    assert "connection refused" in metrics_condition.message
    sim.metrics = constant(GOOD)
    sim.advance(timedelta(seconds=10))
    sim.step()
    assert sim.status.state is State.PROGRESSING, "recovers by itself"
    assert len(sim.status.checkpoints) == 1, "the deferred checkpoint is judged now"


def test_rollback_on_metrics_unavailable_when_configured() -> None:
    sim = good_sim(rollbackOnMetricsUnavailable=True, maxQueryErrors=2)
    sim.metrics = lambda r, now: Measurement(r.query, Outcome.UNAVAILABLE, message="timeout")
    sim.run(sim.state_is(State.ROLLED_BACK), limit=timedelta(minutes=1))


def test_a_rejected_query_is_reported_as_a_misconfiguration() -> None:
    sim = good_sim()
    sim.metrics = lambda r, now: Measurement(
        r.query, Outcome.REJECTED, message="parse error at char 3"
    )
    sim.step()
    condition = next(c for c in sim.status.conditions if c.type == "MetricsAvailable")
    assert condition.reason == "QueryRejected"
    assert "parse error" in condition.message


def test_several_series_where_one_was_expected_is_an_error() -> None:
    sim = good_sim()
    sim.metrics = lambda r, now: Measurement(r.query, Outcome.VALUE, series={"a": 1.0, "b": 2.0})
    sim.advance(timedelta(minutes=5))
    sim.step()
    condition = next(c for c in sim.status.conditions if c.type == "MetricsAvailable")
    assert "where one was expected" in condition.message


def test_completion_without_deployment_keeps_the_weights_and_says_promotion_is_the_users() -> None:
    sim = good_sim()
    result = sim.run(sim.state_is(State.SUCCEEDED))
    assert result.weight == 100
    assert result.workload is None
    assert "yours to do" in sim.status.message


def test_completion_with_deployment_promotes_then_returns_traffic_to_stable() -> None:
    sim = good_sim(
        stable={"service": "app-stable", "deployment": "app"},
        canary={"service": "app-canary", "deployment": "app-canary"},
    )
    result = sim.run(sim.state_is(State.PROMOTING))
    assert result.workload is WorkloadAction.PROMOTE
    assert result.weight == 100
    sim.promotion_done = True
    sim.step()
    assert sim.route == 0
    for _ in range(2):  # asked again on every evaluation until seen done: a failure is retried
        asking = sim.step()
        assert asking.workload is WorkloadAction.SCALE_DOWN_CANARY
        assert (
            sim.status.state is State.PROMOTING and "scaling the canary down" in sim.status.message
        )
    sim.canary_scaled_down = True
    final = sim.step()
    assert sim.status.state is State.SUCCEEDED and final.workload is None
    assert final.status.decision is not None and final.status.decision.action.value == "Complete"


def test_approval_gate_waits_for_every_group() -> None:
    phases = minimal_spec().model_dump(by_alias=True, mode="json")["phases"]
    phases[1]["approval"] = {"required": ["eng", "ops"]}
    sim = good_sim(phases=phases)
    sim.run(sim.state_is(State.WAITING_FOR_APPROVAL))
    assert "eng, ops" in sim.status.message
    assert sim.route == 10
    sim.control(ControlAction.APPROVE, phase="full", by="eng")
    assert sim.status.state is State.WAITING_FOR_APPROVAL
    sim.control(ControlAction.APPROVE, phase="full", by="mallory")
    assert [a.by for a in sim.status.approvals] == ["eng"]
    assert sim.history[-1].events[0].reason == "ControlIgnored"
    sim.control(ControlAction.APPROVE, phase="full", by="ops")
    sim.step()
    assert phase_name(sim) == "full"
    assert sim.status.desired_weight == 100


def test_not_before_schedules_the_next_phase() -> None:
    phases = minimal_spec().model_dump(by_alias=True, mode="json")["phases"]
    phases[1]["notBefore"] = (T0 + timedelta(hours=3)).isoformat()
    sim = good_sim(phases=phases)
    result = sim.run(sim.state_is(State.SCHEDULED))
    assert result.next_evaluation <= minimal_spec().interval
    sim.run(lambda s: phase_name(s) == "full")
    assert sim.now == T0 + timedelta(hours=3)


def test_pause_keeps_the_weight_and_stops_the_clock() -> None:
    sim = good_sim()
    sim.advance(MIN)
    result = sim.control(ControlAction.PAUSE, by="alice")
    assert sim.status.state is State.PAUSED
    assert result.weight == 10
    elapsed = sim.status.current_phase.elapsed(sim.now)  # type: ignore[union-attr]
    sim.advance(timedelta(hours=2))
    sim.step()
    assert sim.status.current_phase.elapsed(sim.now) == elapsed  # type: ignore[union-attr]
    assert sim.status.checkpoints == []


def test_abort_rolls_back_at_once() -> None:
    sim = good_sim()
    result = sim.control(ControlAction.ABORT, by="alice", reason="customer reports")
    assert sim.status.state is State.ROLLED_BACK
    assert result.weight == 0
    assert "aborted by alice: customer reports" in sim.status.decision.reason  # type: ignore[union-attr]


def test_retry_starts_the_revision_again_from_the_first_phase() -> None:
    sim = good_sim()
    sim.control(ControlAction.ABORT, by="alice")
    sim.step()
    assert sim.route == 0
    sim.control(ControlAction.RETRY, by="alice")
    started(sim)
    assert phase_name(sim) == "canary"
    assert sim.status.checkpoints == []
    assert sim.status.state is State.PROGRESSING


def test_promote_skips_to_the_next_phase_and_promote_full_to_the_end() -> None:
    sim = good_sim()
    sim.control(ControlAction.PROMOTE, by="alice")
    assert phase_name(sim) == "full"
    assert sim.status.desired_weight == 100
    sim = good_sim()
    sim.control(ControlAction.PROMOTE_FULL, by="alice")
    assert sim.status.state is State.SUCCEEDED


def test_a_control_is_applied_once_even_when_seen_again() -> None:
    sim = good_sim()
    sim.control(ControlAction.PAUSE, by="alice")
    sim.control(ControlAction.RESUME, by="alice")
    repeat = sim.history[-2]  # the pause, if it were applied again, would pause again
    assert sim.status.state is State.PROGRESSING
    observations = sim.observe()
    again = evaluate(
        sim.spec,
        sim.status,
        Observations(
            observations.measurements,
            sim.route,
            controls=(),
        ),
        sim.now,
    )
    assert again.status.state is State.PROGRESSING
    assert repeat.status.handled_controls == ["c1"]
    first_id = sim.status.handled_controls[0]
    from phasegate.engine import Control

    replay = evaluate(
        sim.spec,
        sim.status,
        Observations(
            observations.measurements, sim.route, controls=(Control(first_id, ControlAction.PAUSE),)
        ),
        sim.now,
    )
    assert replay.status.state is State.PROGRESSING


def test_revision_change_sends_the_canary_to_zero_then_starts_over() -> None:
    sim = good_sim()
    sim.run(lambda s: len(s.status.checkpoints) == 1)
    sim.spec = minimal_spec(revision="v3")
    result = sim.step()
    assert result.weight == 0
    assert sim.status.state is State.PENDING
    assert sim.status.decision.action is Action.RESTART  # type: ignore[union-attr]
    assert sim.status.checkpoints == []
    sim.step()
    assert sim.status.revision == "v3"
    assert phase_name(sim) == "canary"
    assert sim.status.desired_weight == 10


def test_a_missing_route_degrades_without_touching_traffic_then_recovers() -> None:
    sim = good_sim()
    result = evaluate(
        sim.spec, sim.status, Observations(route_error="HTTPRoute app not found"), sim.now
    )
    assert result.weight is None
    assert result.status.state is State.DEGRADED
    assert "HTTPRoute app not found" in result.status.message
    sim.status = result.status
    sim.advance(MIN)
    sim.step()
    assert sim.status.state is State.PROGRESSING


def test_an_invalid_spec_is_reported_and_traffic_untouched() -> None:
    sim = good_sim()
    result = invalid(sim.status, "spec.phases[0].weight: must be <= 100", sim.now)
    assert result.weight is None
    assert result.status.state is State.INVALID
    assert result.events[0].reason == "InvalidSpec"
    sim.status = result.status
    sim.step()
    assert sim.status.state is State.PROGRESSING, "a fixed spec continues where it was"


def test_an_evaluation_that_changes_nothing_returns_an_equal_status() -> None:
    sim = good_sim()
    sim.advance(timedelta(seconds=10))
    sim.step()  # the first judgement adds the MetricsAvailable condition
    for _ in range(5):  # then, between checkpoints, nothing a user would see changes
        sim.advance(timedelta(seconds=10))
        before = sim.status
        result = sim.step()
        assert result.status == before
        assert result.events == ()


def test_old_checkpoints_drop_details_to_keep_status_small() -> None:
    sim = good_sim(
        phases=[
            {
                "name": "long",
                "weight": 10,
                "duration": "100m",
                "checkpoints": [f"{m}m" for m in range(1, 101)],
                "successCriteria": [{"metric": "errors", "max": 0.01}],
            }
        ]
    )
    sim.run(sim.state_is(State.SUCCEEDED))
    detailed = [c for c in sim.status.checkpoints if c.results is not None]
    assert len(sim.status.checkpoints) == 100
    assert len(detailed) == 50
    assert sim.status.checkpoints[-1].results is not None


def test_a_sustained_breach_rolls_back_even_while_other_queries_fail() -> None:
    sim = good_sim(breachRollbackAfter="3m")

    def latency_bad_errors_down(request: QueryRequest, now: object) -> Measurement:
        if request.metric == "latency":
            return Measurement.value(request.query, 0.5)
        return Measurement(request.query, Outcome.UNAVAILABLE, message="refused")

    sim.metrics = latency_bad_errors_down
    sim.step()
    sim.advance(timedelta(minutes=5))
    result = sim.step()
    assert sim.status.state is State.ROLLED_BACK and result.weight == 0
    assert sim.status.decision.evidence[0].rule == "successCriteria[1]"  # type: ignore[union-attr]


def test_a_refused_control_is_reported_once_in_an_event_and_a_condition() -> None:
    sim = good_sim()
    observations = sim.observe()
    refused = (("bad-1", "annotation control.phasegate.dev/bad-1: unknown action 'approv'"),)

    def with_refusal(status: RolloutStatus) -> Evaluation:
        seen = Observations(observations.measurements, sim.route, refused_controls=refused)
        return evaluate(sim.spec, status, seen, sim.now)

    first = with_refusal(sim.status)
    again = with_refusal(first.status)  # the annotation not removed yet: seen again

    assert [(e.type, e.reason) for e in first.events] == [("Warning", "ControlRefused")]
    assert "unknown action 'approv'" in first.events[0].message
    condition = next(c for c in first.status.conditions if c.type == "ControlsAccepted")
    assert (condition.status, condition.reason) == ("False", "Refused")
    assert "bad-1" in first.status.handled_controls
    assert again.events == () and again.status == first.status, "reported once, then quiet"
    sim.status = first.status
    sim.control(ControlAction.PAUSE, by="alice")
    condition = next(c for c in sim.status.conditions if c.type == "ControlsAccepted")
    assert (condition.status, condition.reason) == ("True", "Applied")
    assert "pause by alice applied" in condition.message


def test_an_evaluation_more_than_an_interval_late_says_so_in_a_condition() -> None:
    sim = good_sim()
    observations = sim.observe()
    interval = sim.spec.interval

    def late(status: RolloutStatus, by: timedelta) -> RolloutStatus:
        seen = Observations(observations.measurements, sim.route, late_by=by)
        return evaluate(sim.spec, status, seen, sim.now).status

    def timely(status: RolloutStatus) -> tuple[str, str] | None:
        found = [c for c in status.conditions if c.type == "EvaluatedOnTime"]
        return (found[0].status, found[0].reason) if found else None

    assert timely(late(sim.status, interval / 4)) is None, "no condition until it is late"
    behind = late(sim.status, interval * 3)
    assert timely(behind) == ("False", "Late")
    assert "falling behind" in next(
        c.message for c in behind.conditions if c.type == "EvaluatedOnTime"
    )
    assert timely(late(behind, interval * 3 / 4)) == ("False", "Late"), "no flapping"
    assert late(behind, interval * 5) == behind, "a lag of another size is no status change"
    assert timely(late(behind, interval / 4)) == ("True", "OnTime")
