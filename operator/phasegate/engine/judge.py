"""Measurements -> a verdict on one criterion. Pure: the same input, the same verdict."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from phasegate.api.spec import Criterion, Metric, NoDataPolicy
from phasegate.api.status import CriterionResult, Verdict, trusted
from phasegate.engine.inputs import Backend, Measurement, Outcome, QueryRequest


class _Verdict(Exception):
    """Raised inside judging to end early with a non-Pass/Fail verdict."""

    def __init__(self, verdict: Verdict, reason: str) -> None:
        super().__init__(reason)
        self.verdict = verdict
        self.reason = reason


def judge(
    rule: str,
    criterion: Criterion,
    metric: Metric,
    requests: Mapping[Backend, QueryRequest],
    measurements: Mapping[str, Measurement],
    threshold: str | None = None,
) -> CriterionResult:
    """Judge ``criterion`` on the answers to its ``requests``. ``threshold``: the criterion's
    threshold as words, when the caller has it already."""
    canary = requests["canary"]
    threshold = threshold or criterion.describe_threshold()
    answer = measurements.get(canary.key)
    if answer is not None and len(requests) == 1 and canary.window is None and one_value(criterion):
        return judge_value(rule, criterion, metric, canary, threshold, answer)
    stable = requests.get("stable")
    verdict, reason, value, values = _judge(criterion, metric, requests, measurements, threshold)
    stable_query = stable.query if stable else None
    return _result(
        rule, criterion, canary.query, stable_query, value, values, threshold, verdict, reason
    )


def one_value(criterion: Criterion) -> bool:
    """Whether the criterion judges one value of the canary's query against max and/or min."""
    return criterion.consistency is None and criterion.compare is None and criterion.test is None


def judge_value(
    rule: str,
    criterion: Criterion,
    metric: Metric,
    request: QueryRequest,
    threshold: str,
    answer: Measurement,
) -> CriterionResult:
    """:func:`judge` for a criterion on :func:`one_value`, its one (canary) query answered
    with ``answer``: the common case, in fewer steps."""
    if answer.outcome is Outcome.VALUE and len(answer.series) == 1:
        value: float | None = next(iter(answer.series.values()))
        if math.isnan(value):  # type: ignore[arg-type]
            verdict, reason = _early(metric, Verdict.NO_DATA, "the query returned NaN")
            value = None
        else:
            passed, reason = _threshold(criterion, value, threshold)  # type: ignore[arg-type]
            verdict = Verdict.PASS if passed else Verdict.FAIL
    else:
        asked: dict[Backend, QueryRequest] = {"canary": request}
        answered = {request.key: answer}
        verdict, reason, value, _ = _judge(criterion, metric, asked, answered, threshold)
    return _result(rule, criterion, request.query, None, value, None, threshold, verdict, reason)


def _result(
    rule: str,
    criterion: Criterion,
    query: str,
    stable_query: str | None,
    value: float | None,
    values: dict[str, float] | None,
    threshold: str,
    verdict: Verdict,
    reason: str,
) -> CriterionResult:
    fields = {
        "rule": rule,
        "metric": criterion.metric,
        "query": query,
        "stable_query": stable_query,
        "value": value,
        "values": values,
        "threshold": threshold,
        "verdict": verdict,
        "reason": reason,
    }
    if values is None and (value is None or type(value) is float):
        return trusted(CriterionResult, fields)  # of the fields' types: validating only copies
    return CriterionResult(**fields)


def _judge(
    criterion: Criterion,
    metric: Metric,
    requests: Mapping[Backend, QueryRequest],
    measurements: Mapping[str, Measurement],
    threshold: str,
) -> tuple[Verdict, str, float | None, dict[str, float] | None]:
    try:
        got = {b: _answer(measurements, r) for b, r in requests.items()}
        if criterion.consistency is not None:
            value, values = _spread(criterion, got["canary"])
        elif criterion.compare == "stable":
            value, values = _relative(criterion, got["canary"], got["stable"])
        else:
            value, values = _single(got["canary"]), None
    except _Verdict as early:
        return (*_early(metric, early.verdict, early.reason), None, None)

    passed, reason = _threshold(criterion, value, threshold)
    if not passed and criterion.test is not None:
        # The test can only excuse a breach as noise, never cause one.
        above = criterion.max is not None and value > criterion.max
        passed, reason = _significant(criterion, got["canary"], got["stable"], above, reason)
    return Verdict.PASS if passed else Verdict.FAIL, reason, value, values


def _early(metric: Metric, verdict: Verdict, reason: str) -> tuple[Verdict, str]:
    """A verdict reached before any threshold: NoData as the metric's onNoData says."""
    if verdict is Verdict.NO_DATA and metric.on_no_data is not NoDataPolicy.INCONCLUSIVE:
        return Verdict(metric.on_no_data.value), f"{reason} (onNoData: {metric.on_no_data.value})"
    return verdict, reason


