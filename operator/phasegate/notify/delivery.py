"""Delivery: one task per rollout sends its outbox, off the evaluation path.

An evaluation only writes outbox entries and calls :meth:`Notifier.wake`, which returns at
once. The task sends each entry to each receiver that wants it, in order, retries failures
with exponential backoff, gives up after ``max_attempts``, and records what is done in the
rollout's status after each entry, so a restart sends again at most the request in flight.
What it delivered is also kept in memory until status shows it, so an evaluation that read
an older status does not bring a delivered entry back.

When the rollout asks for report ConfigMaps, the ConfigMap is one more receiver, first in
line, of the events that end a phase or the release: the report is written before the
notification that links it is sent, and retried, recorded and shown like any receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import aiohttp
import structlog

from phasegate.api.notifications import Receiver
from phasegate.api.outbox import NotificationsStatus, OutboxEntry, ReceiverFailure
from phasegate.api.spec import RolloutSpec
from phasegate.api.status import RolloutStatus
from phasegate.api.validation import validate_spec
from phasegate.notify import slack, teams, webhook
from phasegate.notify.events import DELIVERED_KEPT, REPORTED
from phasegate.notify.text import fit
from phasegate.runtime.telemetry import Telemetry

log = structlog.get_logger("phasegate")
Service = Literal["slack", "teams", "webhook", "configmap"]
RolloutKey = tuple[str, str]
WAITING = ""  # a receiver that failed before and waits for its next attempt
# The report ConfigMaps as a receiver: never a user's receiver's name (those are DNS labels).
REPORTS = Receiver.model_construct(name="ConfigMap", events=list(REPORTED))
RECEIVER_LABELS = 64  # distinct receiver names in the metrics; the rest count as "other"


@dataclass(frozen=True)
class Target:
    """A receiver ready to send to, or the reason it is not."""

    receiver: Receiver
    service: Service | None = None
    url: str = field(default="", repr=False)  # a secret: never logged, never in status
    signing_key: bytes | None = field(default=None, repr=False)
    error: str | None = None

    @property
    def name(self) -> str:
        return self.receiver.name


class Resolver(Protocol):
    async def targets(self, namespace: str, spec: RolloutSpec) -> list[Target]: ...


class ReportWriter(Protocol):
    async def write(self, obj: dict[str, Any], phase: str | None) -> None:
        """Write the report of ``phase`` (the release's when None) of the rollout ``obj``;
        raise with the reason when it cannot."""
        ...


class Store(Protocol):
    """Where the outbox lives: the rollout's status."""

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def update(
        self,
        namespace: str,
        name: str,
        change: Callable[[NotificationsStatus], NotificationsStatus],
    ) -> None: ...


@dataclass(frozen=True)
class DeliverySettings:
    timeout: float = 10.0  # seconds per request
    first_retry: float = 1.0  # seconds; doubled after each failure
    max_retry: float = 300.0
    max_attempts: int = 12
    concurrency: int = 32  # requests in flight across all rollouts
    per_receiver: int = 2  # requests in flight to one URL: a stalled one takes no more


@dataclass
class _Progress:
    delivered: dict[str, set[str]] = field(default_factory=dict)  # key -> receivers
    given_up: dict[str, set[str]] = field(default_factory=dict)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    not_before: dict[tuple[str, str], float] = field(default_factory=dict)


Warn = Callable[[str, str, str], None]  # namespace, name, message; must not block


class Notifier:
    """Sends every rollout's outbox; one task per rollout with pending entries."""

    def __init__(
        self,
        store: Store,
        resolver: Resolver,
        telemetry: Telemetry,
        settings: DeliverySettings | None = None,
        warn: Warn | None = None,
        reports: ReportWriter | None = None,
    ) -> None:
        self.store, self.resolver, self.telemetry = store, resolver, telemetry
        self.settings = settings or DeliverySettings()
        self.warn = warn
        self.reports = reports
        self._labels: set[str] = set()
        self._failing: dict[RolloutKey, dict[tuple[str, str], int]] = {}
        self._progress: dict[RolloutKey, _Progress] = {}
        self._tasks: dict[RolloutKey, asyncio.Task[None]] = {}
        self._again: set[RolloutKey] = set()
        self._woken: dict[RolloutKey, asyncio.Event] = {}  # ends a wait for a retry early
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._per_url: dict[str, asyncio.Semaphore] = {}

    def delivered(self, namespace: str, name: str) -> dict[str, frozenset[str]]:
        """What was delivered for the rollout that status may not show yet."""
        progress = self._progress.get((namespace, name), _Progress())
        return {k: frozenset(v) for k, v in progress.delivered.items()}

    def wake(self, namespace: str, name: str) -> None:
        """Deliver the rollout's outbox soon. Returns at once; never raises."""
        key = (namespace, name)
        task = self._tasks.get(key)
        if task is not None and not task.done():
            self._again.add(key)  # the running task reads the status once more
            self._woken.setdefault(key, asyncio.Event()).set()  # now, not after a backoff
            return
        self._tasks[key] = asyncio.get_running_loop().create_task(self._run(key))

    async def idle(self) -> None:
        """Wait until no delivery task runs (tests, shutdown)."""
        while running := [t for t in self._tasks.values() if not t.done()]:
            await asyncio.wait(running)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _run(self, key: RolloutKey) -> None:
        try:
            woken = self._woken.setdefault(key, asyncio.Event())
            while True:
                self._again.discard(key)
                woken.clear()
                retry_in = await self._pass(key)
                if key in self._again:
                    continue  # new entries: other receivers need not wait for a retry
                if retry_in is None:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), retry_in)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not end delivery for the other rollouts
            log.exception("notification delivery failed", namespace=key[0], rollout=key[1])

    async def _pass(self, key: RolloutKey) -> float | None:
        """Send what is due; record it; the seconds until the next retry, if any."""
        obj = await self.store.get(*key)
        if obj is None:
            self._progress.pop(key, None)
            self._count_failing(key, set())
            return None
        spec, _ = validate_spec(obj.get("spec"))
        status = RolloutStatus.model_validate(obj.get("status") or {})
        box = status.notifications
        if spec is None or box is None or not box.outbox:
            return None
        targets = await self.resolver.targets(key[0], spec)
        if spec.notifications is not None and spec.notifications.report_config_maps:
            targets = [Target(REPORTS, "configmap"), *targets]  # written before it is linked
        progress = self._progress.setdefault(key, _Progress())
        failures: dict[str, str] = {}
        retry_in: float | None = None
        wanted = {e.key: {t.name for t in targets if t.receiver.wants(e.event)} for e in box.outbox}

        def change(current: NotificationsStatus, final: bool = True) -> NotificationsStatus:
            kept = failures if final else None
            return _recorded(current, progress, wanted, kept, datetime.now(UTC))

        for entry in box.outbox:
            done = False  # something to record before the next entry
            for target in targets:
                if not target.receiver.wants(entry.event) or target.name in failures:
                    continue  # a failing receiver waits; later entries keep their order
                if self._done(progress, entry, target.name):
                    continue
                wait = progress.not_before.get((entry.key, target.name), 0.0) - time.monotonic()
                if wait > 0:
                    failures[target.name] = WAITING
                    retry_in = wait if retry_in is None else min(retry_in, wait)
                    continue
                if progress.attempts.get((entry.key, target.name)):
                    self._count(target, "phasegate_notification_retries_total")
                error = target.error or await self._send(target, entry, obj)
                if error is None:
                    progress.delivered.setdefault(entry.key, set()).add(target.name)
                    self._count(target, "phasegate_notification_deliveries_total", "delivered")
                    done = True
                    continue
                failures[target.name] = error
                backoff = self._failed(key, progress, entry, target, error)
                done = done or backoff is None
                backoff = 0.0 if backoff is None else backoff  # given up: its next entry now
                retry_in = backoff if retry_in is None else min(retry_in, backoff)
            if done:
                await self.store.update(*key, lambda current: change(current, final=False))
        await self.store.update(*key, change)
        self._forget(progress, box)
        self._count_failing(key, {(t.name, t.service or "") for t in targets if t.name in failures})
        return retry_in

    def metric_label(self, receiver: str) -> str:
        """The receiver's name as a metric label: the first :data:`RECEIVER_LABELS` names
        seen keep theirs, so a cluster of many rollouts cannot grow the series without bound."""
        if receiver in self._labels or len(self._labels) < RECEIVER_LABELS:
            self._labels.add(receiver)
            return receiver
        return "other"

    def _count(self, target: Target, series: str, outcome: str | None = None) -> None:
        service = target.service or "unresolved"
        labels = {"receiver": self.metric_label(target.name), "service": service}
        if outcome is not None:
            labels["outcome"] = outcome
        self.telemetry.inc(series, 1.0, **labels)

    def _count_failing(self, key: RolloutKey, failing: set[tuple[str, str]]) -> None:
        """``phasegate_notification_receivers_failing``: per receiver, the rollouts it fails."""
        now = {(self.metric_label(name), service or "unresolved"): 1 for name, service in failing}
        before = self._failing.pop(key, {})
        if now:
            self._failing[key] = now
        for receiver, service in set(before) | set(now):
            count = sum(f.get((receiver, service), 0) for f in self._failing.values())
            series = "phasegate_notification_receivers_failing"
            self.telemetry.set(series, float(count), receiver=receiver, service=service)

    @staticmethod
    def _done(progress: _Progress, entry: OutboxEntry, receiver: str) -> bool:
        return (
            receiver in entry.delivered_to
            or receiver in entry.given_up
            or receiver in progress.delivered.get(entry.key, set())
            or receiver in progress.given_up.get(entry.key, set())
        )

    def _failed(
        self, key: RolloutKey, progress: _Progress, entry: OutboxEntry, target: Target, error: str
    ) -> float | None:
        """Count the failure; the backoff before the next attempt, or None when given up."""
        slot = (entry.key, target.name)
        attempts = progress.attempts.get(slot, 0) + 1
        progress.attempts[slot] = attempts
        self.telemetry.inc("phasegate_notification_failures_total", service=target.service or "")
        self._count(target, "phasegate_notification_deliveries_total", "failed")
        log.warning(
            "notification not delivered",
            namespace=key[0],
            rollout=key[1],
            receiver=target.name,
            notification=entry.event,
            attempt=attempts,
            error=error,
        )
        if attempts >= self.settings.max_attempts:
            progress.given_up.setdefault(entry.key, set()).add(target.name)
            self.telemetry.inc("phasegate_notifications_dropped_total")
            self._count(target, "phasegate_notification_deliveries_total", "givenUp")
            if self.warn is not None:
                message = (
                    f"notification {entry.event} to receiver {target.name} given up after "
                    f"{attempts} attempts: {error}"
                )
                self.warn(*key, message)
            return None
        backoff = min(self.settings.first_retry * 2.0 ** (attempts - 1), self.settings.max_retry)
        progress.not_before[slot] = time.monotonic() + backoff
        if attempts == 1 and self.warn is not None:
            message = f"notification {entry.event} to receiver {target.name} failed: {error}"
            self.warn(*key, message)
        return backoff

    async def _send(self, target: Target, entry: OutboxEntry, obj: dict[str, Any]) -> str | None:
        """POST one entry to one receiver; None when it answered 2xx, else the reason."""
        payload = json.loads(entry.payload)
        if target.service == "configmap":
            return await self._write_report(payload, obj)
        if target.service == "slack":
            body, headers = _chat(slack.message(payload), entry.key)
        elif target.service == "teams":
            body, headers = _chat(teams.message(payload), entry.key)
        else:
            body, headers = webhook.request(
                entry.payload, entry.key, entry.event, target.signing_key, int(time.time())
            )
        if self._session is None:
            self._session = aiohttp.ClientSession()
        per_url = self._per_url.setdefault(
            target.url, asyncio.Semaphore(self.settings.per_receiver)
        )
        started = time.perf_counter()
        try:
            async with (
                per_url,
                self._slots,
                self._session.post(
                    target.url,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                    allow_redirects=False,
                ) as response,
            ):
                if 200 <= response.status < 300:
                    self.telemetry.inc(
                        "phasegate_notifications_sent_total",
                        service=target.service or "",
                        event=entry.event,
                    )
                    return None
                return f"HTTP {response.status} from the receiver"
        except TimeoutError:
            return f"no answer within {self.settings.timeout:g}s"
        except aiohttp.InvalidURL:
            return "the URL is not valid"  # the URL itself is a secret: never repeated
        except aiohttp.ClientConnectorError as error:
            return f"cannot connect: {error.os_error.strerror or type(error.os_error).__name__}"
        except aiohttp.ClientError as error:
            return type(error).__name__
        finally:
            self.telemetry.observe(
                "phasegate_notification_duration_seconds", time.perf_counter() - started
            )

    async def _write_report(self, payload: dict[str, Any], obj: dict[str, Any]) -> str | None:
        """Write the report the notification links; None when written (or nothing to write)."""
        link = payload.get("report") or {}
        where = link.get("configMap")
        if where is None or self.reports is None:
            return None
        revision = (obj.get("status") or {}).get("revision")
        if payload["rollout"]["revision"] != revision:
            log.info(
                "report not written: the rollout moved on to another revision",
                namespace=where["namespace"],
                configmap=where["name"],
            )
            return None
        started = time.perf_counter()
        try:
            await self.reports.write(obj, link.get("phase"))
        except Exception as error:  # any refusal is shown as this receiver's failure
            return fit(f"cannot write ConfigMap {where['namespace']}/{where['name']}: {error}", 500)
        finally:
            self.telemetry.observe(
                "phasegate_notification_duration_seconds", time.perf_counter() - started
            )
        self.telemetry.inc(
            "phasegate_notifications_sent_total", service="configmap", event=payload["event"]
        )
        return None

    @staticmethod
    def _forget(progress: _Progress, box: NotificationsStatus) -> None:
        """Drop memory of entries status no longer holds: it is recorded there for good."""
        keys = {e.key for e in box.outbox}
        for kept in (progress.delivered, progress.given_up):
            for k in [k for k in kept if k not in keys and k in box.delivered]:
                del kept[k]


