"""Several regions on one machine: a hub and N region clusters, each region with its own
Kubernetes API, demo services, Prometheus, load and phasegate operator; the hub reaches each
region's API through a relay (so it can be cut off) with a kubeconfig Secret.

Used by ``make demo SCENARIO=regions`` and the integration tests. On real control planes,
``kubeconfigs`` gives one per cluster (the hub's first); the hub then reaches each region as
the ServiceAccount ``phasegate-system/phasegate-member`` bound to the member ClusterRole.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phasegate.api.release import control_annotation
from phasegate.demo.stack import ROOT, Process, Stack, free_port, free_ports, wait_until

MEMBER = ROOT / "manifests/member/member.yaml"
RELEASE_NAMESPACE = "releases"  # on the hub (Fleet.suffix makes it unique on shared clusters)
TARGET_NAMESPACE = "shop"  # in each region
HUB_ACCOUNT = ("phasegate-system", "phasegate-member")  # manifests/member/member.yaml


def template() -> dict[str, Any]:
    """A short release: canary 10% for 5s, then 100% for 3s; a canary failing half its
    requests is rolled back within about 2s."""
    error_rate = (
        '(sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5s])) or vector(0))'
        ' / sum(rate(http_requests_total{service="{{service}}"}[5s]))'
    )
    rollback = [{"metric": "error-rate", "max": 0.2, "for": "1s"}]
    return {
        "stable": {"service": "web-stable"},
        "canary": {"service": "web-canary"},
        "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}},
        "interval": "1s",
        "maxQueryErrors": 3,
        "metrics": [{"name": "error-rate", "query": error_rate}],
        "phases": [
            {
                "name": "canary",
                "weight": 10,
                "duration": "5s",
                "checkpoints": ["3s", "5s"],
                "successCriteria": [{"metric": "error-rate", "max": 0.05}],
                "rollbackTriggers": rollback,
            },
            {
                "name": "full",
                "weight": 100,
                "duration": "3s",
                "successCriteria": [{"metric": "error-rate", "max": 0.05}],
                "rollbackTriggers": rollback,
            },
        ],
    }


def route(target: str = TARGET_NAMESPACE) -> dict[str, Any]:
    refs = [
        {"name": "web-stable", "port": 80, "weight": 100},
        {"name": "web-canary", "port": 80, "weight": 0},
    ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": target},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": refs}]},
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


@dataclass
class Region:
    name: str
    stack: Stack
    target: str = TARGET_NAMESPACE
    relay_port: int = 0
    relay: Process | None = None
    operator: Process | None = None

    def rollout(self, name: str = "shop") -> dict[str, Any] | None:
        found = self.stack.kubectl(
            "get", "prollout", name, "-n", self.target, "-o", "json", check=False
        )
        return json.loads(found.stdout) if found.returncode == 0 else None

    def canary_weight(self) -> int:
        found = self.stack.get("httproute", self.target, "web")
        refs = found["spec"]["rules"][0]["backendRefs"]
        return int(next(r for r in refs if r["name"] == "web-canary")["weight"])


@dataclass
class Fleet:
    """A hub and its regions, as processes on 127.0.0.1; stops only what it started."""

    workdir: Path
    kubeconfigs: list[Path] = field(default_factory=list)  # real clusters: hub's first
    suffix: str = ""  # appended to the namespaces, for clusters shared with other tests
    hub: Stack = field(init=False)
    regions: dict[str, Region] = field(default_factory=dict)
    hub_operator: Process | None = None

    def __post_init__(self) -> None:
        (self.workdir / "hub").mkdir(parents=True, exist_ok=True)
        self.hub = Stack(self.workdir / "hub")
        self.releases, self.target = RELEASE_NAMESPACE + self.suffix, TARGET_NAMESPACE + self.suffix

    # ---- starting ------------------------------------------------------------------------

    def start_hub(self) -> None:
        if self.kubeconfigs:
            self.hub.attach(self.kubeconfigs[0])
        else:
            self.hub.start_api()
        self.hub.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(namespace(self.releases)))

    def start_region(self, name: str, index: int) -> Region:
        """Region ``name``: API (or the ``index``-th real cluster), services, Prometheus,
        namespace ``shop`` with its route, load, its own operator, and the hub's relay to it
        and kubeconfig Secret for it."""
        (self.workdir / name).mkdir(parents=True, exist_ok=True)
        stack = Stack(self.workdir / name)
        region = Region(name, stack, self.target)
        self.regions[name] = region
        if self.kubeconfigs:
            stack.attach(self.kubeconfigs[index + 1])
            stack.kubectl("apply", "-f", str(MEMBER))
        else:
            stack.start_api()
        stack.start_service("web-stable", latency=0.005)
        stack.start_service("web-canary", latency=0.005)
        stack.start_prometheus()
        stack.prometheus_scrapes(["web-stable", "web-canary"])
        stack.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(namespace(self.target)))
        if self.kubeconfigs:
            stack.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(self.member_binding()))
        stack.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(route(self.target)))
        stack.start_load(self.target, "web", rate=100)
        region.operator = start_operator(stack, f"operator-{name}", "--standalone")
        region.relay_port = free_port()
        self.reconnect(name)
        self.hub.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(self.secret(region)))
        return region

    def member_binding(self) -> dict[str, Any]:
        """The member Role bound to the hub's ServiceAccount in the rollouts' namespace."""
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "phasegate-member", "namespace": self.target},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "phasegate-member",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": HUB_ACCOUNT[1], "namespace": HUB_ACCOUNT[0]}
            ],
        }

    def secret(self, region: Region) -> dict[str, Any]:
        """The kubeconfig Secret the hub reaches ``region`` with: through its relay, and on a
        real cluster as the hub's ServiceAccount (the member Role's rights only)."""
        config = yaml.safe_load(region.stack.kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        scheme = cluster["server"].split("://")[0]
        cluster["server"] = f"{scheme}://127.0.0.1:{region.relay_port}"
        if self.kubeconfigs:
            token = region.stack.kubectl(
                "create", "token", HUB_ACCOUNT[1], "-n", HUB_ACCOUNT[0], "--duration=2h"
            ).stdout.strip()
            config["users"] = [{"name": "phasegate-hub", "user": {"token": token}}]
            config["contexts"][0]["context"]["user"] = "phasegate-hub"
        text = yaml.safe_dump(config)
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"region-{region.name}", "namespace": self.releases},
            "data": {"kubeconfig": base64.b64encode(text.encode()).decode()},
        }

    def start_hub_operator(self) -> Process:
        self.hub_operator = start_operator(self.hub, "hub", "--hub", "--standalone")
        return self.hub_operator

    # ---- faults --------------------------------------------------------------------------

    def cut(self, name: str) -> None:
        """The hub can no longer reach ``name``'s API (connections refused); the region
        itself goes on."""
        region = self.regions[name]
        assert region.relay is not None
        region.relay.kill()
        self.hub.processes.remove(region.relay)
        region.relay = None

    def reconnect(self, name: str) -> None:
        region = self.regions[name]
        api = self.api_address(region)
        region.relay = self.hub.start(
            f"relay-{name}",
            [sys.executable, "-m", "phasegate.demo.relay", "--port", str(region.relay_port),
             "--to", api],
        )  # fmt: skip
        wait_until(lambda: _connects(region.relay_port), 10, f"the relay to {name}")

    def api_address(self, region: Region) -> str:
        server = yaml.safe_load(region.stack.kubeconfig.read_text())["clusters"][0]["cluster"][
            "server"
        ]
        return str(server).split("://")[1].rstrip("/")

    # ---- the release ---------------------------------------------------------------------

    def release(
        self,
        revision: str,
        waves: list[list[str]],
        name: str = "shop",
        **changes: Any,
    ) -> dict[str, Any]:
        regions = [
            {
                "name": r.name,
                "kubeconfigSecret": {"name": f"region-{r.name}"},
                "overrides": {"prometheus": {"address": r.stack.prometheus_url}},
            }
            for r in self.regions.values()
        ]
        spec: dict[str, Any] = {
            "revision": revision,
            "template": {"metadata": {"namespace": self.target}, "spec": template()},
            "regions": regions,
            "waves": [{"regions": wave} for wave in waves],
            "interval": "1s",
        }
        spec.update(changes)
        return {
            "apiVersion": "phasegate.dev/v1alpha1",
            "kind": "ProgressiveRelease",
            "metadata": {"name": name, "namespace": self.releases},
            "spec": spec,
        }

    def apply(self, obj: dict[str, Any]) -> None:
        self.hub.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(obj))

    def status(self, name: str = "shop") -> dict[str, Any]:
        return self.hub.get("prel", self.releases, name).get("status") or {}

    def control(self, action: str, name: str = "shop", **fields: str) -> None:
        ((key, value),) = control_annotation(action, **fields).items()
        self.hub.kubectl("annotate", "prel", name, "-n", self.releases, f"{key}={value}")

    def wait(
        self,
        check: Callable[[dict[str, Any]], Any],
        timeout: float = 90,
        what: str = "condition",
        name: str = "shop",
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status(name)
            if check(status):
                return status
            time.sleep(0.25)
        raise AssertionError(
            f"{what} not reached in {timeout}s; release: {status.get('state')} "
            f"{status.get('message')}"
        )

    def stop_all(self) -> None:
        for region in self.regions.values():
            region.stack.stop_all()
        self.hub.stop_all()
        if self.kubeconfigs:  # shared clusters: leave them as they were
            for stack, name in [(self.hub, self.releases)] + [
                (r.stack, self.target) for r in self.regions.values()
            ]:
                stack.kubectl("delete", "namespace", name, "--wait=false", check=False)


def start_operator(stack: Stack, name: str, *flags: str, timeout: float = 120) -> Process:
    """``phasegate run`` for one cluster of the fleet; many start at once on a busy machine,
    so each is given longer to serve its health endpoint."""
    health, metrics = free_ports(2)
    process = stack.phasegate(
        name, "run", "--all-namespaces", "--health-port", str(health),
        "--metrics-port", str(metrics), *flags,
    )  # fmt: skip
    process.wait_serving(f"http://127.0.0.1:{health}/healthz", timeout)
    process.ports.update(health=health, metrics=metrics)
    return process


def _connects(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---- make demo SCENARIO=regions ------------------------------------------------------------

NAMES = ("us-east", "us-west", "eu-west")


def play(fleet: Fleet, timeout: float) -> str:
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {text}", flush=True)

    say("starting the hub's API and three regions: API, services, Prometheus, load, operator")
    fleet.start_hub()
    for i, name in enumerate(NAMES):
        fleet.start_region(name, i)
        say(f"  region {name}: API {fleet.api_address(fleet.regions[name])}, "
            f"Prometheus {fleet.regions[name].stack.prometheus_url}")  # fmt: skip
    bad = NAMES[1]
    fleet.regions[bad].stack.configure_service("web-canary", error_rate=0.5)
    say(f"  {bad}'s canary fails half its requests (the others are healthy)")
    fleet.apply(fleet.release("v2", [[NAMES[0]], [NAMES[1]], [NAMES[2]]]))
    say("applied ProgressiveRelease releases/shop: waves [us-east] -> [us-west] -> [eu-west]")
    fleet.start_hub_operator()
    shown = ""
    while time.monotonic() - started < timeout:
        status = fleet.status()
        line = f"{status.get('state', 'Pending'):<12} {status.get('message', '')}"
        regions = "  ".join(
            f"{r['name']}={r.get('state')}"
            + (f"/{r['phase']}:{r['weight']}%" if r.get("phase") else "")
            for r in status.get("regions") or []
        )
        if line + regions != shown:
            say(line)
            say(f"  regions: {regions}")
            shown = line + regions
        if status.get("state") in ("Halted", "Succeeded", "RolledBack", "Invalid"):
            for name, region in fleet.regions.items():
                rollout = region.rollout()
                state = ((rollout or {}).get("status") or {}).get("state", "no rollout")
                say(f"  {name}: rollout {state}, canary weight {region.canary_weight()}%")
            if status["state"] == "Halted" and fleet.regions[NAMES[2]].rollout() is not None:
                return "Halted, but the third wave had started"
            return str(status["state"])
        time.sleep(0.5)
    return "TimedOut"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phasegate demo --scenario regions")
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--workdir", type=Path)
    args, _ = parser.parse_known_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="phasegate-regions-") as tmp:
        fleet = Fleet(args.workdir or Path(tmp))
        try:
            outcome = play(fleet, args.timeout)
        except (TimeoutError, RuntimeError, FileNotFoundError, subprocess.SubprocessError) as e:
            print(f"demo failed: {e}; logs in {fleet.workdir}", file=sys.stderr)
            return 1
        finally:
            fleet.stop_all()
    if outcome == "Halted":
        print("demo regions: Halted by us-west's rollback; eu-west never started, as expected")
        return 0
    print(f"demo regions: ended {outcome}, expected Halted", file=sys.stderr)
    return 1