def _answer(measurements: Mapping[str, Measurement], request: QueryRequest) -> Measurement:
    answer = measurements.get(request.key)
    if answer is None:
        raise _Verdict(Verdict.ERROR, f"no answer for the {request.backend} query")
    if answer.outcome is Outcome.REJECTED:
        raise _Verdict(Verdict.ERROR, f"query rejected by Prometheus: {answer.message}")
    if answer.outcome is Outcome.UNAVAILABLE:
        raise _Verdict(Verdict.ERROR, f"Prometheus unavailable: {answer.message}")
    if answer.outcome is Outcome.SEVERAL_SERIES and request.group_by is None:
        raise _Verdict(
            Verdict.ERROR,
            f"the {request.backend} query returned {len(answer.series) or 'several'} series "
            "where one was expected; aggregate it (e.g. sum(...))",
        )
    if answer.outcome is Outcome.NO_DATA or (request.window is None and not answer.series):
        detail = f": {answer.message}" if answer.message else ""
        raise _Verdict(Verdict.NO_DATA, f"the {request.backend} query returned no data{detail}")
    if request.window is not None:
        samples = [s for s in answer.samples if not math.isnan(s)]
        if len(samples) < 3:
            raise _Verdict(
                Verdict.NO_DATA,
                f"the {request.backend} query returned {len(samples)} samples; "
                "the statistical test needs at least 3",
            )
    return answer


def _single(answer: Measurement) -> float:
    if len(answer.series) != 1:
        raise _Verdict(Verdict.ERROR, f"{len(answer.series)} series where one was expected")
    value = next(iter(answer.series.values()))
    if math.isnan(value):
        raise _Verdict(Verdict.NO_DATA, "the query returned NaN")
    return value


def _mean(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return sum(clean) / len(clean)


def _relative(
    criterion: Criterion, canary: Measurement, stable: Measurement
) -> tuple[float, dict[str, float]]:
    if criterion.test is not None:
        c, s = _mean(canary.samples), _mean(stable.samples)
    else:
        c, s = _single(canary), _single(stable)
    if s == 0:
        raise _Verdict(
            Verdict.NO_DATA,
            f"stable is 0 (canary {c:g}); the relative difference is undefined",
        )
    return (c - s) / abs(s), {"canary": c, "stable": s}


def _spread(criterion: Criterion, answer: Measurement) -> tuple[float, dict[str, float]]:
    assert criterion.consistency is not None
    segments = {k: v for k, v in answer.series.items() if not math.isnan(v)}
    by = criterion.consistency.by
    if len(segments) < 2:
        raise _Verdict(
            Verdict.NO_DATA,
            f"{len(segments)} segment(s) by {by!r}; consistency needs at least 2 "
            f"(does the query keep the {by!r} label, e.g. sum by ({by}) (...)?)",
        )
    high, low = max(segments.values()), min(segments.values())
    if criterion.consistency.absolute:
        return high - low, segments
    mean = sum(segments.values()) / len(segments)
    if mean == 0:
        raise _Verdict(Verdict.NO_DATA, "the segments' mean is 0; the relative spread is undefined")
    return (high - low) / abs(mean), segments


def _threshold(criterion: Criterion, value: float, threshold: str) -> tuple[bool, str]:
    if criterion.consistency is not None:
        limit = criterion.consistency.max_spread
        ok = value <= limit
        return ok, f"spread {value:.6g} {'<=' if ok else '>'} {limit:g}"
    subject = "relative difference" if criterion.compare else "value"
    if criterion.max is not None and value > criterion.max:
        return False, f"{subject} {value:.6g} is above max {criterion.max:g}"
    if criterion.min is not None and value < criterion.min:
        return False, f"{subject} {value:.6g} is below min {criterion.min:g}"
    return True, f"{subject} {value:.6g} passes {threshold}"


def _significant(
    criterion: Criterion, canary: Measurement, stable: Measurement, above: bool, breach: str
) -> tuple[bool, str]:
    """Kayenta-style: a breach counts only if Mann-Whitney says canary differs (High/Low)."""
    assert criterion.test is not None
    c = [v for v in canary.samples if not math.isnan(v)]
    s = [v for v in stable.samples if not math.isnan(v)]
    alpha = 1 - criterion.test.confidence
    alternative = "greater" if above else "less"
    # scipy is imported by the first statistical test: it is most of the operator's memory
    # (about 80 MiB resident), which a release without a test need not pay.
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(c, s, alternative=alternative).pvalue)
    if p < alpha:
        label = "High" if above else "Low"
        return False, f"{breach}; Mann-Whitney U: {label} (p={p:.3g} < {alpha:.3g})"
    return True, f"{breach}, but Mann-Whitney U: Pass (p={p:.3g} >= {alpha:.3g}): noise"
