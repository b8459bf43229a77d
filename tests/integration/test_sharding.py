"""Three shards, each its own peering: every rollout is evaluated by exactly one operator, and
a shard whose active replica dies is taken over by its standby, not by another shard. A change
of the number of shards hands each rollout over once, deletions included. And operators split
by labels (--selector): each sees only its own, and a relabelled rollout moves."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from itertools import pairwise
from typing import Any

import yaml

from phasegate.demo.stack import Process
from phasegate.runtime.sharding import Shard
from support.world import World, evaluations, operator_metrics, release, route

SHARDS = 3


def weights_reported(process: Process) -> set[str]:
    """The rollouts ``process`` has evaluated, from its own /metrics (the canary weight
    series it sets at every evaluation)."""
    return {
        line.split('rollout="', 1)[1].split('"', 1)[0]
        for line in operator_metrics(process)
        if line.startswith("phasegate_canary_weight{")
    }


def owner(namespace: str, name: str, shards: int) -> int:
    return next(i for i in range(shards) if Shard(i, shards).owns(namespace, name))


@contextmanager
def peerings(world: World, *names: str) -> Iterator[None]:
    """The test's cluster-wide peering objects, removed after it."""
    world.stack.kubectl(
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(
            [
                {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": p}}
                for p in names
            ]
        ),
    )
    try:
        yield
    finally:
        world.stack.kubectl("delete", "clusterkopfpeering", *names, "--ignore-not-found")


def test_each_rollout_is_evaluated_by_one_shard_and_a_shards_standby_takes_over(
    world: World,
) -> None:
    owners: dict[str, int] = {}
    for n in range(200):  # two rollouts per shard, in this test's namespace
        name = f"r{n}"
        shard = owner(world.ns, name, SHARDS)
        if list(owners.values()).count(shard) < 2:
            owners[name] = shard
        if len(owners) == 2 * SHARDS:
            break
    names = [f"{world.peering}-shard-{i}" for i in range(SHARDS)]
    with peerings(world, *names):
        check_shards(world, owners, names)


def check_shards(world: World, owners: dict[str, int], peerings: list[str]) -> None:
    def start(shard: int, role: str, priority: int) -> Process:
        return world.start_operator(
            f"shard-{shard}-{role}",
            "--shard",
            f"{shard}/{SHARDS}",
            "--peering",
            peerings[shard],
            "--priority",
            str(priority),
            "--peering-lifetime",
            "3",
        )

    active = [start(i, "active", 200) for i in range(SHARDS)]
    standby = start(0, "standby", 100)
    long_phase: dict[str, Any] = {
        **release()["spec"]["phases"][0],
        "duration": "10m",
        "checkpoints": ["10m"],
    }
    for name in owners:
        spec = release(name)["spec"]
        spec["trafficRouting"]["gatewayAPI"]["httpRoute"] = name
        spec["phases"] = [long_phase]
        world.apply(route(name), release(name, **spec))
    for name in owners:
        world.wait(lambda s: s.get("canaryWeight") == 10, name=name, what=f"{name}'s canary")

    seen = [weights_reported(p) for p in active]
    for shard, reported in enumerate(seen):
        assert reported == {n for n, s in owners.items() if s == shard}, (shard, seen)
    # The standby may have evaluated before it saw the active replica; from then on, not once.
    paused_at = evaluations(standby)
    going_on = [evaluations(p) for p in active]
    world.wait(
        lambda _: all(evaluations(p) >= n + 3 for p, n in zip(active, going_on, strict=True)),
        name=sorted(owners)[0],
        what="three more evaluations by every active replica",
    )
    assert evaluations(standby) == paused_at, "the standby of shard 0 stays paused"

    active[0].kill()
    mine = {n for n, s in owners.items() if s == 0}
    world.wait(
        lambda _: weights_reported(standby) == mine,
        name=sorted(mine)[0],
        timeout=60,
        what="shard 0's standby evaluating shard 0's rollouts",
    )
    name = sorted(mine)[0]
    world.control("pause", name=name, by="alice")
    world.wait(lambda s: s.get("state") == "Paused", name=name, what="the pause, applied")
    assert [weights_reported(p) for p in active[1:]] == seen[1:], "no other shard took any"
    assert weights_reported(standby) == mine


LIFETIME = 3  # the shards' peering lifetime: how long a killed shard is taken for alive


def test_changing_the_number_of_shards_hands_each_rollout_over_once_without_a_gap(
    world: World,
) -> None:
    """2 shards become 3 as a Deployment update does it: the new ones start while the old
    ones still run, then the old ones end, one stopped and one killed. While the old layout
    runs, it alone evaluates every rollout (the new shards evaluate none); when it ends,
    each rollout goes on under its new owner: each checkpoint judged once, none skipped,
    no long gap, and only the new owner's finalizer left on it; one deleted meanwhile is
    deleted, its route put back."""
    names = [f"m{n}" for n in range(8)]  # all 8 staying put has odds of (1/3)^8
    offsets = [f"{s}s" for s in range(4, 41, 4)]
    for name in names:
        spec = release(name)["spec"]
        spec["trafficRouting"]["gatewayAPI"]["httpRoute"] = name
        # Only "web" gets load: these are judged on nothing, the checkpoints still count.
        for phase in spec["phases"]:
            phase.update(successCriteria=[], rollbackTriggers=[], holdTriggers=[])
        spec["phases"][0].update(duration="40s", checkpoints=offsets)
        world.apply(route(name), release(name, **spec))
    layouts = {"old": 2, "new": 3}
    with peerings(
        world, *(f"{world.peering}-{g}-{i}" for g, n in layouts.items() for i in range(n))
    ):

        def start(generation: str, i: int) -> Process:
            return world.start_operator(
                f"{generation}-{i}",
                "--shard",
                f"{i}/{layouts[generation]}",
                "--peering",
                f"{world.peering}-{generation}-{i}",
                "--peering-lifetime",
                str(LIFETIME),
            )

        old = [start("old", i) for i in range(2)]
        for name in names:
            world.wait(lambda s: s.get("canaryWeight") == 10, name=name, what=f"{name}'s canary")
        new = [start("new", i) for i in range(3)]
        for name in names:  # each new shard has seen its rollouts (its finalizer is on them)
            mark = f"phasegate.dev/finalizer-shard-{owner(world.ns, name, 3)}-of-3"
            world.wait(
                lambda _, n=name, m=mark: m in world.rollout(n)["metadata"]["finalizers"],  # type: ignore[misc]
                name=name,
                what=f"{name}'s new owner's finalizer",
            )
        judged_before = {n: len(world.rollout(n)["status"]["checkpoints"]) for n in names}
        world.wait(  # both layouts run for two checkpoints of every rollout
            lambda _: all(
                len(world.rollout(n)["status"]["checkpoints"]) >= judged_before[n] + 2
                for n in names
            ),
            name=names[0],
            timeout=30,
            what="two more checkpoints of every rollout",
        )
        assert [weights_reported(p) for p in new] == [set()] * 3, "the new layout waits"
        assert [evaluations(p) for p in new] == [0] * 3
        old[0].stop()
        old[1].kill()
        # Deleted while the killed shard still counts as alive: its new owner waits for it
        # to be seen gone, then removes its finalizer and puts the route back.
        victim = next(n for n in names if owner(world.ns, n, 2) == 1)
        world.stack.kubectl("delete", "prollout", victim, "-n", world.ns, "--timeout=60s")
        assert world.canary_weight(victim) == 0, "the route is put back"
        names.remove(victim)
        for name in names:
            status = world.wait(lambda s: s.get("state") == "Succeeded", name=name, timeout=90)
            canary = [c for c in status["checkpoints"] if c["phase"] == "canary"]
            judged = [c["offset"] for c in canary]
            assert judged == offsets, f"{name}: each checkpoint judged once, in order ({judged})"
            times = [datetime.fromisoformat(c["time"]) for c in canary]
            gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
            # A killed shard is taken for alive for its peering lifetime, then seen gone
            # within a second; a stopped one, at once.
            assert max(gaps) < 4 + LIFETIME + 4, f"{name}: checkpoints 4s apart: {gaps}s apart"
        for i, process in enumerate(new):
            assert weights_reported(process) == {n for n in names if owner(world.ns, n, 3) == i}
        for name in names:  # the gone layout's finalizers are removed
            expected = [f"phasegate.dev/finalizer-shard-{owner(world.ns, name, 3)}-of-3"]
            world.wait(
                lambda _, n=name, e=expected: world.rollout(n)["metadata"].get("finalizers") == e,  # type: ignore[misc]
                name=name,
                what=f"{name}'s finalizers {expected}",
            )


def test_a_rollout_deleted_between_two_layouts_is_finished_by_its_new_owner(
    world: World,
) -> None:
    """Deleted while no operator of its layout runs and before the new layout put its
    finalizer on it (kopf calls no deletion handler then): the new owner restores the route
    and removes the old finalizer, so the deletion completes."""
    names = ["d0", "d1"]
    for name in names:
        spec = release(name)["spec"]
        spec["trafficRouting"]["gatewayAPI"]["httpRoute"] = name
        spec["phases"] = [{**spec["phases"][0], "duration": "10m", "checkpoints": ["10m"]}]
        world.apply(route(name), release(name, **spec))
    peering = [f"{world.peering}-old", *(f"{world.peering}-new-{i}" for i in range(2))]
    with peerings(world, *peering):
        old = world.start_operator("old", "--peering", peering[0], "--peering-lifetime", "3")
        for name in names:
            world.wait(lambda s: s.get("canaryWeight") == 10, name=name, what=f"{name}'s canary")
        old.stop()
        for name in names:
            world.stack.kubectl("delete", "prollout", name, "-n", world.ns, "--wait=false")
        for i in range(2):
            world.start_operator(
                f"new-{i}",
                "--shard",
                f"{i}/2",
                "--peering",
                peering[1 + i],
                "--peering-lifetime",
                "3",
            )
        for name in names:
            world.stack.kubectl(
                "wait", "--for=delete", f"prollout/{name}", "-n", world.ns, "--timeout=60s"
            )
            assert world.canary_weight(name) == 0, f"{name}'s route is put back"


def test_operators_split_by_labels_and_a_relabelled_rollout_moves_to_the_other(
    world: World,
) -> None:
    """``--selector team=a`` and ``team=b``: the API shows each operator only its rollouts.
    One relabelled from a to b goes on under b's operator, and a's keeps nothing of it."""
    phase = {**release()["spec"]["phases"][0], "duration": "10m", "checkpoints": ["10m"]}
    for name, team in (("ra", "a"), ("rb", "b")):
        spec = release(name)["spec"]
        spec["trafficRouting"]["gatewayAPI"]["httpRoute"] = name
        spec["phases"] = [phase]
        rollout = release(name, **spec)
        rollout["metadata"]["labels"] = {"team": team}
        world.apply(route(name), rollout)
    teams = {
        team: world.start_operator(f"team-{team}", "--standalone", "--selector", f"team={team}")
        for team in "ab"
    }
    for name in ("ra", "rb"):
        world.wait(lambda s: s.get("canaryWeight") == 10, name=name, what=f"{name}'s canary")
    assert [weights_reported(teams[t]) for t in "ab"] == [{"ra"}, {"rb"}]

    world.stack.kubectl("label", "prollout", "ra", "-n", world.ns, "team=b", "--overwrite")
    world.wait(
        lambda _: [weights_reported(teams[t]) for t in "ab"] == [set(), {"ra", "rb"}],
        name="ra",
        timeout=30,
        what="ra evaluated by team b's operator only",
    )
    world.control("pause", name="ra", by="alice")
    world.wait(lambda s: s.get("state") == "Paused", name="ra", what="the pause, applied")
    assert weights_reported(teams["a"]) == set()


def test_a_selector_the_api_refuses_stops_the_operator_with_its_reason(world: World) -> None:
    stack = world.stack
    env = {**stack.env(), "KUBECONFIG": str(stack.operator_kubeconfig or stack.kubeconfig)}
    command = [sys.executable, "-m", "phasegate.cli.main", "run", "--standalone"]
    started = subprocess.run(
        [*command, "--all-namespaces", "--selector", "team in (a", "--health-port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode != 0
    assert "--selector 'team in (a'" in started.stderr, started.stderr[-2000:]
