"""The operator end to end, as a user meets it: real processes, a real Prometheus.

Given the local stack with stable and canary services under load, when a release is applied,
then the operator moves traffic, judges the metrics and reports, scenario by scenario.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from phasegate.demo.stack import ROOT, Process
from support.faults import FaultProxy, Request
from support.world import WeightRecorder, World, breach_start, evaluations, release, route

APPROVERS = ("engineering", "operations", "product", "finance")


def phase(status: dict) -> str | None:  # type: ignore[type-arg]
    return (status.get("currentPhase") or {}).get("name")


def started(status: dict, name: str) -> bool:  # type: ignore[type-arg]
    current = status.get("currentPhase") or {}
    return current.get("name") == name and bool(current.get("startedAt"))


def test_healthy_release_goes_canary_ramp_rollout_to_succeeded(world: World) -> None:
    documents = list(
        yaml.safe_load_all((ROOT / "manifests/examples/demo-release.yaml").read_text())
    )
    rollout = next(d for d in documents if d["kind"] == "ProgressiveRollout")
    rollout["metadata"].pop("namespace", None)
    rollout["spec"]["stable"]["service"], rollout["spec"]["canary"]["service"] = (
        "web-stable",
        "web-canary",
    )
    rollout["spec"]["trafficRouting"]["gatewayAPI"]["httpRoute"] = "web"
    recorder = WeightRecorder(world, "web")
    operator = world.start_operator()
    world.apply(rollout)
    for gate in ("ramp", "rollout"):
        world.wait(
            lambda s: s.get("state") == "WaitingForApproval", what=f"the {gate} gate", name="shop"
        )
        for group in APPROVERS:
            world.control("approve", name="shop", by=group, phase=gate)
    status = world.wait(
        lambda s: s.get("state") in ("Succeeded", "RolledBack", "Holding"), timeout=90, name="shop"
    )
    weights = [w for _, w in recorder.stop()]

    assert status["state"] == "Succeeded", status["message"]
    counts = {
        p: len([c for c in status["checkpoints"] if c["phase"] == p])
        for p in ("canary", "ramp", "rollout")
    }
    assert counts == {"canary": 4, "ramp": 4, "rollout": 4}
    for record in status["checkpoints"]:
        assert record["verdict"] == "Passed"
        for result in record["results"]:
            assert result["query"] and result["threshold"] and result["reason"]
            assert result.get("value") is not None or result["metric"] == "critical-alerts"
    assert world.canary_weight() == 100, (
        "without deployment the route keeps the last phase's weights"
    )
    assert "promoting the canary to stable is yours to do" in status["message"].lower()
    assert weights == sorted(weights) and {1, 10, 100} <= set(weights), recorder.samples[:12]
    assert all(
        not k.startswith("control.phasegate.dev/")
        for k in world.rollout("shop")["metadata"].get("annotations", {})
    )
    operator.stop(timeout=30)  # SIGTERM: a clean stop closes what it opened
    assert operator.popen.returncode == 0, operator.log_tail()
    assert "Unclosed" not in operator.log.read_text(), operator.log_tail()


def test_error_rate_above_a_rollback_trigger_during_ramp_rolls_back_within_one_interval(
    world: World,
) -> None:
    spec = release()["spec"]
    spec["phases"] = [
        {
            **spec["phases"][0],
            "name": "canary",
            "weight": 5,
            "duration": "4s",
            "checkpoints": ["4s"],
        },
        {
            **spec["phases"][0],
            "name": "ramp",
            "weight": 20,
            "duration": "30s",
            "checkpoints": ["10s", "30s"],
            "rollbackTriggers": [{"metric": "error-rate", "max": 0.015, "for": "3s"}],
            "holdTriggers": [],
        },
        spec["phases"][1],
    ]
    world.start_operator()
    world.apply(release(**spec))
    world.wait(lambda s: started(s, "ramp"), what="the ramp phase")
    recorder = WeightRecorder(world)
    broken_at = time.time()
    world.stack.configure_service("web-canary", error_rate=0.2)
    # The decision is stored first, then the route set; canaryWeight is the route read back.
    status = world.wait(
        lambda s: s.get("state") == "RolledBack" and s.get("canaryWeight") == 0, timeout=30
    )
    zero_at = recorder.first(0)
    recorder.stop()

    # The trigger's condition became true when the canary's error rate had stayed above 1.5%
    # for the 3s window; Prometheus's own history says when that was.
    query = (
        'sum(rate(http_requests_total{service="web-canary",code=~"5.."}[5s])) '
        '/ sum(rate(http_requests_total{service="web-canary"}[5s]))'
    )
    condition_true = (
        breach_start(world.stack.prometheus_url, query, 0.015, broken_at - 2, zero_at) + 3.0
    )
    interval, scrape = 1.0, 1.0
    assert zero_at - condition_true <= interval + scrape + 0.5, zero_at - condition_true

    decision = status["decision"]
    assert decision["action"] == "Rollback" and decision["phase"] == "ramp"
    assert "rollbackTriggers[0]" in decision["reason"] and "for 3s" in decision["reason"]
    evidence = decision["evidence"][0]
    assert (
        evidence["metric"] == "error-rate"
        and evidence["value"] > 0.015
        and evidence["threshold"] == "<= 0.015"
    )
    world.wait(lambda _: world.canary_weight() == 0, timeout=10, what="the route at 0%")


def test_hold_trigger_holds_at_hold_weight_with_the_clock_stopped_and_resume_continues(
    world: World,
) -> None:
    operator = world.start_operator()
    canary, full = release()["spec"]["phases"]
    # A canary long enough that its one checkpoint (which the errors would fail) comes well
    # after the hold trigger's window, on a loaded machine too.
    world.apply(release(phases=[{**canary, "duration": "60s", "checkpoints": ["60s"]}, full]))
    world.wait(lambda s: started(s, "canary"))
    world.stack.configure_service(
        "web-canary", error_rate=0.1
    )  # above hold (3%), below rollback (50%)
    held = world.wait(lambda s: s.get("state") == "Holding", timeout=30, what="the hold")
    assert (
        held["holdReason"] == "HoldTrigger"
        and held["decision"]["evidence"][0]["rule"] == "holdTriggers[0]"
    )
    # (the status holds the decision first, the route follows it: docs/semantics.md)
    world.wait(lambda _: world.canary_weight() == 5, timeout=10, what="the route at 5%")
    clock = held["currentPhase"]
    assert clock["heldSince"]
    done = evaluations(operator)
    world.wait(  # three evaluations in which nothing may move
        lambda _: evaluations(operator) >= done + 3, what="three evaluations while held"
    )
    assert world.status()["currentPhase"]["heldSince"] == clock["heldSince"]
    assert world.status()["state"] == "Holding"

    world.stack.configure_service("web-canary", error_rate=0.0)
    world.control("resume", by="alice")
    resumed = world.wait(lambda s: s.get("state") == "Progressing", timeout=15, what="the resume")
    assert "heldSince" not in resumed["currentPhase"] and resumed["currentPhase"]["heldFor"] != "0s"
    world.wait(lambda s: s.get("canaryWeight") == 10, timeout=10)


def test_prometheus_stopped_mid_phase_holds_without_rollback_and_continues_after(
    world: World,
) -> None:
    operator = world.start_operator()
    world.apply(release())
    world.wait(lambda s: started(s, "canary"))
    world.stack.stop_prometheus()
    held = world.wait(lambda s: s.get("state") == "Holding", timeout=20, what="the metrics hold")
    assert held["holdReason"] == "MetricsUnavailable"
    condition = next(c for c in held["conditions"] if c["type"] == "MetricsAvailable")
    assert condition["status"] == "False" and "unreachable" in condition["message"]
    done = evaluations(operator)
    world.wait(  # three evaluations without metrics: still held, no rollback
        lambda _: evaluations(operator) >= done + 3, what="three evaluations without metrics"
    )
    status = world.status()
    assert status["state"] == "Holding" and phase(status) == "canary"
    assert world.canary_weight() == 10

    world.stack.start_prometheus()
    world.stack.prometheus_scrapes(["web-stable", "web-canary"])
    status = world.wait(
        lambda s: s.get("state") in ("Succeeded", "RolledBack"), timeout=60, what="the end"
    )
    assert status["state"] == "Succeeded"


def test_operator_killed_mid_phase_resumes_without_repeating_or_skipping(world: World) -> None:
    recorder = WeightRecorder(world)
    first = world.start_operator("first")
    world.apply(release())
    world.wait(lambda s: len(s.get("checkpoints") or []) >= 1, what="the first checkpoint")
    first.kill()
    time.sleep(2)  # down for two intervals: checkpoints fall due while no operator runs
    world.start_operator("second")
    status = world.wait(
        lambda s: s.get("state") in ("Succeeded", "RolledBack", "Holding"), timeout=60
    )
    weights = [w for _, w in recorder.stop()]

    assert status["state"] == "Succeeded", status["message"]
    offsets = [(c["phase"], c["offset"]) for c in status["checkpoints"]]
    assert offsets == [
        ("canary", "4s"),
        ("canary", "6s"),
        ("canary", "8s"),
        ("full", "3s"),
        ("full", "6s"),
    ]
    assert weights == sorted(weights), "the weight never moved backwards"


def test_invalid_references_are_reported_and_the_route_is_left_alone(world: World) -> None:
    world.apply(route("lonely", backends=("web-stable",)))
    before = {name: world.route(name)["metadata"]["resourceVersion"] for name in ("web", "lonely")}
    operator = world.start_operator()
    missing_route = release("a")
    missing_route["spec"]["trafficRouting"]["gatewayAPI"]["httpRoute"] = "nope"
    missing_backend = release("b")
    missing_backend["spec"]["trafficRouting"]["gatewayAPI"]["httpRoute"] = "lonely"
    undefined_metric = release("c")
    undefined_metric["spec"]["phases"][0]["successCriteria"][0]["metric"] = "errors"
    world.apply(missing_route, missing_backend, undefined_metric)

    a = world.wait(lambda s: s.get("state") == "Degraded", name="a", timeout=20)
    assert f"HTTPRoute {world.ns}/nope not found" in a["message"]
    b = world.wait(lambda s: s.get("state") == "Degraded", name="b", timeout=20)
    assert "no rule with both backends" in b["message"]
    c = world.wait(lambda s: s.get("state") == "Invalid", name="c", timeout=20)
    assert (
        "spec.phases[0].successCriteria[0].metric" in c["message"] and "not defined" in c["message"]
    )
    assert next(x for x in c["conditions"] if x["type"] == "Degraded")["status"] == "True"
    done = evaluations(operator)
    world.wait(  # two more evaluations of each: the routes must stay untouched
        lambda _: evaluations(operator) >= done + 6, name="c", what="two more of each"
    )
    after = {name: world.route(name)["metadata"]["resourceVersion"] for name in ("web", "lonely")}
    assert after == before


def test_a_new_revision_mid_rollout_sends_the_canary_to_zero_then_starts_over(world: World) -> None:
    recorder = WeightRecorder(world)
    world.start_operator()
    world.apply(release())
    world.wait(lambda s: len(s.get("checkpoints") or []) >= 1, what="a checkpoint of v1")
    changed_at = time.time()
    world.apply(release(revision="v2"))
    status = world.wait(lambda s: s.get("revision") == "v2" and started(s, "canary"), timeout=20)
    after = [w for t, w in recorder.stop() if t >= changed_at]
    assert after == [0, 10], "v1's canary goes to 0 before v2 starts its first phase"
    assert status["checkpoints"] == [] or all(c["phase"] == "canary" for c in status["checkpoints"])
    assert status["decision"]["action"] in ("Start", "Restart")


def test_two_replicas_only_one_acts_and_the_other_takes_over(world: World) -> None:
    peering = ("--peering-lifetime", "3")
    leader = world.start_operator("leader", "--priority", "200", *peering)
    follower = world.start_operator("follower", "--priority", "100", *peering)
    spec = release()["spec"]
    spec["phases"][0]["duration"], spec["phases"][0]["checkpoints"] = "12s", ["4s", "8s", "12s"]
    world.apply(release(**spec))
    world.wait(lambda s: len(s.get("checkpoints") or []) >= 1, timeout=30, what="a checkpoint")
    assert '"decision"' in leader.log.read_text()
    assert '"decision"' not in follower.log.read_text(), "the follower stays paused"
    assert "Resuming operations" not in follower.log.read_text()

    leader.kill()
    status = world.wait(
        lambda s: s.get("state") in ("Succeeded", "RolledBack", "Holding"), timeout=60
    )
    assert status["state"] == "Succeeded"
    assert "Resuming operations" in follower.log.read_text()
    assert '"decision"' in follower.log.read_text()
    offsets = [(c["phase"], c["offset"]) for c in status["checkpoints"]]
    assert offsets == [
        ("canary", "4s"),
        ("canary", "8s"),
        ("canary", "12s"),
        ("full", "3s"),
        ("full", "6s"),
    ]


def test_a_weight_changed_by_someone_else_is_put_back_with_an_event(world: World) -> None:
    world.start_operator()
    world.apply(release())
    world.wait(lambda s: started(s, "canary"))
    refs = world.route()["spec"]["rules"][0]["backendRefs"]
    refs[1]["weight"], refs[0]["weight"] = 50, 50
    world.kube.ok(
        "PATCH",
        world.route_path(),
        {"spec": {"rules": [{"backendRefs": refs}]}},
        content_type="application/merge-patch+json",
    )
    deadline = time.monotonic() + 10
    while world.canary_weight() != 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert world.canary_weight() == 10
    events = world.kube.ok("GET", f"/api/v1/namespaces/{world.ns}/events")["items"]
    drift = [e for e in events if e["reason"] == "RouteDrift"]
    assert drift and "restoring 10%" in drift[0]["message"] and drift[0]["type"] == "Warning"


def test_evaluations_read_the_route_from_the_watch_not_with_a_get_each(
    world: World, tmp_path: Path
) -> None:
    """Every request the operator makes goes through a proxy that records it: over a phase of
    1s evaluations the route is read once, then kept current by the watch (the drift test
    above shows a change by someone else still reaches it)."""
    done, reads = route_reads(world, tmp_path, [world.route_path()])
    assert done >= 5, f"only {done:g} evaluations in 8s"
    assert reads <= 2, f"{reads} GETs of the route over {done:g} evaluations"


def test_evaluations_read_both_ingresses_from_the_watch(nginx_world: World, tmp_path: Path) -> None:
    """The same with NGINX: the stable Ingress and the canary one phasegate made."""
    paths = [object_path(nginx_world, name) for name in ("web", "web-canary")]
    done, reads = route_reads(nginx_world, tmp_path, paths)
    assert done >= 5, f"only {done:g} evaluations in 8s"
    assert reads <= 4, f"{reads} GETs of the Ingresses over {done:g} evaluations"


def route_reads(world: World, tmp_path: Path, paths: list[str]) -> tuple[float, int]:
    """(evaluations, GETs of ``paths``) over 8s of a canary phase of 1s evaluations, the
    operator's every request through a recording proxy."""
    with proxied_operator(world, tmp_path) as (proxy, operator):
        spec = release(trafficRouting=world.routing)["spec"]
        spec["phases"][0]["duration"] = "30s"
        world.apply(release(**spec))
        world.wait(lambda s: started(s, "canary"), timeout=60)
        done = evaluations_over_8s(operator)
        reads = [r for r, _ in proxy.answered if r.method == "GET" and r.path in paths]
    return done, len(reads)


