"""The local API for synchronous code and pytest: served from a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from phasegate.localapi.server import LocalAPI


@contextmanager
def running_local_api(kubeconfig_path: Path, **options: object) -> Iterator[LocalAPI]:
    """Serve a :class:`LocalAPI` on its own event loop in a thread, for blocking clients
    (the ``kubernetes`` client, kubectl, subprocesses) to talk to."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    holder: dict[str, object] = {}

    async def serve() -> None:
        try:
            async with LocalAPI(kubeconfig_path=kubeconfig_path, **options) as api:  # type: ignore[arg-type]
                holder["api"] = api
                started.set()
                await stop.wait()
        except Exception as error:  # reported to the caller below
            holder["error"] = error
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(timeout=30) or "error" in holder:
        raise RuntimeError(f"the local API did not start: {holder.get('error')}")
    try:
        api = holder["api"]
        assert isinstance(api, LocalAPI)
        yield api
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


@pytest.fixture
def local_api(tmp_path: Path) -> Iterator[LocalAPI]:
    """A fresh local Kubernetes API for one test; ``local_api.kubeconfig_path`` points at it."""
    with running_local_api(tmp_path / "kubeconfig", bookmark_interval=1.0) as api:
        yield api
