"""Routers whose object lists weighted backends: Gateway API, Istio and SMI.

Each provider says where, in its object, stable and canary sit side by side (a *pair*: a
rule, an HTTP route, the split). Every pair gets stable ``100 - w`` and canary ``w``; the rest
of the object stays as it is. The weights before the first change are saved in an annotation
on the object and put back by :meth:`WeightedRouter.restore`. Writes are JSON patches that
test the ``resourceVersion`` they were computed from: a weight is written over the object as
:meth:`WeightedRouter.read_weight` saw it when the decision was taken, so a write that
someone else's overtook is refused (409), never applied over theirs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from phasegate.kube import Conflict, Kube, NotFound, unchanged_since
from phasegate.traffic.cache import Key, RouteCache
from phasegate.traffic.router import RouteError

ORIGINAL = "phasegate.dev/original-weights"
ORIGINAL_PATH = "/metadata/annotations/" + ORIGINAL.replace("/", "~1")


@dataclass(frozen=True)
class Pair:
    """Stable and canary side by side at one place of the object."""

    key: str  # the place, stable across weight writes (e.g. the rule's index)
    stable: str  # JSON pointer to the stable backend's weight
    canary: str
    stable_weight: int
    canary_weight: int

    @property
    def canary_percent(self) -> int:
        total = self.stable_weight + self.canary_weight
        return 0 if total == 0 else round(100 * self.canary_weight / total)


class WeightedRouter:
    """Reads and writes the weights of every pair of one object."""

    kind = ""
    group = version = plural = ""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        stable: str,
        canary: str,
        *,
        cache: RouteCache | None = None,
    ) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.stable, self.canary = stable, canary
        self.cache = cache  # the watched copies; None: every read asks the API
        self._seen: dict[str, Any] | None = None  # the object read_weight read

    @property
    def key(self) -> Key:
        return (self.group, self.plural, self.namespace, self.name)

    def routes_read(self) -> tuple[Key, ...]:
        return (self.key,)

    @property
    def title(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def pairs(self, obj: dict[str, Any]) -> list[Pair]:
        """Every pair in ``obj``; RouteError naming what is missing when there is none."""
        raise NotImplementedError

    def _get(self, *, fresh: bool = False) -> dict[str, Any]:
        """The route: the watched copy when there is one (and not ``fresh``), else the API's;
        RouteError when it does not exist (an absence the cache keeps too)."""

        def fetch() -> dict[str, Any]:
            return self.kube.get_custom(
                self.group, self.version, self.plural, self.namespace, self.name
            )

        try:
            return fetch() if self.cache is None else self.cache.read(self.key, fetch, fresh=fresh)
        except NotFound:
            raise RouteError(f"{self.title} not found") from None

    def _patch(self, obj: dict[str, Any], ops: list[dict[str, Any]]) -> None:
        version = unchanged_since(obj["metadata"]["resourceVersion"])
        try:
            written = self.kube.json_patch_custom(
                self.group, self.version, self.plural, self.namespace, self.name, [version, *ops]
            )
        except (Conflict, NotFound):  # overtaken, or gone: the next read asks the API
            if self.cache is not None:
                self.cache.doubt(self.key)
            raise
        if self.cache is not None:
            self.cache.offer(self.key, written)

    def read_weight(self) -> int:
        self._seen = self._get()
        # Pairs that disagree read as the lowest weight: the next write makes them agree.
        return min(p.canary_percent for p in self.pairs(self._seen))

    def set_weight(self, weight: int) -> None:
        obj = self._seen if self._seen is not None else self._get()
        self._seen = None  # one write per reading
        pairs = self.pairs(obj)
        annotations = obj["metadata"].get("annotations") or {}
        ops: list[dict[str, Any]] = []
        if ORIGINAL not in annotations:
            original = {p.key: [p.stable_weight, p.canary_weight] for p in pairs}
            if not annotations:
                ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
            value = json.dumps(original, sort_keys=True)
            ops.append({"op": "add", "path": ORIGINAL_PATH, "value": value})
        for pair in pairs:
            ops.append({"op": "add", "path": pair.stable, "value": 100 - weight})
            ops.append({"op": "add", "path": pair.canary, "value": weight})
        self._patch(obj, ops)

    def restore(self) -> bool:
        try:
            obj = self._get(fresh=True)
            pairs = {p.key: p for p in self.pairs(obj)}
        except RouteError:
            return False
        saved = (obj["metadata"].get("annotations") or {}).get(ORIGINAL)
        if saved is None:
            return False
        ops: list[dict[str, Any]] = [{"op": "remove", "path": ORIGINAL_PATH}]
        for key, (stable, canary) in json.loads(saved).items():
            if key in pairs:
                ops.append({"op": "add", "path": pairs[key].stable, "value": stable})
                ops.append({"op": "add", "path": pairs[key].canary, "value": canary})
        self._patch(obj, ops)
        return True


def pair_at(
    key: str, path: str, entries: list[dict[str, Any]], stable: int, canary: int, default: int
) -> Pair:
    """The pair of ``entries[stable]`` and ``entries[canary]``, the list at pointer ``path``;
    an unset weight counts as ``default``."""

    def weight(entry: dict[str, Any]) -> int:
        value = entry.get("weight")
        return default if value is None else int(value)

    return Pair(
        key,
        f"{path}/{stable}/weight",
        f"{path}/{canary}/weight",
        weight(entries[stable]),
        weight(entries[canary]),
    )