@contextmanager
def proxied_operator(
    world: World, tmp_path: Path, *faults: tuple[str, Callable[[Request], bool], list[str]]
) -> Iterator[tuple[FaultProxy, Process]]:
    """An operator whose every request goes through a recording proxy, armed with ``faults``
    (name, the requests it picks, their faults) before the operator starts."""
    upstream = world.stack.operator_kubeconfig or world.stack.kubeconfig
    with FaultProxy(upstream, hold=300) as proxy:
        for name, matches, met in faults:
            proxy.arm(name, matches, *met)
        world.stack.operator_kubeconfig = proxy.kubeconfig(upstream, tmp_path / "proxied")
        try:
            operator = world.start_operator()
        finally:
            world.stack.operator_kubeconfig = upstream
        yield proxy, operator


def evaluations_over_8s(operator: Process) -> float:
    before = evaluations(operator)
    time.sleep(8)  # a window of 1s evaluations, counted, not a wait for an outcome
    return evaluations(operator) - before


def gated_release(world: World) -> dict:  # type: ignore[type-arg]
    """The small release on the world's route, its first phase waiting for one approval:
    until then no canary weight is set (for NGINX: no canary Ingress made)."""
    spec = release(trafficRouting=world.routing)["spec"]
    spec["phases"][0]["approval"] = {"required": ["engineering"]}
    return release(**spec)


