"""kopf glue: one daemon per rollout evaluates it at its own interval; deletion restores
the route. Only wiring here; the work is in :mod:`phasegate.runtime.reconcile`.

Why a daemon per object rather than one timer at the smallest interval: each rollout has
its own ``spec.interval`` and the engine says exactly when it next needs to be called
(sooner at a checkpoint, at once after a weight change), a daemon never overlaps itself,
and kopf stops it when the object goes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import structlog

from phasegate import GROUP, PLURAL, VERSION
from phasegate.api.spec import RolloutSpec
from phasegate.api.validation import validate_spec
from phasegate.kube import Kube, NotFound
from phasegate.runtime.reconcile import Context, evaluate_once
from phasegate.runtime.sharding import Presence, Shard, evaluator
from phasegate.runtime.telemetry import Telemetry
from phasegate.traffic import WATCHED_ROUTES, RouteCache, RouteError, router_for, watched_kinds

log = structlog.get_logger("phasegate")
PREFIX = "phasegate.dev"
FINALIZER = f"{PREFIX}/finalizer"
# Why a daemon stops when its rollout is no longer this operator's to evaluate.
NO_LONGER_HERE = (
    kopf.DaemonStoppingReason.RESOURCE_DELETED
    | kopf.DaemonStoppingReason.FILTERS_MISMATCH
    | kopf.DaemonStoppingReason.OPERATOR_PAUSING
)


def configure_kopf(
    settings: kopf.OperatorSettings,
    *,
    peering: str | None,
    priority: int = 0,
    peering_lifetime: int = 15,
    shard: Shard | None = None,
    selector: str | None = None,
) -> None:
    """kopf's own progress in annotations under our prefix, never in our status schema.
    ``selector``: only rollouts with these labels are watched (the API filters them)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = finalizer(shard)
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    if selector:
        settings.watching.label_selectors[GROUP, PLURAL] = selector
    if peering:
        settings.peering.name = peering
        settings.peering.mandatory = True
        settings.peering.priority = priority  # replicas need distinct priorities: the highest acts
        settings.peering.lifetime = peering_lifetime
    settings.networking.request_timeout = 30


def finalizer(shard: Shard | None) -> str:
    """The finalizer kopf puts on the rollouts it evaluates (its daemons and the route's
    restoration need one). Each shard has its own: kopf removes its finalizer from objects
    none of its handlers match, so shards sharing one would take it off each other's
    rollouts and put it back, for ever."""
    return FINALIZER if shard is None else f"{FINALIZER}-shard-{shard.index}-of-{shard.count}"


def foreign_finalizers(body: dict[str, Any], shard: Shard | None) -> list[str]:
    """The finalizers of other layouts (an earlier or a later number of shards, or none)
    on the rollout."""
    ours = finalizer(shard)
    return [
        f
        for f in body.get("metadata", {}).get("finalizers") or []
        if f.startswith(FINALIZER) and f != ours
    ]


async def evaluated_elsewhere(
    ctx: Context, body: dict[str, Any], shard: Shard | None, presence: Presence
) -> str | None:
    """The finalizer of the layout that evaluates the rollout if not this one (see
    :mod:`phasegate.runtime.sharding`); else None, once the finalizers of layouts that are
    gone are removed (raises :class:`FinalizersKept` if they could not be)."""
    finalizers = body["metadata"].get("finalizers") or []
    if not (foreign := foreign_finalizers(body, shard)):
        return None
    for fresh in (False, True):  # a layout is taken for gone only on a fresh read
        active = await presence.active(body["metadata"]["namespace"], fresh=fresh)
        if (first := evaluator(finalizers, finalizer(shard), active)) != finalizer(shard):
            return first
        gone = [f for f in foreign if f not in active]
        if not gone:
            return None
    await _remove_finalizers(ctx, body, gone)
    return None


