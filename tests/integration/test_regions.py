"""One release across three regions, each its own Kubernetes API with its own phasegate
operator, Prometheus and load, driven by a hub (``phasegate run --hub``) on a fourth API.

Given a ProgressiveRelease with waves [east] -> [west] -> [eu], the scenarios prove from the
regions' own APIs (their rollouts and routes) and the release's status what users see: waves
in order, a rollback in the second wave halting the rest, a region cut off from the hub
holding the release until it answers, and a hub killed mid-wave resuming without repeating a
wave. ``[real]`` runs the same on three real control planes (the hub shares the first
region's), the hub reaching each region as the member ServiceAccount."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controlplane import ControlPlane
from phasegate.demo.regions import HUB_ACCOUNT, Fleet
from support.cluster import RealCluster

NAMES = ("east", "west", "eu")
WAVES = [["east"], ["west"], ["eu"]]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


MEMBER_USER = f"system:serviceaccount:{HUB_ACCOUNT[0]}:{HUB_ACCOUNT[1]}"


@pytest.fixture(scope="module")
def real_planes(
    real_cluster: RealCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ControlPlane]]:
    """Three real control planes: the session's (the hub, and the first region), and one
    more for each other region."""
    extra: list[ControlPlane] = []
    try:
        for i in range(2):
            plane = ControlPlane(tmp_path_factory.mktemp(f"region-plane-{i}"))
            extra.append(plane)
            plane.up()
        yield [real_cluster.plane, *extra]
    finally:
        for plane in extra:
            plane.down()


@pytest.fixture(params=["local", pytest.param("real", marks=pytest.mark.cluster)])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    """The hub and three regions; on real planes the hub reaches each region as the member
    ServiceAccount, and any request the region refused it (403) fails the test."""
    kubeconfigs: list[Path] = []
    planes: list[ControlPlane] = []
    if request.param == "real":
        planes = request.getfixturevalue("real_planes")
        kubeconfigs = [planes[0].kubeconfig, *(p.kubeconfig for p in planes)]
    suffix = f"-{secrets.token_hex(3)}" if planes else ""
    running = Fleet(tmp_path, kubeconfigs, suffix)
    seen = [len(p.audited(MEMBER_USER)) for p in planes]
    try:
        running.start_hub()
        for i, name in enumerate(NAMES):
            running.start_region(name, i)
        yield running
    finally:
        running.stop_all()
    refused = [
        f"{e['verb']} {e['requestURI']}: {e['responseStatus'].get('message', '')}"
        for plane, start in zip(planes, seen, strict=True)
        for e in plane.audited(MEMBER_USER)[start:]
        if e.get("responseStatus", {}).get("code") == 403
    ]
    assert not refused, "a region refused the hub:\n" + "\n".join(refused)


def finished(region: Any) -> datetime:
    """When the region's rollout ended its last phase, as its own API records it, to the
    second (kube-apiserver's creationTimestamp, compared with it, has no fraction)."""
    rollout = region.rollout()
    history = rollout["status"]["phaseHistory"]
    return _time(history[-1]["endedAt"]).replace(microsecond=0)


def created(region: Any) -> datetime:
    return _time(region.rollout()["metadata"]["creationTimestamp"])


@pytest.mark.integration
def test_a_healthy_release_goes_through_every_wave_in_order(fleet: Fleet) -> None:
    fleet.apply(fleet.release("v2", WAVES))
    fleet.start_hub_operator()
    status = fleet.wait(lambda s: s.get("state") == "Succeeded", 150, "Succeeded")
    assert status["progress"] == "3/3" and status["regionsSucceeded"] == "3/3"
    east, west, eu = (fleet.regions[n] for n in NAMES)
    # Each region's rollout was created only after the previous wave's had finished there.
    assert finished(east) <= created(west) and finished(west) <= created(eu)
    waves = status["waves"]
    for before, after in itertools.pairwise(waves):
        assert _time(before["finishedAt"]) <= _time(after["startedAt"])
    for name in NAMES:
        rollout = fleet.regions[name].rollout()
        assert rollout["status"]["state"] == "Succeeded" and rollout["spec"]["revision"] == "v2"
        assert rollout["spec"]["prometheus"]["address"] == fleet.regions[name].stack.prometheus_url
        assert fleet.regions[name].canary_weight() == 100  # the last phase's weight, kept
    # Quiet when nothing changes: six turns of the hub (interval 1s) write nothing.
    quiet = fleet.hub.kubectl(
        "get", "prel", "shop", "-n", fleet.releases, "--watch-only", "-o", "name",
        "--request-timeout=6s", check=False,
    )  # fmt: skip
    assert quiet.stdout.strip() == "", f"the release was written: {quiet.stdout}"
    listed = fleet.hub.kubectl("get", "releases", "-n", fleet.releases).stdout
    assert listed.split("\n")[0].split()[:6] == [
        "NAME", "REVISION", "WAVE", "WAVES", "REGIONS", "STATE"
    ]  # fmt: skip
    assert "3/3" in listed and "Succeeded" in listed
    # A new revision: a new release, in order. East takes v3 first; the others keep v2.
    fleet.apply(fleet.release("v3", WAVES))
    fleet.wait(lambda s: s.get("revision") == "v3" and s.get("currentWave") == "wave-1"
               and s["regions"][0].get("revision") == "v3", 60, "east on v3")  # fmt: skip
    assert fleet.regions["west"].rollout()["spec"]["revision"] == "v2"
    assert fleet.regions["eu"].rollout()["spec"]["revision"] == "v2"
    status = fleet.wait(lambda s: s.get("state") == "Succeeded" and s.get("revision") == "v3",
                        150, "v3 Succeeded")  # fmt: skip
    assert finished(east) <= _time(west.rollout()["status"]["phaseHistory"][0]["startedAt"])
    for name in NAMES:
        assert fleet.regions[name].rollout()["status"]["revision"] == "v3"


@pytest.mark.integration
def test_a_rollback_in_the_second_wave_halts_the_rest(fleet: Fleet) -> None:
    fleet.regions["west"].stack.configure_service("web-canary", error_rate=0.5)
    # The third region's kubeconfig Secret is missing: a condition says so; the first two
    # waves go on.
    fleet.hub.kubectl("delete", "secret", "region-eu", "-n", fleet.releases)
    fleet.apply(fleet.release("v2", WAVES))
    fleet.start_hub_operator()
    status = fleet.wait(lambda s: s.get("state") == "Halted", 150, "Halted")
    credentials = next(c for c in status["conditions"] if c["type"] == "RegionCredentials")
    assert (credentials["status"], credentials["reason"]) == ("False", "SecretNotFound")
    assert credentials["message"].startswith(f"eu: Secret {fleet.releases}/region-eu not found")
    assert status["failedRegion"] == "west" and "west RolledBack" in status["message"]
    assert fleet.regions["west"].canary_weight() == 0
    assert fleet.regions["west"].rollout()["status"]["state"] == "RolledBack"
    assert fleet.regions["east"].rollout()["status"]["state"] == "Succeeded"
    assert fleet.regions["eu"].rollout() is None, "the third wave never started"
    waves = {w["name"]: w["state"] for w in status["waves"]}
    assert waves == {"wave-1": "Succeeded", "wave-2": "Failed", "wave-3": "Pending"}


@pytest.mark.integration
def test_a_region_cut_off_mid_wave_holds_the_release_until_it_answers(fleet: Fleet) -> None:
    fleet.apply(fleet.release("v2", WAVES))
    fleet.start_hub_operator()
    fleet.wait(lambda s: s.get("currentWave") == "wave-2" and any(
        r["name"] == "west" and r.get("phase") == "canary" for r in s.get("regions") or []),
        120, "west in its canary")  # fmt: skip
    fleet.cut("west")
    held = fleet.wait(lambda s: s.get("state") == "Holding", 60, "Holding")
    assert "cannot see west" in held["message"]
    reachable = next(c for c in held["conditions"] if c.get("type") == "RegionsReachable")
    assert reachable["status"] == "False" and "west" in reachable["message"]
    # West finishes on its own; the hub, unable to see it, does not start eu meanwhile.
    fleet.regions["west"].stack.kubectl(
        "wait", "prollout/shop", "-n", fleet.target, "--for=jsonpath={.status.state}=Succeeded",
        "--timeout=60s",
    )  # fmt: skip
    assert fleet.status()["state"] == "Holding"
    assert fleet.regions["eu"].rollout() is None, "never past a region it cannot see"
    fleet.reconnect("west")
    status = fleet.wait(lambda s: s.get("state") == "Succeeded", 120, "Succeeded")
    assert (
        next(c for c in status["conditions"] if c["type"] == "RegionsReachable")["status"] == "True"
    )
    assert finished(fleet.regions["west"]) <= created(fleet.regions["eu"])


@pytest.mark.integration
def test_the_hub_killed_mid_wave_resumes_without_repeating_a_wave(fleet: Fleet) -> None:
    fleet.apply(fleet.release("v2", WAVES))
    hub = fleet.start_hub_operator()
    before = fleet.wait(lambda s: s.get("currentWave") == "wave-2" and any(
        r["name"] == "west" and r.get("phase") == "canary" for r in s.get("regions") or []),
        120, "west in its canary")  # fmt: skip
    east_rollout = fleet.regions["east"].rollout()
    west_rollout = fleet.regions["west"].rollout()
    hub.kill()  # SIGKILL
    fleet.start_hub_operator()
    status = fleet.wait(lambda s: s.get("state") == "Succeeded", 150, "Succeeded")
    after = {w["name"]: w for w in status["waves"]}
    for wave in before["waves"]:
        if wave.get("startedAt"):
            assert after[wave["name"]]["startedAt"] == wave["startedAt"], "a wave started again"
    for name, seen in (("east", east_rollout), ("west", west_rollout)):
        now = fleet.regions[name].rollout()
        assert now["metadata"]["uid"] == seen["metadata"]["uid"], f"{name} re-created"
        assert now["metadata"]["generation"] == 1, f"{name}'s spec was written again"
        phases = [p["name"] for p in now["status"]["phaseHistory"]]
        assert phases == ["canary", "full"], f"{name} ran a phase twice: {phases}"


@pytest.mark.cluster
def test_the_member_role_grants_the_hub_rollouts_and_nothing_else(
    real_cluster: RealCluster,
) -> None:
    """`kubectl auth can-i` on a real apiserver, as the member ServiceAccount bound in one
    namespace with manifests/member/member.yaml."""
    from support.kube import ROOT, kubectl

    kc = real_cluster.kubeconfig
    namespace = real_cluster.namespace()
    try:
        kubectl(kc, "apply", "-f", str(ROOT / "manifests/member/member.yaml"))
        kubectl(kc, "create", "rolebinding", "phasegate-member", "-n", namespace,
                "--clusterrole=phasegate-member",
                f"--serviceaccount={HUB_ACCOUNT[0]}:{HUB_ACCOUNT[1]}")  # fmt: skip

        def can(*args: str) -> bool:
            found = kubectl(kc, "auth", "can-i", f"--as={MEMBER_USER}", *args, check=False)
            return found.stdout.strip() == "yes"

        for verb in ("create", "get", "list", "watch", "patch"):
            assert can(verb, "progressiverollouts.phasegate.dev", "-n", namespace), verb
        assert can("get", "progressiverollouts.phasegate.dev", "--subresource=status", "-n",
                   namespace)  # fmt: skip
        for args in (
            ("delete", "progressiverollouts.phasegate.dev", "-n", namespace),
            ("patch", "progressiverollouts.phasegate.dev", "--subresource=status", "-n",
             namespace),
            ("create", "progressiverollouts.phasegate.dev", "-n", "default"),
            ("get", "secrets", "-n", namespace),
            ("patch", "httproutes.gateway.networking.k8s.io", "-n", namespace),
            ("get", "deployments.apps", "-n", namespace),
        ):  # fmt: skip
            assert not can(*args), f"the member Role grants {' '.join(args)}"
    finally:
        kubectl(kc, "delete", "namespace", namespace, "--wait=false")
