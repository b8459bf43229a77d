"""One evaluation of one rollout: observe, ask the engine, record the decision, act on it.

Everything that touches the network is here, around the pure engine. Prometheus is asked on
the event loop (aiohttp, bounded per Prometheus, identical queries sent once); the blocking
Kubernetes client runs in threads, never on the event loop.

The order of the writes is the crash-safety argument (docs/semantics.md, "Order of writes"):
the decision goes into status first, written on the condition that the rollout is still the
version it was computed from; only once it is stored does anything act on it (route, canary
Deployment, Events, removal of the controls it consumed, notifications). A crash or a failed
call anywhere after the status write leaves a status that asks for exactly what was decided,
and the next evaluation finishes it; a failed status write acts on nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf
import structlog
from pydantic import ValidationError

from phasegate import workloads
from phasegate.api import controls as control_annotations
from phasegate.api.spec import RolloutSpec
from phasegate.api.status import PhaseRecord, RolloutStatus, State
from phasegate.api.validation import validate_spec
from phasegate.engine import (
    Control,
    ControlAction,
    Evaluation,
    Measurement,
    Observations,
    Outcome,
    QueryRequest,
    WorkloadAction,
    evaluate,
    invalid,
    queries_needed,
)
from phasegate.kube import Conflict, Forbidden, Kube, NotFound
from phasegate.metrics import Prometheus, PrometheusSettings
from phasegate.notify.delivery import Notifier
from phasegate.notify.hook import hand_over, with_notifications
from phasegate.report.history import Judged, judge_phase, record_history
from phasegate.runtime.telemetry import Telemetry
from phasegate.traffic import RouteCache, RouteError, Router, router_for
from phasegate.traffic.cache import Key

log = structlog.get_logger("phasegate")

# After a write that failed for a reason other than a conflict (a 5xx, a timeout), the
# rollout is read and evaluated again this soon.
RETRY_AFTER = timedelta(seconds=1)


def _kopf_body(body: dict[str, Any]) -> kopf.Body:
    """kopf posts Events about a Body; ours is the plain dict the evaluation read."""
    return kopf.Body(cast(kopf.RawBody, body))


@dataclass
class Context:
    """What every evaluation shares; built once at start-up and kept in kopf's memo."""

    kube: Kube
    telemetry: Telemetry
    default_prometheus: str | None = None
    notifier: Notifier | None = None
    # How hard one Prometheus is asked: requests open at once, and the instant's rounding
    # under which identical queries are sent once (operator flags, not the rollouts' to set).
    max_in_flight: int = 64
    coalesce_window: float = 0.5
    # The routes rollouts use, as the operator's watches show them (none watched: every
    # evaluation reads its route from the API).
    routes: RouteCache = field(default_factory=lambda: RouteCache(set()))
    providers: dict[PrometheusSettings, Prometheus] = field(default_factory=dict)
    # A phase's worst values seen since the rollout's last status write, by (namespace,
    # name): the stored history they extend, and the history with them. They are written
    # with the next status change (a phase always ends with one), never on their own.
    unwritten_history: dict[tuple[str, str], tuple[list[PhaseRecord], list[PhaseRecord]]] = field(
        default_factory=dict
    )
    # The rollouts whose daemons run, and those of them that left the watch without being
    # deleted (relabelled out of --selector): their daemons end at their next wake-up.
    evaluating: set[tuple[str, str]] = field(default_factory=set)
    departed: set[tuple[str, str]] = field(default_factory=set)
    # Each rollout's spec as last received, and it validated (or the problems found).
    specs: dict[tuple[str, str], tuple[Any, RolloutSpec | None, list[str]]] = field(
        default_factory=dict
    )
    # The routes each rollout read through the route cache.
    routes_read: dict[tuple[str, str], set[Key]] = field(default_factory=dict)

    def reads_routes(self, namespace: str, name: str, router: Router) -> None:
        """The rollout reads the router's routes: the route cache keeps them until the
        rollout is forgotten (every one it read, also after its spec named another)."""
        self.routes_read.setdefault((namespace, name), set()).update(router.routes_read())

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is kept in memory for a rollout gone from this operator: deleted, or
        another's now (its routes too: another rollout that reads one reads it again), and
        its series in the operator's metrics."""
        self.telemetry.forget_rollout(namespace, name)
        self.unwritten_history.pop((namespace, name), None)
        self.specs.pop((namespace, name), None)
        for route in self.routes_read.pop((namespace, name), ()):
            self.routes.forget(route)

    def spec(self, namespace: str, name: str, raw: Any) -> tuple[RolloutSpec | None, list[str]]:
        """The rollout's spec validated, or why it is invalid: validated again only when it
        changed, so that one spec object serves its evaluations (and the engine's plans of its
        phases, kept per spec object, are made once)."""
        kept = self.specs.get((namespace, name))
        if kept is not None and (kept[0] is raw or kept[0] == raw):
            if kept[0] is not raw:  # keep the watch's newest copy, not an older one beside it
                self.specs[(namespace, name)] = (raw, kept[1], kept[2])
            return kept[1], kept[2]
        spec, problems = validate_spec(raw)
        self.specs[(namespace, name)] = (raw, spec, problems)
        return spec, problems

    def prometheus(self, settings: PrometheusSettings) -> Prometheus:
        if settings not in self.providers:
            self.providers[settings] = Prometheus(settings)
        return self.providers[settings]

    async def close(self) -> None:
        """Close the HTTP sessions opened on this event loop (at shutdown)."""
        for provider in self.providers.values():
            await provider.close()
        if self.notifier is not None:
            await self.notifier.close()


