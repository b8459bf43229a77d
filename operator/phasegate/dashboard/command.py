"""The ``dashboard`` subcommand, shared by ``kubectl phasegate`` and ``phasegate``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING, TextIO

from phasegate.dashboard.settings import ALERTS, PORT

if TYPE_CHECKING:
    from phasegate.kube import Kube

SUMMARY = "a live web view of rollouts on 127.0.0.1, with approve and reject"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # also after the subcommand (``phasegate dashboard --kubeconfig F``); SUPPRESS keeps a
    # value given before it
    parser.add_argument("--kubeconfig", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("-n", "--namespace", help="one namespace (default: the context's)")
    parser.add_argument("-A", "--all-namespaces", action="store_true")
    parser.add_argument(
        "--port", type=int, default=PORT, help=f"port on 127.0.0.1 (default {PORT}; 0: any free)"
    )
    parser.add_argument(
        "--prometheus", help="Prometheus address for rollouts without spec.prometheus"
    )
    parser.add_argument(
        "--prometheus-override",
        help="read every rollout's metrics here instead (e.g. a kubectl port-forward)",
    )
    parser.add_argument(
        "--alerts", default=ALERTS, help=f"the firing alerts to show (default: {ALERTS})"
    )
    parser.add_argument("--refresh", type=float, default=2.0, help="seconds between updates")


def run(
    kube: Kube,
    namespace: str | None,
    user: str,
    args: argparse.Namespace,
    out: TextIO = sys.stdout,
) -> int:
    """Serve until interrupted; ``namespace`` None: all namespaces. ``user`` signs the
    controls: the caller as the API server knows them, as for ``kubectl phasegate approve``."""
    from phasegate.dashboard.server import Dashboard, serve

    dashboard = Dashboard(
        kube=kube,
        user=user,
        namespace=namespace,
        prometheus=args.prometheus,
        prometheus_override=args.prometheus_override,
        alerts_query=args.alerts,
        refresh=args.refresh,
    )

    def ready(url: str) -> None:
        print(f"phasegate dashboard on {url} (Ctrl-C stops it)", file=out, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(dashboard, args.port, ready))
    return 0
