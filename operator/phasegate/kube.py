"""The Kubernetes API clients, built once at start-up. Blocking: call them off the loop."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import kubernetes
import urllib3
import yaml
from kubernetes.client import (
    ApiClient,
    ApiException,
    AppsV1Api,
    CoreV1Api,
    CustomObjectsApi,
    NetworkingV1Api,
)

from phasegate import GROUP, PLURAL, VERSION

# The body type every create names: the client sends a POST without a Content-Type, which
# kube-apiserver takes as JSON but a proxy in between may not (one forwarding it as
# application/octet-stream is answered 415).
JSON = "application/json"


class NotFound(LookupError):
    """The object does not exist."""


class Conflict(RuntimeError):
    """Someone else changed the object first (409); read it again and retry."""


class Forbidden(PermissionError):
    """RBAC refused the request (403); the message is the API's, naming the missing right."""


def unchanged_since(resource_version: str) -> dict[str, Any]:
    """A JSON patch operation that makes the write conditional: the apiserver answers 409
    when the object changed since ``resource_version`` (a failed ``test`` would be a 422)."""
    return {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}


# Every call of the Kubernetes client gives up after this long (the answer's part can be set
# with $PHASEGATE_API_TIMEOUT, in seconds): a call that hangs must not hold an evaluation, and
# the thread it runs on, for ever. kopf's own watches have their own timeouts.
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 15.0


def _read_timeout() -> float:
    return float(os.environ.get("PHASEGATE_API_TIMEOUT") or READ_TIMEOUT)