def test_a_canary_ingress_that_does_not_exist_is_not_asked_of_the_api_at_each_evaluation(
    nginx_world: World, tmp_path: Path
) -> None:
    """A rollout waiting at its first gate has no canary Ingress (nor has one aborted there):
    the API's 404 is kept like a copy, so 1s evaluations do not each GET it. Once approved,
    the canary Ingress is made and carries the phase's weight."""
    world, canary = nginx_world, object_path(nginx_world, "web-canary")
    with proxied_operator(world, tmp_path) as (proxy, operator):
        world.apply(gated_release(world))
        world.wait(lambda s: s.get("state") == "WaitingForApproval", what="the canary gate")
        done = evaluations_over_8s(operator)
        reads = [r for r, _ in proxy.answered if r.method == "GET" and r.path == canary]
        assert done >= 5, f"only {done:g} evaluations in 8s"
        assert len(reads) <= 2, f"{len(reads)} GETs of the absent canary Ingress"
        world.control("approve", by="engineering", phase="canary")
        world.wait(lambda s: s.get("canaryWeight") == 10, what="the canary weight", timeout=30)
    assert world.router().read_weight() == 10


def test_a_canary_ingress_made_behind_the_operators_back_gets_the_rollouts_weight(
    nginx_world: World, tmp_path: Path
) -> None:
    """The operator holds the canary Ingress absent, and its watch of Ingresses is held up:
    someone else makes the Ingress (at 50%), unseen. The operator's create is refused (409
    AlreadyExists); it reads the Ingress and writes the phase's 10% over it."""
    world, canary = nginx_world, object_path(nginx_world, "web-canary")
    held_up = (
        "the operator's list and watch of Ingresses",
        lambda r: r.method == "GET" and r.path == "/apis/networking.k8s.io/v1/ingresses",
        ["timeout"] * 5,
    )
    with proxied_operator(world, tmp_path, held_up) as (proxy, _):
        world.apply(gated_release(world))
        world.wait(lambda s: s.get("state") == "WaitingForApproval", what="the canary gate")
        deadline = time.monotonic() + 10
        while (canary, 404) not in [(r.path, code) for r, code in proxy.answered]:
            assert time.monotonic() < deadline, "the canary Ingress was never read"
            time.sleep(0.2)
        world.router().set_weight(50)
        world.control("approve", by="engineering", phase="canary")
        world.wait(lambda s: s.get("canaryWeight") == 10, what="the canary weight", timeout=30)
        posts = [(r, code) for r, code in proxy.answered if r.method == "POST"]
        creates = [code for r, code in posts if r.path == canary.rsplit("/", 1)[0]]
    assert world.router().read_weight() == 10
    assert creates == [409], "the operator held the canary Ingress absent when it wrote"


