"""Deployment promotion: the stable Deployment takes the canary's pod template."""

from __future__ import annotations

from typing import Any, cast

from phasegate.kube import Kube, NotFound, translated


def _read(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    with translated():
        deployment = kube.apps.read_namespaced_deployment(name, namespace)
    plain = kube.api.sanitize_for_serialization(deployment)  # type: ignore[no-untyped-call]
    return cast(dict[str, Any], plain)


def promote(kube: Kube, namespace: str, stable: str, canary: str) -> bool:
    """Copy the canary's pod template to stable (keeping stable's labels); True when the
    stable Deployment runs it and is ready."""
    source, target = _read(kube, namespace, canary), _read(kube, namespace, stable)
    template = source["spec"]["template"]
    labels = (target["spec"]["template"].get("metadata") or {}).get("labels") or {}
    wanted = {**template, "metadata": {**(template.get("metadata") or {}), "labels": labels}}
    if target["spec"]["template"] != wanted:
        with translated():
            kube.apps.patch_namespaced_deployment(
                stable,
                namespace,
                [{"op": "replace", "path": "/spec/template", "value": wanted}],
                _content_type="application/json-patch+json",
            )
        return False
    return rolled_out(target)


def rolled_out(deployment: dict[str, Any]) -> bool:
    """Whether the Deployment's current template runs on all its replicas and they are
    available, as ``kubectl rollout status`` decides: the controller has seen this
    generation, every replica is updated, no old replica is left, all updated are available."""
    status, replicas = deployment.get("status") or {}, deployment["spec"].get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    return bool(
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 1)
        and updated >= replicas
        and status.get("replicas", 0) <= updated
        and status.get("availableReplicas", 0) >= updated
    )


def scaled_down(kube: Kube, namespace: str, name: str) -> bool:
    """Whether the Deployment asks for no replicas; one that is gone counts as scaled down."""
    try:
        return int(_read(kube, namespace, name)["spec"].get("replicas", 1)) == 0
    except NotFound:
        return True


def scale_down(kube: Kube, namespace: str, name: str) -> None:
    with translated():
        kube.apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": 0}})