@dataclass
class Kube:
    api: ApiClient

    def __post_init__(self) -> None:
        # The client sends no timeout unless each call names one; give every call ours.
        rest, read_timeout = self.api.rest_client, _read_timeout()
        send: Any = rest.request

        def request(*args: Any, **kwargs: Any) -> Any:
            kwargs["_request_timeout"] = kwargs.get("_request_timeout") or (
                CONNECT_TIMEOUT,
                read_timeout,
            )
            return send(*args, **kwargs)

        setattr(rest, "request", request)  # noqa: B010 -- an instance's, not the class's
        # A request the API may have received is not sent again by the client (the caller
        # reads again and decides); one that never connected is.
        rest.pool_manager.connection_pool_kw["retries"] = urllib3.Retry(
            total=2, connect=2, read=0, status=0, redirect=0
        )

    @classmethod
    def from_environment(cls) -> Kube:
        """In-cluster credentials when there, else the kubeconfig (``$KUBECONFIG``)."""
        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
            return cls(ApiClient())
        except kubernetes.config.ConfigException:
            return cls(kubernetes.config.new_client_from_config())  # type: ignore[no-untyped-call]

    @property
    def custom(self) -> CustomObjectsApi:
        return CustomObjectsApi(self.api)

    @property
    def core(self) -> CoreV1Api:
        return CoreV1Api(self.api)

    @property
    def apps(self) -> AppsV1Api:
        return AppsV1Api(self.api)

    @property
    def networking(self) -> NetworkingV1Api:
        return NetworkingV1Api(self.api)

    def plain(self, obj: Any) -> dict[str, Any]:
        """A typed client object as the API's JSON."""
        return cast(dict[str, Any], self.api.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]

    def get_custom(
        self, group: str, version: str, plural: str, namespace: str, name: str
    ) -> dict[str, Any]:
        with translated():
            found = self.custom.get_namespaced_custom_object(
                group, version, namespace, plural, name
            )
            return cast(dict[str, Any], found)

    def get_cluster_custom(
        self, group: str, version: str, plural: str, name: str
    ) -> dict[str, Any]:
        with translated():
            found = self.custom.get_cluster_custom_object(group, version, plural, name)
            return cast(dict[str, Any], found)

    def list_custom(
        self, group: str, version: str, plural: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """The objects of ``plural``: in ``namespace``, or cluster-wide (None)."""
        with translated():
            if namespace is None:
                found = self.custom.list_cluster_custom_object(group, version, plural)
            else:
                found = self.custom.list_namespaced_custom_object(group, version, namespace, plural)
            return cast(list[dict[str, Any]], cast(dict[str, Any], found).get("items") or [])

    def serves(self, group: str, version: str, plural: str) -> bool:
        """Whether the API serves ``plural`` in ``group/version`` (its CRD is installed)."""
        try:
            with translated():
                found = self.custom.get_api_resources(group, version)
        except NotFound:
            return False
        return any(resource.name == plural for resource in found.resources or [])

    def get_rollout(self, namespace: str, name: str) -> dict[str, Any]:
        return self.get_custom(GROUP, VERSION, PLURAL, namespace, name)

    def json_patch_custom(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        operations: list[dict[str, Any]],
    ) -> dict[str, Any]:
        with translated():
            patched = self.custom.patch_namespaced_custom_object(
                group,
                version,
                namespace,
                plural,
                name,
                operations,
                _content_type="application/json-patch+json",
            )
            return cast(dict[str, Any], patched)

    def patch_rollout_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch the status (nulls remove fields); the object as stored after it. With
        ``resource_version`` the write is conditional: :class:`Conflict` when the object
        changed since that version."""
        patch: dict[str, Any] = {"status": status}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        with translated():
            patched = self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _content_type="application/merge-patch+json",
            )
            return cast(dict[str, Any], patched)

    def patch_rollout(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        with translated():
            patched = self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _content_type="application/merge-patch+json",
            )
            return cast(dict[str, Any], patched)

    def json_patch_rollout_status(
        self, namespace: str, name: str, operations: list[dict[str, Any]]
    ) -> None:
        """JSON-patch the status (pair it with :func:`unchanged_since` for a conditional write)."""
        with translated():
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                operations,
                _content_type="application/json-patch+json",
            )

    def read_config_map_data(self, namespace: str, name: str) -> dict[str, str]:
        with translated():
            found = self.core.read_namespaced_config_map(name, namespace)
        return dict(found.data or {})

    def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        import base64

        with translated():
            secret = self.core.read_namespaced_secret(name, namespace)
        data = (secret.data or {}).get(key)
        if data is None:
            raise NotFound(f"secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data).decode()

    def write_owned_config_map(
        self,
        namespace: str,
        name: str,
        data: dict[str, str],
        labels: dict[str, str],
        annotations: dict[str, str],
        owner: dict[str, Any],
    ) -> None:
        """Create the ConfigMap owned by ``owner`` (an ownerReferences item), or replace its
        data and annotations when it exists and is ``owner``'s. A ConfigMap of the same name
        owned by anything else is left alone: :class:`Conflict`."""
        metadata = {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner],
        }
        body: Any = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
        try:
            with translated():
                self.core.create_namespaced_config_map(namespace, body, _content_type=JSON)
            return
        except Conflict:
            pass  # it exists: replaced below, only if it is the owner's
        operations = [
            {"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": owner["uid"]},
            {"op": "add", "path": "/data", "value": data},
            {"op": "add", "path": "/metadata/annotations", "value": annotations},
        ]
        try:
            with translated():
                self.core.patch_namespaced_config_map(
                    name, namespace, operations, _content_type="application/json-patch+json"
                )
        except ApiException as error:
            if error.status != 422:  # a failed test: someone else's ConfigMap
                raise
            raise Conflict(
                f"ConfigMap {namespace}/{name} exists and is not owned by "
                f"{owner['kind']} {owner['name']}: left alone"
            ) from error

    # ---- what the release hub needs: region clients, rollouts there, its own releases ----

    @classmethod
    def from_kubeconfig(cls, text: str) -> Kube:
        """A client for the cluster a kubeconfig (as text, e.g. a region's Secret) names;
        :class:`ValueError` saying what is wrong with it otherwise."""
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"the kubeconfig is not YAML: {error}") from error
        if not isinstance(config, dict) or not config.get("clusters"):
            raise ValueError("the kubeconfig names no cluster")
        try:
            api = kubernetes.config.new_client_from_config_dict(config)  # type: ignore[no-untyped-call]
        except (kubernetes.config.ConfigException, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"the kubeconfig cannot be used: {error}") from error
        return cls(api)

    def create_custom(
        self, group: str, version: str, plural: str, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        with translated():
            created = self.custom.create_namespaced_custom_object(
                group, version, namespace, plural, body, _content_type=JSON
            )
            return cast(dict[str, Any], created)

    def whoami(self) -> str | None:
        """The user name the API server authenticates this client as (SelfSubjectReview);
        None where the API server cannot say (before Kubernetes 1.28)."""
        review = kubernetes.client.V1SelfSubjectReview(
            api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"
        )
        try:
            authentication = kubernetes.client.AuthenticationV1Api(self.api)
            with translated():
                answer = authentication.create_self_subject_review(review, _content_type=JSON)
        except NotFound:
            return None
        user = answer.status.user_info if answer.status else None
        return str(user.username) if user is not None and user.username else None

    def may(
        self, verb: str, group: str, resource: str, namespace: str | None = None
    ) -> bool | None:
        """Whether the API server lets this client ``verb`` the ``resource`` (cluster-wide, or
        in ``namespace``), by a SelfSubjectAccessReview; None where it cannot say."""
        review = kubernetes.client.V1SelfSubjectAccessReview(
            api_version="authorization.k8s.io/v1",
            kind="SelfSubjectAccessReview",
            spec=kubernetes.client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=kubernetes.client.V1ResourceAttributes(
                    verb=verb, group=group, resource=resource, namespace=namespace
                )
            ),
        )
        try:
            authorization = kubernetes.client.AuthorizationV1Api(self.api)
            with translated():
                answer = authorization.create_self_subject_access_review(review, _content_type=JSON)
        except Exception:  # an answer of any other kind says nothing either: never fatal
            return None
        return bool(answer.status.allowed) if answer.status else None

    def refuses_selector(self, selector: str, namespace: str | None = None) -> str | None:
        """Why the API refuses ``selector`` as a label selector of rollouts (its 400's
        message), or None when it takes it; a list of at most one rollout asks it."""
        try:
            if namespace is None:
                self.custom.list_cluster_custom_object(
                    GROUP, VERSION, PLURAL, label_selector=selector, limit=1
                )
            else:
                self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, label_selector=selector, limit=1
                )
        except ApiException as error:
            if error.status == 400:
                return _message(error)
            raise
        return None

    def merge_patch_custom(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        *,
        status: bool = False,
    ) -> dict[str, Any]:
        """Merge-patch an object (or, with ``status``, its status subresource)."""
        write = (
            self.custom.patch_namespaced_custom_object_status
            if status
            else self.custom.patch_namespaced_custom_object
        )
        with translated():
            patched = write(
                group,
                version,
                namespace,
                plural,
                name,
                patch,
                _content_type="application/merge-patch+json",
            )
            return cast(dict[str, Any], patched)


@contextmanager
def translated() -> Iterator[None]:
    """Turn the client's HTTP errors into :class:`NotFound` and :class:`Conflict`."""
    try:
        yield
    except ApiException as error:
        if error.status == 404:
            raise NotFound(str(error.reason)) from error
        if error.status == 409:
            raise Conflict(str(error.reason)) from error
        if error.status == 403:
            raise Forbidden(_message(error)) from error
        raise


def _message(error: ApiException) -> str:
    """The ``message`` of the API's Status answer, else the HTTP reason."""
    try:
        return str(json.loads(error.body or "")["message"])
    except (ValueError, KeyError, TypeError):
        return str(error.reason)
