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
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from phasegate import GROUP, KIND, PLURAL, VERSION
from phasegate.api.durations import format_duration
from phasegate.api.release import RELEASE_KIND, RELEASE_PLURAL, ReleaseSpec, ReleaseStatus
from phasegate.api.spec import RolloutSpec
from phasegate.api.status import RolloutStatus

Schema = dict[str, Any]
_DROP = {"title", "discriminator", "$defs"}

PRINTER_COLUMNS: list[Schema] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.currentPhase.name"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
    {"name": "State", "type": "string", "jsonPath": ".status.state"},
    {"name": "Checkpoints", "type": "string", "jsonPath": ".status.progress"},
    {"name": "Revision", "type": "string", "jsonPath": ".spec.revision", "priority": 1},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

RELEASE_PRINTER_COLUMNS: list[Schema] = [
    {"name": "Revision", "type": "string", "jsonPath": ".spec.revision"},
    {"name": "Wave", "type": "string", "jsonPath": ".status.currentWave"},
    {"name": "Waves", "type": "string", "jsonPath": ".status.progress"},
    {"name": "Regions", "type": "string", "jsonPath": ".status.regionsSucceeded"},
    {"name": "State", "type": "string", "jsonPath": ".status.state"},
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


def _schema_of(model: type[BaseModel]) -> Schema:
    return structural(
        model.model_json_schema(by_alias=True, mode="validation", schema_generator=_WireDefaults)
    )


def _definition(
    *,
    kind: str,
    plural: str,
    description: str,
    spec: Schema,
    status: Schema,
    short_names: list[str],
    categories: list[str],
    columns: list[Schema],
) -> Schema:
    schema = {
        "type": "object",
        "description": description,
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
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": categories,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def crd() -> Schema:
    """The full CRD object for ``progressiverollouts.phasegate.dev``."""
    return _definition(
        kind=KIND,
        plural=PLURAL,
        description="A release moving traffic from stable to canary through phases.",
        spec=_schema_of(RolloutSpec),
        status=_schema_of(RolloutStatus),
        short_names=["prollout", "pgr"],
        categories=["rollouts", "phasegate"],
        columns=PRINTER_COLUMNS,
    )


def release_crd() -> Schema:
    """The CRD for ``progressivereleases.phasegate.dev``: a revision across regions, in waves.

    ``kubectl get releases`` (a short name) lists them; they are in the ``phasegate``
    category but not in ``rollouts``, whose columns are a rollout's."""
    return _definition(
        kind=RELEASE_KIND,
        plural=RELEASE_PLURAL,
        description="One revision rolled out region by region, in waves, from the hub.",
        spec=_schema_of(ReleaseSpec),
        status=_schema_of(ReleaseStatus),
        short_names=["releases", "release", "prel"],
        categories=["phasegate"],
        columns=RELEASE_PRINTER_COLUMNS,
    )


HEADER = "# Generated by `make crds` from phasegate.api; do not edit by hand.\n"


def render_yaml() -> str:
    """The CRD as committed in ``crds/``."""
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=100)


def render_release_yaml() -> str:
    """The release CRD as committed in ``crds/``."""
    return HEADER + yaml.safe_dump(release_crd(), sort_keys=False, width=100)


# File name in crds/ -> its text.
CRD_FILES = {
    f"{GROUP}_{PLURAL}.yaml": render_yaml,
    f"{GROUP}_{RELEASE_PLURAL}.yaml": render_release_yaml,
}
