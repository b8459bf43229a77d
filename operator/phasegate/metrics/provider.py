"""The metrics provider protocol: answer the engine's queries, each outcome classified."""

from __future__ import annotations

from typing import Protocol

from phasegate.engine.inputs import Measurement, QueryRequest


class MetricsProvider(Protocol):
    def measure(self, request: QueryRequest) -> Measurement:
        """Run one query; never raises for a query or network problem, classifies it."""
        ...
