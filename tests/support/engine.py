"""A tiny simulator around the engine: virtual time, an obedient route, scripted metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from phasegate.api import ProgressiveRollout, RolloutSpec, RolloutStatus, State
from phasegate.engine import (
    Control,
    ControlAction,
    Evaluation,
    Measurement,
    Observations,
    Outcome,
    QueryRequest,
    evaluate,
    queries_needed,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 11, 1, 10, 0, tzinfo=UTC)
Metrics = Callable[[QueryRequest, datetime], Measurement]


def load_reference() -> dict[str, Any]:
    text = (ROOT / "manifests/examples/reference-release.yaml").read_text()
    return yaml.safe_load(text)  # type: ignore[no-any-return]


def reference_spec() -> RolloutSpec:
    return ProgressiveRollout.model_validate(load_reference()).spec


HEALTHY = {
    "error-rate": 0.0005,
    "p99-latency": 0.03,
    "availability": 0.99995,
    "revenue": 1.0,
}


def healthy(overrides: dict[str, float] | None = None) -> Metrics:
    """Metrics of a healthy canary; ``overrides`` set a metric's canary value."""
    values = {**HEALTHY, **(overrides or {})}

    def answer(request: QueryRequest, now: datetime) -> Measurement:
        if request.metric == "critical-alerts":
            return Measurement(request.query, Outcome.NO_DATA)
        if request.group_by:
            series = {"enterprise": 0.1, "consumer": 0.101}
            return Measurement(request.query, Outcome.VALUE, series=series)
        value = values[request.metric] if request.backend == "canary" else HEALTHY[request.metric]
        return Measurement.value(request.query, value)

    return answer


def minimal_spec(**changes: Any) -> RolloutSpec:
    """One phase, two criteria, a rollback and a hold trigger: small enough to reason about."""
    spec: dict[str, Any] = {
        "revision": "v2",
        "stable": {"service": "app-stable"},
        "canary": {"service": "app-canary"},
        "trafficRouting": {"gatewayAPI": {"httpRoute": "app"}},
        "interval": "10s",
        "holdWeight": 5,
        "metrics": [
            {"name": "errors", "query": 'errors{service="{{service}}"}'},
            {"name": "latency", "query": 'latency{service="{{service}}"}'},
        ],
        "phases": [
            {
                "name": "canary",
                "weight": 10,
                "duration": "10m",
                "checkpoints": ["5m", "10m"],
                "successCriteria": [
                    {"metric": "errors", "max": 0.01},
                    {"metric": "latency", "max": 0.2},
                ],
                "rollbackTriggers": [{"metric": "errors", "max": 0.05, "for": "1m"}],
                "holdTriggers": [{"metric": "errors", "max": 0.02, "for": "1m"}],
            },
            {"name": "full", "weight": 100, "duration": "10m"},
        ],
    }
    for key, value in changes.items():
        spec[key] = value
    return RolloutSpec.model_validate(spec)


def constant(values: dict[str, float | None]) -> Metrics:
    """Every backend answers ``values[metric]``; None means no data."""

    def answer(request: QueryRequest, now: datetime) -> Measurement:
        value = values.get(request.metric)
        if value is None:
            return Measurement(request.query, Outcome.NO_DATA)
        return Measurement.value(request.query, value)

    return answer


@dataclass
class Sim:
    """Drives :func:`evaluate` the way the operator does, in virtual time."""

    spec: RolloutSpec
    metrics: Metrics
    now: datetime = T0
    status: RolloutStatus = field(default_factory=RolloutStatus)
    route: int = 0
    promotion_done: bool = False
    canary_scaled_down: bool = False
    history: list[Evaluation] = field(default_factory=list)
    namespace: str = "learning"
    _ids: int = 0

    def observe(self, controls: Iterable[Control] = ()) -> Observations:
        requests = queries_needed(self.spec, self.status, self.namespace)
        return Observations(
            measurements={r.key: self.metrics(r, self.now) for r in requests},
            route_weight=self.route,
            promotion_done=self.promotion_done,
            canary_scaled_down=self.canary_scaled_down,
            controls=tuple(controls),
        )

    def step(self, controls: Iterable[Control] = ()) -> Evaluation:
        result = evaluate(
            self.spec, self.status, self.observe(controls), self.now, namespace=self.namespace
        )
        if result.weight is not None:
            self.route = result.weight  # the route obeys; read back at the next evaluation
        self.status = result.status
        self.history.append(result)
        return result

    def control(self, action: ControlAction, **kwargs: Any) -> Evaluation:
        self._ids += 1
        return self.step([Control(id=f"c{self._ids}", action=action, **kwargs)])

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def run(self, until: Callable[[Sim], bool], limit: timedelta = timedelta(days=3)) -> Evaluation:
        """Step at the engine's own pace until ``until`` holds or ``limit`` passes."""
        end = self.now + limit
        result = self.step()
        while not until(self):
            if self.now > end:
                raise AssertionError(
                    f"not reached by {end}: {self.status.state} {self.status.message}"
                )
            self.advance(max(result.next_evaluation, timedelta(milliseconds=1)))
            result = self.step()
        return result

    def state_is(self, *states: State) -> Callable[[Sim], bool]:
        return lambda sim: sim.status.state in states
