"""Three shards, each its own peering: every rollout is evaluated by exactly one operator, and
a shard whose active replica dies is taken over by its standby, not by another shard."""

from __future__ import annotations

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


def test_each_rollout_is_evaluated_by_one_shard_and_a_shards_standby_takes_over(
    world: World,
) -> None:
    owners: dict[str, int] = {}
    for n in range(200):  # two rollouts per shard, in this test's namespace
        name = f"r{n}"
        shard = next(i for i in range(SHARDS) if Shard(i, SHARDS).owns(world.ns, name))
        if list(owners.values()).count(shard) < 2:
            owners[name] = shard
        if len(owners) == 2 * SHARDS:
            break
    peerings = [f"{world.peering}-shard-{i}" for i in range(SHARDS)]
    world.stack.kubectl(
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(
            [
                {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": p}}
                for p in peerings
            ]
        ),
    )

    try:
        check_shards(world, owners, peerings)
    finally:
        world.stack.kubectl("delete", "clusterkopfpeering", *peerings, "--ignore-not-found")


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
