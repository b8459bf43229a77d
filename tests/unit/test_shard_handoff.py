"""Which layout evaluates a rollout several own (a change of the number of shards): the
first of its finalizers whose layout has an active operator, as the peerings show it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from phasegate.runtime.sharding import Presence, Shard, active_layouts, evaluator, peer_identity

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
OLD, NEW = "phasegate.dev/finalizer-shard-1-of-2", "phasegate.dev/finalizer-shard-0-of-3"
OTHER = "example.com/keep"


def peer(priority: int, seen_ago: float, lifetime: int = 15) -> dict[str, Any]:
    return {
        "priority": priority,
        "lifetime": lifetime,
        "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat(),
    }


def peering(**peers: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "status": peers}


def test_the_first_finalizer_of_an_active_layout_evaluates() -> None:
    finalizers = [OTHER, OLD, NEW]
    assert evaluator(finalizers, NEW, frozenset({OLD})) == OLD  # the newcomer waits
    assert evaluator(finalizers, OLD, frozenset({NEW})) == OLD  # the incumbent goes on
    assert evaluator(finalizers, NEW, frozenset()) == NEW  # the old layout is gone
    assert evaluator([OTHER], NEW, frozenset({OLD})) == NEW  # none of ours on it yet


def test_a_layout_is_active_while_a_peer_of_it_is_live_and_not_paused() -> None:
    old, new = peer_identity(OLD, "", "pod-a"), peer_identity(NEW, "", "pod-b")
    assert active_layouts([peering(**{old: peer(5, 3)})], NOW) == {OLD}
    assert active_layouts([peering(**{old: peer(5, 16)})], NOW) == set(), "past its lifetime"
    # Two layouts in one peering: kopf pauses the lower priority.
    assert active_layouts([peering(**{old: peer(5, 1), new: peer(9, 1)})], NOW) == {NEW}
    # ... unless the higher one is dead.
    assert active_layouts([peering(**{old: peer(5, 1), new: peer(9, 30)})], NOW) == {OLD}
    # Two at the same top priority: kopf pauses both.
    assert active_layouts([peering(**{old: peer(9, 1), new: peer(9, 1)})], NOW) == set()
    # Each peering has its own active replica.
    assert active_layouts([peering(**{old: peer(5, 1)}), peering(**{new: peer(1, 1)})], NOW) == {
        OLD,
        NEW,
    }


def test_peers_that_are_not_ours_or_are_malformed_are_ignored() -> None:
    ours = peer_identity(OLD, "", "pod-a")
    status = {
        peer_identity(NEW, "", "pod-b"): {"priority": 3},  # never seen
        peer_identity(NEW, "", "pod-c"): "broken",
        ours: peer(1, 1),
    }
    assert active_layouts([peering(**status), {"metadata": {"name": "empty"}}], NOW) == {OLD}
    # Another kopf operator in the same peering is no layout, but it pauses ours.
    status["someone@host/20261125/abc"] = peer(100, 1)
    assert active_layouts([peering(**status)], NOW) == set()


def test_operators_of_another_selector_are_not_layouts_of_ours() -> None:
    """Another release (--selector team=a) with the same layout names watches other rollouts:
    its live operators do not keep ours (team=b) from taking over their own."""
    other = {peer_identity(OLD, "team=a", "pod-a"): peer(5, 1)}
    assert active_layouts([peering(**other)], NOW, family="team=b") == set()
    assert active_layouts([peering(**other)], NOW, family="team=a") == {OLD}


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_rollout_has_exactly_one_shard_in_a_layout(count: int) -> None:
    names = [f"r{n}" for n in range(200)]
    owners = [[i for i in range(count) if Shard(i, count).owns("ns", n)] for n in names]
    assert all(len(o) == 1 for o in owners)
    assert {o[0] for o in owners} == set(range(count))


def test_a_shard_without_a_peering_is_refused_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from phasegate.cli.main import main

    with pytest.raises(SystemExit) as exit:
        main(["run", "--standalone", "--shard", "0/2"])
    assert exit.value.code == 2
    assert "--shard with --standalone: a shard needs a peering" in capsys.readouterr().err


class CountingKube:
    """Answers the peering list, counting the reads."""

    def __init__(self) -> None:
        self.reads = 0

    def list_custom(self, *_: Any) -> list[dict[str, Any]]:
        self.reads += 1
        seen = {"priority": 1, "lifetime": 15, "lastseen": datetime.now(UTC).isoformat()}
        return [peering(**{peer_identity(OLD, "", "pod-a"): seen})]


def test_presence_is_read_once_for_the_daemons_that_ask_at_once_and_fresh_when_asked() -> None:
    kube = CountingKube()
    presence = Presence(kube, clusterwide=True, ttl=60)  # type: ignore[arg-type]

    async def scenario() -> None:
        answers = await asyncio.gather(*(presence.active("ns") for _ in range(50)))
        assert set(answers) == {frozenset({OLD})} and kube.reads == 1
        await presence.active("other-ns")  # cluster-wide: the same peerings
        assert kube.reads == 1
        await presence.active("ns", fresh=True)  # about to call a layout gone: read again
        assert kube.reads == 2

    asyncio.run(scenario())
