"""Prometheus, through prometheus-api-client. Blocking: the operator calls it in a thread.

Every outcome is classified for the engine: a value, no data (empty or NaN), several series
where one was expected, a query Prometheus rejected (400/422, with its message: the query is
misconfigured), or Prometheus unavailable (unreachable, timeout, 5xx).
"""

from __future__ import annotations

import ast
import json
import math
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import urllib3
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from phasegate.engine.inputs import Measurement, Outcome, QueryRequest

_STATUS = re.compile(r"HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)


@dataclass(frozen=True)
class PrometheusSettings:
    address: str
    timeout: float = 10.0
    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None
    ca_pem: str | None = None
    insecure_skip_verify: bool = False


class Prometheus:
    def __init__(self, settings: PrometheusSettings) -> None:
        self.settings = settings
        headers = (
            {"Authorization": f"Bearer {settings.bearer_token}"} if settings.bearer_token else None
        )
        auth = (settings.username, settings.password) if settings.username is not None else None
        self.client = PrometheusConnect(
            url=settings.address.rstrip("/"),
            headers=headers,
            auth=auth,
            disable_ssl=settings.insecure_skip_verify,
            retry=Retry(total=False),  # no retries: the engine's consecutive-error rule decides
            timeout=settings.timeout,
        )
        if settings.ca_pem:
            with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as bundle:
                bundle.write(settings.ca_pem)
            self.client._session.verify = bundle.name

    def measure(self, request: QueryRequest) -> Measurement:
        try:
            if request.window is not None:
                return self._range(request)
            return self._instant(request)
        except PrometheusApiClientException as error:
            return _http_error(request.query, str(error))
        except urllib3.exceptions.NewConnectionError:  # a TimeoutError subclass, but refused
            return Measurement(
                request.query,
                Outcome.UNAVAILABLE,
                message=f"{self.settings.address} unreachable (connection refused)",
            )
        except (requests.Timeout, urllib3.exceptions.TimeoutError):
            return Measurement(
                request.query,
                Outcome.UNAVAILABLE,
                message=f"timed out after {self.settings.timeout:g}s",
            )
        except requests.exceptions.SSLError as error:
            return Measurement(
                request.query,
                Outcome.UNAVAILABLE,
                message=f"{self.settings.address}: TLS failed ({_tls_reason(error)}); give its "
                "CA with spec.prometheus.caSecret (or set insecureSkipVerify)",
            )
        except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
            reason = type(error).__name__
            return Measurement(
                request.query,
                Outcome.UNAVAILABLE,
                message=f"{self.settings.address} unreachable ({reason})",
            )
        except (ValueError, KeyError, TypeError) as error:
            return Measurement(
                request.query, Outcome.UNAVAILABLE, message=f"unexpected answer: {error}"
            )

    def _instant(self, request: QueryRequest) -> Measurement:
        result: list[dict[str, Any]] = self.client.custom_query(request.query)
        if not result:
            return Measurement(request.query, Outcome.NO_DATA, message="empty result")
        series: dict[str, float] = {}
        for item in result:
            labels = item.get("metric") or {}
            key = labels.get(request.group_by, "") if request.group_by else _label_key(labels)
            series[key] = float(item["value"][1])
        if request.group_by is None and len(series) > 1:
            return Measurement(
                request.query,
                Outcome.SEVERAL_SERIES,
                series=series,
                message=f"{len(series)} series",
            )
        if request.group_by is None and math.isnan(next(iter(series.values()))):
            return Measurement(request.query, Outcome.NO_DATA, message="the query returned NaN")
        return Measurement(request.query, Outcome.VALUE, series=series)

    def _range(self, request: QueryRequest) -> Measurement:
        assert request.window is not None
        end = datetime.now(UTC)
        step = request.step or timedelta(seconds=30)
        result: list[dict[str, Any]] = self.client.custom_query_range(
            request.query,
            start_time=end - request.window,
            end_time=end,
            step=f"{max(step.total_seconds(), 0.001):g}s",
        )
        if not result:
            return Measurement(request.query, Outcome.NO_DATA, message="empty result")
        if len(result) > 1:
            return Measurement(
                request.query, Outcome.SEVERAL_SERIES, message=f"{len(result)} series"
            )
        samples = tuple(float(v) for _, v in result[0].get("values", []))
        return Measurement(request.query, Outcome.VALUE, samples=samples)


def _label_key(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _http_error(query: str, text: str) -> Measurement:
    match = _STATUS.match(text)
    if not match:
        return Measurement(query, Outcome.UNAVAILABLE, message=text)
    code = int(match.group(1))
    message = match.group(2)
    try:
        body = ast.literal_eval(message)
        message = json.loads(body).get("error", body.decode(errors="replace"))
    except (ValueError, SyntaxError, AttributeError, json.JSONDecodeError):
        pass
    if code in (400, 422):
        return Measurement(query, Outcome.REJECTED, message=str(message))
    return Measurement(query, Outcome.UNAVAILABLE, message=f"HTTP {code}: {message}")


def _tls_reason(error: Exception) -> str:
    """The OpenSSL reason inside requests' nested SSLError, e.g. "certificate verify failed"."""
    text = str(error)
    for known in ("certificate verify failed", "wrong version number", "handshake failure"):
        if known in text:
            return known
    return type(error).__name__
