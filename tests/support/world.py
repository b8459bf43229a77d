"""Helpers for the integration tests: a small release, its route, and readers of the stack.

The scenarios run on the local stack (local API, services, Prometheus, load and operators as
processes), or, with ``PHASEGATE_E2E_KUBECONFIG``, with an existing cluster as the Kubernetes
API (``make e2e-kind``): each test then gets its own namespace and peering, removed after it.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from phasegate.demo.stack import ROOT, Process, Stack
from phasegate.kube import Kube as Clients
from phasegate.traffic import ROUTERS, Router
from support.kube import Kube

PROVIDER_CRDS = ROOT / "manifests/local/provider-crds.yaml"


def release(name: str = "web", revision: str = "v1", **changes: Any) -> dict[str, Any]:
    """A small release: canary 10% for 8s, then full 100% for 6s; 1s interval."""
    spec: dict[str, Any] = {
        "revision": revision,
        "stable": {"service": "web-stable"},
        "canary": {"service": "web-canary"},
        "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}},
        "interval": "1s",
        "holdWeight": 5,
        "maxQueryErrors": 3,
        "metrics": [
            {
                "name": "error-rate",
                "query": '(sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5s]))'
                " or vector(0))"
                ' / sum(rate(http_requests_total{service="{{service}}"}[5s]))',
            },
            {
                "name": "p99-latency",
                "query": "histogram_quantile(0.99, sum by (le) "
                '(rate(http_request_duration_seconds_bucket{service="{{service}}"}[5s])))',
            },
        ],
        "phases": [
            {
                "name": "canary",
                "weight": 10,
                "duration": "8s",
                "checkpoints": ["4s", "6s", "8s"],
                "successCriteria": [
                    {"metric": "error-rate", "max": 0.01},
                    {"metric": "p99-latency", "max": 0.2},
                ],
                "rollbackTriggers": [{"metric": "error-rate", "max": 0.5, "for": "2s"}],
                "holdTriggers": [{"metric": "error-rate", "max": 0.03, "for": "2s"}],
            },
            {
                "name": "full",
                "weight": 100,
                "duration": "6s",
                "checkpoints": ["3s", "6s"],
                "successCriteria": [{"metric": "error-rate", "max": 0.01}],
                "rollbackTriggers": [{"metric": "error-rate", "max": 0.5, "for": "2s"}],
            },
        ],
    }
    spec.update(changes)
    return {
        "apiVersion": "phasegate.dev/v1alpha1",
        "kind": "ProgressiveRollout",
        "metadata": {"name": name},
        "spec": spec,
    }


def route(
    name: str = "web", backends: tuple[str, ...] = ("web-stable", "web-canary")
) -> dict[str, Any]:
    refs = [{"name": b, "port": 80, "weight": 100 if i == 0 else 0} for i, b in enumerate(backends)]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": refs}]},
    }


@dataclass(frozen=True)
class Cluster:
    """An existing cluster standing in for the local API (``make e2e-kind``)."""

    kubeconfig: Path
    service_account: str | None  # "namespace/name": the operator runs with its token
    image: str | None  # serves `phasegate demo-service`, for the scenarios' Deployments

    @classmethod
    def from_environment(cls) -> Cluster | None:
        path = os.environ.get("PHASEGATE_E2E_KUBECONFIG")
        if not path:
            return None
        return cls(
            Path(path),
            os.environ.get("PHASEGATE_E2E_SERVICE_ACCOUNT") or None,
            os.environ.get("PHASEGATE_E2E_IMAGE") or None,
        )


def attach(running: Stack, cluster: Cluster) -> None:
    """Use ``cluster`` as the stack's Kubernetes API: this checkout's CRDs, the traffic
    providers' (minimal) CRDs where the cluster has none, and the operator's credentials when
    a ServiceAccount is named."""
    running.attach(cluster.kubeconfig)
    for crd in yaml.safe_load_all(PROVIDER_CRDS.read_text()):
        if running.kubectl("get", "crd", crd["metadata"]["name"], check=False).returncode:
            running.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(crd))
    if cluster.service_account:
        running.operator_kubeconfig = service_account_kubeconfig(running, cluster.service_account)


def service_account_kubeconfig(running: Stack, account: str) -> Path:
    """A kubeconfig for the same cluster that authenticates with a token of ``account``: the
    operator then has exactly the rights the chart's RBAC gives it."""
    namespace, name = account.split("/")
    client = kubernetes.config.new_client_from_config(str(running.kubeconfig))  # type: ignore[no-untyped-call]
    request = kubernetes.client.AuthenticationV1TokenRequest(
        spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=2 * 3600)
    )
    issued = kubernetes.client.CoreV1Api(client).create_namespaced_service_account_token(
        name, namespace, request
    )
    assert issued.status is not None, "the API issued no token"
    token = issued.status.token
    config = yaml.safe_load(running.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = account
    path = running.workdir / "operator-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


class World:
    """The running stack, the test's namespace and peering, and the readers a test needs."""

    def __init__(
        self, running: Stack, cluster: Cluster | None = None, provider: str = "gatewayAPI"
    ) -> None:
        self.stack = running
        self.cluster = cluster
        self.provider = provider
        self.routing = ROUTING[provider]
        self.kube = Kube(running.kubeconfig)
        self.ns = f"it-{secrets.token_hex(3)}"
        self.peering = f"phasegate-{self.ns}"
        self.operators: list[Process] = []

    def apply(self, *objects: dict[str, Any]) -> None:
        self.stack.kubectl("apply", "-n", self.ns, "-f", "-", stdin=yaml.safe_dump_all(objects))

    def rollout(self, name: str = "web") -> dict[str, Any]:
        return self.kube.ok(  # type: ignore[no-any-return]
            "GET", f"/apis/phasegate.dev/v1alpha1/namespaces/{self.ns}/progressiverollouts/{name}"
        )

    def status(self, name: str = "web") -> dict[str, Any]:
        return self.rollout(name).get("status") or {}

    def route_path(self, name: str = "web") -> str:
        return f"/apis/gateway.networking.k8s.io/v1/namespaces/{self.ns}/httproutes/{name}"

    def route(self, name: str = "web") -> dict[str, Any]:
        return self.kube.ok("GET", self.route_path(name))  # type: ignore[no-any-return]

    def canary_weight(self, name: str = "web") -> int:
        return canary_weight(self.route(name))

    def router(self) -> Router:
        """phasegate's own router for the world's traffic object ``web``."""
        client = kubernetes.config.new_client_from_config(str(self.stack.kubeconfig))  # type: ignore[no-untyped-call]
        return ROUTERS[self.provider](Clients(client), self.ns, "web", "web-stable", "web-canary")

    def wait(
        self,
        check: Callable[[dict[str, Any]], Any],
        timeout: float = 60,
        name: str = "web",
        what: str = "condition",
    ) -> dict[str, Any]:
        """Poll the rollout's status until ``check`` holds; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status(name)
            if check(status):
                return status
            time.sleep(0.2)
        failed = [
            f"{c['phase']}@{c['offset']} {r['metric']}={r.get('value')} ({r['threshold']}): "
            f"{r['verdict']} {r['reason']}"
            for c in status.get("checkpoints") or []
            for r in c.get("results") or []
            if r["verdict"] != "Pass"
        ]
        raise AssertionError(
            f"{what} not reached in {timeout}s; "
            f"status: {status.get('state')} {status.get('message')}"
            + "".join(f"\n  not passed: {line}" for line in failed)
        )

    def start_operator(self, name: str = "operator", *extra: str) -> Process:
        """An operator process; standalone unless ``extra`` asks for peering (the test's own)."""
        flags = ("--peering", self.peering, *extra) if extra else ("--standalone",)
        process = self.stack.start_operator(name, *flags, "--prometheus", self.stack.prometheus_url)
        self.operators.append(process)
        return process

    def control(self, action: str, name: str = "web", **fields: str) -> None:
        from phasegate.api import controls

        ((key, value),) = controls.annotation(action, **fields).items()
        self.stack.kubectl("annotate", "prollout", name, "-n", self.ns, f"{key}={value}")

    def deployment(self, name: str, version: str) -> dict[str, Any]:
        """A Deployment of the scenario: on a cluster its pods serve the demo service."""
        if self.cluster and self.cluster.image:
            args = ["demo-service", "--service", name, "--port", "8080"]
            return deployment(name, version, image=self.cluster.image, args=args)
        return deployment(name, version)

    def clean_up(self) -> None:
        """Stop the operators, then remove the test's namespace and peering. Finalizers are
        taken off first: with no operator left, nothing else would."""
        for operator in self.operators:
            operator.stop()
        rollouts = self.kube.ok(
            "GET", f"/apis/phasegate.dev/v1alpha1/namespaces/{self.ns}/progressiverollouts"
        )["items"]
        for rollout in rollouts:
            name = rollout["metadata"]["name"]
            self.kube.ok(
                "PATCH",
                f"/apis/phasegate.dev/v1alpha1/namespaces/{self.ns}/progressiverollouts/{name}",
                {"metadata": {"finalizers": None}},
                content_type="application/merge-patch+json",
            )
        self.stack.kubectl("delete", "namespace", self.ns, "--wait=false")
        self.stack.kubectl("delete", "clusterkopfpeering", self.peering, "--ignore-not-found")


def deployment(
    name: str, version: str, image: str | None = None, args: list[str] | None = None
) -> dict[str, Any]:
    """A Deployment ``name`` running ``version`` (image ``registry.local/web:<version>``
    unless ``image`` is given), two replicas."""
    labels = {"app": name}
    container: dict[str, Any] = {
        "name": "app",
        "image": image or f"registry.local/web:{version}",
        "env": [{"name": "VERSION", "value": version}],
    }
    if args:
        container["args"] = args
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def traffic_object(provider: str) -> dict[str, Any]:
    """The provider's object ``web``, all traffic on ``web-stable``, ``web-canary`` beside."""
    if provider == "gatewayAPI":
        return route()
    if provider == "istio":

        def to(host: str, weight: int) -> dict[str, Any]:
            return {"destination": {"host": host, "port": {"number": 80}}, "weight": weight}

        http = [{"name": "primary", "route": [to("web-stable", 100), to("web-canary", 0)]}]
        return {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "web"},
            "spec": {"hosts": ["web.example"], "http": http},
        }
    if provider == "smi":
        backends = [
            {"service": "web-stable", "weight": 100},
            {"service": "web-canary", "weight": 0},
        ]
        return {
            "apiVersion": "split.smi-spec.io/v1alpha4",
            "kind": "TrafficSplit",
            "metadata": {"name": "web"},
            "spec": {"service": "web", "backends": backends},
        }
    backend = {"service": {"name": "web-stable", "port": {"number": 80}}}
    paths = [{"path": "/", "pathType": "Prefix", "backend": backend}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "web.example", "http": {"paths": paths}}],
        },
    }


