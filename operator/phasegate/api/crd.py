"""The CustomResourceDefinition, generated from the pydantic models.

The output is a structural apiextensions.k8s.io/v1 schema: every ``$ref`` inlined, every
node typed, ``nullable`` instead of ``anyOf [..., null]``, no ``additionalProperties: false``
(the apiserver prunes unknown fields instead), ``enum`` instead of ``const``.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import yaml
from pydantic.json_schema import GenerateJsonSchema

from phasegate import GROUP, KIND, PLURAL, VERSION
from phasegate.api.durations import format_duration
from phasegate.api.spec import RolloutSpec
from phasegate.api.status import RolloutStatus

Schema = dict[str, Any]
_DROP = {"title", "discriminator", "$defs"}

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.currentPhase.name"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
    {"name": "State", "type": "string", "jsonPath": ".status.state"},
    {"name": "Checkpoints", "type": "string", "jsonPath": ".status.progress"},
    {"name": "Revision", "type": "string", "jsonPath": ".spec.revision", "priority": 1},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class _WireDefaults(GenerateJsonSchema):
    """Defaults as they are written on the wire: durations as ``30s``, not ``PT30S``."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def structural(schema: Schema) -> Schema:
    """Turn a pydantic JSON schema into a Kubernetes structural schema."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return walk({**target, **extra})
        if "anyOf" in node:
            options = [o for o in node["anyOf"] if o != {"type": "null"}]
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            if len(options) != 1:
                raise ValueError(f"cannot express anyOf {node['anyOf']} structurally")
            merged = walk({**options[0], **rest})
            if len(options) < len(node["anyOf"]):
                merged["nullable"] = True
                if merged.get("default", ...) is None:
                    del merged["default"]
            return merged
        out: Schema = {}
        for key, value in node.items():
            if key in _DROP or (key == "additionalProperties" and value is False):
                continue
            if key == "const":
                out["enum"] = [value]
            elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
                # JSON Schema's numeric form; OpenAPI v3.0 wants a bound plus a boolean.
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[key] = True
            elif key == "properties":
                out[key] = {name: walk(sub) for name, sub in value.items()}
            else:
                out[key] = walk(value)
        if "properties" in out:
            out.setdefault("type", "object")
        if "enum" in out and "type" not in out:
            out["type"] = "string"
        return out

    return walk({k: v for k, v in schema.items() if k != "$defs"})  # type: ignore[no-any-return]


def crd() -> Schema:
    """The full CRD object for ``progressiverollouts.phasegate.dev``."""
    spec = structural(
        RolloutSpec.model_json_schema(
            by_alias=True, mode="validation", schema_generator=_WireDefaults
        )
    )
    status = structural(
        RolloutStatus.model_json_schema(
            by_alias=True, mode="validation", schema_generator=_WireDefaults
        )
    )
    schema = {
        "type": "object",
        "description": "A release moving traffic from stable to canary through phases.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["prollout", "pgr"],
                "categories": ["rollouts", "phasegate"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def render_yaml() -> str:
    """The CRD as committed in ``crds/``."""
    header = "# Generated by `make crds` from phasegate.api; do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)
