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
    before: Obj | None = None  # what a MODIFIED change replaced


@dataclass(eq=False)
class Watcher:
    resource: ResourceKey
    namespace: str | None
    matches: Matcher
    queue: asyncio.Queue[tuple[str, Obj]] = field(default_factory=asyncio.Queue)

    def seen_as(self, change: Change) -> tuple[str, Obj] | None:
        """The event this watch sends for ``change``, or None. As kube-apiserver does, an
        object a change brings into the watch's selection is ADDED, and one it takes out is
        DELETED, as it was when it last matched."""
        if self.namespace is not None and change.namespace != self.namespace:
            return None
        now = self.matches(change.obj)
        if change.before is None:
            return (change.type, change.obj) if now else None
        was = self.matches(change.before)
        if now:
            return ("MODIFIED" if was else "ADDED", change.obj)
        return ("DELETED", change.before) if was else None


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
        before = None
        if type_ == "DELETED":
            self.objects.get(key, {}).pop((namespace, name), None)
        else:
            before = self.objects.setdefault(key, {}).get((namespace, name))
            self.objects[key][(namespace, name)] = obj
        rv = int(obj["metadata"]["resourceVersion"])
        change = Change(rv, key, namespace, type_, obj, before if type_ == "MODIFIED" else None)
        if len(self.changes) == self.changes.maxlen:
            self.oldest_rv = self.changes[0].rv + 1
        self.changes.append(change)
        for watcher in self.watchers.get(key, ()):
            if (seen := watcher.seen_as(change)) is not None:
                watcher.queue.put_nowait(seen)

    def since(self, key: ResourceKey, rv: int) -> list[Change] | None:
        """Changes of a resource after ``rv``; None when the window no longer reaches back."""
        if rv + 1 < self.oldest_rv:
            return None
        return [c for c in self.changes if c.rv > rv and c.resource == key]

    def subscribe(self, watcher: Watcher) -> None:
        self.watchers.setdefault(watcher.resource, set()).add(watcher)

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers.get(watcher.resource, set()).discard(watcher)
