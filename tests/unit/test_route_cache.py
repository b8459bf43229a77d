"""The route cache keeps the newest copy of the routes asked for, by resourceVersion."""

from __future__ import annotations

from typing import Any, cast

import pytest

from phasegate.kube import NotFound
from phasegate.traffic.cache import RouteCache, newer

ROUTE = ("gateway.networking.k8s.io", "httproutes", "shop", "web")
KINDS = {ROUTE[:2]}


def route(version: str, weight: int = 0) -> dict[str, Any]:
    return {"metadata": {"name": "web", "resourceVersion": version}, "spec": {"weight": weight}}


def test_versions_compare_as_decimal_integers_and_others_do_not_compare() -> None:
    assert newer("10", "9") is True and newer("9", "10") is False and newer("12", "12") is False
    assert newer("100", "99") is True, "longer is newer, not lexically smaller"
    for odd in ("", "007", "abc", "1a"):
        assert newer(odd, "5") is None and newer("5", odd) is None


def test_only_routes_asked_for_are_kept_and_the_newest_copy_wins() -> None:
    cache = RouteCache(KINDS)
    assert not cache.wants(ROUTE), "the watch need not copy it"
    cache.offer(ROUTE, route("5"))
    assert len(cache) == 0, "a route no rollout asked for costs nothing"
    assert cache.get(ROUTE) is None  # asked for: read it from the API, then offer it
    assert cache.wants(ROUTE)
    cache.offer(ROUTE, route("7", 10))
    cache.offer(ROUTE, route("6", 1))  # a late event of an older version
    assert cache.get(ROUTE) == route("7", 10)
    cache.offer(ROUTE, route("12", 30))
    assert cache.get(ROUTE) == route("12", 30)
    cache.deleted(ROUTE, "13")
    with pytest.raises(NotFound):
        cache.get(ROUTE)
    cache.forget(ROUTE)
    assert not cache.wants(ROUTE)
    cache.offer(ROUTE, route("20"))
    assert cache.get(ROUTE) is None, "forgotten: no longer kept"


def test_a_version_that_does_not_compare_sends_the_next_read_to_the_api() -> None:
    cache = RouteCache(KINDS)
    cache.get(ROUTE)
    cache.offer(ROUTE, route("7"))
    cache.offer(ROUTE, route("x-8"))
    assert cache.get(ROUTE) is None


def test_kinds_not_watched_are_never_held() -> None:
    cache = RouteCache(set())
    assert cache.get(ROUTE) is None
    cache.offer(ROUTE, route("7"))
    assert cache.get(ROUTE) is None


def test_a_copy_nothing_confirmed_for_max_age_is_read_again() -> None:
    now = [0.0]
    cache = RouteCache(KINDS, max_age=60, clock=lambda: now[0])
    cache.get(ROUTE)
    cache.offer(ROUTE, route("7"))
    now[0] = 50
    cache.offer(ROUTE, route("7"))  # the same version seen again: confirmed
    now[0] = 100
    assert cache.get(ROUTE) == route("7")
    now[0] = 111
    assert cache.get(ROUTE) is None, "unconfirmed for more than a minute"


def test_a_route_that_does_not_exist_is_known_absent_until_a_copy_comes_or_max_age() -> None:
    now = [0.0]
    cache = RouteCache(KINDS, max_age=60, clock=lambda: now[0])
    cache.missing(ROUTE, cache.stamp())
    assert len(cache) == 0, "the absence of a route no rollout asked for costs nothing"
    assert cache.get(ROUTE) is None
    cache.missing(ROUTE, cache.stamp())  # the API answered 404
    now[0] = 60
    with pytest.raises(NotFound):
        cache.get(ROUTE)  # no GET: held absent for max_age, like a copy
    now[0] = 61
    assert cache.get(ROUTE) is None, "nothing confirms an absence: asked of the API again"
    cache.missing(ROUTE, cache.stamp())
    cache.offer(ROUTE, route("3"))  # a watch's ADDED, or a create's answer
    assert cache.get(ROUTE) == route("3")


def test_a_late_delete_event_of_an_older_route_keeps_the_one_made_since() -> None:
    cache = RouteCache(KINDS)
    cache.get(ROUTE)
    cache.offer(ROUTE, route("9"))  # made again; its create's answer came before the event
    cache.deleted(ROUTE, "8")
    assert cache.get(ROUTE) == route("9")
    cache.deleted(ROUTE, "10")
    with pytest.raises(NotFound):
        cache.get(ROUTE)


def test_a_404_on_its_way_does_not_undo_a_copy_the_watch_brought_meanwhile() -> None:
    cache = RouteCache(KINDS)
    assert cache.get(ROUTE) is None
    asked = cache.stamp()  # a router asks the API...
    cache.offer(ROUTE, route("5"))  # ...the route is made, and the watch shows it...
    cache.missing(ROUTE, asked)  # ...before the 404 of the read reaches the cache
    assert cache.get(ROUTE) == route("5")
    asked = cache.stamp()  # a read made later (bypassing the copy) finds it gone
    cache.missing(ROUTE, asked)
    with pytest.raises(NotFound):
        cache.get(ROUTE)


def test_an_answer_from_before_a_deletion_does_not_bring_the_route_back() -> None:
    cache = RouteCache(KINDS)
    cache.get(ROUTE)
    cache.offer(ROUTE, route("7"))
    cache.deleted(ROUTE, "8")  # the watch's DELETED...
    cache.offer(ROUTE, route("7"))  # ...then a read's answer that left the API before it
    with pytest.raises(NotFound):
        cache.get(ROUTE)
    cache.offer(ROUTE, route("9"))  # made again
    assert cache.get(ROUTE) == route("9")


def test_a_copy_a_write_was_refused_over_is_read_again_and_not_revived_by_old_events() -> None:
    cache = RouteCache(KINDS)
    cache.get(ROUTE)
    cache.offer(ROUTE, route("7"))
    cache.doubt(ROUTE)  # a write over it: 409
    assert cache.get(ROUTE) is None, "asked of the API"
    cache.offer(ROUTE, route("7"))  # a lagging watch's events, no newer than the copy
    cache.offer(ROUTE, route("6"))
    assert cache.get(ROUTE) is None, "still asked of the API"
    cache.offer(ROUTE, route("8"))  # the API's answer
    assert cache.get(ROUTE) == route("8")


def test_only_kinds_the_api_lets_the_operator_list_and_watch_are_watched() -> None:
    from phasegate.kube import Kube
    from phasegate.runtime.operator import watchable_kinds

    class Answers:
        def may(self, verb: str, group: str, resource: str, namespace: str | None) -> bool | None:
            if resource == "virtualservices":
                return verb != "watch"  # list only: not enough
            if resource == "ingresses":
                return False
            return None if resource == "trafficsplits" else namespace != "pay"

    kube = cast(Kube, Answers())
    assert watchable_kinds(kube, ()) == {
        ("gateway.networking.k8s.io", "httproutes"),
        ("split.smi-spec.io", "trafficsplits"),  # an API that cannot say is taken as yes
    }
    assert watchable_kinds(kube, ("shop", "pay")) == {("split.smi-spec.io", "trafficsplits")}
