"""The Prometheus provider classifies every outcome, against a real Prometheus server."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from aiohttp import web

from phasegate.demo.stack import Stack, free_port, prometheus_binary, stack, wait_until
from phasegate.engine import Outcome, QueryRequest
from phasegate.metrics import Prometheus, PrometheusSettings

pytestmark = pytest.mark.integration  # a real Prometheus server

TWO_SERIES = (
    'label_replace(vector(1), "segment", "a", "", "") '
    'or label_replace(vector(2), "segment", "b", "", "")'
)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack(tmp_path_factory.mktemp("prometheus")) as running:
        running.start_prometheus()
        yield running


def ask(address: str, query: str, **kwargs: object) -> object:
    provider = Prometheus(PrometheusSettings(address=address, timeout=2.0))
    return provider.measure(QueryRequest("m", "canary", query, **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "outcome"),
    [
        ("vector(0.25)", Outcome.VALUE),
        ("absent_metric_for_sure", Outcome.NO_DATA),
        ("vector(0) / 0", Outcome.NO_DATA),
        (
            TWO_SERIES.replace("segment", "x"),
            Outcome.SEVERAL_SERIES,
        ),
        ("sum(rate(x[1m]", Outcome.REJECTED),
    ],
)
def test_outcomes_are_classified(prometheus: Stack, query: str, outcome: Outcome) -> None:
    answer = ask(prometheus.prometheus_url, query)
    assert answer.outcome is outcome, answer  # type: ignore[attr-defined]


def test_a_value_is_returned(prometheus: Stack) -> None:
    assert ask(prometheus.prometheus_url, "vector(0.25)").series == {"": 0.25}  # type: ignore[attr-defined]


def test_a_rejected_query_carries_prometheus_message(prometheus: Stack) -> None:
    answer = ask(prometheus.prometheus_url, "sum(rate(x[1m]")
    assert "parse error" in answer.message  # type: ignore[attr-defined]


def test_grouped_queries_key_series_by_the_label(prometheus: Stack) -> None:
    answer = ask(prometheus.prometheus_url, TWO_SERIES, group_by="segment")
    assert answer.outcome is Outcome.VALUE and answer.series == {"a": 1.0, "b": 2.0}  # type: ignore[attr-defined]


def test_range_queries_return_samples(prometheus: Stack) -> None:
    answer = ask(
        prometheus.prometheus_url,
        "vector(1)",
        window=timedelta(seconds=10),
        step=timedelta(seconds=1),
    )
    assert answer.outcome is Outcome.VALUE and len(answer.samples) >= 10  # type: ignore[attr-defined]


def test_an_unreachable_prometheus_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        answer = ask(f"http://127.0.0.1:{port}", "vector(1)")
    assert answer.outcome is Outcome.UNAVAILABLE and "unreachable" in answer.message  # type: ignore[attr-defined]


def test_a_silent_prometheus_times_out() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()  # accepts, never answers
        provider = Prometheus(
            PrometheusSettings(address=f"http://127.0.0.1:{s.getsockname()[1]}", timeout=0.5)
        )
        answer = provider.measure(QueryRequest("m", "canary", "vector(1)"))
    assert answer.outcome is Outcome.UNAVAILABLE and "timed out after 0.5s" in answer.message


@pytest.mark.parametrize(
    ("settings", "header"),
    [
        ({"bearer_token": "s3cret"}, "Bearer s3cret"),
        ({"username": "u", "password": "p"}, "Basic dTpw"),
    ],
)
def test_credentials_are_sent(tmp_path: Path, settings: dict[str, str], header: str) -> None:
    seen: list[str | None] = []

    async def query(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response(
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "1"]}]},
            }
        )

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    runner = web.AppRunner(app)
    import asyncio

    loop = asyncio.new_event_loop()
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        provider = Prometheus(PrometheusSettings(address=f"http://127.0.0.1:{port}", **settings))  # type: ignore[arg-type]
        assert provider.measure(QueryRequest("m", "canary", "q")).outcome is Outcome.VALUE
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(runner.cleanup())
        loop.close()
    assert seen == [header]


def certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1: (ca, cert, key)."""
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    extensions = directory / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    commands = f"""
        req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout {ca_key} -out {ca}
        req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout {key} -out {csr}
        x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -days 1 -out {cert}
            -extfile {extensions}
    """
    for command in commands.replace("\n            -", " -").strip().splitlines():
        subprocess.run(["openssl", *command.split()], check=True, capture_output=True)
    return ca, cert, key


@pytest.fixture(scope="module")
def tls_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Prometheus serving HTTPS with a certificate of a private CA: (address, CA PEM)."""
    workdir = tmp_path_factory.mktemp("tls")
    ca, cert, key = certificates(workdir)
    web_config = workdir / "web.yml"
    web_config.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    (workdir / "prometheus.yml").write_text("global: {scrape_interval: 1s}\n")
    port = free_port()
    address = f"https://127.0.0.1:{port}"
    with stack(workdir) as running:
        running.start(
            "prometheus",
            [
                prometheus_binary(),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.config.file={web_config}",
            ],
        )
        wait_until(
            lambda: requests.get(f"{address}/-/ready", verify=str(ca), timeout=1).ok,
            30,
            "Prometheus over TLS",
        )
        yield address, ca.read_text()


def test_tls_is_verified_with_the_given_ca(tls_prometheus: tuple[str, str]) -> None:
    address, ca = tls_prometheus
    provider = Prometheus(PrometheusSettings(address=address, ca_pem=ca, timeout=2.0))
    answer = provider.measure(QueryRequest("m", "canary", "vector(0.5)"))
    assert answer.outcome is Outcome.VALUE and answer.series == {"": 0.5}


def test_an_unknown_certificate_is_unavailable_with_the_reason(
    tls_prometheus: tuple[str, str],
) -> None:
    address, _ = tls_prometheus
    answer = Prometheus(PrometheusSettings(address=address, timeout=2.0)).measure(
        QueryRequest("m", "canary", "vector(0.5)")
    )
    assert answer.outcome is Outcome.UNAVAILABLE
    assert "certificate verify failed" in answer.message and "caSecret" in answer.message


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # as asked
def test_insecure_skip_verify_accepts_any_certificate(tls_prometheus: tuple[str, str]) -> None:
    address, _ = tls_prometheus
    settings = PrometheusSettings(address=address, insecure_skip_verify=True, timeout=2.0)
    answer = Prometheus(settings).measure(QueryRequest("m", "canary", "vector(0.5)"))
    assert answer.outcome is Outcome.VALUE