def register(
    registry: kopf.OperatorRegistry,
    context: Context,
    *,
    peering: str | None,
    priority: int = 0,
    peering_lifetime: int = 15,
    shard: Shard | None = None,
    selector: str | None = None,
    presence: Presence | None = None,
) -> None:
    """``presence``: how other layouts are seen (by default, none is)."""
    seen = presence or Presence(context.kube, clusterwide=True, standalone=True)

    def owned(name: str | None, namespace: str | None, **_: Any) -> bool:
        return shard is None or shard.owns(namespace, name)

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_kopf(
            settings,
            peering=peering,
            priority=priority,
            peering_lifetime=peering_lifetime,
            shard=shard,
            selector=selector,
        )
        memo["context"] = context

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)  # in-cluster, else $KUBECONFIG

    @kopf.daemon(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id="evaluate",
        cancellation_timeout=5.0,
        when=owned,
    )
    async def evaluate_rollout(
        body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
    ) -> None:
        ctx: Context = memo["context"]
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        ctx.evaluating.add(key)
        try:
            await _evaluate_until_stopped(ctx, body, stopped, shard, seen)
        finally:
            ctx.evaluating.discard(key)
            departed = key in ctx.departed
            ctx.departed.discard(key)
            if departed or (stopped.reason is not None and stopped.reason & NO_LONGER_HERE):
                # Deleted, out of this operator's selection or shard, or another replica
                # acts: nothing of the rollout stays in this one's memory and metrics.
                ctx.forget(*key)

    finishing: dict[tuple[str, str], asyncio.Task[None]] = {}

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="departures")
    async def departures(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        """A rollout that leaves the watch without being deleted (relabelled out of the
        operator's --selector) is not stopped by kopf: its daemon ends at its next wake-up.
        One deleted with only the finalizers of other layouts on it is finished here."""
        ctx: Context = memo["context"]
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if type == "DELETED" and key in ctx.evaluating:
            ctx.departed.add(key)
        elif type != "DELETED":
            ctx.departed.discard(key)
        meta = body["metadata"]
        if (
            type != "DELETED"
            and meta.get("deletionTimestamp")
            and owned(meta["name"], meta["namespace"])
            and finalizer(shard) not in (meta.get("finalizers") or ())
            and foreign_finalizers(dict(body), shard)
            and key not in finishing
        ):
            finishing[key] = asyncio.create_task(_finish_deletion(ctx, *key, shard, seen))
            finishing[key].add_done_callback(lambda _: finishing.pop(key, None))

    # The routes' watches keep the copies evaluations read (traffic.cache); only the kinds
    # the operator may list and watch (its --traffic-providers) are watched.
    for group, version, plural in WATCHED_ROUTES:
        if (group, plural) in context.routes.watched:
            kopf.on.event(group, version, plural, registry=registry, id=f"watch-{plural}")(
                _route_watcher(context.routes, group, plural)
            )

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="restore-route", when=owned)
    async def restore_route(
        body: kopf.Body,
        memo: kopf.Memo,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        **_: Any,
    ) -> None:
        ctx: Context = memo["context"]
        spec, _problems = validate_spec(dict(body.get("spec") or {}))
        if spec is None:
            return
        try:
            other = await evaluated_elsewhere(ctx, dict(body), shard, seen)
        except FinalizersKept as kept:  # none would remove them later: kopf asks again
            raise kopf.TemporaryError(str(kept), delay=2) from None
        if other is not None:  # this layout's finalizer stays until that one is done
            raise kopf.TemporaryError(f"the operator of {other} evaluates it", delay=2)
        if said := await _restore_route(ctx, body["metadata"]["namespace"], spec):
            logger.info(said)
        ctx.forget(body["metadata"]["namespace"], body["metadata"]["name"])


async def _restore_route(ctx: Context, namespace: str, spec: RolloutSpec) -> str | None:
    """Put the rollout's route back as it was before the rollout; what was done, if anything."""
    try:
        router = router_for(spec, namespace, ctx.kube)
        if await asyncio.to_thread(router.restore):
            return f"{router.kind} weights restored to what they were before the rollout"
    except RouteError as error:
        return f"route not restored: {error}"
    return None