def _settings(ctx: Context, spec: RolloutSpec, namespace: str) -> PrometheusSettings:
    """Prometheus settings from the spec, with credentials read from Secrets. Blocking."""
    config = spec.prometheus
    if config is None:
        if not ctx.default_prometheus:
            raise LookupError("no spec.prometheus and no --prometheus default on the operator")
        return PrometheusSettings(
            address=ctx.default_prometheus,
            max_in_flight=ctx.max_in_flight,
            coalesce_window=ctx.coalesce_window,
        )

    def secret(ref: Any) -> str | None:
        return None if ref is None else ctx.kube.read_secret_key(namespace, ref.name, ref.key)

    auth = config.auth
    return PrometheusSettings(
        address=config.address,
        timeout=config.timeout.total_seconds(),
        bearer_token=secret(auth.bearer_token) if auth else None,
        username=secret(auth.username) if auth else None,
        password=secret(auth.password) if auth else None,
        ca_pem=secret(config.ca_secret),
        insecure_skip_verify=config.insecure_skip_verify,
        max_in_flight=ctx.max_in_flight,
        coalesce_window=ctx.coalesce_window,
    )


async def _measure(
    ctx: Context, spec: RolloutSpec, namespace: str, requests: list[QueryRequest]
) -> dict[str, Measurement]:
    if not requests:
        return {}
    config = spec.prometheus
    try:
        if config is None or (config.auth is None and config.ca_secret is None):
            settings = _settings(ctx, spec, namespace)  # no Secret to read: nothing blocks
        else:
            settings = await asyncio.to_thread(_settings, ctx, spec, namespace)
        provider = ctx.prometheus(settings)
    except (LookupError, NotFound) as error:
        why = f"cannot configure Prometheus: {error}"
        return {r.key: Measurement(r.query, Outcome.UNAVAILABLE, message=why) for r in requests}

    async def one(request: QueryRequest) -> Measurement:
        started = time.perf_counter()
        answer = await provider.measure_async(request)  # on the loop; bounded per Prometheus
        ctx.telemetry.observe("phasegate_query_duration_seconds", time.perf_counter() - started)
        if answer.is_error or answer.outcome is Outcome.SEVERAL_SERIES:
            ctx.telemetry.inc("phasegate_query_errors_total", outcome=answer.outcome.value)
        return answer

    answers = await asyncio.gather(*(one(r) for r in requests))
    return {r.key: a for r, a in zip(requests, answers, strict=True)}