def test_with_deployments_the_release_is_promoted_and_traffic_returns_to_stable(
    world: World,
) -> None:
    world.apply(world.deployment("web-stable", "v1"), world.deployment("web-canary", "v2"))
    deployments = f"/apis/apps/v1/namespaces/{world.ns}/deployments"
    canary_container = world.kube.ok("GET", f"{deployments}/web-canary")["spec"]["template"][
        "spec"
    ]["containers"][0]
    world.start_operator()
    world.apply(
        release(
            stable={"service": "web-stable", "deployment": "web-stable"},
            canary={"service": "web-canary", "deployment": "web-canary"},
        )
    )
    status = world.wait(
        lambda s: s.get("state") in ("Succeeded", "RolledBack", "Holding"), timeout=60
    )
    assert status["state"] == "Succeeded", status["message"]
    assert "promoted" in status["message"]
    stable = world.kube.ok("GET", f"{deployments}/web-stable")["spec"]
    assert stable["template"]["spec"]["containers"][0] == canary_container
    assert stable["template"]["metadata"]["labels"] == {"app": "web-stable"}, (
        "stable keeps its selector"
    )
    assert world.canary_weight() == 0, "traffic back to the (now promoted) stable"
    canary = world.kube.ok("GET", f"{deployments}/web-canary")["spec"]
    assert canary["replicas"] == 0, "Succeeded only once the canary is scaled down"