def _chat(message: dict[str, Any], key: str) -> tuple[bytes, dict[str, str]]:
    return json.dumps(message).encode(), {
        "Content-Type": "application/json",
        "Idempotency-Key": key,
    }


def _recorded(
    box: NotificationsStatus,
    progress: _Progress,
    wanted: Mapping[str, set[str]],
    failures: Mapping[str, str] | None,
    now: datetime,
) -> NotificationsStatus:
    """``box`` (as status has it now) with this pass's deliveries, give-ups and failures
    (``failures`` None: the pass is not over, the failing receivers are kept as they are)."""
    outbox, finished, dropped = [], [], box.dropped
    for entry in box.outbox:
        delivered = sorted(set(entry.delivered_to) | progress.delivered.get(entry.key, set()))
        given_up = sorted(set(entry.given_up) | progress.given_up.get(entry.key, set()))
        dropped += len(set(given_up) - set(entry.given_up))
        done = set(delivered) | set(given_up)
        if entry.key in wanted and wanted[entry.key] <= done:
            finished.append(entry.key)
        else:
            outbox.append(
                entry.model_copy(update={"delivered_to": delivered, "given_up": given_up})
            )
    before = {f.receiver: f for f in box.failing}
    failing = (
        box.failing
        if failures is None
        else [
            before[name]
            if reason == WAITING or (name in before and before[name].reason == reason)
            else ReceiverFailure(
                receiver=name, reason=reason, since=before[name].since if name in before else now
            )
            for name, reason in sorted((failures or {}).items())
            if reason != WAITING or name in before
        ]
    )
    return box.model_copy(
        update={
            "outbox": outbox,
            "delivered": [*box.delivered, *finished][-DELIVERED_KEPT:],
            "dropped": dropped,
            "failing": failing,
        }
    )