def _controls(
    annotations: dict[str, str],
) -> tuple[list[Control], list[tuple[str, str]], dict[str, str], list[str]]:
    """The controls requested, the refused ones' ids and problems, each request's annotation
    key by control id, and the refused annotations' keys."""
    requests, problems = control_annotations.parse(annotations)
    controls = [
        Control(
            id=cid,
            action=ControlAction(body["action"]),
            by=str(body.get("by") or "unknown"),
            phase=body.get("phase"),
            reason=str(body.get("reason") or ""),
            group=body.get("group"),
        )
        for cid, body in requests
    ]
    keys = {cid: control_annotations.PREFIX + cid for cid, _ in requests}
    refused = [
        key
        for key in annotations
        if key.startswith(control_annotations.PREFIX) and key not in keys.values()
    ]
    refusals = [
        (key[len(control_annotations.PREFIX) :], problem)
        for key in refused
        for problem in problems
        if problem.startswith(f"annotation {key}:")
    ]
    return controls, refusals, keys, refused


def _history(
    ctx: Context,
    status: RolloutStatus,
    evaluation: Evaluation,
    judged: Judged,
    now: datetime,
    namespace: str,
    name: str,
) -> Evaluation:
    """The phase history brought up to date, from the worst values not yet written when
    they extend what status holds (else from status alone: someone else wrote it)."""
    unwritten = ctx.unwritten_history.get((namespace, name))
    if unwritten is not None and unwritten[0] == status.phase_history:
        kept = evaluation.status.model_copy(update={"phase_history": unwritten[1]})
        evaluation = evaluation._replace(status=kept)
    return record_history(status, evaluation, judged, now)


def _quiet_history(
    ctx: Context, before: RolloutStatus, evaluation: Evaluation, namespace: str, name: str
) -> Evaluation:
    """A new worst value alone is no reason to write status (a noisy metric sets one now and
    then for as long as a phase runs): keep it in memory until something else is written."""
    after, key = evaluation.status, (namespace, name)
    if after.phase_history == before.phase_history:
        ctx.unwritten_history.pop(key, None)
        return evaluation
    unchanged = after.model_copy(update={"phase_history": before.phase_history})
    if unchanged != before:
        ctx.unwritten_history.pop(key, None)  # written now, with the rest
        return evaluation
    ctx.unwritten_history[key] = (before.phase_history, after.phase_history)
    return evaluation._replace(status=unchanged)


@dataclass
class Tick:
    """What the daemon needs of an evaluation: when the next is due, and the rollout as
    written. Not the evaluation itself: every waiting daemon would hold a status's objects."""

    next_evaluation: timedelta
    written: dict[str, Any] | None  # the object as the API returned it after our last write
    reread: bool = False  # the rollout as evaluated was not the API's latest: read it again


async def _is_current(ctx: Context, body: dict[str, Any]) -> bool:
    """Whether the API still holds the version of the rollout that was evaluated: checked
    before acting on a decision that was not written this evaluation (a route put back after
    a crash, a promotion step), since kopf's watch may lag behind another writer."""
    meta = body["metadata"]
    try:
        latest = await asyncio.to_thread(ctx.kube.get_rollout, meta["namespace"], meta["name"])
    except NotFound:
        raise
    except Exception as error:  # an API outage: act on nothing, read again
        log.info("could not confirm the rollout is current", error=str(error))
        return False
    return bool(latest["metadata"].get("resourceVersion") == meta.get("resourceVersion"))


