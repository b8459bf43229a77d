"""Faults at every write the operator makes, on the local API and on a real kube-apiserver.

The operator reaches its API through a proxy (tests/support/faults.py) that, for each kind of
write, answers the first matching requests with a 500, a 409 and a timeout (the request never
sent on), then lets one land and either holds its answer past the client's timeout or
SIGKILLs the operator as the answer comes back; a supervisor starts a new operator after
each kill. Then it is checked from outside, as a user sees it (the route and the status as
the API holds them), that the canary never got more traffic than the last decision allowed,
that no rollback, approval or checkpoint was lost, and that none was applied twice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from phasegate.api.controls import PREFIX
from support.faults import FaultProxy, Request, Rule
from support.world import WeightRecorder, World, evaluations, release

LANDING = ("500", "409", "timeout", "landed-timeout", "kill")
API_TIMEOUT = 3  # seconds; the operator's client gives up on a held request after this


def status_write(req: Request, state: str | None = None) -> bool:
    if req.method != "PATCH" or not req.path.endswith("/progressiverollouts/web/status"):
        return False
    body = req.body if isinstance(req.body, dict) else {}
    return state is None or (body.get("status") or {}).get("state") == state


def route_write(req: Request, canary: int) -> bool:
    """A JSON patch of the HTTPRoute that gives the canary (backend 1) ``canary`` percent."""
    if req.method != "PATCH" or not req.path.endswith("/httproutes/web"):
        return False
    ops = req.body if isinstance(req.body, list) else []
    return any(
        str(op.get("path", "")).endswith("/backendRefs/1/weight") and op.get("value") == canary
        for op in ops
    )


def controls_removed(req: Request) -> bool:
    if req.method != "PATCH" or not req.path.endswith("/progressiverollouts/web"):
        return False
    body = req.body if isinstance(req.body, dict) else {}
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return any(k.startswith(PREFIX) and v is None for k, v in annotations.items())


def event_posted(req: Request) -> bool:
    return req.method == "POST" and req.path.endswith("/events")


def deployment_write(name: str, subresource: str = "") -> Any:
    def matches(req: Request) -> bool:
        return req.method == "PATCH" and req.path.endswith(f"/deployments/{name}{subresource}")

    return matches


def newest_operator() -> int | None:
    """The PID of this test's newest live operator process, also while it is starting (the
    one asking may not be serving its health endpoint yet)."""
    newest: tuple[int, int] | None = None
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        state, ppid, started = fields[0], int(fields[1]), int(fields[19])
        if (
            ppid == os.getpid()
            and state != "Z"
            and b"run" in cmdline
            and b"phasegate.cli.main" in cmdline
        ) and (newest is None or started > newest[0]):
            newest = (started, int(stat.parent.name))
    return None if newest is None else newest[1]


@contextmanager
def faulty_operator(world: World, proxy: FaultProxy) -> Iterator[list[int]]:
    """An operator behind ``proxy``, started again whenever it dies; yields the PIDs."""
    upstream = world.stack.operator_kubeconfig or world.stack.kubeconfig
    proxied = proxy.kubeconfig(upstream, world.stack.workdir / "proxied-kubeconfig")
    world.stack.operator_kubeconfig = proxied
    pids: list[int] = []
    stop = threading.Event()

    def start() -> None:
        pids.append(world.start_operator(f"operator-{len(pids)}").popen.pid)

    def supervise() -> None:
        while not stop.wait(0.2):
            if not world.operators[-1].alive():
                start()

    proxy.victim = newest_operator
    start()
    supervisor = threading.Thread(target=supervise, daemon=True)
    supervisor.start()
    try:
        yield pids
    finally:
        stop.set()
        supervisor.join(timeout=30)
        world.stack.operator_kubeconfig = upstream


def settled(world: World, proxy: FaultProxy) -> None:
    """Wait for the operator started after the last kill to have evaluated the rollout a few
    times: what the test then reads is what a restarted operator leaves, not a moment between
    a kill and a restart."""
    world.wait(
        lambda _: (
            len(world.operators) == len(proxy.killed) + 1
            and world.operators[-1].alive()
            and "metrics" in world.operators[-1].ports
            and evaluations(world.operators[-1]) >= 3
        ),
        timeout=120,
        what="an operator started after the last kill, evaluating",
    )


def matrix(rules: list[Rule]) -> str:
    return "\n".join(f"{r.name}: {' '.join(f for f, _ in r.met)}" for r in rules)


def wait_spent(world: World, rules: list[Rule], what: str, timeout: float = 120) -> None:
    world.wait(
        lambda _: all(r.spent for r in rules),
        timeout=timeout,
        what=f"every fault of {what} met:\n{matrix(rules)}",
    )


def gated_release() -> dict[str, Any]:
    """The spec of a canary 10% with two checkpoints, then a ramp 30% behind engineering's
    approval, rolled back when the canary's error rate passes 5% for 1s."""
    spec = release()["spec"]
    canary, full = spec["phases"]
    # The first checkpoint leaves the canary's series (5s rate windows) time to appear.
    canary |= {"duration": "6s", "checkpoints": ["4s", "6s"], "holdTriggers": []}
    ramp = full | {
        "name": "ramp",
        "weight": 30,
        "duration": "10m",
        "checkpoints": ["10m"],
        "approval": {"required": ["engineering"]},
        "rollbackTriggers": [{"metric": "error-rate", "max": 0.05, "for": "1s"}],
    }
    spec["phases"] = [canary, ramp]
    return spec