def test_each_traffic_provider_carries_a_release_through_and_is_put_back_on_delete(
    mesh_world: World,
) -> None:
    world = mesh_world
    original = world.kube.ok("GET", object_path(world))
    world.start_operator()
    world.apply(release(trafficRouting=world.routing))
    status = world.wait(
        lambda s: s.get("state") in ("Succeeded", "RolledBack", "Holding"), timeout=60
    )
    assert status["state"] == "Succeeded", status["message"]
    assert [c["verdict"] for c in status["checkpoints"]] == ["Passed"] * 5
    values = [r["value"] for c in status["checkpoints"] for r in c["results"]]
    assert None not in values, "the canary got its share of traffic at every checkpoint"
    assert world.router().read_weight() == 100

    world.stack.kubectl("delete", "prollout", "web", "-n", world.ns, "--timeout=30s")
    assert world.router().read_weight() == 0
    if world.provider == "nginx":
        status_code, _ = world.kube.request("GET", object_path(world, "web-canary"))
        assert status_code == 404, "the canary Ingress goes with the rollout"
    else:
        assert world.kube.ok("GET", object_path(world))["spec"] == original["spec"]


def object_path(world: World, name: str = "web") -> str:
    api, plural = {
        "istio": ("apis/networking.istio.io/v1", "virtualservices"),
        "smi": ("apis/split.smi-spec.io/v1alpha4", "trafficsplits"),
        "nginx": ("apis/networking.k8s.io/v1", "ingresses"),
    }[world.provider]
    return f"/{api}/namespaces/{world.ns}/{plural}/{name}"


def test_a_malformed_control_is_refused_once_and_removed(world: World) -> None:
    world.start_operator()
    world.apply(release())
    world.wait(lambda s: started(s, "canary"))
    key = "control.phasegate.dev/typo"
    world.stack.kubectl(
        "annotate", "prollout", "web", "-n", world.ns, f'{key}={{"action":"aprove"}}'
    )

    def gone() -> bool:
        return key not in (world.rollout()["metadata"].get("annotations") or {})

    deadline = time.monotonic() + 10
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone(), "the refused control is removed"
    time.sleep(3)  # three more evaluations (1 s interval): none may report it again
    events = world.kube.ok("GET", f"/api/v1/namespaces/{world.ns}/events")["items"]
    refused = [e for e in events if e["reason"] == "ControlRefused"]
    assert len(refused) == 1 and refused[0].get("count", 1) == 1, refused
    assert "unknown action 'aprove'" in refused[0]["message"] and refused[0]["type"] == "Warning"
    status = world.status()
    assert status["state"] == "Progressing", "the release goes on"
    accepted = next(c for c in status["conditions"] if c["type"] == "ControlsAccepted")
    assert accepted["status"] == "False" and "unknown action 'aprove'" in accepted["message"]
