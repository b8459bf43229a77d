"""``phasegate local-api``: run the local Kubernetes API until interrupted."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path


def serve(port: int, kubeconfig: Path) -> int:
    from phasegate.localapi import LocalAPI

    kubeconfig = kubeconfig.resolve()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with LocalAPI(port=port, kubeconfig_path=kubeconfig) as api:
            print(f"local Kubernetes API at {api.url}", flush=True)
            print(f"export KUBECONFIG={api.kubeconfig_path}", flush=True)
            await stop.wait()

    try:
        asyncio.run(run())
    except OSError as error:
        print(f"cannot serve on 127.0.0.1:{port}: {error.strerror}")
        return 1
    return 0
