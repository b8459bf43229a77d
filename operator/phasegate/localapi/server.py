"""The local Kubernetes API as a real HTTP server: kmock's server and handler, with the
apiserver semantics of :class:`~phasegate.localapi.api.KubernetesAPI` behind them.

Reactions added with kmock's DSL (``api.handler['patch', '/apis/...'][:1] << 500``: the first
such request fails) answer first, for fault injection in tests; everything else is served by
the emulation.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import attrs
import kmock
import yaml
from aiohttp import web
from kmock._internal import rendering

from phasegate.localapi.api import KubernetesAPI


@attrs.define(kw_only=True)
class LocalAPIHandler(kmock.RawHandler):
    """A kmock handler that falls back to the Kubernetes emulation.

    Requests are remembered when ``history`` is true or while reactions are set (kmock's
    filters and slices, e.g. ``[:1]`` for "the first one only", select among the remembered
    requests); otherwise not, so a long run stays flat in time and memory.
    """

    api: KubernetesAPI = attrs.field(factory=KubernetesAPI)
    history: bool = False
    served: int = 0

    async def __call__(self, raw_request: web.BaseRequest) -> web.StreamResponse:
        self.served += 1
        if self._payloads or self.history:
            await raw_request.read()
            request = await rendering.Request._parse(raw_request, id=self.served)
            self._requests.append(request)
            if self._payloads:
                with contextlib.suppress(NotImplementedError):
                    return await self._handle(request)
        return await self.api.handle(raw_request)


def kubeconfig(url: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "phasegate-local", "cluster": {"server": url}}],
        "users": [{"name": "phasegate-local", "user": {"token": "phasegate-local"}}],
        "contexts": [
            {
                "name": "phasegate-local",
                "context": {
                    "cluster": "phasegate-local",
                    "user": "phasegate-local",
                    "namespace": namespace,
                },
            }
        ],
        "current-context": "phasegate-local",
    }


class LocalAPI:
    """``async with LocalAPI() as api:`` serves the API on 127.0.0.1 and writes a kubeconfig."""

    def __init__(
        self,
        *,
        port: int = 0,
        kubeconfig_path: Path | None = None,
        history: bool = False,
        bookmark_interval: float = 10.0,
        window: int = 10_000,
    ) -> None:
        api = KubernetesAPI(bookmark_interval=bookmark_interval, window=window)
        self.handler = LocalAPIHandler(api=api, history=history)
        self._port = port
        self._kubeconfig_path = kubeconfig_path
        self._server: kmock.Server | None = None

    @property
    def api(self) -> KubernetesAPI:
        return self.handler.api

    @property
    def url(self) -> str:
        assert self._server is not None, "the local API is not running"
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def kubeconfig_path(self) -> Path:
        assert self._kubeconfig_path is not None
        return self._kubeconfig_path

    async def __aenter__(self) -> Self:
        await self.handler.__aenter__()
        self._server = kmock.Server(self.handler, host="127.0.0.1", port=self._port or None)
        await self._server.__aenter__()
        if self._kubeconfig_path is not None:
            self._kubeconfig_path.parent.mkdir(parents=True, exist_ok=True)
            self._kubeconfig_path.write_text(yaml.safe_dump(kubeconfig(self.url)))
            os.chmod(self._kubeconfig_path, 0o600)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            await self._server.__aexit__(exc_type, exc, tb)
            self._server = None
        await self.handler.__aexit__(exc_type, exc, tb)
