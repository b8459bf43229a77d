"""The resource types the local API serves: built-in ones, and those CRDs register."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class Resource:
    """One served resource type, as discovery describes it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    status_subresource: bool = False
    scale_subresource: bool = False
    token_subresource: bool = False  # ServiceAccount tokens (TokenRequest)
    schema: dict[str, Any] | None = None  # openAPIV3Schema; None: no validation
    printer_columns: list[dict[str, Any]] = field(default_factory=list)
    has_generation: bool = True  # whether spec-like changes bump metadata.generation
    crd_name: str | None = None  # the CRD that registered it

    def __post_init__(self) -> None:
        self.singular = self.singular or self.kind.lower()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    def discovery(self) -> list[dict[str, Any]]:
        """The entries of this resource in an APIResourceList."""
        entries = [
            {
                "name": self.plural,
                "singularName": self.singular,
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ALL_VERBS,
                **({"shortNames": self.short_names} if self.short_names else {}),
                **({"categories": self.categories} if self.categories else {}),
            }
        ]
        if self.status_subresource:
            entries.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if self.scale_subresource:
            entries.append(
                {
                    "name": f"{self.plural}/scale",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }
            )
        if self.token_subresource:
            entries.append(
                {
                    "name": f"{self.plural}/token",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "group": "authentication.k8s.io",
                    "version": "v1",
                    "kind": "TokenRequest",
                    "verbs": ["create"],
                }
            )
        return entries


def builtin_resources() -> list[Resource]:
    """The core resources the operator, kubectl and the tests touch."""
    return [
        Resource(
            "",
            "v1",
            "namespaces",
            "Namespace",
            namespaced=False,
            short_names=["ns"],
            status_subresource=True,
            has_generation=False,
        ),
        Resource("", "v1", "events", "Event", short_names=["ev"], has_generation=False),
        Resource("", "v1", "configmaps", "ConfigMap", short_names=["cm"], has_generation=False),
        Resource("", "v1", "secrets", "Secret", has_generation=False),
        Resource(
            "",
            "v1",
            "services",
            "Service",
            short_names=["svc"],
            categories=["all"],
            status_subresource=True,
            has_generation=False,
        ),
        Resource(
            "",
            "v1",
            "pods",
            "Pod",
            short_names=["po"],
            categories=["all"],
            status_subresource=True,
            has_generation=False,
        ),
        Resource(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            short_names=["sa"],
            has_generation=False,
            token_subresource=True,
        ),
        Resource(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            short_names=["deploy"],
            categories=["all"],
            status_subresource=True,
            scale_subresource=True,
        ),
        Resource(
            "events.k8s.io", "v1", "events", "Event", short_names=["ev"], has_generation=False
        ),
        Resource("coordination.k8s.io", "v1", "leases", "Lease", has_generation=False),
        Resource(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
            short_names=["crd", "crds"],
            status_subresource=True,
        ),
        Resource(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            short_names=["ing"],
            status_subresource=True,
        ),
        Resource(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            short_names=["pdb"],
            status_subresource=True,
        ),
        Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", has_generation=False),
        Resource(
            "rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", has_generation=False
        ),
        Resource(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            namespaced=False,
            has_generation=False,
        ),
        Resource(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            namespaced=False,
            has_generation=False,
        ),
    ]


def from_crd(crd: dict[str, Any]) -> list[Resource]:
    """The resources a CustomResourceDefinition registers: one per served version."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    out = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        out.append(
            Resource(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", ""),
                short_names=list(names.get("shortNames", [])),
                categories=list(names.get("categories", [])),
                status_subresource="status" in subresources,
                scale_subresource="scale" in subresources,
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=list(version.get("additionalPrinterColumns", [])),
                crd_name=crd["metadata"]["name"],
            )
        )
    return out