ROUTING = {
    "gatewayAPI": {"gatewayAPI": {"httpRoute": "web"}},
    "istio": {"istio": {"virtualService": "web"}},
    "smi": {"smi": {"trafficSplit": "web"}},
    "nginx": {"nginx": {"stableIngress": "web"}},
}


def start_world(
    running: Stack, cluster: Cluster | None = None, provider: str = "gatewayAPI"
) -> World:
    """The stack the scenarios run on: API, stable and canary services, Prometheus scraping
    them, the test's namespace with the ``provider``'s object ``web`` and the test's peering,
    and 300 requests/s of load split as that object says."""
    if cluster is None:
        running.start_api()
    else:
        attach(running, cluster)
    running.start_service("web-stable")
    running.start_service("web-canary")
    running.start_prometheus()
    running.prometheus_scrapes(["web-stable", "web-canary"])
    world = World(running, cluster, provider)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": world.ns}}
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "ClusterKopfPeering",
        "metadata": {"name": world.peering},
    }
    running.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([namespace, peering]))
    world.apply(traffic_object(provider))
    running.start_load(world.ns, "web", rate=300, provider=provider)
    return world


def canary_weight(route: dict[str, Any]) -> int:
    refs = route["spec"]["rules"][0]["backendRefs"]
    return int(next(r for r in refs if r["name"].endswith("canary"))["weight"])


