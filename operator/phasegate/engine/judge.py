"""Measurements -> a verdict on one criterion. Pure: the same input, the same verdict.

The machine judges every rule at every evaluation but keeps a rule's result in status only
at a checkpoint, in a decision's evidence or in a condition. So a verdict is a light
:class:`Judgement`; its reason text and its status record are made when something asks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from math import isnan

from phasegate.api.spec import Criterion, Metric, NoDataPolicy
from phasegate.api.status import CriterionResult, Verdict, trusted
from phasegate.engine.inputs import Backend, Measurement, Outcome, QueryRequest

# Enum members read while judging, bound once. In CPython 3.11 reading a member off its
# class (Verdict.PASS) runs EnumType's __getattr__ hook at every read, several times the
# cost of a plain attribute, and judging a phase made dozens of such reads.
PASS, FAIL, NO_DATA, ERROR = Verdict.PASS, Verdict.FAIL, Verdict.NO_DATA, Verdict.ERROR
VALUE = Outcome.VALUE


class _Verdict(Exception):
    """Raised inside judging to end early with a non-Pass/Fail verdict."""

    def __init__(self, verdict: Verdict, reason: str) -> None:
        super().__init__(reason)
        self.verdict = verdict
        self.reason = reason


@dataclass(frozen=True)
class RulePlan:
    """One rule of a phase, ready to judge: its metric and its rendered queries."""

    rule_id: str
    criterion: Criterion
    metric: Metric
    requests: dict[Backend, QueryRequest]
    threshold: str  # the criterion's threshold in words, as status shows it
    keys: tuple[str, ...]  # of its requests: the rule is judged when all were answered
    one_value: bool  # judged on the one value of its one (canary) query against max/min
    # The criterion's bounds and the canary query's key, at hand for judging one value.
    max: float | None
    min: float | None
    key: str

    @classmethod
    def of(
        cls,
        rule_id: str,
        criterion: Criterion,
        metric: Metric,
        requests: dict[Backend, QueryRequest],
    ) -> RulePlan:
        keys = tuple(r.key for r in requests.values())
        single = len(requests) == 1 and requests["canary"].window is None and one_value(criterion)
        threshold = criterion.describe_threshold()
        return cls(
            rule_id,
            criterion,
            metric,
            requests,
            threshold,
            keys,
            single,
            criterion.max,
            criterion.min,
            requests["canary"].key,
        )


class Judgement:
    """A rule judged once: its verdict and the value judged. The reason is worded, and the
    status record made, only when asked for (most evaluations keep neither)."""

    __slots__ = ("_reason", "_record", "rule", "value", "values", "verdict")

    def __init__(
        self,
        rule: RulePlan,
        verdict: Verdict,
        value: float | None,
        values: dict[str, float] | None = None,
        reason: str | None = None,  # None: a threshold's verdict on ``value``, worded later
    ) -> None:
        self.rule = rule
        self.verdict = verdict
        self.value = value
        self.values = values
        self._reason = reason
        self._record: CriterionResult | None = None

    @property
    def metric(self) -> str:
        return self.rule.criterion.metric

    @property
    def threshold(self) -> str:
        return self.rule.threshold

    @property
    def reason(self) -> str:
        if self._reason is None:
            assert self.value is not None
            self._reason = _threshold(self.rule.criterion, self.value, self.rule.threshold)[1]
        return self._reason

    def record(self) -> CriterionResult:
        """The result as status shows it; one record per judgement, however often asked."""
        if self._record is None:
            rule = self.rule
            stable = rule.requests.get("stable")
            fields = {
                "rule": rule.rule_id,
                "metric": rule.criterion.metric,
                "query": rule.requests["canary"].query,
                "stable_query": stable.query if stable else None,
                "value": self.value,
                "values": self.values,
                "threshold": rule.threshold,
                "verdict": self.verdict,
                "reason": self.reason,
            }
            value = self.value
            if self.values is None and (value is None or type(value) is float):
                # of the fields' types: validating would only copy them
                self._record = trusted(CriterionResult, fields)
            else:
                self._record = CriterionResult(**fields)
        return self._record


def judge(
    rule: str,
    criterion: Criterion,
    metric: Metric,
    requests: Mapping[Backend, QueryRequest],
    measurements: Mapping[str, Measurement],
) -> CriterionResult:
    """Judge ``criterion`` on the answers to its ``requests``, as status shows it."""
    return _judged(RulePlan.of(rule, criterion, metric, dict(requests)), measurements).record()


def judge_rules(
    rules: Iterable[RulePlan], measurements: Mapping[str, Measurement]
) -> tuple[dict[str, Judgement], list[Judgement]]:
    """Judge every rule whose queries were answered: by rule id, and those other than Pass,
    both in rule order. A rule not answered was planned for another phase or state: it has
    no verdict."""
    judged: dict[str, Judgement] = {}
    not_passed: list[Judgement] = []
    for rule in rules:
        if rule.one_value:
            answer = measurements.get(rule.key)
            if answer is None:
                continue
            # The common case, here rather than in _judge: one value against max and/or min.
            if answer.outcome is VALUE and len(answer.series) == 1:
                (value,) = answer.series.values()
                if not isnan(value):
                    high, low = rule.max, rule.min
                    if (high is not None and value > high) or (low is not None and value < low):
                        judged[rule.rule_id] = failed = Judgement(rule, FAIL, value)
                        not_passed.append(failed)
                    else:
                        judged[rule.rule_id] = Judgement(rule, PASS, value)
                    continue
        elif not all(key in measurements for key in rule.keys):
            continue
        judged[rule.rule_id] = result = _judged(rule, measurements)
        if result.verdict is not PASS:
            not_passed.append(result)
    return judged, not_passed


def judge_rule(rule: RulePlan, measurements: Mapping[str, Measurement]) -> Judgement | None:
    """:func:`judge_rules` for one rule; None when it was not answered."""
    return judge_rules((rule,), measurements)[0].get(rule.rule_id)


def one_value(criterion: Criterion) -> bool:
    """Whether the criterion judges one value of the canary's query against max and/or min."""
    return criterion.consistency is None and criterion.compare is None and criterion.test is None


