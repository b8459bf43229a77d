"""The operator's own metrics, in the Prometheus text format on ``/metrics``.

Evaluation lag and the latest values of the judged metrics go here, not into status:
an evaluation that changes nothing a user would see writes nothing to the API.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from phasegate.api.status import RolloutStatus, State

if TYPE_CHECKING:
    from phasegate.kube import Kube
    from phasegate.report.history import Judged

Labels = tuple[tuple[str, str], ...]
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _render(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = (*labels, *extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(BUCKETS, value)
        if index < len(BUCKETS):
            self.counts[index] += 1
        self.total += value
        self.n += 1


@dataclass
class Telemetry:
    counters: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(dict))
    gauges: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(dict))
    histograms: dict[str, dict[Labels, _Histogram]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    help: dict[str, str] = field(default_factory=dict)
    states: dict[tuple[str, str], State] = field(default_factory=dict)  # (namespace, rollout)
    # each rollout's rule series, so that replacing them costs its own rules, not every series
    rule_series: dict[tuple[str, str], list[tuple[str, Labels]]] = field(default_factory=dict)

    def describe(self, name: str, text: str) -> None:
        self.help[name] = text

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        series = self.counters[name]
        key = _labels(labels)
        series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self.gauges[name][_labels(labels)] = value

    def forget(self, name: str, **labels: str) -> None:
        """Drop every series of gauge ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        for key in [k for k in self.gauges[name] if wanted <= set(k)]:
            del self.gauges[name][key]

    def observe(self, name: str, value: float, **labels: str) -> None:
        self.histograms[name].setdefault(_labels(labels), _Histogram()).observe(value)

    def record_evaluation(
        self,
        namespace: str,
        rollout: str,
        before: RolloutStatus,
        after: RolloutStatus,
        judged: Judged,
    ) -> None:
        """The rollout's state, and the latest value and threshold of every rule of the phase
        just measured, ``judged`` (the series of rules no longer measured are dropped)."""
        self._state(namespace, rollout, after.state)
        for name, key in self.rule_series.pop((namespace, rollout), []):
            self.gauges[name].pop(key, None)
        kept = self.rule_series[(namespace, rollout)] = []

        def put(name: str, value: float, **labels: str) -> None:
            self.set(name, value, **labels)
            kept.append((name, _labels(labels)))

        phase = before.current_phase
        for rule_id, (rule, result) in judged.items():
            assert phase is not None  # judge_phase judges only a running phase
            labels = {
                "namespace": namespace,
                "rollout": rollout,
                "phase": phase.name,
                "rule": rule_id,
                "metric": rule.metric,
            }
            if result.value is not None and not math.isnan(result.value):
                put("phasegate_metric_value", result.value, **labels)
            bounds = (
                {"maxSpread": rule.consistency.max_spread}
                if rule.consistency is not None
                else {"max": rule.max, "min": rule.min}
            )
            for bound, limit in bounds.items():
                if limit is not None:
                    put("phasegate_metric_threshold", limit, **labels, bound=bound)
            # one series per rule: the verdict is a label, only the latest is kept
            put("phasegate_rule_verdict", 1.0, **labels, verdict=result.verdict.value)

    def forget_rollout(self, namespace: str, rollout: str) -> None:
        """Drop every series of a deleted rollout: nothing of it stays in memory."""
        self._state(namespace, rollout, None)
        self.rule_series.pop((namespace, rollout), None)
        for name in list(self.gauges):  # a scan of every series: deletions are rare
            self.forget(name, namespace=namespace, rollout=rollout)

    def _state(self, namespace: str, rollout: str, state: State | None) -> None:
        """Move one rollout between the counts of ``phasegate_rollouts`` (None: gone)."""
        if not self.gauges["phasegate_rollouts"]:
            for each in State:
                self.set("phasegate_rollouts", 0.0, state=each.value)
        before = self.states.pop((namespace, rollout), None)
        if state is not None:
            self.states[(namespace, rollout)] = state
        if before == state:
            return
        counts = self.gauges["phasegate_rollouts"]
        for moved, step in ((before, -1.0), (state, 1.0)):
            if moved is not None:
                key = _labels({"state": moved.value})
                counts[key] = counts.get(key, 0.0) + step

    def instrument(self, kube: Kube) -> Kube:
        """Time every call ``kube`` makes to the Kubernetes API, and count its errors."""
        send: Callable[..., Any] = kube.api.call_api

        def timed(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            code = "none"  # no answer: refused, timed out
            try:
                response = send(method, url, *args, **kwargs)
                code = str(getattr(response, "status", 200))
                return response
            finally:
                elapsed = time.perf_counter() - started
                self.observe("phasegate_api_request_duration_seconds", elapsed, verb=method)
                if not code.startswith(("2", "3")):
                    self.inc("phasegate_api_errors_total", verb=method, code=code)

        setattr(kube.api, "call_api", timed)  # noqa: B010 (the client has no hook for this)
        return kube

    def exposition(self) -> str:
        lines: list[str] = []
        for kind, families in (("counter", self.counters), ("gauge", self.gauges)):
            for name, series in sorted(families.items()):
                lines += [f"# HELP {name} {self.help.get(name, name)}", f"# TYPE {name} {kind}"]
                lines += [f"{name}{_render(k)} {v:g}" for k, v in sorted(series.items())]
        for name, hist in sorted(self.histograms.items()):
            lines += [f"# HELP {name} {self.help.get(name, name)}", f"# TYPE {name} histogram"]
            for key, h in sorted(hist.items()):
                running = 0
                for bound, count in zip(BUCKETS, h.counts, strict=True):
                    running += count
                    lines.append(f"{name}_bucket{_render(key, (('le', f'{bound:g}'),))} {running}")
                lines.append(f"{name}_bucket{_render(key, (('le', '+Inf'),))} {h.n}")
                lines.append(f"{name}_sum{_render(key)} {h.total:g}")
                lines.append(f"{name}_count{_render(key)} {h.n}")
        return "\n".join(lines) + "\n"


def metrics_app(telemetry: Telemetry) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=telemetry.exposition(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


def standard(telemetry: Telemetry) -> Telemetry:
    for name, text in {
        "phasegate_rollouts": "Rollouts by state.",
        "phasegate_decisions_total": "Decisions taken, by action.",
        "phasegate_evaluations_total": "Evaluations run.",
        "phasegate_evaluations_due_total": "Evaluations that fell due (every due time that "
        "passed counts once): behind when it grows faster than phasegate_evaluations_total.",
        "phasegate_status_writes_total": "Status writes (evaluations that changed what users see).",
        "phasegate_query_duration_seconds": "Prometheus query latency.",
        "phasegate_query_errors_total": "Queries that failed, by outcome.",
        "phasegate_evaluation_lag_seconds": "How late an evaluation started against its schedule.",
        "phasegate_metric_value": "The latest value of each rule of the current phase, "
        "as judged (relative difference for compare, spread for consistency).",
        "phasegate_metric_threshold": "The threshold of each rule of the current phase, by bound.",
        "phasegate_rule_verdict": "The latest verdict of each rule of the current phase "
        "(always 1; the verdict is the label).",
        "phasegate_api_request_duration_seconds": "Kubernetes API call latency, by verb.",
        "phasegate_api_errors_total": "Kubernetes API calls that failed, by verb and code.",
        "phasegate_canary_weight": "The canary weight read back from the route.",
    }.items():
        telemetry.describe(name, text)
    return telemetry
