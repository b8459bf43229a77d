"""The reference release's ratio queries against a real Prometheus scraping demo services
that, like services instrumented with a client library, export a labelled series only once
they counted a sample with those labels: a service that never failed has no 5xx series."""

from __future__ import annotations

import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from phasegate.api.templates import render
from phasegate.demo.stack import Stack, stack, wait_until
from phasegate.engine import Measurement, Outcome, QueryRequest
from phasegate.metrics import Prometheus, PrometheusSettings
from support.kube import REFERENCE

pytestmark = pytest.mark.integration  # a real Prometheus server

SERVED = {"healthy": 0.0, "failing": 1.0}  # error rates of the services under load
IDLE = "idle"  # started and scraped, never asked anything


def reference_query(metric: str) -> str:
    (doc,) = yaml.safe_load_all(REFERENCE.read_text())
    (query,) = [m["query"] for m in doc["spec"]["metrics"] if m["name"] == metric]
    return str(query)


def load(ports: list[int], stopped: threading.Event) -> None:
    while not stopped.is_set():
        for port in ports:
            with contextlib.suppress(urllib.error.HTTPError):  # the failing one answers 500
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
        stopped.wait(0.02)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack(tmp_path_factory.mktemp("queries")) as running:
        for service, error_rate in SERVED.items():
            running.start_service(service, error_rate=error_rate)
        running.start_service(IDLE)
        running.start_prometheus()
        stopped = threading.Event()
        ports = [running.service_ports[s] for s in SERVED]
        loader = threading.Thread(target=load, args=(ports, stopped), daemon=True)
        loader.start()
        try:
            total = 'sum(rate(http_requests_total{service="{{service}}"}[1m]))'
            for service in SERVED:  # a rate needs two scrapes of a series
                wait_until(
                    lambda s=service: measure(running, total, s).outcome is Outcome.VALUE,
                    60,
                    f"a request rate for {service}",
                    interval=0.25,
                )
            yield running
        finally:
            stopped.set()
            loader.join(timeout=10)


def measure(running: Stack, template: str, service: str) -> Measurement:
    provider = Prometheus(PrometheusSettings(address=running.prometheus_url, timeout=5.0))
    query = render(template, {"service": service})
    return provider.measure(QueryRequest("m", "canary", query))


@pytest.mark.parametrize(
    ("metric", "service", "expected"),
    [
        ("error-rate", "healthy", 0.0),
        ("error-rate", "failing", 1.0),
        ("error-rate", IDLE, None),
        ("availability", "healthy", 1.0),
        ("availability", "failing", 0.0),
        ("availability", IDLE, None),
    ],
)
def test_the_reference_ratios_read_0_without_failures_and_nothing_without_traffic(
    prometheus: Stack, metric: str, service: str, expected: float | None
) -> None:
    answer = measure(prometheus, reference_query(metric), service)
    if expected is None:
        assert answer.outcome is Outcome.NO_DATA, answer
    else:
        assert answer.outcome is Outcome.VALUE and answer.series == {"": expected}, answer


def test_unguarded_the_error_rate_of_a_service_that_never_failed_is_no_data(
    prometheus: Stack,
) -> None:
    guarded = reference_query("error-rate")
    unguarded = guarded.replace("(sum(", "sum(", 1).replace(") or vector(0))", ")", 1)
    assert unguarded != guarded
    assert measure(prometheus, unguarded, "healthy").outcome is Outcome.NO_DATA


def test_a_service_exports_a_labelled_series_only_once_it_counted_one(prometheus: Stack) -> None:
    def exported(service: str) -> str:
        url = f"http://127.0.0.1:{prometheus.service_ports[service]}/metrics"
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())

    assert 'code="500"' not in exported("healthy") and 'code="200"' in exported("healthy")
    assert 'code="200"' not in exported("failing") and 'code="500"' in exported("failing")
    assert "http_requests_total{" not in exported(IDLE)
    assert "revenue_total{" not in exported("failing")  # revenue counts successes only
