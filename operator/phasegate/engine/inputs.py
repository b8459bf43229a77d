"""What the engine is given: the queries it asked for, answered, and manual controls."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Literal

Backend = Literal["canary", "stable"]


@dataclass(frozen=True)
class QueryRequest:
    """One PromQL query the engine needs answered before it can decide."""

    metric: str
    backend: Backend
    query: str
    group_by: str | None = None
    window: timedelta | None = None  # a range query over the last ``window`` when set
    step: timedelta | None = None

    @cached_property  # asked several times per evaluation; the request never changes
    def key(self) -> str:
        parts = [self.metric, self.backend]
        if self.group_by:
            parts.append(f"by={self.group_by}")
        if self.window is not None:
            parts.append(f"range={self.window.total_seconds():g}s")
        return "|".join(parts)


class Outcome(StrEnum):
    """How a query ended, as the metrics provider classified it."""

    VALUE = "Value"
    NO_DATA = "NoData"
    SEVERAL_SERIES = "SeveralSeries"
    REJECTED = "Rejected"  # Prometheus refused the query: it is misconfigured
    UNAVAILABLE = "Unavailable"  # unreachable, timed out, 5xx


@dataclass(frozen=True)
class Measurement:
    """The answer to a :class:`QueryRequest`."""

    query: str
    outcome: Outcome
    series: dict[str, float] = field(default_factory=dict)  # series label -> value
    samples: tuple[float, ...] = ()  # range queries: the values over the window
    message: str = ""

    @classmethod
    def value(cls, query: str, value: float) -> Measurement:
        if math.isnan(value):
            return cls(query, Outcome.NO_DATA, message="the query returned NaN")
        return cls(query, Outcome.VALUE, series={"": value})

    @property
    def is_error(self) -> bool:
        return self.outcome in (Outcome.REJECTED, Outcome.UNAVAILABLE)


class ControlAction(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    PROMOTE = "promote"
    PROMOTE_FULL = "promoteFull"
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    RETRY = "retry"


@dataclass(frozen=True)
class Control:
    """A person's request: approve or reject a gate, promote, pause, resume, abort, retry."""

    id: str
    action: ControlAction
    by: str = "unknown"  # the user who asks (the API server vouches for it with the policy)
    phase: str | None = None  # approve, reject: the phase whose gate it is for
    reason: str = ""
    group: str | None = None  # approve, reject: the group it speaks for; None: ``by``


@dataclass(frozen=True)
class Observations:
    """What the adapters saw since the last evaluation."""

    measurements: dict[str, Measurement] = field(default_factory=dict)  # by QueryRequest.key
    route_weight: int | None = None  # canary weight read back from the route
    route_error: str | None = None  # the route or a backend is missing or unreadable
    promotion_done: bool = False  # the stable Deployment runs the canary's template, ready
    canary_scaled_down: bool = False  # the canary Deployment asks for 0 replicas (or is gone)
    controls: tuple[Control, ...] = ()
    # Control annotations that cannot be understood: (their id, why), reported once each.
    refused_controls: tuple[tuple[str, str], ...] = ()
    late_by: timedelta = timedelta(0)  # how long after it was due this evaluation started
    taken_at: datetime | None = None
