"""The routes rollouts use, as watches last showed them: read without a GET per evaluation.

The operator watches the route kinds (HTTPRoute, VirtualService, TrafficSplit, Ingress) and
offers every event here; only routes a rollout has asked for are kept, so a cluster's other
routes cost no memory. A route is read from the API once, the first time it is asked for,
then kept current by the watch and by the operator's own writes (the API's answer to them).
So is a route that does not exist (the API answered 404, or it was deleted): reading it
raises NotFound, without a GET, until a copy arrives (a watch's ADDED, a create's answer).

Of two copies of a route, the newer is kept: resourceVersions of one kind compare as numbers
(Kubernetes 1.35, KEP-5504: decimal integers, longer is newer). A version that is not one
(an API server that does not follow it) drops the copy, and the next read asks the API.

Staleness is bounded by the watch's delay and costs no correctness: a weight is written
with a JSON patch conditional on the resourceVersion it was computed from, so a write over
a copy someone else's change overtook is refused (409) and the route is read again; a
create over a route wrongly held absent is refused likewise (409 AlreadyExists).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from phasegate.kube import NotFound

Key = tuple[str, str, str, str]  # (group, plural, namespace, name)

_DECIMAL = re.compile(r"[1-9][0-9]*")


def newer(version: str, than: str) -> bool | None:
    """Whether resourceVersion ``version`` is newer than ``than``; None when either is not
    comparable (not a decimal integer without leading zeros)."""
    if not (_DECIMAL.fullmatch(version) and _DECIMAL.fullmatch(than)):
        return None
    return (len(version), version) > (len(than), than)


class _Held:
    """What is known of one route: its copy, or that it does not exist (``obj`` None)."""

    __slots__ = ("at", "doubted", "obj", "seq", "version")

    def __init__(self, obj: dict[str, Any] | None, version: str, at: float, seq: int) -> None:
        self.obj = obj
        self.version = version  # the copy's resourceVersion, or the deletion's ("": unknown)
        self.at = at  # when it was last confirmed
        self.seq = seq  # the cache's count of changes then (see RouteCache.stamp)
        self.doubted = False  # a write refused over it: the next read asks the API


def _version(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("resourceVersion", ""))


class RouteCache:
    """The newest copy seen of each route asked for, of the kinds the operator watches.

    Routers read from threads while watch events arrive on the event loop: a lock keeps an
    older copy from replacing a newer one between the two, and an answer a thread waited
    for from replacing what the watch brought meanwhile. A copy nothing confirmed for
    ``max_age`` seconds (no event, read or write of its version or a newer one) is read from
    the API again: a watch that stopped (its rights revoked, its CRD replaced) delays seeing
    someone else's change by that much at most. An absence is held as long, from when it was
    learnt: no event confirms one."""

    def __init__(
        self,
        watched: set[tuple[str, str]],
        *,
        max_age: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.watched = watched  # (group, plural) of the kinds watched
        self.max_age, self._clock = max_age, clock
        self._lock = threading.Lock()
        self._wanted: set[Key] = set()
        self._held: dict[Key, _Held] = {}
        self._changes = 0

    def _keep(self, key: Key, obj: dict[str, Any] | None, version: str) -> None:
        self._changes += 1
        self._held[key] = _Held(obj, version, self._clock(), self._changes)

    def stamp(self) -> int:
        """Taken before a read from the API: given back to :meth:`missing` with its 404, it
        tells what the watch brought while the read was on its way."""
        return self._changes

    def _fresh(self, held: _Held | None) -> bool:
        return held is not None and not held.doubted and self._clock() - held.at <= self.max_age

    def get(self, key: Key) -> dict[str, Any] | None:
        """The newest copy of a route; NotFound when it does not exist; None: then read it
        from the API and :meth:`offer` it (:meth:`missing` on a 404). Asking for a route
        makes the cache keep it current from then on."""
        if key[:2] not in self.watched:
            return None
        with self._lock:
            self._wanted.add(key)
            held = self._held.get(key)
            if held is None or not self._fresh(held):
                return None
            obj = held.obj
        if obj is None:
            raise NotFound(f"{key[1]} {key[2]}/{key[3]} does not exist")
        return obj

    def read(
        self, key: Key, fetch: Callable[[], dict[str, Any]], *, fresh: bool = False
    ) -> dict[str, Any]:
        """The route: the copy held (unless ``fresh``), else the one ``fetch`` reads from the
        API, offered; NotFound when it does not exist, which is kept too. A fresh read
        does not make the cache keep the route."""
        if not fresh and (held := self.get(key)):
            return held
        since = self.stamp()
        try:
            obj = fetch()
        except NotFound:
            self.missing(key, since)
            raise
        self.offer(key, obj)
        return obj

    def wants(self, key: Key) -> bool:
        """Whether a rollout asked for the route: a watch event of any other is not kept, so
        it need not be copied either."""
        return key in self._wanted

    def offer(self, key: Key, obj: dict[str, Any]) -> None:
        """A copy of a route, from a watch event, a read or a write's answer."""
        with self._lock:
            if key not in self._wanted:
                return
            held, theirs = self._held.get(key), _version(obj)
            if held is None or (held.obj is None and not held.version):
                self._keep(key, obj, theirs)
                return
            if theirs == held.version and held.obj is not None:
                if not held.doubted:  # (a copy a write was refused over stays doubted)
                    held.at = self._clock()
                return
            is_newer = newer(theirs, held.version)
            if is_newer is None:
                del self._held[key]  # which one is current is unknown: ask the API next time
            elif is_newer:  # (older: a late answer, or a copy from before the deletion held)
                self._keep(key, obj, theirs)

    def deleted(self, key: Key, version: str) -> None:
        """A watch saw the route deleted (``version``: the deleted one's); a newer copy, of
        the route made again since, is kept."""
        with self._lock:
            if key not in self._wanted:
                return
            held = self._held.get(key)
            if held is not None and held.obj is not None and newer(held.version, version):
                return  # a late event: the route was made again since
            self._keep(key, None, version)

    def missing(self, key: Key, since: int) -> None:
        """The API answered with 404 a read made at :meth:`stamp` ``since``. A copy the watch
        brought while the read was on its way is the newer word, and is kept (if the route
        is gone, its deletion follows)."""
        with self._lock:
            if key not in self._wanted:
                return
            held = self._held.get(key)
            if held is not None and held.obj is not None and held.seq > since:
                return
            self._keep(key, None, "")

    def doubt(self, key: Key) -> None:
        """What is held of the route may be wrong (a write over the copy was refused, or
        found the route gone; the operator deleted it): the next read asks the API, not
        waiting for the watch, which may have stopped or may lag."""
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                held.doubted = True

    def forget(self, key: Key) -> None:
        """Stop keeping a route (its rollout is gone)."""
        with self._lock:
            self._wanted.discard(key)
            self._held.pop(key, None)

    def __len__(self) -> int:
        return len(self._held)
