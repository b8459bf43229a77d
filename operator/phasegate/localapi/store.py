"""The object store: objects by resource, a monotonic resourceVersion, and watch fan-out.

Only a bounded window of past changes is kept (for watches that resume from a
resourceVersion); memory does not grow with the number of requests served.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from phasegate.localapi.resources import Resource
from phasegate.localapi.selectors import Matcher

Obj = dict[str, Any]
ResourceKey = tuple[str, str, str]


@dataclass(frozen=True)
class Change:
    rv: int
    resource: ResourceKey
    namespace: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj


@dataclass(eq=False)
class Watcher:
    resource: ResourceKey
    namespace: str | None
    matches: Matcher
    queue: asyncio.Queue[Change] = field(default_factory=asyncio.Queue)

    def wants(self, change: Change) -> bool:
        if self.namespace is not None and change.namespace != self.namespace:
            return False
        return self.matches(change.obj)


class Store:
    def __init__(self, window: int = 10_000) -> None:
        self.resources: dict[ResourceKey, Resource] = {}
        self.objects: dict[ResourceKey, dict[tuple[str, str], Obj]] = {}
        self.changes: deque[Change] = deque(maxlen=window)
        self.watchers: dict[ResourceKey, set[Watcher]] = {}
        self.rv = 1
        self.oldest_rv = 1  # the oldest resourceVersion a watch may resume from

    # ---- resources -------------------------------------------------------------------------

    def register(self, resource: Resource) -> None:
        self.resources[resource.key] = resource
        self.objects.setdefault(resource.key, {})

    def unregister(self, key: ResourceKey) -> list[Obj]:
        self.resources.pop(key, None)
        return list(self.objects.pop(key, {}).values())

    def find(self, group: str, version: str, plural: str) -> Resource | None:
        return self.resources.get((group, version, plural))

    # ---- objects ---------------------------------------------------------------------------

    def get(self, key: ResourceKey, namespace: str, name: str) -> Obj | None:
        return self.objects.get(key, {}).get((namespace, name))

    def select(self, key: ResourceKey, namespace: str | None, matches: Matcher) -> Iterator[Obj]:
        for (ns, _), obj in sorted(self.objects.get(key, {}).items()):
            if (namespace is None or ns == namespace) and matches(obj):
                yield obj

    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def put(self, key: ResourceKey, namespace: str, name: str, obj: Obj, type_: str) -> None:
        """Store ``obj`` (its resourceVersion already set by the caller) and tell watchers."""
        if type_ == "DELETED":
            self.objects.get(key, {}).pop((namespace, name), None)
        else:
            self.objects.setdefault(key, {})[(namespace, name)] = obj
        change = Change(int(obj["metadata"]["resourceVersion"]), key, namespace, type_, obj)
        if len(self.changes) == self.changes.maxlen:
            self.oldest_rv = self.changes[0].rv + 1
        self.changes.append(change)
        for watcher in self.watchers.get(key, ()):
            if watcher.wants(change):
                watcher.queue.put_nowait(change)

    def since(self, key: ResourceKey, rv: int) -> list[Change] | None:
        """Changes of a resource after ``rv``; None when the window no longer reaches back."""
        if rv + 1 < self.oldest_rv:
            return None
        return [c for c in self.changes if c.rv > rv and c.resource == key]

    def subscribe(self, watcher: Watcher) -> None:
        self.watchers.setdefault(watcher.resource, set()).add(watcher)

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers.get(watcher.resource, set()).discard(watcher)
