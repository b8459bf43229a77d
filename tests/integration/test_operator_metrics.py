"""The operator's own metrics, scraped by a real Prometheus while rollouts run, and the
chart's Grafana dashboard: every panel's query answers with data.

Given a rollout in progress (notifying a webhook), one whose route is missing (the API
answers 404) and one whose query Prometheus rejects, when a real Prometheus scrapes the
operator, then /metrics has a sample of every series, every Grafana panel finds data, the
dashboard shows a firing critical alert, and a deleted rollout's series are gone.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from phasegate.demo.stack import ROOT, Process, free_port, http_json, prometheus_binary, wait_until
from support.world import World, release, route

LOCAL = pytest.mark.parametrize("world", ["local"], indirect=True)
BOARD = ROOT / "charts/phasegate/dashboards/phasegate.json"
EVERY_SERIES = (
    "phasegate_rollouts",
    "phasegate_decisions_total",
    "phasegate_evaluations_total",
    "phasegate_status_writes_total",
    "phasegate_evaluation_lag_seconds_bucket",
    "phasegate_query_duration_seconds_bucket",
    "phasegate_query_errors_total",
    "phasegate_metric_value",
    "phasegate_metric_threshold",
    "phasegate_rule_verdict",
    "phasegate_canary_weight",
    "phasegate_api_request_duration_seconds_bucket",
    "phasegate_api_errors_total",
    "phasegate_notifications_sent_total",
    "phasegate_notification_duration_seconds_bucket",
)


@pytest.fixture
def webhook() -> Iterator[str]:
    """A receiver on loopback that accepts every POST."""

    class Accept(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Accept)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def scraping_prometheus(world: World, operator: Process) -> str:
    """A Prometheus of the test's own: the operator and the demo services every second, and
    one alerting rule that always fires, critical."""
    port = free_port()
    workdir = world.stack.workdir
    rules = {
        "groups": [
            {
                "name": "test",
                "rules": [
                    {
                        "alert": "CheckoutDown",
                        "expr": "vector(1)",
                        "labels": {"severity": "critical"},
                    }
                ],
            }
        ]
    }
    (workdir / "rules.yml").write_text(yaml.safe_dump(rules))
    services = [f"127.0.0.1:{p}" for p in world.stack.service_ports.values()]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(workdir / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": "phasegate",
                "static_configs": [{"targets": [f"127.0.0.1:{operator.ports['metrics']}"]}],
            },
            {"job_name": "demo", "static_configs": [{"targets": services}]},
        ],
    }
    (workdir / "operator-prometheus.yml").write_text(yaml.safe_dump(config))
    process = world.stack.start(
        "operator-prometheus",
        [
            prometheus_binary(),
            f"--config.file={workdir / 'operator-prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'operator-tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    process.wait_serving(f"{url}/-/ready", 30)
    return url


def scrape(operator: Process) -> str:
    url = f"http://127.0.0.1:{operator.ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


def samples(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(rf"{name}(\{{| )", line)]


def instant(prometheus: str, query: str) -> list[dict[str, Any]]:
    answer = http_json(f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': query})}")
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def panels() -> list[tuple[str, list[str]]]:
    """Each panel of the chart's dashboard and its queries, the variables set to All."""
    board = json.loads(BOARD.read_text())
    out = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        exprs = [
            t["expr"].replace("$namespace", ".*").replace("$rollout", ".*")
            for t in panel["targets"]
        ]
        out.append((panel["title"], exprs))
    return out


def rollouts(world: World, hook: str) -> None:
    """web: in progress (canary 10% for 2 minutes), notifying the webhook; no-route: its
    HTTPRoute does not exist; bad-query: Prometheus rejects its query."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hook"},
        "data": {"url": base64.b64encode(hook.encode()).decode()},
    }
    web = release()
    canary = web["spec"]["phases"][0]
    canary.update(duration="2m", checkpoints=["1m", "2m"])
    web["spec"]["notifications"] = {
        "receivers": [{"name": "hook", "webhook": {"url": {"name": "hook", "key": "url"}}}]
    }
    no_route = release("no-route", trafficRouting={"gatewayAPI": {"httpRoute": "absent"}})
    bad = release("bad-query", trafficRouting={"gatewayAPI": {"httpRoute": "web-b"}})
    bad["spec"]["metrics"][0]["query"] = 'sum(rate(http_requests_total{service="{{service}}"}'
    world.apply(secret, route("web-b"), web, no_route, bad)


@LOCAL
def test_every_series_is_scraped_and_every_grafana_panel_has_data(
    world: World, webhook: str, tmp_path: Path
) -> None:
    operator = world.start_operator()
    rollouts(world, webhook)
    world.wait(lambda s: s.get("state") == "Progressing" and s.get("canaryWeight") == 10, 60)
    prometheus = scraping_prometheus(world, operator)

    # /metrics: a sample of each series the operator declares
    value = f'namespace="{world.ns}",phase="canary",rollout="web"'
    web_value = f'phasegate_metric_value{{metric="error-rate",{value},rule="successCriteria[0]"}}'

    def every_series() -> str | None:
        text = scrape(operator)
        found = all(samples(text, name) for name in EVERY_SERIES) and web_value in text
        return text if found else None

    try:
        text = wait_until(every_series, 60, "a sample of every series")
    except TimeoutError:
        text = scrape(operator)
        missing = [name for name in EVERY_SERIES if not samples(text, name)]
        values = "\n".join(samples(text, "phasegate_metric_value"))
        raise AssertionError(f"no sample of {missing} in /metrics; values:\n{values}") from None
    (tmp_path / "metrics.txt").write_text(text)
    assert re.search(
        rf'phasegate_metric_threshold\{{bound="max",metric="error-rate",{value},'
        r'rule="holdTriggers\[0\]"\} 0.03',
        text,
    )
    assert re.search(r'phasegate_api_errors_total\{code="404",verb="GET"\} \d', text)
    assert re.search(r'phasegate_query_errors_total\{outcome="Rejected"\} \d', text)

    # Grafana: every panel's queries answer with data from the real Prometheus
    for title, exprs in panels():
        for expr in exprs:
            wait_until(lambda e=expr: instant(prometheus, e), 60, f"data for {title!r}: {expr}")

    # the dashboard shows the firing critical alert from that Prometheus
    port = free_port()
    dashboard = world.stack.phasegate(
        "dashboard", "dashboard", "--kubeconfig", str(world.stack.kubeconfig),
        "-n", world.ns, "--port", str(port), "--prometheus-override", prometheus,
    )  # fmt: skip
    dashboard.wait_serving(f"http://127.0.0.1:{port}/", 90)
    detail = http_json(f"http://127.0.0.1:{port}/api/rollouts/{world.ns}/web", timeout=30)
    assert [a["alertname"] for a in detail["alerts"]] == ["CheckoutDown"]
    assert detail["alertsError"] is None

    # a deleted rollout leaves no series behind
    world.stack.kubectl("delete", "prollout", "web", "-n", world.ns, "--wait=true")
    wait_until(
        lambda: 'rollout="web"' not in scrape(operator), 30, "the deleted rollout's series gone"
    )
    after = scrape(operator)
    assert 'rollout="no-route"' in after