async def _finish_deletion(
    ctx: Context, namespace: str, name: str, shard: Shard | None, presence: Presence
) -> None:
    """A rollout deleted with none of this layout's finalizer on it, only those of others
    (kopf calls no deletion handler then, and adds none during a deletion): while one of
    those layouts is active, it finishes the deletion; once none is, this owner restores the
    route and removes their finalizers. Asks again every 2 s until the rollout is gone."""
    while True:
        try:
            body = await asyncio.to_thread(ctx.kube.get_rollout, namespace, name)
            foreign = foreign_finalizers(body, shard)
            if not foreign or finalizer(shard) in (body["metadata"].get("finalizers") or ()):
                return  # nothing of other layouts left, or kopf's deletion handler has it
            active = await presence.active(namespace, fresh=True)
            if not any(f in active for f in foreign):
                spec, _problems = validate_spec(dict(body.get("spec") or {}))
                if spec is not None and (said := await _restore_route(ctx, namespace, spec)):
                    log.info(said, namespace=namespace, rollout=name)
                await _remove_finalizers(ctx, body, foreign)
                ctx.forget(namespace, name)
                return
        except NotFound:
            return
        except Exception as error:  # (FinalizersKept, the API): ask again
            log.info("deletion not finished yet", rollout=name, error=str(error))
        await asyncio.sleep(2)


