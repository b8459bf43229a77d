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


class RouteCache:
    """The newest copy seen of each route asked for, of the kinds the operator watches.

    Routers read from threads while watch events arrive on the event loop: a lock keeps an
    older copy from replacing a newer one between the two. A copy nothing confirmed for
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
        # The copy (None: the route does not exist) and when it was last confirmed.
        self._copies: dict[Key, tuple[dict[str, Any] | None, float]] = {}

    def get(self, key: Key) -> dict[str, Any] | None:
        """The newest copy of a route; NotFound when it does not exist; None: then read it
        from the API and :meth:`offer` it (:meth:`deleted` on a 404). Asking for a route
        makes the cache keep it current from then on."""
        if key[:2] not in self.watched:
            return None
        with self._lock:
            self._wanted.add(key)
            held = self._copies.get(key)
            if held is None or self._clock() - held[1] > self.max_age:
                return None
        if held[0] is None:
            raise NotFound(f"{key[1]} {key[2]}/{key[3]} does not exist")
        return held[0]

    def wants(self, key: Key) -> bool:
        """Whether a rollout asked for the route: a watch event of any other is not kept, so
        it need not be copied either."""
        return key in self._wanted

    def offer(self, key: Key, obj: dict[str, Any]) -> None:
        """A copy of a route, from a watch event, a read or a write's answer."""
        with self._lock:
            if key not in self._wanted:
                return
            held = self._copies.get(key)
            kept = held[0] if held else None
            if kept is None:  # none held, or held absent: the route exists now
                self._copies[key] = (obj, self._clock())
                return
            theirs = str(obj["metadata"].get("resourceVersion", ""))
            mine = str(kept["metadata"].get("resourceVersion", ""))
            if theirs == mine:
                self._copies[key] = (kept, self._clock())
                return
            is_newer = newer(theirs, mine)
            if is_newer is None:
                del self._copies[key]  # which one is current is unknown: ask the API next time
            elif is_newer:
                self._copies[key] = (obj, self._clock())

    def deleted(self, key: Key, version: str = "") -> None:
        """A route that does not exist: the API answered 404, or it was deleted by the
        operator, or as a watch saw (``version``: the deleted one's; a newer copy, of the
        route made again since, is kept)."""
        with self._lock:
            if key not in self._wanted:
                return
            held = self._copies.get(key)
            kept = held[0] if held else None
            if version and kept and newer(str(kept["metadata"].get("resourceVersion")), version):
                return  # a late event: the route was made again since
            self._copies[key] = (None, self._clock())

    def refused(self, key: Key) -> None:
        """A write over the copy held was refused (409): someone else's change overtook it.
        The next read asks the API, not waiting for the watch (which may have stopped)."""
        with self._lock:
            self._copies.pop(key, None)

    def forget(self, key: Key) -> None:
        """Stop keeping a route (its rollout is gone)."""
        with self._lock:
            self._wanted.discard(key)
            self._copies.pop(key, None)

    def __len__(self) -> int:
        return len(self._copies)