async def evaluate_once(
    ctx: Context,
    body: dict[str, Any],
    now: datetime | None = None,
    late_by: timedelta = timedelta(0),
) -> Tick:
    """Observe one rollout, decide with the engine, apply the decision, write what changed."""
    now = now or datetime.now(UTC)
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    generation = meta.get("generation")
    bound = log.bind(namespace=namespace, rollout=name)
    ctx.telemetry.inc("phasegate_evaluations_total")
    try:
        status = RolloutStatus.model_validate(body.get("status") or {})
    except ValidationError as error:
        bound.warning("status unreadable; starting from an empty status", error=str(error))
        status = RolloutStatus()

    spec, problems = ctx.spec(namespace, name, body.get("spec"))
    if spec is None:
        evaluation = invalid(status, "; ".join(problems), now, generation=generation)
        try:
            written = await _record(ctx, body, status, evaluation)
        except Conflict:
            return Tick(timedelta(0), None, reread=True)
        _post_events(body, evaluation)
        return Tick(evaluation.next_evaluation, written)

    controls, refusals, control_keys, refused = _controls(meta.get("annotations") or {})

    router: Router | None = None
    route_weight: int | None = None
    route_error: str | None = None
    try:
        router = router_for(spec, namespace, ctx.kube, ctx.routes)
        ctx.reads_routes(namespace, name, router)
        route_weight = await asyncio.to_thread(router.read_weight)
    except RouteError as error:
        route_error = str(error)
    except Forbidden as error:
        route_error = f"{error}; grant it (chart value rbac.trafficProviders)"

    requests = queries_needed(spec, status, namespace)
    measurements = await _measure(ctx, spec, namespace, requests)
    promotion_done = canary_scaled_down = False
    promoting = status.state is State.PROMOTING
    if promoting and spec.stable.deployment and spec.canary.deployment:
        if not await _is_current(ctx, body):  # promote on the decision as it stands
            return Tick(timedelta(0), None, reread=True)
        try:
            promotion_done = await asyncio.to_thread(
                workloads.promote,
                ctx.kube,
                namespace,
                spec.stable.deployment,
                spec.canary.deployment,
            )
            if promotion_done:
                canary_scaled_down = await asyncio.to_thread(
                    workloads.scaled_down, ctx.kube, namespace, spec.canary.deployment
                )
        except NotFound as error:
            route_error = f"Deployment not found while promoting: {error}"

    observations = Observations(
        measurements=measurements,
        route_weight=route_weight,
        route_error=route_error,
        promotion_done=promotion_done,
        canary_scaled_down=canary_scaled_down,
        controls=tuple(controls),
        refused_controls=tuple(refusals),
        late_by=late_by,
        taken_at=now,
    )
    evaluation = evaluate(
        spec, status, observations, now, namespace=namespace, generation=generation
    )
    judged = judge_phase(spec, status, measurements, namespace)  # for history and metrics
    evaluation = _history(ctx, status, evaluation, judged, now, namespace, name)
    ctx.telemetry.record_evaluation(namespace, name, status, evaluation.status, judged)
    evaluation = with_notifications(ctx.notifier, spec, status, evaluation, meta, measurements, now)
    evaluation = _quiet_history(ctx, status, evaluation, namespace, name)
    next_evaluation = evaluation.next_evaluation

    # 1. The decision is stored before anything acts on it.
    try:
        written = await _record(ctx, body, status, evaluation)
    except Conflict:
        bound.info("the rollout changed since it was read; evaluating it again")
        return Tick(timedelta(0), None, reread=True)
    except NotFound:
        raise
    except Exception as error:  # a 5xx or a timeout: the write may or may not have landed
        bound.warning("status write failed; nothing acted on, evaluating again", error=str(error))
        return Tick(RETRY_AFTER, None, reread=True)

    route_change = (
        evaluation.weight is not None and router is not None and route_weight != evaluation.weight
    )
    scale_down = evaluation.workload is WorkloadAction.SCALE_DOWN_CANARY and bool(
        spec.canary.deployment
    )
    if (route_change or scale_down) and written is None and not await _is_current(ctx, body):
        return Tick(timedelta(0), None, reread=True)

    # 2. The route, then the canary Deployment: what the stored decision asks for.
    if route_change and router is not None and evaluation.weight is not None:
        if status.desired_weight == evaluation.weight and status.canary_weight == evaluation.weight:
            kopf.warn(
                _kopf_body(body),
                reason="RouteDrift",
                message=f"{router.kind} {spec.traffic_routing.provider}: canary weight changed "
                f"to {route_weight}% outside phasegate; restoring {evaluation.weight}%",
            )
        try:
            await asyncio.to_thread(router.set_weight, evaluation.weight)
            next_evaluation = timedelta(0)  # read the weight back at once
        except (RouteError, NotFound, Forbidden) as error:
            bound.warning("route write failed", error=str(error))
        except Exception as error:  # a conflict or a transient API error: the next tick retries
            bound.info("route write will be retried", error=str(error))
            next_evaluation = min(next_evaluation, RETRY_AFTER)
    if scale_down and spec.canary.deployment:
        try:
            await asyncio.to_thread(
                workloads.scale_down, ctx.kube, namespace, spec.canary.deployment
            )
            next_evaluation = timedelta(0)  # see it scaled down, then succeed
        except NotFound:
            next_evaluation = timedelta(0)  # gone: nothing left to scale down
        except Exception as error:  # the engine asks again on the next tick
            bound.info("canary scale-down will be retried", error=str(error))
            next_evaluation = min(next_evaluation, RETRY_AFTER)

    # 3. Events, the consumed controls, notifications: each tells of a stored decision.
    _post_events(body, evaluation)
    handled = set(evaluation.status.handled_controls)
    stale = {key: None for cid, key in control_keys.items() if cid in handled}
    # A refused control was reported (one Warning, the ControlsAccepted condition) and its
    # id kept as handled: removed now, and never reported again if the removal fails.
    stale.update((key, None) for key in refused)
    if stale:
        try:
            written = await asyncio.to_thread(
                ctx.kube.patch_rollout, namespace, name, {"metadata": {"annotations": stale}}
            )
        except NotFound:
            raise
        except Exception as error:  # handled ids are in status: removed on a later tick
            bound.info("consumed controls will be removed later", error=str(error))
            next_evaluation = min(next_evaluation, RETRY_AFTER)
    hand_over(ctx.notifier, evaluation, meta)
    return Tick(next_evaluation, written)


