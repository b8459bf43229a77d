"""The notifier's Kubernetes side: receivers from Secrets and the shared ConfigMap, and the
outbox written back to the rollout's status. Blocking calls run in threads."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import kopf
import yaml
from pydantic import TypeAdapter, ValidationError

from phasegate import GROUP, VERSION
from phasegate.api.notifications import Receiver
from phasegate.api.outbox import NotificationsStatus
from phasegate.api.spec import RolloutSpec, SecretKeyRef
from phasegate.api.status import RolloutStatus
from phasegate.kube import Conflict, Forbidden, Kube, NotFound, unchanged_since
from phasegate.notify.delivery import Notifier, Service, Target
from phasegate.report.configmap import report_config_map
from phasegate.runtime.telemetry import Telemetry

SHARED = "phasegate-notifications"  # ConfigMap with key `receivers`: a YAML list of receivers
RECEIVERS = TypeAdapter(list[Receiver])


class KubeStore:
    """The outbox in the rollout's status, changed only if nobody wrote in between."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await asyncio.to_thread(self.kube.get_rollout, namespace, name)
        except NotFound:
            return None

    async def update(
        self,
        namespace: str,
        name: str,
        change: Callable[[NotificationsStatus], NotificationsStatus],
    ) -> None:
        for _ in range(5):
            obj = await self.get(namespace, name)
            if obj is None:
                return
            status = RolloutStatus.model_validate(obj.get("status") or {})
            current = status.notifications or NotificationsStatus()
            box = change(current)
            if box == current:
                return  # nothing new to record: no write
            operations = [
                unchanged_since(obj["metadata"]["resourceVersion"]),
                {
                    "op": "add",
                    "path": "/status/notifications",
                    "value": box.model_dump(mode="json", by_alias=True),
                },
            ]
            try:
                await asyncio.to_thread(
                    self.kube.json_patch_rollout_status, namespace, name, operations
                )
                return
            except Conflict:
                continue  # an evaluation wrote first: read again


class KubeReports:
    """Phase and release reports written to ConfigMaps owned by their rollout."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def write(self, obj: dict[str, Any], phase: str | None) -> None:
        made = report_config_map(obj, phase)
        try:
            await asyncio.to_thread(
                self.kube.write_owned_config_map,
                made.namespace,
                made.name,
                made.data,
                made.labels,
                made.annotations,
                made.owner,
            )
        except Forbidden as error:
            raise Forbidden(f"{error}; grant it (chart value rbac.phaseReports)") from error


class KubeResolver:
    """Receivers of a rollout: its own, and those it names from the shared ConfigMap of its
    namespace, else of the operator's namespace (``home``)."""

    def __init__(self, kube: Kube, home: str | None) -> None:
        self.kube, self.home = kube, home

    async def targets(self, namespace: str, spec: RolloutSpec) -> list[Target]:
        config = spec.notifications
        if config is None:
            return []
        return await asyncio.to_thread(self._resolve, namespace, config.receivers)

    def _resolve(self, namespace: str, receivers: list[Receiver]) -> list[Target]:
        shared: dict[str, dict[str, Receiver]] = {}
        out = []
        for receiver in receivers:
            if receiver.service is not None:
                out.append(self._target(namespace, receiver))
                continue
            where, found, error = self._shared(namespace, receiver, shared)
            if found is None:
                out.append(Target(receiver, error=error))
                continue
            if receiver.events is not None:  # the rollout chooses its own events
                found = found.model_copy(update={"events": receiver.events})
            out.append(self._target(where, found))
        return out

    def _shared(
        self, namespace: str, receiver: Receiver, cache: dict[str, dict[str, Receiver]]
    ) -> tuple[str, Receiver | None, str]:
        places = [namespace] + ([self.home] if self.home and self.home != namespace else [])
        problems = []
        for place in places:
            if place not in cache:
                cache[place], problem = self._configmap(place)
                problems += [problem] if problem else []
            if receiver.name in cache[place]:
                return place, cache[place][receiver.name], ""
        where = " or ".join(f"{p}/{SHARED}" for p in places)
        detail = f" ({'; '.join(problems)})" if problems else ""
        return namespace, None, f"receiver {receiver.name!r} is not defined in {where}{detail}"

    def _configmap(self, namespace: str) -> tuple[dict[str, Receiver], str]:
        try:
            data = self.kube.read_config_map_data(namespace, SHARED)
        except NotFound:
            return {}, ""
        except Forbidden as error:
            return {}, str(error)
        try:
            items = RECEIVERS.validate_python(yaml.safe_load(data.get("receivers") or "[]"))
        except (ValidationError, yaml.YAMLError) as error:
            return {}, f"{namespace}/{SHARED} key receivers is invalid: {error}"
        return {r.name: r for r in items if r.service is not None}, ""

    def _target(self, namespace: str, receiver: Receiver) -> Target:
        kinds: tuple[Service, ...] = ("slack", "teams", "webhook")
        service = next(n for n in kinds if getattr(receiver, n) is not None)
        settings = receiver.service
        assert settings is not None
        refs = [settings.url, getattr(settings, "signing_key", None)]
        values: list[str | None] = []
        for ref in refs:
            try:
                values.append(None if ref is None else self._secret(namespace, ref))
            except (NotFound, Forbidden) as error:
                where = f"Secret {namespace}/{ref.name} key {ref.key}" if ref else ""
                return Target(receiver, service, error=f"cannot read {where}: {error}")
        url, key = values
        signing = key.encode() if key is not None else None
        assert url is not None
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            where = f"Secret {namespace}/{settings.url.name} key {settings.url.key}"
            return Target(receiver, service, error=f"the URL in {where} is not an http(s) URL")
        return Target(receiver, service, url=url.strip(), signing_key=signing)

    def _secret(self, namespace: str, ref: SecretKeyRef) -> str:
        return self.kube.read_secret_key(namespace, ref.name, ref.key)


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def operator_namespace() -> str | None:
    """Where the operator runs: the home of cluster-wide receivers. None outside a cluster."""
    path = Path(SERVICE_ACCOUNT_NAMESPACE)
    return os.environ.get("POD_NAMESPACE") or (path.read_text().strip() if path.exists() else None)


def post_warning(namespace: str, name: str, message: str) -> None:
    """A Warning Event on the rollout; kopf posts it in the background."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ProgressiveRollout",
        "metadata": {"namespace": namespace, "name": name},
    }
    kopf.warn(kopf.Body(cast(kopf.RawBody, body)), reason="NotificationFailed", message=message)


def make_notifier(kube: Kube, telemetry: Telemetry) -> Notifier:
    """The operator's notifier, on its own clients."""
    for series, text in {
        "phasegate_notifications_sent_total": "Notifications delivered, by service and event.",
        "phasegate_notification_failures_total": "Failed delivery attempts, by service.",
        "phasegate_notifications_dropped_total": "Notifications given up after every attempt.",
        "phasegate_notification_duration_seconds": "Time a receiver took to answer.",
        "phasegate_notification_deliveries_total": "Delivery attempts, by receiver, service "
        "and outcome (delivered, failed, givenUp); receiver names beyond 64 count as other.",
        "phasegate_notification_retries_total": "Attempts after a failure, by receiver.",
        "phasegate_notification_receivers_failing": "Rollouts whose latest delivery to the "
        "receiver failed, by receiver and service.",
    }.items():
        telemetry.describe(series, text)
    resolver = KubeResolver(kube, operator_namespace())
    return Notifier(
        KubeStore(kube), resolver, telemetry, warn=post_warning, reports=KubeReports(kube)
    )
