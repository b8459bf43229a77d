"""The machine's judgements: the same verdicts, reasons and records as :func:`judge`, made
only when status keeps them."""

from __future__ import annotations

import pytest

from phasegate.api import Criterion, Metric, Verdict
from phasegate.engine import Measurement, Outcome, QueryRequest
from phasegate.engine.judge import RulePlan, judge, judge_rule

METRIC = Metric(name="m", query="m")
REQUEST = QueryRequest("m", "canary", "m{c}")


def plan(**criterion: object) -> RulePlan:
    rule = Criterion.model_validate({"metric": "m", **criterion})
    return RulePlan.of("successCriteria[0]", rule, METRIC, {"canary": REQUEST})


@pytest.mark.parametrize("criterion", [{"max": 0.01}, {"min": 0.5}, {"min": -1, "max": 1}])
@pytest.mark.parametrize(
    "answer",
    [
        Measurement.value("q", 0.005),
        Measurement.value("q", 0.75),
        Measurement.value("q", 2.0),
        Measurement.value("q", -3.0),
        Measurement("q", Outcome.VALUE, series={"": 0}),  # an int: the record holds 0.0
        Measurement("q", Outcome.VALUE, series={"": float("nan")}),
        Measurement("q", Outcome.NO_DATA, message="empty"),
        Measurement("q", Outcome.VALUE, series={"a": 1.0, "b": 2.0}),
        Measurement("q", Outcome.UNAVAILABLE, message="timeout"),
    ],
)
def test_a_judgement_records_what_judge_returns(
    criterion: dict[str, float], answer: Measurement
) -> None:
    rule = plan(**criterion)
    answers = {REQUEST.key: answer}
    judged = judge_rule(rule, answers)
    assert judged is not None
    expected = judge(rule.rule_id, rule.criterion, METRIC, rule.requests, answers)
    assert judged.verdict is expected.verdict
    assert judged.reason == expected.reason
    record = judged.record()
    assert record.model_dump() == expected.model_dump()
    assert type(record.value) is type(expected.value)
    assert judged.record() is record, "one record per judgement"


def test_a_passing_value_is_worded_only_when_asked() -> None:
    judged = judge_rule(plan(max=0.01), {REQUEST.key: Measurement.value("q", 0.02)})
    assert judged is not None and judged.verdict is Verdict.FAIL
    assert judged._reason is None
    assert judged.reason == "value 0.02 is above max 0.01"


def test_a_rule_not_answered_is_not_judged() -> None:
    assert judge_rule(plan(max=0.01), {}) is None
    stable = QueryRequest("m", "stable", "m{s}")
    rule = Criterion.model_validate({"metric": "m", "compare": "stable", "max": 0.1})
    compared = RulePlan.of("x", rule, METRIC, {"canary": REQUEST, "stable": stable})
    assert judge_rule(compared, {REQUEST.key: Measurement.value("q", 1.0)}) is None