async def _evaluate_until_stopped(
    ctx: Context,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    shard: Shard | None,
    presence: Presence,
) -> None:
    """Evaluate the rollout, each time its last evaluation asked, until kopf stops it;
    while another layout's operator evaluates it (a change of shards), look again each
    second instead."""
    # kopf's body follows the watch, which may lag behind our own writes (or show kopf's
    # finalizer patch before our status). The rollout is evaluated as the watch shows it,
    # except while the watch has not yet caught up with our own last write: then as that
    # write stored it. Either may be behind another writer; status writes are conditional
    # on the version evaluated, so a stale one fails (409) and the API itself is read.
    written: dict[str, Any] | None = None  # the object our last write stored
    written_over: str | None = None  # the resourceVersion that write replaced
    reread = False
    loop = asyncio.get_running_loop()
    due, period, late = loop.time(), 0.0, False
    waited_for: str | None = None  # the layout evaluating the rollout meanwhile
    seen = presence.standalone  # (an operator without a peering cannot be seen)
    while not stopped:
        if (body["metadata"]["namespace"], body["metadata"]["name"]) in ctx.departed:
            return
        # A copy of the top level only: kopf gives each watch event a new object and
        # changes none it gave, and an evaluation changes nothing it reads.
        current = dict(body)
        meta = current["metadata"]
        if finalizer(shard) not in (meta.get("finalizers") or ()):
            await stopped.wait(0.2)  # kopf puts it on first: then its place says who evaluates
            continue
        try:
            if not seen:  # others see this layout before it evaluates anything
                seen = finalizer(shard) in await presence.active(meta["namespace"])
                if not seen:
                    await stopped.wait(0.2)
                    continue
            other = await evaluated_elsewhere(ctx, current, shard, presence)
        except FinalizersKept as kept:  # the next evaluation tries again
            log.info(str(kept), namespace=meta["namespace"], rollout=meta["name"])
            other = None
        except Exception as error:  # the peerings unreadable: look again, evaluate nothing
            log.warning("other shard layouts not known", rollout=meta["name"], error=str(error))
            await stopped.wait(5)
            continue
        if other is not None:
            if other != waited_for:
                log.info(
                    "evaluated by another shard layout until it stops",
                    namespace=meta["namespace"],
                    rollout=meta["name"],
                    by=other,
                )
            waited_for = other
            await stopped.wait(presence.ttl)
            continue
        if waited_for is not None:  # taken over: from the API's copy, due from now
            log.info(
                "taken over from another shard layout",
                namespace=meta["namespace"],
                rollout=meta["name"],
                after=waited_for,
            )
            waited_for, reread, due = None, True, loop.time()
        if written is not None and meta.get("resourceVersion") != written_over:
            written = None  # the watch has caught up with our write (or gone past it)
        try:
            if reread:
                current = await asyncio.to_thread(
                    ctx.kube.get_rollout, meta["namespace"], meta["name"]
                )
            elif written is not None:
                current = written
            # Lag: from when the evaluation was due (the previous one's start plus the
            # delay it asked for) to now. Every due time that passed counts as due.
            started = loop.time()
            lag = max(0.0, started - due)
            ctx.telemetry.observe("phasegate_evaluation_lag_seconds", lag)
            missed = int(lag // period) if period > 0 else 0
            ctx.telemetry.inc("phasegate_evaluations_due_total", 1 + missed)
            if missed and not late:
                log.warning(
                    "evaluations falling behind",
                    namespace=meta["namespace"],
                    rollout=meta["name"],
                    lag=round(lag, 3),
                    interval=period,
                )
            late = missed > 0
            tick = await evaluate_once(
                ctx, current, datetime.now(UTC), late_by=timedelta(seconds=lag)
            )
        except NotFound:
            return  # deleted between the watch and us; the delete handler restores the route
        except Exception:  # a bug or an API outage must not end the daemon for ever
            log.exception(
                "evaluation failed; retrying", namespace=meta["namespace"], rollout=meta["name"]
            )
            reread = True
            await stopped.wait(5)
            continue
        reread = tick.reread
        if tick.written is not None:
            written = tick.written
            written_over = current["metadata"].get("resourceVersion")
        period = tick.next_evaluation.total_seconds()
        due = started + period
        if due > loop.time():
            await stopped.wait(due - loop.time())


def _route_watcher(routes: RouteCache, group: str, plural: str) -> Callable[..., Awaitable[None]]:
    async def route_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
        meta = body.get("metadata") or {}
        key = (group, plural, meta.get("namespace") or "", meta.get("name") or "")
        if type == "DELETED":
            routes.deleted(key, str(meta.get("resourceVersion") or ""))
        elif routes.wants(key):  # (a route asked for meanwhile is read from the API)
            routes.offer(key, copy.deepcopy(dict(body)))

    return route_changed


def watchable_kinds(kube: Kube, namespaces: tuple[str, ...]) -> set[tuple[str, str]]:
    """(group, plural) of the route kinds this operator may list and watch in every place it
    works (all namespaces, or each one given); an API that cannot say is taken as yes."""
    places: tuple[str | None, ...] = namespaces or (None,)
    allowed = {
        (group, plural)
        for group, _, plural in WATCHED_ROUTES
        if all(
            kube.may(verb, group, plural, place) is not False
            for verb in ("list", "watch")
            for place in places
        )
    }
    log.info("routes read from watches", kinds=sorted(f"{p}.{g}" for g, p in allowed))
    return allowed


class FinalizersKept(Exception):
    """The finalizers of layouts that are gone could not be removed (yet)."""


async def _remove_finalizers(ctx: Context, body: dict[str, Any], names: list[str]) -> None:
    """Remove ``names`` from the rollout's finalizers, over the list as read (a JSON patch
    that tests it): a list changed meanwhile is refused, and :class:`FinalizersKept` says so."""
    meta = body["metadata"]
    current = list(meta.get("finalizers") or [])
    kept = [f for f in current if f not in names]
    patch = [
        {"op": "test", "path": "/metadata/finalizers", "value": current},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept},
    ]
    where = (GROUP, VERSION, PLURAL, meta["namespace"], meta["name"])
    try:
        await asyncio.to_thread(ctx.kube.json_patch_custom, *where, patch)
    except Exception as error:
        raise FinalizersKept(f"finalizers of layouts gone not removed yet: {error}") from None
    log.info(
        "removed finalizers of layouts gone",
        namespace=meta["namespace"],
        rollout=meta["name"],
        finalizers=names,
    )


def make_context(
    default_prometheus: str | None,
    *,
    max_in_flight: int = 64,
    coalesce_window: float = 0.5,
    traffic_providers: tuple[str, ...] | None = (),
    namespaces: tuple[str, ...] = (),
) -> Context:
    """What evaluations share. ``traffic_providers``: those whose routes are watched; None:
    those whose route kinds the API lets this operator list and watch where it works."""
    from phasegate.notify.cluster import make_notifier
    from phasegate.runtime.telemetry import standard

    telemetry = standard(Telemetry())
    kube = telemetry.instrument(Kube.from_environment())
    return Context(
        kube=kube,
        telemetry=telemetry,
        default_prometheus=default_prometheus,
        notifier=make_notifier(kube, telemetry),
        max_in_flight=max_in_flight,
        coalesce_window=coalesce_window,
        routes=RouteCache(
            watched_kinds(traffic_providers)
            if traffic_providers is not None
            else watchable_kinds(kube, namespaces)
        ),
    )