class WeightRecorder:
    """Records every change of the route's canary weight, as watches deliver it.

    Short watches (1s each, resumed from the last resourceVersion) keep the reader thread
    stoppable without closing a connection under its feet."""

    def __init__(self, world: World, name: str = "web") -> None:
        self.world, self.name = world, name
        route = world.route(name)
        self.samples: list[tuple[float, int]] = [(time.time(), canary_weight(route))]
        self._version = route["metadata"]["resourceVersion"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        collection = self.world.route_path(self.name).rsplit("/", 1)[0]
        query = {"fieldSelector": f"metadata.name={self.name}", "timeoutSeconds": "1"}
        while not self._stop.is_set():
            try:
                for event in self.world.kube.watch(
                    collection, {**query, "resourceVersion": self._version}
                ):
                    self._record(event)
            except (OSError, ValueError, kubernetes.client.ApiException):
                time.sleep(0.1)

    def _record(self, event: dict[str, Any]) -> None:
        route = event["object"]
        if event["type"] == "ERROR":  # e.g. 410 Gone: start again from the current object
            route = self.world.route(self.name)
        self._version = route["metadata"]["resourceVersion"]
        if event["type"] != "BOOKMARK":
            weight = canary_weight(route)
            if weight != self.samples[-1][1]:
                self.samples.append((time.time(), weight))

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.samples

    def first(self, weight: int) -> float:
        return next(t for t, w in self.samples if w == weight)


def breach_start(
    prometheus_url: str, query: str, threshold: float, start: float, end: float
) -> float:
    """The first instant from which ``query`` stayed above ``threshold`` until ``end``."""
    from phasegate.demo.stack import http_json

    params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": "0.25"})
    values = http_json(f"{prometheus_url}/api/v1/query_range?{params}")["data"]["result"][0][
        "values"
    ]
    above = [float(t) for t, v in values if float(v) > threshold]
    return next(t for t in above if all(float(v) > threshold for s, v in values if float(s) >= t))


def operator_metrics(process: Process) -> list[str]:
    """The sample lines of an operator's own /metrics; none while it does not answer (not
    serving yet, or killed just now)."""
    url = f"http://127.0.0.1:{process.ports['metrics']}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            text: str = answer.read().decode()
    except OSError:
        return []
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def evaluations(process: Process) -> float:
    """How many evaluations ``process`` has made, as its own metrics count them."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in operator_metrics(process)
        if line.startswith("phasegate_evaluations_total")
    )