def _post_events(body: dict[str, Any], evaluation: Evaluation) -> None:
    for event in evaluation.events:
        kopf.event(_kopf_body(body), type=event.type, reason=event.reason, message=event.message)


async def _record(
    ctx: Context, body: dict[str, Any], before: RolloutStatus, evaluation: Evaluation
) -> dict[str, Any] | None:
    """Write status when it changed, on the condition that the rollout is still the version
    it was computed from (:class:`Conflict` otherwise); the object as stored, or None when
    nothing needed writing."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    after = evaluation.status
    written: dict[str, Any] | None = None
    ctx.telemetry.set(
        "phasegate_canary_weight",
        float(after.canary_weight or 0),
        namespace=namespace,
        rollout=name,
    )
    if after != before:
        wire = after.model_dump(mode="json", by_alias=True)
        written = await asyncio.to_thread(
            ctx.kube.patch_rollout_status, namespace, name, wire, meta.get("resourceVersion")
        )
        ctx.telemetry.inc("phasegate_status_writes_total")
        if after.decision is not None and after.decision != before.decision:
            ctx.telemetry.inc("phasegate_decisions_total", action=after.decision.action.value)
            log.info(
                "decision",
                namespace=namespace,
                rollout=name,
                phase=after.current_phase.name if after.current_phase else None,
                decision=after.decision.action.value,
                reason=after.decision.reason,
                state=after.state.value,
                weight=after.desired_weight,
            )
    return written
