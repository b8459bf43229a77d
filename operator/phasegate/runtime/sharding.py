"""Shards: N operator deployments, each owning a stable share of the rollouts.

A rollout belongs to shard ``crc32("namespace/name") mod N``: the same on every replica and
every restart, with no coordination. Each shard is its own peering (``<peering>-shard-<i>``),
so each has its own standby.

Each layout (a shard I of N, or an operator not sharded) puts a finalizer of its own on the
rollouts it owns (``phasegate.dev/finalizer-shard-I-of-N``; kopf takes its finalizer off
objects none of its handlers match, so layouts sharing one would take it off each other's
rollouts and put it back without end), and announces itself in its kopf peering under an
identity made of that finalizer, its family (its ``--selector``: operators of another
selector watch other rollouts) and its own id.

Changing N moves about (N-1)/N of the rollouts, and while the shards' Deployments roll, a
rollout is owned by an old-N and a new-N shard at once. It is evaluated by one: the layout of
the first of its finalizers (in the order they were put on) whose layout has an active
operator of the family, that is a live peer of the highest priority in its peering; an
operator evaluates nothing before its own finalizer is on. The newcomer waits while the old
layout runs, and takes the rollout over when the old one stops (at once when it stops
cleanly, within its peering lifetime when it dies), removing the finalizers of layouts that
are gone so that none blocks a deletion. An operator without a peering (``--standalone``)
cannot be seen by others, so it cannot be sharded; it still leaves a rollout to an active
layout that had it first.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from phasegate.kube import Forbidden, Kube, NotFound

PEERING = ("kopf.dev", "v1")
MARK = "#"  # between the layout's finalizer and kopf's own id, in a peer's identity


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``I/N``: shard I (from 0) of N."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f"--shard {text!r}: expected I/N, e.g. 0/3") from None
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"--shard {text!r}: I must be in 0..N-1 and N at least 1")
        return cls(index, count)

    def owns(self, namespace: str | None, name: str | None) -> bool:
        key = f"{namespace or ''}/{name or ''}".encode()
        return zlib.crc32(key) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def peer_identity(finalizer: str, family: str, own: str) -> str:
    """The operator's identity in its kopf peering: its layout's finalizer, its family (the
    rollouts it watches: its ``--selector``, empty for all), then its own id."""
    return MARK.join((finalizer, family, own))


def evaluator(finalizers: Iterable[str], mine: str, active: frozenset[str]) -> str:
    """The finalizer of the layout that evaluates a rollout: the first of ``finalizers``
    that is ``mine`` or whose layout is ``active``; ``mine`` when there is none."""
    return next((f for f in finalizers if f == mine or f in active), mine)


def active_layouts(
    peerings: Iterable[dict[str, Any]], now: datetime, family: str = ""
) -> frozenset[str]:
    """The finalizers of the layouts of ``family`` that have an active operator in these kopf
    peering objects: a peer seen within its lifetime, of the highest priority among the live
    peers of its peering, and alone at it (kopf pauses the others). Operators of another
    family (another --selector: other rollouts) and other kopf operators are no layouts of
    ours."""
    active: set[str] = set()
    for peering in peerings:
        live: list[tuple[int, str]] = []
        for identity, peer in (peering.get("status") or {}).items():
            if not isinstance(peer, dict):
                continue
            try:
                seen = datetime.fromisoformat(str(peer["lastseen"]))
                lifetime = timedelta(seconds=float(peer.get("lifetime", 60)))
                priority = int(peer.get("priority", 0))
            except (KeyError, TypeError, ValueError):
                continue
            if (seen if seen.tzinfo else seen.replace(tzinfo=UTC)) + lifetime > now:
                live.append((priority, identity))
        tops = [i for p, i in live if p == max(p for p, _ in live)]
        if len(tops) == 1:  # (kopf pauses every peer of a shared top priority)
            parts = tops[0].split(MARK, 2)
            if len(parts) == 3 and parts[1] == family:
                active.add(parts[0])
    return frozenset(active)


@dataclass
class Presence:
    """Which layouts of ``family`` have an active operator, as the kopf peering objects say:
    the cluster-wide ones, or those of the rollout's namespace for an operator of
    namespaces. Read when a rollout carries another layout's finalizer, and kept ``ttl``
    seconds. ``standalone``: an operator without a peering, which may not be allowed to
    read them, takes peerings it may not read as nobody's."""

    kube: Kube
    clusterwide: bool
    family: str = ""
    standalone: bool = False
    ttl: float = 1.0
    _seen: dict[str | None, tuple[float, frozenset[str]]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def active(self, namespace: str, *, fresh: bool = False) -> frozenset[str]:
        """``fresh``: read now, not from what was read within ``ttl``."""
        scope = None if self.clusterwide else namespace
        asked = time.monotonic()
        async with self._lock:  # one read for the daemons that ask at once
            kept = self._seen.get(scope)
            if kept is not None:  # a read begun since asked, or within ttl if not fresh
                read_at, known = kept
                if read_at >= asked or (not fresh and asked - read_at < self.ttl):
                    return known
            plural = "clusterkopfpeerings" if scope is None else "kopfpeerings"
            reading = time.monotonic()
            try:
                peerings = await asyncio.to_thread(self.kube.list_custom, *PEERING, plural, scope)
            except NotFound:  # no peering kind served: nobody announces itself
                peerings = []
            except Forbidden:
                if not self.standalone:
                    raise
                peerings = []
            active = active_layouts(peerings, datetime.now(UTC), self.family)
            self._seen[scope] = (reading, active)
            return active
