"""NGINX ingress: a canary Ingress beside the stable one.

ingress-nginx splits traffic between an Ingress and a second one for the same hosts and paths
annotated ``nginx.ingress.kubernetes.io/canary: "true"`` with a ``canary-weight``. phasegate
creates that canary Ingress, ``<stableIngress>-canary``, from the stable Ingress (the paths
that reach the stable Service, sent to the canary Service), sets its weight, and deletes it on
restore. An Ingress of that name that phasegate did not create is never touched.

With a :class:`~phasegate.traffic.cache.RouteCache`, both Ingresses are read from the watched
copies, and so is a canary Ingress's absence (the API's 404, a deletion the watch saw): one that
does not exist is asked of the API once per ``max_age``, not at every evaluation. When the
cache wrongly holds it absent (made by someone else, and not yet seen by the watch), creating
it is refused (409 AlreadyExists): it is then read and written over, as any copy is.
"""

from __future__ import annotations

import copy
from typing import Any, cast

from phasegate.kube import JSON, Conflict, Kube, NotFound, translated, unchanged_since
from phasegate.traffic.cache import Key, RouteCache
from phasegate.traffic.router import RouteError

CANARY = "nginx.ingress.kubernetes.io/canary"
WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
CANARY_OF = "phasegate.dev/canary-of"


class NginxRouter:
    kind = "Ingress"
    group, version, plural = "networking.k8s.io", "v1", "ingresses"

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        stable_ingress: str,
        stable: str,
        canary: str,
        *,
        cache: RouteCache | None = None,
    ) -> None:
        self.kube, self.namespace = kube, namespace
        self.stable_ingress, self.stable, self.canary = stable_ingress, stable, canary
        self.name = f"{stable_ingress[:246]}-canary"
        self.cache = cache  # the watched copies; None: every read asks the API
        # The canary Ingress as read_weight saw it ({} when absent): the write is made over
        # it, so one that someone else's overtook is refused (409) instead of applied.
        self._seen: dict[str, Any] | None = None

    def routes_read(self) -> tuple[Key, ...]:
        return (self._key(self.stable_ingress), self._key(self.name))

    def _key(self, name: str) -> Key:
        return (self.group, self.plural, self.namespace, name)

    def _read(self, name: str, *, fresh: bool = False) -> dict[str, Any]:
        """An Ingress: the watched copy when there is one (and not ``fresh``), else the API's;
        NotFound when it does not exist, which the cache keeps too."""

        def fetch() -> dict[str, Any]:
            with translated():
                return self.kube.plain(
                    self.kube.networking.read_namespaced_ingress(name, self.namespace)
                )

        if self.cache is None:
            return fetch()
        return self.cache.read(self._key(name), fetch, fresh=fresh)

    def _offer(self, ingress: Any) -> None:
        """An Ingress the API answered with, for the cache (kept only if asked for)."""
        if self.cache is not None:
            ingress = ingress if isinstance(ingress, dict) else self.kube.plain(ingress)
            self.cache.offer(self._key(ingress["metadata"]["name"]), ingress)

    def _canary(self, *, fresh: bool = False) -> dict[str, Any] | None:
        """The canary Ingress when it exists; RouteError when it is not phasegate's."""
        try:
            ingress = self._read(self.name, fresh=fresh)
        except NotFound:
            return None
        annotations = ingress["metadata"].get("annotations") or {}
        if annotations.get(CANARY_OF) != self.stable_ingress:
            raise RouteError(
                f"Ingress {self.namespace}/{self.name} exists and was not made by phasegate; "
                "rename or delete it"
            )
        return ingress

    def _wanted(self, weight: int) -> dict[str, Any]:
        """The canary Ingress made from the stable one."""
        try:
            stable = self._read(self.stable_ingress)
        except NotFound:
            raise RouteError(f"Ingress {self.namespace}/{self.stable_ingress} not found") from None
        rules = []
        for rule in (stable.get("spec") or {}).get("rules") or []:
            paths = []
            for path in (rule.get("http") or {}).get("paths") or []:
                service = (path.get("backend") or {}).get("service") or {}
                if service.get("name") == self.stable:
                    path = copy.deepcopy(path)
                    path["backend"]["service"]["name"] = self.canary
                    paths.append(path)
            if paths:
                rules.append({**rule, "http": {"paths": paths}})
        if not rules:
            raise RouteError(
                f"Ingress {self.namespace}/{self.stable_ingress} has no path to the stable "
                f"Service {self.stable!r}"
            )
        spec: dict[str, Any] = {"rules": rules}
        if (stable.get("spec") or {}).get("ingressClassName"):
            spec["ingressClassName"] = stable["spec"]["ingressClassName"]
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "phasegate"},
                "annotations": {
                    CANARY: "true",
                    WEIGHT: str(weight),
                    CANARY_OF: self.stable_ingress,
                },
            },
            "spec": spec,
        }

    def read_weight(self) -> int:
        self._wanted(0)  # the stable Ingress must still lead to the stable Service
        canary = self._canary()
        self._seen = canary or {}
        annotations = (canary or {}).get("metadata", {}).get("annotations") or {}
        if annotations.get(CANARY) != "true":
            return 0  # no canary Ingress (or not one nginx treats as such): no canary traffic
        try:
            return max(0, min(100, int(annotations.get(WEIGHT, "0"))))
        except ValueError:
            return 0

    def set_weight(self, weight: int) -> None:
        wanted = self._wanted(weight)
        canary = (self._seen or None) if self._seen is not None else self._canary()
        self._seen = None  # one write per reading
        if canary is None:
            try:
                with translated():
                    self._offer(
                        self.kube.networking.create_namespaced_ingress(
                            self.namespace, cast(Any, wanted), _content_type=JSON
                        )
                    )
                return
            except Conflict:  # made by someone else since it was read: write over it
                canary = self._canary(fresh=True)
                if canary is None:
                    raise  # gone again: the next evaluation reads it again
        annotations = {
            **(canary["metadata"].get("annotations") or {}),
            **wanted["metadata"]["annotations"],
        }
        version = canary["metadata"]["resourceVersion"]
        ops = [
            unchanged_since(version),
            {"op": "replace", "path": "/metadata/annotations", "value": annotations},
            {"op": "replace", "path": "/spec", "value": wanted["spec"]},
        ]
        try:
            with translated():
                written = self.kube.networking.patch_namespaced_ingress(
                    self.name, self.namespace, ops, _content_type="application/json-patch+json"
                )
        except (Conflict, NotFound):  # overtaken, or gone: the next read asks the API
            if self.cache is not None:
                self.cache.doubt(self._key(self.name))
            raise
        self._offer(written)

    def restore(self) -> bool:
        """Delete the canary Ingress: all traffic goes to the stable one again."""
        try:
            if self._canary(fresh=True) is None:
                return False
            with translated():
                self.kube.networking.delete_namespaced_ingress(self.name, self.namespace)
        except (RouteError, NotFound):
            return False
        if self.cache is not None:
            self.cache.doubt(self._key(self.name))
        return True
