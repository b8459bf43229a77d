"""The peering object, looked for before kopf is left to wait for it.

With a peering name, kopf handles nothing until its peering object exists (a
``ClusterKopfPeering``, or a ``KopfPeering`` in each watched namespace), and it waits for
it without a word. So the operator looks for the object itself at start-up, and asks again
until it is there: meanwhile it logs what is missing and how to create it, and ``/readyz``
answers not-ready with the same reason. Once the object exists kopf, which watches it,
goes on by itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import structlog

from phasegate.kube import Forbidden, Kube, NotFound
from phasegate.runtime.health import Readiness

log = structlog.get_logger("phasegate")
GROUP, VERSION = "kopf.dev", "v1"
GLOB = set("*?[!")  # kopf's namespace patterns: no single object to look for


@dataclass(frozen=True)
class Peering:
    name: str
    namespace: str | None = None  # None: the cluster-wide ClusterKopfPeering

    @property
    def kind(self) -> str:
        return "ClusterKopfPeering" if self.namespace is None else "KopfPeering"

    @property
    def plural(self) -> str:
        return self.kind.lower() + "s"

    def __str__(self) -> str:
        where = "" if self.namespace is None else f" in namespace {self.namespace!r}"
        return f"{self.kind} {self.name!r}{where}"

    def manifest(self) -> str:
        metadata = {"name": self.name}
        if self.namespace is not None:
            metadata["namespace"] = self.namespace
        return json.dumps(
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": self.kind, "metadata": metadata}
        )

    def missing(self) -> str:
        return (
            f"waiting for the {self} ({GROUP}/{VERSION}): kopf handles no rollout until it exists;"
            f" create it with: echo '{self.manifest()}' | kubectl apply -f -"
            " (the Helm chart creates it from the value peering.name, the kustomize install"
            " holds it), or run with --standalone for a single replica"
        )

    def unserved(self) -> str:
        return (
            f"waiting for the CustomResourceDefinition {self.plural}.{GROUP}: the {self} cannot"
            " exist before it, and kopf handles no rollout until it does; install it with:"
            " kubectl apply -f crds/kopf-peering.yaml (the Helm chart and the kustomize install"
            " carry it), or run with --standalone for a single replica"
        )


def peerings(name: str | None, namespaces: tuple[str, ...]) -> list[Peering]:
    """The objects kopf needs for ``name``: one cluster-wide, or one per watched namespace."""
    if name is None:
        return []
    if not namespaces:
        return [Peering(name)]
    return [Peering(name, ns) for ns in namespaces if not GLOB & set(ns)]


def _look(kube: Kube, peering: Peering) -> str | None:
    """None when ``peering`` exists, else why the operator waits. Blocking."""
    try:
        if peering.namespace is None:
            kube.get_cluster_custom(GROUP, VERSION, peering.plural, peering.name)
        else:
            kube.get_custom(GROUP, VERSION, peering.plural, peering.namespace, peering.name)
        return None
    except NotFound:
        return (
            peering.missing() if kube.serves(GROUP, VERSION, peering.plural) else peering.unserved()
        )
    except Forbidden as error:
        return f"waiting for the {peering}: reading it is forbidden ({error})"


async def await_peerings(
    kube: Kube,
    wanted: list[Peering],
    readiness: Readiness,
    *,
    interval: float = 2.0,
    remind: float = 60.0,
) -> None:
    """Ask for each peering object until it exists, not-ready and saying why meanwhile."""
    for peering in wanted:
        topic = f"peering:{peering}"
        said, said_at = "", 0.0
        while True:
            try:
                reason = await asyncio.to_thread(_look, kube, peering)
            except Exception as error:  # the API unreachable at start-up: ask again
                reason = f"waiting for the {peering}: the Kubernetes API did not answer ({error})"
            if reason is None:
                break
            readiness.wait_for(topic, reason)
            if reason != said or time.monotonic() - said_at >= remind:
                log.warning(reason, peering=str(peering))
                said, said_at = reason, time.monotonic()
            await asyncio.sleep(interval)
        readiness.done(topic)
        if said:
            log.info(f"{peering} found; kopf goes on", peering=str(peering))
