"""The hub: one kopf daemon per ProgressiveRelease drives it through its waves.

Each turn it reads the release, looks at every region (its Secret, then its rollout, in
parallel, each in a thread with a time limit), asks :func:`phasegate.hub.plan.plan`, writes
to the regions, then writes the release's status only if something a user sees changed.
Everything it needs to continue is in that status and in the regions' rollouts, so a hub
killed at any moment continues where it was.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf
import structlog
from pydantic import ValidationError

from phasegate import GROUP, VERSION
from phasegate.api import controls
from phasegate.api.release import (
    RELEASE_PLURAL,
    ReleaseSpec,
    ReleaseState,
    ReleaseStatus,
    parse_controls,
    validate_release,
)
from phasegate.api.status import Condition
from phasegate.hub.plan import Plan, RegionView, Release, plan
from phasegate.hub.regions import Regions, write
from phasegate.kube import Kube, NotFound

log = structlog.get_logger("phasegate.hub")
REGION_CALL_TIMEOUT = 15.0  # seconds; a region that does not answer in time is not seen


@dataclass
class Hub:
    """What every release's daemon shares; built once at start-up, kept in kopf's memo."""

    kube: Kube
    regions: Regions = field(init=False)
    # Per release and region: when the region was last read (kept across turns in memory).
    contacts: dict[tuple[str, str, str], datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.regions = Regions(self.kube)


def register_hub(registry: kopf.OperatorRegistry, hub: Hub, configure: Any) -> None:
    """The hub's handlers; ``configure(settings)`` applies the operator's kopf settings."""

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings)
        memo["hub"] = hub

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.daemon(
        GROUP, VERSION, RELEASE_PLURAL, registry=registry, id="drive", cancellation_timeout=5.0
    )
    async def drive_release(
        body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
    ) -> None:
        ctx: Hub = memo["hub"]
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        while not stopped:
            try:
                delay = await turn(ctx, namespace, name, datetime.now(UTC))
            except NotFound:
                return  # the release is gone; its regions' rollouts stay as they are
            except Exception:  # an outage or a bug must not end the daemon for ever
                log.exception("release turn failed; retrying", namespace=namespace, release=name)
                delay = timedelta(seconds=5)
            await stopped.wait(max(0.05, delay.total_seconds()))


async def _call(function: Any, *args: Any) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(function, *args), REGION_CALL_TIMEOUT)


async def turn(ctx: Hub, namespace: str, name: str, now: datetime) -> timedelta:
    """One look at a release and its regions; the time until the next."""
    obj = await asyncio.to_thread(
        ctx.kube.get_custom, GROUP, VERSION, RELEASE_PLURAL, namespace, name
    )
    meta = obj["metadata"]
    try:
        status = ReleaseStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        status = ReleaseStatus()
    annotations = dict(meta.get("annotations") or {})
    requests, problems = parse_controls(annotations)
    spec, invalid = validate_release(obj)
    if spec is None:
        await _invalid(ctx, obj, status, invalid)
        return timedelta(seconds=10)
    release = Release(namespace, name, meta.get("uid", ""), meta.get("generation"), spec)
    views, clients = await _look(ctx, release)
    outcome = plan(release, status, views, requests, now)
    await _carry_out(ctx, release, outcome, views, clients)
    consumed = [controls.PREFIX + i for i, _ in requests] + [
        p.split(" ", 2)[1].rstrip(":") for p in problems
    ]
    for problem in problems:
        outcome.events.append(("Warning", "ControlRefused", problem))
    await _report(ctx, obj, status, outcome.status, outcome.events, consumed)
    return outcome.next_in


async def _look(ctx: Hub, release: Release) -> tuple[dict[str, RegionView], dict[str, Kube | None]]:
    meta = release.spec.template.metadata
    target = (meta.namespace or release.namespace, meta.name or release.name)

    async def one(region: str) -> tuple[RegionView, Kube | None]:
        key = (release.namespace, release.name, region)
        ref = release.spec.region(region).kubeconfig_secret
        last = ctx.contacts.get(key)
        try:
            view, client = await _call(
                ctx.regions.look, region, release.namespace, ref, target, last
            )
        except TimeoutError:
            view, client = RegionView(region, error="the region's API did not answer in time",
                                      last_contact=last), None  # fmt: skip
        if view.reachable:
            ctx.contacts[key] = datetime.now(UTC)
        return view, client

    names = [r.name for r in release.spec.regions]
    found = await asyncio.gather(*(one(n) for n in names))
    return {n: v for n, (v, _) in zip(names, found, strict=True)}, {
        n: c for n, (_, c) in zip(names, found, strict=True)
    }


async def _carry_out(
    ctx: Hub,
    release: Release,
    outcome: Plan,
    views: dict[str, RegionView],
    clients: dict[str, Kube | None],
) -> None:
    """The writes to regions, in parallel; a region that fails one is shown unreachable."""

    async def one(region: str, change: Any) -> None:
        client = clients.get(region)
        entry = next(r for r in outcome.status.regions if r.name == region)
        if client is None:
            return
        try:
            if change.controls:
                by = await _call(ctx.regions.identity, client)
            else:
                by = ""
            await _call(write, client, views[region].rollout, change, by)
        except Exception as error:
            log.warning(
                "region write failed", release=release.owner, region=region, error=str(error)
            )
            entry.message = f"the hub's write failed and is tried again: {str(error)[:200]}"
            return
        entry.requested = [*entry.requested, *(i for i, _ in change.controls)]
        if change.rollout is not None and views[region].rollout is None:
            log.info("region rollout created", release=release.owner, region=region)

    await asyncio.gather(*(one(w.region, w) for w in outcome.writes))


def _visible(status: ReleaseStatus) -> dict[str, Any]:
    """The status as compared for a write: everything but the regions' lastSeen."""
    out = status.model_dump(mode="json", by_alias=True)
    for region in out.get("regions") or []:
        region.pop("lastSeen", None)
    return out