def _judged(rule: RulePlan, measurements: Mapping[str, Measurement]) -> Judgement:
    verdict, reason, value, values = _judge(
        rule.criterion, rule.metric, rule.requests, measurements, rule.threshold
    )
    return Judgement(rule, verdict, value, values, reason)


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
    return PASS if passed else FAIL, reason, value, values


def _early(metric: Metric, verdict: Verdict, reason: str) -> tuple[Verdict, str]:
    """A verdict reached before any threshold: NoData as the metric's onNoData says."""
    policy = metric.on_no_data
    if verdict is NO_DATA and policy is not NoDataPolicy.INCONCLUSIVE:
        return PASS if policy is NoDataPolicy.PASS else FAIL, f"{reason} (onNoData: {policy.value})"
    return verdict, reason


def _answer(measurements: Mapping[str, Measurement], request: QueryRequest) -> Measurement:
    answer = measurements.get(request.key)
    if answer is None:
        raise _Verdict(ERROR, f"no answer for the {request.backend} query")
    if answer.outcome is Outcome.REJECTED:
        raise _Verdict(ERROR, f"query rejected by Prometheus: {answer.message}")
    if answer.outcome is Outcome.UNAVAILABLE:
        raise _Verdict(ERROR, f"Prometheus unavailable: {answer.message}")
    if answer.outcome is Outcome.SEVERAL_SERIES and request.group_by is None:
        raise _Verdict(
            ERROR,
            f"the {request.backend} query returned {len(answer.series) or 'several'} series "
            "where one was expected; aggregate it (e.g. sum(...))",
        )
    if answer.outcome is Outcome.NO_DATA or (request.window is None and not answer.series):
        detail = f": {answer.message}" if answer.message else ""
        raise _Verdict(NO_DATA, f"the {request.backend} query returned no data{detail}")
    if request.window is not None:
        samples = [s for s in answer.samples if not math.isnan(s)]
        if len(samples) < 3:
            raise _Verdict(
                NO_DATA,
                f"the {request.backend} query returned {len(samples)} samples; "
                "the statistical test needs at least 3",
            )
    return answer


def _single(answer: Measurement) -> float:
    if len(answer.series) != 1:
        raise _Verdict(ERROR, f"{len(answer.series)} series where one was expected")
    value = next(iter(answer.series.values()))
    if math.isnan(value):
        raise _Verdict(NO_DATA, "the query returned NaN")
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
            NO_DATA,
            f"stable is 0 (canary {c:g}); the relative difference is undefined",
        )
    return (c - s) / abs(s), {"canary": c, "stable": s}


def _spread(criterion: Criterion, answer: Measurement) -> tuple[float, dict[str, float]]:
    assert criterion.consistency is not None
    segments = {k: v for k, v in answer.series.items() if not math.isnan(v)}
    by = criterion.consistency.by
    if len(segments) < 2:
        raise _Verdict(
            NO_DATA,
            f"{len(segments)} segment(s) by {by!r}; consistency needs at least 2 "
            f"(does the query keep the {by!r} label, e.g. sum by ({by}) (...)?)",
        )
    high, low = max(segments.values()), min(segments.values())
    if criterion.consistency.absolute:
        return high - low, segments
    mean = sum(segments.values()) / len(segments)
    if mean == 0:
        raise _Verdict(NO_DATA, "the segments' mean is 0; the relative spread is undefined")
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
