"""Prometheus over its HTTP API, asynchronously (aiohttp, on the operator's event loop).

Every outcome is classified for the engine: a value, no data (empty or NaN), several series
where one was expected, a query Prometheus rejected (400/422, with its message: the query is
misconfigured), or Prometheus unavailable (unreachable, timeout, 5xx).

Throughput does not depend on a thread pool: at most ``max_in_flight`` requests are open to
one Prometheus at a time and the others wait their turn (backpressure: the wait shows as
evaluation lag, never as a failed query). Identical queries evaluated at
the same instant, rounded down to ``coalesce_window`` (e.g. the stable side many rollouts
share), are sent once: later askers join the request in flight or take its answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from phasegate.engine.inputs import Measurement, Outcome, QueryRequest

DEFAULT_STEP = 30.0  # seconds between samples of a range query without a step


@dataclass(frozen=True)
class PrometheusSettings:
    address: str
    timeout: float = 10.0
    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None
    ca_pem: str | None = None
    insecure_skip_verify: bool = False
    max_in_flight: int = 64  # requests open to this Prometheus at once; the rest queue
    coalesce_window: float = 0.5  # seconds; 0 sends every query with the current time


@dataclass
class _Flight:
    """What one event loop holds for one Prometheus: the session and what is in flight."""

    session: aiohttp.ClientSession
    turns: asyncio.Semaphore
    in_flight: dict[tuple[Any, ...], asyncio.Task[Measurement]] = field(default_factory=dict)
    answered: dict[tuple[Any, ...], Measurement] = field(default_factory=dict)
    bucket: float = 0.0  # the instant ``answered`` holds answers for


class Prometheus:
    """One Prometheus server. Use :meth:`measure_async` on an event loop; :meth:`measure`
    blocks (for the CLI and scripts, never on a running loop)."""

    def __init__(
        self, settings: PrometheusSettings, clock: Callable[[], float] | None = None
    ) -> None:
        if settings.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.settings = settings
        self._clock = clock or time.time
        self._flights: dict[asyncio.AbstractEventLoop, _Flight] = {}
        self.sent = 0  # requests that reached the network
        self.shared = 0  # answers taken from an identical request (in flight or just answered)

    # ---- the public surface -------------------------------------------------------------

    async def measure_async(self, request: QueryRequest) -> Measurement:
        """Run one query; never raises for a query or network problem, classifies it."""
        flight = self._flight()
        instant = self._instant()
        key = (request.query, request.window, request.step, request.group_by, instant)
        if instant != flight.bucket:
            flight.answered.clear()
            flight.bucket = instant
        if (done := flight.answered.get(key)) is not None:
            self.shared += 1
            return done
        sending = flight.in_flight.get(key)
        if sending is None:
            # A task of its own: an asker cancelled (its rollout deleted) stops no one else.
            sending = asyncio.get_running_loop().create_task(self._send(flight, request, instant))
            flight.in_flight[key] = sending
            sending.add_done_callback(lambda task: _landed(flight, key, instant, task))
        else:
            self.shared += 1
        return await asyncio.shield(sending)

    def measure(self, request: QueryRequest) -> Measurement:
        """:meth:`measure_async`, blocking, on a loop of its own."""

        async def once() -> Measurement:
            try:
                return await self.measure_async(request)
            finally:
                await self.close()

        return asyncio.run(once())

    async def close(self) -> None:
        """Close the HTTP session of the running loop (and forget closed loops')."""
        loop = asyncio.get_running_loop()
        flight = self._flights.pop(loop, None)
        if flight is not None:
            await flight.session.close()
        for other in [lp for lp in self._flights if lp.is_closed()]:
            del self._flights[other]

    # ---- the request --------------------------------------------------------------------

    def _flight(self) -> _Flight:
        loop = asyncio.get_running_loop()
        flight = self._flights.get(loop)
        if flight is None or flight.session.closed:
            s = self.settings
            connector = aiohttp.TCPConnector(limit=s.max_in_flight, ssl=self._tls())
            session = aiohttp.ClientSession(
                connector=connector,
                headers=_authorization(s),
                timeout=aiohttp.ClientTimeout(total=s.timeout),
                raise_for_status=False,
            )
            flight = _Flight(session, asyncio.Semaphore(s.max_in_flight))
            self._flights[loop] = flight
        return flight

    def _tls(self) -> ssl.SSLContext | bool:
        if self.settings.insecure_skip_verify:
            return False
        if self.settings.ca_pem:
            return ssl.create_default_context(cadata=self.settings.ca_pem)
        return True

    def _instant(self) -> float:
        window = self.settings.coalesce_window
        now = self._clock()
        return math.floor(now / window) * window if window > 0 else now

    async def _send(self, flight: _Flight, request: QueryRequest, instant: float) -> Measurement:
        s = self.settings
        if request.window is not None:
            step = request.step.total_seconds() if request.step else DEFAULT_STEP
            path = "/api/v1/query_range"
            params = {
                "query": request.query,
                "start": f"{instant - request.window.total_seconds():.3f}",
                "end": f"{instant:.3f}",
                "step": f"{max(step, 0.001):g}s",
            }
        else:
            path = "/api/v1/query"
            params = {"query": request.query, "time": f"{instant:.3f}"}
        # No time limit on the wait: each rollout has at most one evaluation in flight, so the
        # queue is bounded by the rollouts, and a wait is the operator's lag (which its lag
        # metric shows), not Prometheus failing; the timeout counts from the request's start.
        await flight.turns.acquire()
        try:
            self.sent += 1
            return await _classify(
                request, s, lambda: _get(flight.session, s.address.rstrip("/") + path, params)
            )
        finally:
            flight.turns.release()


def _authorization(settings: PrometheusSettings) -> dict[str, str]:
    if settings.bearer_token:
        return {"Authorization": f"Bearer {settings.bearer_token}"}
    if settings.username is not None:
        pair = f"{settings.username}:{settings.password or ''}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}


def _landed(
    flight: _Flight, key: tuple[Any, ...], instant: float, task: asyncio.Task[Measurement]
) -> None:
    """A request ended: later askers of the same instant take its answer (errors are asked
    again)."""
    flight.in_flight.pop(key, None)
    if task.cancelled() or task.exception() is not None:
        return
    answer = task.result()
    if not answer.is_error and flight.bucket == instant:
        flight.answered[key] = answer


async def _get(
    session: aiohttp.ClientSession, url: str, params: dict[str, str]
) -> tuple[int, bytes]:
    async with session.get(url, params=params) as response:
        return response.status, await response.read()


async def _classify(
    request: QueryRequest,
    settings: PrometheusSettings,
    send: Callable[[], Awaitable[tuple[int, bytes]]],
) -> Measurement:
    query, address = request.query, settings.address
    try:
        status, body = await send()
    except aiohttp.ClientConnectorCertificateError as error:
        return _tls_failed(query, address, error)
    except aiohttp.ClientConnectorSSLError as error:
        return _tls_failed(query, address, error)
    except aiohttp.ClientConnectorError as error:
        if isinstance(error.os_error, ssl.SSLError):
            return _tls_failed(query, address, error)
        why = (
            "connection refused"
            if isinstance(error.os_error, ConnectionRefusedError)
            else (type(error.os_error).__name__)
        )
        return Measurement(query, Outcome.UNAVAILABLE, message=f"{address} unreachable ({why})")
    except TimeoutError:  # aiohttp's ServerTimeoutError is one too
        return Measurement(
            query, Outcome.UNAVAILABLE, message=f"timed out after {settings.timeout:g}s"
        )
    except aiohttp.ClientSSLError as error:
        return _tls_failed(query, address, error)
    except aiohttp.ClientError as error:
        return Measurement(
            query, Outcome.UNAVAILABLE, message=f"{address} unreachable ({type(error).__name__})"
        )
    try:
        return _answer(request, status, body)
    except (ValueError, KeyError, TypeError, IndexError) as error:
        return Measurement(query, Outcome.UNAVAILABLE, message=f"unexpected answer: {error}")


def _answer(request: QueryRequest, status: int, body: bytes) -> Measurement:
    query = request.query
    if status != 200:
        message = _error_text(body)
        if status in (400, 422):
            return Measurement(query, Outcome.REJECTED, message=message)
        return Measurement(query, Outcome.UNAVAILABLE, message=f"HTTP {status}: {message}")
    payload = json.loads(body)
    if payload.get("status") != "success":
        raise ValueError(payload.get("error") or "status is not success")
    result: list[dict[str, Any]] = payload["data"]["result"]
    if request.window is not None:
        return _range(query, result)
    return _instant(request, result)


def _instant(request: QueryRequest, result: list[dict[str, Any]]) -> Measurement:
    query = request.query
    if not result:
        return Measurement(query, Outcome.NO_DATA, message="empty result")
    series: dict[str, float] = {}
    for item in result:
        labels = item.get("metric") or {}
        key = labels.get(request.group_by, "") if request.group_by else _label_key(labels)
        series[key] = float(item["value"][1])
    if request.group_by is None and len(series) > 1:
        return Measurement(
            query, Outcome.SEVERAL_SERIES, series=series, message=f"{len(series)} series"
        )
    if request.group_by is None and math.isnan(next(iter(series.values()))):
        return Measurement(query, Outcome.NO_DATA, message="the query returned NaN")
    return Measurement(query, Outcome.VALUE, series=series)


def _range(query: str, result: list[dict[str, Any]]) -> Measurement:
    if not result:
        return Measurement(query, Outcome.NO_DATA, message="empty result")
    if len(result) > 1:
        return Measurement(query, Outcome.SEVERAL_SERIES, message=f"{len(result)} series")
    samples = tuple(float(v) for _, v in result[0].get("values", []))
    return Measurement(query, Outcome.VALUE, samples=samples)


def _label_key(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _error_text(body: bytes) -> str:
    """Prometheus's own ``error`` field, else the body as text."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()[:500]


def _tls_failed(query: str, address: str, error: Exception) -> Measurement:
    return Measurement(
        query,
        Outcome.UNAVAILABLE,
        message=f"{address}: TLS failed ({_tls_reason(error)}); give its CA with "
        "spec.prometheus.caSecret (or set insecureSkipVerify)",
    )


def _tls_reason(error: Exception) -> str:
    """The OpenSSL reason inside the error, e.g. "certificate verify failed"."""
    text = str(error)
    for known in ("certificate verify failed", "wrong version number", "handshake failure"):
        if known.replace(" ", "_").upper() in text or known in text:
            return known
    return type(error).__name__