@pytest.fixture
def proxy(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    monkeypatch.setenv("PHASEGATE_API_TIMEOUT", str(API_TIMEOUT))
    upstream = world.stack.operator_kubeconfig or world.stack.kubeconfig
    with FaultProxy(upstream, hold=API_TIMEOUT + 2) as running:
        yield running
    assert not running.errors, running.errors


def test_a_rollback_an_approval_and_checkpoints_survive_faults_at_every_write(
    world: World, proxy: FaultProxy
) -> None:
    spec = gated_release()
    rules = [  # the first rule a request matches takes it
        proxy.arm("status: the rollback", lambda r: status_write(r, "RolledBack"), *LANDING),
        proxy.arm("route: canary to 0", lambda r: route_write(r, 0), *LANDING[:3], "kill"),
        proxy.arm("route: canary up to 30%", lambda r: route_write(r, 30), *LANDING[:4]),
        proxy.arm("status: progress", status_write, *LANDING),
        proxy.arm("controls: approval removed", controls_removed, "500", "409", "timeout", "kill"),
        proxy.arm("events", event_posted, *LANDING),
    ]
    recorder = WeightRecorder(world)
    with faulty_operator(world, proxy) as pids:
        world.apply(release(**spec))
        world.wait(lambda s: s.get("state") == "WaitingForApproval", timeout=120, what="the gate")
        world.control("approve", by="alice", group="engineering", phase="ramp")
        world.wait(
            lambda s: (
                (s.get("currentPhase") or {}).get("startedAt")
                and s["currentPhase"]["name"] == "ramp"
            ),
            timeout=120,
            what="the ramp phase",
        )
        world.stack.configure_service("web-canary", error_rate=0.3)
        wait_spent(world, rules, "the release")
        world.wait(
            lambda s: s.get("state") == "RolledBack" and s.get("canaryWeight") == 0,
            timeout=60,
            what="the rollback, read back from the route",
        )
        settled(world, proxy)
        status = world.status()
    weights = [w for _, w in recorder.stop()]
    print(f"faults met, by write:\n{matrix(rules)}")
    kills = sum(f == "kill" for r in rules for f, _ in r.met)
    assert len(proxy.killed) + proxy.died_anyway == kills, "each kill fault killed an operator"

    assert world.canary_weight() == 0, "the route as the API holds it"
    assert status["decision"]["action"] == "Rollback", status["decision"]
    assert status["decision"]["evidence"][0]["metric"] == "error-rate"
    rolled_back = weights.index(0, weights.index(30))
    assert weights[:rolled_back] == sorted(weights[:rolled_back]), weights
    assert set(weights[rolled_back:]) == {0}, f"no traffic back to the canary: {weights}"
    assert max(weights) == 30, weights
    offsets = [(c["phase"], c["offset"]) for c in status["checkpoints"]]
    assert offsets == [("canary", "4s"), ("canary", "6s")], "none repeated, none skipped"
    approvals = [(a["phase"], a["group"], a["by"]) for a in status["approvals"]]
    assert approvals == [("ramp", "engineering", "alice")], "applied once"
    annotations = world.rollout()["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.startswith(PREFIX)], "the consumed control removed"
    assert len(pids) == len(proxy.killed) + 1, f"one operator started per kill: {pids}"


def test_a_promotion_survives_faults_at_every_workload_write(
    world: World, proxy: FaultProxy
) -> None:
    world.apply(world.deployment("web-stable", "v1"), world.deployment("web-canary", "v2"))
    deployments = f"/apis/apps/v1/namespaces/{world.ns}/deployments"
    canary_spec = world.kube.ok("GET", f"{deployments}/web-canary")["spec"]["template"]["spec"]
    spec = release(
        stable={"service": "web-stable", "deployment": "web-stable"},
        canary={"service": "web-canary", "deployment": "web-canary"},
    )["spec"]
    spec["phases"] = [spec["phases"][0] | {"duration": "10m", "checkpoints": ["10m"]}]
    rules = [
        proxy.arm(
            "controls: promoteFull removed",
            controls_removed,
            "500",
            "409",
            "timeout",
            "landed-timeout",
        ),
        proxy.arm(
            "workload: stable promoted", deployment_write("web-stable"), *LANDING[:3], "kill"
        ),
        proxy.arm(
            "workload: canary scaled down",
            deployment_write("web-canary", "/scale"),
            *LANDING[:4],
        ),
        proxy.arm("route: back to stable", lambda r: route_write(r, 0), *LANDING[:4]),
    ]
    recorder = WeightRecorder(world)
    with faulty_operator(world, proxy):
        world.apply(release(**spec))
        world.wait(lambda s: s.get("canaryWeight") == 10, timeout=120, what="the canary phase")
        world.control("promoteFull", by="alice")
        wait_spent(world, rules, "the promotion")
        world.wait(
            lambda s: s.get("state") in ("Succeeded", "RolledBack"), timeout=60, what="the end"
        )
        settled(world, proxy)
        status = world.status()
    weights = [w for _, w in recorder.stop()]
    print(f"faults met, by write:\n{matrix(rules)}")

    assert status["state"] == "Succeeded", status["message"]
    stable = world.kube.ok("GET", f"{deployments}/web-stable")["spec"]
    assert stable["template"]["spec"] == canary_spec, "promoted once, as the canary"
    assert world.kube.ok("GET", f"{deployments}/web-canary")["spec"]["replicas"] == 0
    assert world.canary_weight() == 0
    assert weights == [0, 10, 0], f"up once, then back to stable: {weights}"
    assert status["handledControls"][-1].startswith("promotefull-")
    annotations = world.rollout()["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.startswith(PREFIX)]


def test_two_operators_without_peering_lose_no_decision_and_apply_none_twice(
    world: World, tmp_path: Any
) -> None:
    """Both evaluate every rollout every interval; their status writes race. Each writes
    through its own (fault-free) proxy, which counts what the API answered it."""
    spec = gated_release()
    upstream = world.stack.operator_kubeconfig or world.stack.kubeconfig
    recorder = WeightRecorder(world)
    with FaultProxy(upstream) as one, FaultProxy(upstream) as two:
        for name, proxy in (("one", one), ("two", two)):
            world.stack.operator_kubeconfig = proxy.kubeconfig(upstream, tmp_path / name)
            world.start_operator(name)
        world.stack.operator_kubeconfig = upstream
        world.apply(release(**spec))
        world.wait(lambda s: s.get("state") == "WaitingForApproval", timeout=60, what="the gate")
        world.control("approve", by="alice", group="engineering", phase="ramp")
        world.wait(lambda s: (s.get("currentPhase") or {}).get("name") == "ramp", timeout=30)
        world.wait(lambda s: s.get("canaryWeight") == 30, timeout=30, what="the ramp weight")
        world.stack.configure_service("web-canary", error_rate=0.3)
        status = world.wait(
            lambda s: s.get("state") == "RolledBack" and s.get("canaryWeight") == 0, timeout=60
        )
        writes = {
            name: [code for r, code in proxy.answered if status_write(r)]
            for name, proxy in (("one", one), ("two", two))
        }
    weights = [w for _, w in recorder.stop()]
    events = world.kube.ok("GET", f"/api/v1/namespaces/{world.ns}/events")["items"]
    posted: dict[str, int] = {}
    for event in events:
        posted[event["reason"]] = posted.get(event["reason"], 0) + int(event.get("count") or 1)

    offsets = [(c["phase"], c["offset"]) for c in status["checkpoints"]]
    assert offsets == [("canary", "4s"), ("canary", "6s")], "each checkpoint judged once"
    assert [(a["phase"], a["group"]) for a in status["approvals"]] == [("ramp", "engineering")]
    assert posted.get("CheckpointPassed") == 2, posted
    assert posted.get("Approved") == 1, posted
    assert posted.get("PhaseStarted") == 2, posted  # canary, ramp
    assert posted.get("RolledBack") == 1, posted
    assert status["decision"]["action"] == "Rollback"
    assert weights == [0, 10, 30, 0], weights
    assert all(writes.values()), f"both operators wrote status: {writes}"
    print(f"status writes answered, per operator: {writes}")
