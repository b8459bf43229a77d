"""The patch formats of the Kubernetes API: JSON merge, JSON patch, strategic merge, apply."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
KINDS = (MERGE, JSON_PATCH, STRATEGIC, APPLY)

# Merge keys of the lists kubectl patches strategically (from the Kubernetes API's
# x-kubernetes-patch-merge-key); a list of objects not named here is replaced whole.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ports": "containerPort",  # Service ports use "port", handled below
    "hostAliases": "ip",
    "tolerations": "key",
}


class PatchError(ValueError):
    """The patch cannot be applied (422)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 as kube-apiserver applies it (evanphx/json-patch): objects merge recursively
    and ``null`` deletes; a value that replaces a non-object (a list, say) is stored without
    its nulls, inside lists too."""
    if not isinstance(target, dict):
        return _without_nulls(patch)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return copy.deepcopy(value)


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902. A failing ``test`` is a 422, as kube-apiserver answers; a stale
    ``resourceVersion`` written by the patch is what makes a conflict (409)."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations")
    try:
        return jsonpatch.JsonPatch(operations).apply(target, in_place=False)
    except jsonpatch.JsonPatchTestFailed as error:
        raise PatchError(f"the JSON patch test failed: {error}") from error
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as error:
        raise PatchError(f"the JSON patch cannot be applied: {error}") from error


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """Kubernetes' strategic merge: merge patch, plus lists of objects merged by their key
    and the ``$patch``, ``$deleteFromPrimitiveList`` and ``$setElementOrder`` directives."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            out[name] = [v for v in out.get(name) or [] if v not in value]
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list):
            out[key] = _merge_list(out.get(key), value, key, field)
        else:
            merged = strategic_merge_patch(out.get(key), value, key)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
    return out


def _merge_list(current: Any, patch: list[Any], key: str, parent: str) -> list[Any]:
    merge_key = MERGE_KEYS.get(key)
    if (
        key == "ports"
        and parent == "spec"
        and any("port" in p for p in patch if isinstance(p, dict))
    ):
        merge_key = "port"  # Service ports
    if merge_key is None or not all(isinstance(item, dict) for item in patch):
        return [copy.deepcopy(v) for v in patch if not (isinstance(v, dict) and "$patch" in v)]
    out = [dict(item) for item in current or [] if isinstance(item, dict)]
    for item in patch:
        position = next(
            (i for i, existing in enumerate(out) if existing.get(merge_key) == item.get(merge_key)),
            None,
        )
        if item.get("$patch") == "delete":
            if position is not None:
                del out[position]
        elif position is None:
            out.append({k: v for k, v in item.items() if k != "$patch"})
        else:
            out[position] = strategic_merge_patch(out[position], item, key)
    return out


def apply_patch(kind: str, target: Any, patch: Any) -> Any:
    if kind == JSON_PATCH:
        return json_patch(target, patch)
    if kind == STRATEGIC:
        return strategic_merge_patch(target, patch)
    # Server-side apply without field ownership: the applied intent merges into the object.
    return merge_patch(target, patch)
