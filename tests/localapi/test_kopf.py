"""A real kopf operator (`kopf run`, a subprocess) works against the local API."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from phasegate.localapi import LocalAPI
from support.kube import Kube, eventually, kubectl

HERE = Path(__file__).parent
WIDGETS = "/apis/test.phasegate.dev/v1/namespaces/default/widgets"
CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.phasegate.dev}
spec:
  group: test.phasegate.dev
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, properties: {size: {type: integer}}}
            status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


@pytest.fixture
def operator(local_api: LocalAPI, tmp_path: Path) -> Iterator[Path]:
    kubectl(local_api.kubeconfig_path, "apply", "-f", "-", stdin=CRD)
    log = tmp_path / "kopf.log"
    env = {**os.environ, "KUBECONFIG": str(local_api.kubeconfig_path)}
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "--standalone",
                "--all-namespaces",
                "--verbose",
                str(HERE / "kopf_operator.py"),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_kopf_operator_handles_create_update_delete_without_retries(
    local_api: LocalAPI, operator: Path
) -> None:
    kube = Kube(local_api.kubeconfig_path)
    widget = {
        "apiVersion": "test.phasegate.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1},
    }
    kube.ok("POST", WIDGETS, widget)

    def seen(size: int) -> bool:
        obj = kube.ok("GET", f"{WIDGETS}/w")
        return (obj.get("status") or {}).get("seen") == size

    eventually(lambda: seen(1))
    finalizers = kube.ok("GET", f"{WIDGETS}/w")["metadata"].get("finalizers", [])
    assert finalizers == ["kopf.zalando.org/KopfFinalizerMarker"]

    kube.ok(
        "PATCH", f"{WIDGETS}/w", {"spec": {"size": 2}}, content_type="application/merge-patch+json"
    )
    eventually(lambda: seen(2))

    def events() -> list[str]:
        items = kube.ok("GET", "/api/v1/namespaces/default/events")["items"]
        return [e["message"] for e in items if e["involvedObject"]["name"] == "w"]

    eventually(lambda: "resized to 2" in events())
    assert "created with size 1" in events()

    kube.ok("DELETE", f"{WIDGETS}/w")
    eventually(lambda: kube.request("GET", f"{WIDGETS}/w")[0] == 404)
    eventually(lambda: "cleaned up" in operator.read_text())

    log = operator.read_text()
    for bad in (
        "Traceback",
        "will retry",
        "Retrying",
        "Patching failed",
        "Conflict",
        "failed with an exception",
    ):
        assert bad not in log, f"{bad!r} in the operator's log:\n{log}"
    # A 409 as aiohttp and kopf report it; a bare "409" may be part of a uid or a timestamp.
    conflict = re.search(r"409, message=|status[=: ]+409|\(409\)", log)
    assert conflict is None, f"a 409 in the operator's log:\n{log}"
