"""Criterion verdicts: thresholds, canary versus stable, statistics, segment consistency."""

from __future__ import annotations

import random

import pytest

from phasegate.api import Criterion, Metric, Verdict
from phasegate.engine import Measurement, Outcome, QueryRequest
from phasegate.engine.judge import judge

METRIC = Metric(name="m", query="m")


def run(criterion: dict[str, object], canary: Measurement, stable: Measurement | None = None):  # type: ignore[no-untyped-def]
    c = Criterion.model_validate({"metric": "m", **criterion})
    window = c.test.window if c.test else None
    by = c.consistency.by if c.consistency else None
    requests = {"canary": QueryRequest("m", "canary", "m{c}", group_by=by, window=window)}
    answers = {requests["canary"].key: canary}
    if stable is not None:
        requests["stable"] = QueryRequest("m", "stable", "m{s}", window=window)
        answers[requests["stable"].key] = stable
    return judge("successCriteria[0]", c, METRIC, requests, answers)  # type: ignore[arg-type]


def value(v: float) -> Measurement:
    return Measurement.value("q", v)


@pytest.mark.parametrize(
    ("criterion", "observed", "verdict"),
    [
        ({"max": 0.01}, 0.005, Verdict.PASS),
        ({"max": 0.01}, 0.01, Verdict.PASS),
        ({"max": 0.01}, 0.02, Verdict.FAIL),
        ({"min": 0.999}, 0.9995, Verdict.PASS),
        ({"min": 0.999}, 0.99, Verdict.FAIL),
        ({"min": -1, "max": 1}, 0.0, Verdict.PASS),
        ({"min": -1, "max": 1}, 1.5, Verdict.FAIL),
        ({"max": 0}, float("nan"), Verdict.NO_DATA),
    ],
)
def test_threshold_verdicts(criterion: dict[str, float], observed: float, verdict: Verdict) -> None:
    assert run(criterion, value(observed)).verdict is verdict


def test_fail_reason_names_value_and_threshold() -> None:
    result = run({"max": 0.01}, value(0.02))
    assert result.reason == "value 0.02 is above max 0.01"
    assert result.threshold == "<= 0.01"
    assert result.value == 0.02


@pytest.mark.parametrize(
    ("outcome", "verdict", "words"),
    [
        (Outcome.NO_DATA, Verdict.NO_DATA, "no data"),
        (Outcome.UNAVAILABLE, Verdict.ERROR, "unavailable"),
        (Outcome.REJECTED, Verdict.ERROR, "rejected"),
        (Outcome.SEVERAL_SERIES, Verdict.ERROR, "where one was expected"),
    ],
)
def test_query_outcomes_map_to_verdicts(outcome: Outcome, verdict: Verdict, words: str) -> None:
    result = run({"max": 1}, Measurement("q", outcome, message="boom"))
    assert result.verdict is verdict
    assert words in result.reason


def test_compare_to_stable_judges_the_relative_difference() -> None:
    result = run({"compare": "stable", "min": -0.03, "max": 0.03}, value(0.96), value(1.0))
    assert result.verdict is Verdict.FAIL
    assert result.value == pytest.approx(-0.04)
    assert result.values == {"canary": 0.96, "stable": 1.0}
    assert (
        run({"compare": "stable", "min": -0.03, "max": 0.03}, value(0.98), value(1.0)).verdict
        is Verdict.PASS
    )


def test_compare_to_a_stable_of_zero_is_no_data() -> None:
    result = run({"compare": "stable", "max": 0.1}, value(1.0), value(0.0))
    assert result.verdict is Verdict.NO_DATA
    assert "undefined" in result.reason


def samples(mean: float, n: int = 40, seed: int = 1) -> Measurement:
    rng = random.Random(seed)
    return Measurement("q", Outcome.VALUE, samples=tuple(rng.gauss(mean, 0.05) for _ in range(n)))


def test_mann_whitney_excuses_a_breach_that_is_noise() -> None:
    # Same distribution; the mean difference crosses the threshold by chance only.
    canary, stable = samples(1.0, n=6, seed=4), samples(1.0, n=6, seed=3)
    result = run({"compare": "stable", "max": 0.0, "test": {"confidence": 0.95}}, canary, stable)
    assert result.verdict is Verdict.PASS
    assert "noise" in result.reason


def test_mann_whitney_confirms_a_real_regression_as_high() -> None:
    result = run(
        {"compare": "stable", "max": 0.03, "test": {"confidence": 0.95}},
        samples(1.2, seed=1),
        samples(1.0, seed=2),
    )
    assert result.verdict is Verdict.FAIL
    assert "High" in result.reason


def test_mann_whitney_confirms_a_real_drop_as_low() -> None:
    result = run(
        {"compare": "stable", "min": -0.03, "test": {"confidence": 0.95}},
        samples(0.8, seed=1),
        samples(1.0, seed=2),
    )
    assert result.verdict is Verdict.FAIL
    assert "Low" in result.reason


def test_statistical_test_needs_enough_samples() -> None:
    few = Measurement("q", Outcome.VALUE, samples=(1.0, 2.0))
    result = run({"compare": "stable", "max": 0.0, "test": {}}, few, samples(1.0))
    assert result.verdict is Verdict.NO_DATA
    assert "at least 3" in result.reason


@pytest.mark.parametrize(
    ("segments", "consistency", "verdict", "spread"),
    [
        ({"a": 1.0, "b": 1.02}, {"by": "segment", "maxSpread": 0.05}, Verdict.PASS, 0.02 / 1.01),
        ({"a": 1.0, "b": 1.2}, {"by": "segment", "maxSpread": 0.05}, Verdict.FAIL, 0.2 / 1.1),
        (
            {"a": 1.0, "b": 1.2, "c": 1.1},
            {"by": "segment", "maxSpread": 0.3, "absolute": True},
            Verdict.PASS,
            0.2,
        ),
        ({"a": 1.0}, {"by": "segment", "maxSpread": 0.05}, Verdict.NO_DATA, None),
    ],
)
def test_segment_consistency_spread(
    segments: dict[str, float],
    consistency: dict[str, object],
    verdict: Verdict,
    spread: float | None,
) -> None:
    result = run({"consistency": consistency}, Measurement("q", Outcome.VALUE, series=segments))
    assert result.verdict is verdict
    if spread is not None:
        assert result.value == pytest.approx(spread)
        assert result.values == segments
