"""The metrics provider protocol: answer the engine's queries, each outcome classified."""

from __future__ import annotations

from typing import Protocol

from phasegate.engine.inputs import Measurement, QueryRequest


class MetricsProvider(Protocol):
    async def measure_async(self, request: QueryRequest) -> Measurement:
        """Run one query on the running event loop; never raises for a query or network
        problem, classifies it."""
        ...

    def measure(self, request: QueryRequest) -> Measurement:
        """The same, blocking (never on a running event loop)."""
        ...