async def _report(
    ctx: Hub,
    obj: dict[str, Any],
    old: ReleaseStatus,
    new: ReleaseStatus,
    events: list[tuple[str, str, str]],
    consumed: list[str],
) -> None:
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]

    def patch(body: dict[str, Any], status: bool = False) -> Any:
        return ctx.kube.merge_patch_custom(
            GROUP, VERSION, RELEASE_PLURAL, namespace, name, body, status=status
        )

    if _visible(new) != _visible(old) or obj.get("status") is None:
        await asyncio.to_thread(patch, {"status": new.model_dump(mode="json", by_alias=True)}, True)
    if consumed:
        await asyncio.to_thread(patch, {"metadata": {"annotations": dict.fromkeys(consumed)}})
    for kind, reason, message in events:
        log.info("release event", release=f"{namespace}/{name}", reason=reason, message=message)
        kopf.event(kopf.Body(cast(kopf.RawBody, obj)), type=kind, reason=reason, message=message)


async def _invalid(
    ctx: Hub, obj: dict[str, Any], status: ReleaseStatus, problems: list[str]
) -> None:
    """Invalid: say why in status and an Event; nothing is written to any region."""
    new = status.model_copy(deep=True)
    new.observed_generation = obj["metadata"].get("generation")
    new.state = ReleaseState.INVALID
    new.message = "; ".join(problems)
    old_condition = next((c for c in new.conditions if c.type == "Valid"), None)
    since = (
        old_condition.last_transition_time
        if old_condition is not None and old_condition.status == "False"
        else datetime.now(UTC)
    )
    new.conditions = [c for c in new.conditions if c.type != "Valid"] + [
        Condition(
            type="Valid",
            status="False",
            reason="InvalidSpec",
            message=new.message,
            last_transition_time=since,
        )
    ]
    events = [] if _visible(new) == _visible(status) else [("Warning", "Invalid", new.message)]
    await _report(ctx, obj, status, new, events, [])


__all__ = ["Hub", "ReleaseSpec", "register_hub", "turn"]
