"""Clients of a (local) Kubernetes API for tests: the ``kubernetes`` library and kubectl."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from phasegate.demo.stack import wait_until

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
PROVIDER_CRDS = ROOT / "manifests/local/provider-crds.yaml"
REFERENCE = ROOT / "manifests/examples/reference-release.yaml"


def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    try:
        return wait_until(check, timeout, what)
    except TimeoutError as error:
        raise AssertionError(str(error)) from None


class Kube:
    """Raw HTTP through the ``kubernetes`` client: (status, JSON body) for any request."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.api = kubernetes.config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]

    def _open(
        self,
        method: str,
        path: str,
        body: Any,
        query: list[tuple[str, str]],
        headers: dict[str, str],
    ) -> Any:
        method, url, headers, body, _ = self.api.param_serialize(
            method,
            path,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return self.api.call_api(method, url, header_params=headers, body=body)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        accept: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        headers = {"Content-Type": content_type, "Accept": accept}
        response = self._open(method, path, body, list((query or {}).items()), headers)
        response.read()
        return response.status, json.loads(response.data or b"null")

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        status, data = self.request(method, path, body, **kwargs)
        assert 200 <= status < 300, (status, data)
        return data

    def stream(
        self, path: str, query: dict[str, str], accept: str = "application/json"
    ) -> list[dict[str, Any]]:
        """Read a watch until the server ends it (pass ``timeoutSeconds``)."""
        response = self._open(
            "GET", path, None, [("watch", "true"), *query.items()], {"Accept": accept}
        )
        response.read()
        return [json.loads(line) for line in response.data.splitlines() if line.strip()]

    def watch(self, path: str, query: dict[str, str]) -> Iterator[dict[str, Any]]:
        """The events of a watch as the server sends them, until it ends the watch."""
        response = self._open(
            "GET", path, None, [("watch", "true"), *query.items()], {"Accept": "application/json"}
        )
        try:
            for line in response.response:
                if line.strip():
                    yield json.loads(line)
        finally:
            response.response.release_conn()

    def apply_file(self, path: Path) -> None:
        kubectl(self.kubeconfig, "apply", "-f", str(path))


def render_script(name: str) -> str:
    """What ``scripts/<name>.py`` renders (the committed files must equal it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.render())


def kubectl(
    kubeconfig: Path, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run(
        ["kubectl", *args],
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result


def namespace(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
