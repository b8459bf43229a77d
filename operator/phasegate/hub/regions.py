"""The regions as the hub reaches them: a client per region from its kubeconfig Secret, its
rollout read, created, updated and sent controls. Blocking calls, run in threads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from phasegate import GROUP, PLURAL, VERSION
from phasegate.api import controls
from phasegate.api.release import OWNER_ANNOTATION, SecretRef
from phasegate.hub.plan import RegionView, RegionWrite
from phasegate.kube import Forbidden, Kube, NotFound, unchanged_since


class CredentialsError(Exception):
    """The region's Secret or kubeconfig is the cause: (reason, message) for the condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class Regions:
    """Region clients, kept while their Secret's kubeconfig stays the same."""

    hub: Kube
    _clients: dict[tuple[str, str, str], tuple[str, Kube]] = field(default_factory=dict)
    _identities: dict[int, str] = field(default_factory=dict)

    def identity(self, client: Kube) -> str:
        """Who the region's API server says the hub is (asked once per client)."""
        known = self._identities.get(id(client))
        if known is None:
            known = client.whoami() or "phasegate-hub"
            self._identities[id(client)] = known
        return known

    def client(self, namespace: str, ref: SecretRef) -> Kube:
        where = f"Secret {namespace}/{ref.name}"
        try:
            text = self.hub.read_secret_key(namespace, ref.name, ref.key)
        except NotFound as error:
            if "has no key" in str(error):
                raise CredentialsError(
                    "SecretKeyMissing",
                    f"{where} has no key {ref.key!r}: put the region's kubeconfig there",
                ) from error
            raise CredentialsError(
                "SecretNotFound",
                f"{where} not found: create it with the region's kubeconfig under key {ref.key!r}",
            ) from error
        except Forbidden as error:
            raise CredentialsError(
                "SecretForbidden", f"the hub may not read {where}: {error}"
            ) from error
        key = (namespace, ref.name, ref.key)
        digest = hashlib.sha256(text.encode()).hexdigest()
        cached = self._clients.get(key)
        if cached is not None and cached[0] == digest:
            return cached[1]
        try:
            client = Kube.from_kubeconfig(text)
        except ValueError as error:
            raise CredentialsError(
                "KubeconfigInvalid", f"{where} key {ref.key!r}: {error}"
            ) from error
        self._clients[key] = (digest, client)
        return client

    def look(
        self,
        name: str,
        namespace: str,
        ref: SecretRef,
        target: tuple[str, str],
        last: datetime | None,
    ) -> tuple[RegionView, Kube | None]:
        """Read region ``name``'s rollout ``target`` (namespace, name); never raises."""
        try:
            client = self.client(namespace, ref)
        except CredentialsError as error:
            return RegionView(name, error=error.message, credentials=(error.reason, error.message),
                              last_contact=last), None  # fmt: skip
        try:
            rollout = client.get_custom(GROUP, VERSION, PLURAL, *target)
        except NotFound:
            rollout = None
        except Forbidden as error:
            message = f"the region refused the kubeconfig's user: {error}"
            return RegionView(name, error=message, credentials=("Forbidden", message),
                              last_contact=last), client  # fmt: skip
        except Exception as error:  # connection refused, timeouts, TLS: the region is not seen
            if getattr(error, "status", None) == 401:
                message = "the region's API does not accept the kubeconfig's credentials (401)"
                return RegionView(name, error=message, credentials=("Unauthorized", message),
                                  last_contact=last), client  # fmt: skip
            return RegionView(name, error=_short(error), last_contact=last), client
        return RegionView(name, rollout=rollout), client


def signed(body: dict[str, Any], by: str) -> str:
    """A control as the region's admission policy admits it: the canonical form (action, by,
    reason; compact JSON, printable ASCII), signed with the hub's own user name there."""
    out = {"action": body["action"], "by": by}
    reason = "".join(c for c in str(body.get("reason") or "") if " " <= c <= "~")
    if reason:
        out["reason"] = reason
    return json.dumps(out, separators=(",", ":"))


def write(client: Kube, current: dict[str, Any] | None, change: RegionWrite, by: str) -> None:
    """Carry out ``change`` on the region: create or update its rollout, add controls signed
    ``by`` (the hub's user name in that region)."""
    annotations = {
        controls.PREFIX + control_id: signed(body, by) for control_id, body in change.controls
    }
    if change.rollout is not None:
        desired = change.rollout
        meta = desired["metadata"]
        if current is None:
            body = {**desired, "metadata": {**meta, "annotations": {**meta["annotations"],
                                                                     **annotations}}}  # fmt: skip
            client.create_custom(GROUP, VERSION, PLURAL, meta["namespace"], body)
            return
        operations = [
            unchanged_since(current["metadata"]["resourceVersion"]),
            {"op": "replace", "path": "/spec", "value": desired["spec"]},
        ]
        client.json_patch_custom(
            GROUP, VERSION, PLURAL, meta["namespace"], meta["name"], operations
        )
    if annotations:
        target = change.rollout or current
        assert target is not None, "controls go to an existing rollout"
        meta = target["metadata"]
        client.merge_patch_custom(
            GROUP,
            VERSION,
            PLURAL,
            meta["namespace"],
            meta["name"],
            {"metadata": {"annotations": annotations}},
        )


def owned(rollout: dict[str, Any] | None, owner: str) -> bool:
    return (
        rollout is not None
        and (rollout["metadata"].get("annotations") or {}).get(OWNER_ANNOTATION) == owner
    )


def _short(error: Exception) -> str:
    """One line for status: the kind of failure, not a traceback."""
    status = getattr(error, "status", None)
    if isinstance(status, int) and status >= 400:  # an answer from the API, with its Status
        try:
            message = json.loads(getattr(error, "body", None) or "")["message"]
        except (ValueError, KeyError, TypeError):
            message = getattr(error, "reason", "")
        return f"the region's API answered {status}: {message}"
    text = str(error).split("\n")[0]
    if "Connection refused" in text or "NewConnectionError" in text:
        return "the region's API refuses connections"
    if "timed out" in text.lower() or "timeout" in text.lower():
        return "the region's API did not answer in time"
    return f"the region's API cannot be reached: {text[:200]}"
