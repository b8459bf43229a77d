"""The vanishing-numerator warning: a ratio whose numerator selects a subset that may have no
series at all, unguarded, is named; guarded ratios and other queries are not."""

from __future__ import annotations

import pytest

from phasegate.api.lint import spec_warnings, vanishing_numerators

ERRORS = 'sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[1m]))'
TOTAL = 'sum(rate(http_requests_total{service="{{service}}"}[1m]))'
BY_ERRORS = 'sum by (segment) (rate(http_requests_total{service="s",code=~"5.."}[1m]))'
BY_TOTAL = 'sum by (segment) (rate(http_requests_total{service="s"}[1m]))'

WARNED = 'http_requests_total{code=~"5.."}'


@pytest.mark.parametrize(
    ("query", "named"),
    [
        # unguarded: the numerator has a label the denominator does not
        (f"{ERRORS} / {TOTAL}", WARNED),
        (f"{ERRORS}\n/ {TOTAL}", WARNED),
        ('sum(rate(x{status="500"}[5m])) / sum(rate(x[5m]))', 'x{status="500"}'),
        (f'sum(rate(x{{code!~"5.."}}[1m])) / {TOTAL}', 'x{code!~"5.."}'),
        (f"100 * ({ERRORS} / {TOTAL})", WARNED),
        (f"clamp_min({ERRORS} / {TOTAL}, 0)", WARNED),
        (f"{ERRORS} / {TOTAL} or vector(0)", WARNED),  # guards the ratio: no traffic reads 0
        (f"({BY_ERRORS} or vector(0)) / {BY_TOTAL}", WARNED),  # no labels to match groups
        (f"({BY_ERRORS} or on() vector(0)) / {BY_TOTAL}", WARNED),
        (f"{BY_ERRORS} / {BY_TOTAL}", WARNED),
        # guarded
        (f"({ERRORS} or vector(0)) / {TOTAL}", None),
        (f"({ERRORS} or on() vector(0)) / {TOTAL}", None),
        (f"({ERRORS} or on () vector(0))\n/ {TOTAL}", None),
        (f"({BY_ERRORS} or {BY_TOTAL} * 0) / {BY_TOTAL}", None),
        # the same labels on both sides, a number below the line, no division
        (f"{TOTAL} / {TOTAL}", None),
        ('sum(rate(revenue_total{service="s"}[5m])) / sum(rate(requests{service="s"}[5m]))', None),
        (f"{ERRORS} / 60", None),
        (f"{ERRORS} / (1e3)", None),
        (f'{ERRORS} / sum(rate(http_requests_total{{code=~".+",service="s"}}[1m]))', None),
        (ERRORS, None),
        ('count(ALERTS{severity="critical",alertstate="firing"})', None),
        ('histogram_quantile(0.99, sum by (le) (rate(h_bucket{service="s"}[1m])))', None),
        # a slash or an "or" inside a label value is no operator
        ('sum(rate(x{path="/a/b",code="500"}[1m]))', None),
        ('sum(rate(x{code="500",note="or vector(0)"}[1m])) / sum(rate(x[1m]))', 'x{code="500"}'),
        ('sum(rate(x{code="500"}[1m])) # / sum(y)\n', None),
    ],
)
def test_vanishing_numerators(query: str, named: str | None) -> None:
    problems = vanishing_numerators(query)
    if named is None:
        assert problems == []
    else:
        assert len(problems) == 1, problems
        assert f"the numerator selects {named}" in problems[0]
        assert "empty (NoData), not 0" in problems[0]


def test_the_advice_fits_the_ratio() -> None:
    assert "or vector(0)) / sum(...)" in vanishing_numerators(f"{ERRORS} / {TOTAL}")[0]
    grouped = vanishing_numerators(f"{BY_ERRORS} / {BY_TOTAL}")[0]
    assert "or <denominator> * 0" in grouped and "vector(0) has no labels" in grouped


def test_spec_warnings_name_the_field_and_metric() -> None:
    spec = {
        "metrics": [
            {"name": "latency", "query": "vector(1)"},
            {"name": "error-rate", "query": f"{ERRORS} / {TOTAL}"},
            {"name": "broken"},
            "not a mapping",
        ]
    }
    (warning,) = spec_warnings(spec)
    assert warning.startswith("spec.metrics[1].query (error-rate): the numerator selects ")
    assert spec_warnings({"metrics": "nonsense"}) == spec_warnings(None) == []
