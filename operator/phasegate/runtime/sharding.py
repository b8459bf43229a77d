"""Shards: N operator deployments, each owning a stable share of the rollouts.

A rollout belongs to shard ``crc32("namespace/name") mod N``: the same on every replica and
every restart, with no coordination and nothing written to the rollout. Each shard is its own
peering (``<peering>-shard-<i>``), so each has its own standby.

Changing N moves about (N-1)/N of the rollouts. While the shards' Deployments roll to the new
N, a rollout can briefly be owned by an old-N and a new-N shard at once: both may evaluate it,
and status writes conditional on the version evaluated keep that from losing or repeating a
decision (docs/semantics.md, "Order of writes"). It is owned by none only while no shard of
either N that owns it is up.

Each shard puts a finalizer of its own on the rollouts it owns
(``phasegate.dev/finalizer-shard-I-of-N``): kopf takes its finalizer off objects none of its
handlers match, so shards sharing one would take it off each other's rollouts and put it
back without end. A rollout's owner removes the finalizers of other layouts (an earlier N,
or no sharding), so that a shard that is gone never blocks a deletion.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


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
