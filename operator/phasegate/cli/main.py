"""``phasegate``: validate manifests, generate the CRDs, run the operator, the local API and the
demo."""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from pathlib import Path

from phasegate import __version__
from phasegate.runtime.sharding import Shard


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(kind: type[int] | type[float], *, zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a number above 0 (or at least 0 with ``zero``)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0 or (value == 0 and not zero):
            least = "0 or more" if zero else "above 0"
            raise argparse.ArgumentTypeError(f"{text}: must be {least}")
        return value

    return parse


def _providers(text: str) -> tuple[str, ...]:
    from phasegate.traffic import ROUTERS

    chosen = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in chosen if p not in ROUTERS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown provider(s) {', '.join(unknown)}; known: {', '.join(ROUTERS)}"
        )
    return chosen


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phasegate",
        description="Progressive delivery for Kubernetes, gated by Prometheus metrics.",
    )
    parser.add_argument("--version", action="version", version=f"phasegate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="check ProgressiveRollout manifests offline",
        description=(
            "Check every ProgressiveRollout in FILEs against the API and its rules. "
            "Prints each problem with its file and field path; exits 1 if any is invalid."
        ),
    )
    validate.add_argument("files", nargs="+", metavar="FILE")

    crds = commands.add_parser("crds", help="print or write the CRD generated from the models")
    crds.add_argument("--output", "-o", type=Path, help="directory to write the CRD into")

    run = commands.add_parser(
        "run",
        help="run the operator",
        description=(
            "Run the operator: watch ProgressiveRollouts, set route weights, judge Prometheus "
            "metrics, write status. Uses in-cluster credentials, else $KUBECONFIG."
        ),
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch this namespace (repeatable); default: all namespaces",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch all namespaces")
    run.add_argument(
        "--peering",
        default=None,
        help="kopf peering name: only one replica of a peering acts "
        "(default: phasegate, or phasegate-hub with --hub)",
    )
    run.add_argument(
        "--hub",
        action="store_true",
        help="the hub role: drive ProgressiveReleases region by region (each region a cluster "
        "reached through a kubeconfig Secret) instead of ProgressiveRollouts here",
    )
    run.add_argument("--standalone", action="store_true", help="no peering: a single replica")
    run.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="own only shard I (from 0) of N: the rollouts whose crc32 of namespace/name mod N "
        "is I; the default peering becomes phasegate-shard-I (a peering is needed: through it "
        "a change of N hands each rollout over from one layout to the other)",
    )
    run.add_argument(
        "--selector",
        default=None,
        metavar="LABELS",
        help="watch only the rollouts with these labels (a label selector, e.g. team=payments "
        "or 'tier in (web,api)'; the API filters them, so the others cost this operator "
        "nothing): one operator deployment per selector, each with its own peering",
    )
    run.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority; the live replica with the highest acts "
        "(default: random, so that replicas differ)",
    )
    run.add_argument(
        "--peering-lifetime",
        type=int,
        default=15,
        help="seconds after which a silent replica is presumed dead and a standby takes over: "
        "also how long rollbacks can go unevaluated when the active one dies (default: 15)",
    )
    run.add_argument("--prometheus", help="Prometheus address for rollouts without spec.prometheus")
    run.add_argument(
        "--traffic-providers",
        type=_providers,
        default=None,
        metavar="LIST",
        help="the traffic providers whose routes are watched instead of read at every "
        "evaluation, comma separated (gatewayAPI,istio,smi); a provider left out is still "
        "steered, reading its route each time (default: those whose kinds the API lets this "
        "operator list and watch, asked at start)",
    )
    run.add_argument(
        "--prometheus-max-in-flight",
        type=_positive(int),
        default=64,
        metavar="N",
        help="requests open to one Prometheus at once; the others wait their turn (default: 64)",
    )
    run.add_argument(
        "--prometheus-coalesce-window",
        type=_positive(float, zero=True),
        default=0.5,
        metavar="SECONDS",
        help="queries are asked at the current time rounded down to this, so that identical "
        "ones (e.g. a stable side many rollouts share) are sent once; 0: never shared "
        "(default: 0.5)",
    )
    run.add_argument(
        "--health-port",
        type=int,
        default=8080,
        help="/healthz (liveness) and /readyz (readiness, with what it waits for)",
    )
    run.add_argument("--metrics-port", type=int, default=8081, help="the operator's own /metrics")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--log-format", default="json", choices=["json", "console"])

    for name, summary in (
        ("demo", "the reference release on the local stack, shown live"),
        ("demo-service", "a demo HTTP service exporting Prometheus metrics"),
        ("demo-load", "the demo's load generator, weighted by an HTTPRoute"),
        ("dashboard", "a live web view of rollouts (as kubectl phasegate dashboard)"),
    ):
        commands.add_parser(name, help=summary, add_help=False)

    local = commands.add_parser(
        "local-api",
        help="serve a local Kubernetes API (no cluster needed) and write a kubeconfig",
        description="Serve a Kubernetes API on 127.0.0.1 for trying phasegate and for tests. "
        "It emulates what the operator, kopf and kubectl depend on; see the README.",
    )
    local.add_argument("--port", type=int, default=8001, help="port on 127.0.0.1 (0: any free)")
    local.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path("local-api.kubeconfig"),
        help="where to write the kubeconfig for kubectl and the operator",
    )
    return parser


DEMO_TOOLS = {
    "demo": "phasegate.demo.run",
    "demo-service": "phasegate.demo.service",
    "demo-load": "phasegate.demo.loadgen",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "dashboard":  # the kubectl plugin's, with its --kubeconfig
        from phasegate.cli import kubectl

        return kubectl.main(["dashboard", *argv[1:]])
    if argv and argv[0] in DEMO_TOOLS:  # the demo's helpers parse their own arguments
        import importlib

        tool: int = importlib.import_module(DEMO_TOOLS[argv[0]]).main(argv[1:])
        return tool
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "run" and args.shard and args.standalone:
        parser.error(
            "--shard with --standalone: a shard needs a peering, through which a change of "
            "the number of shards hands each rollout over from one layout to the other"
        )
    if args.command == "validate":
        from phasegate.cli.validate import validate_files

        return validate_files(args.files)
    if args.command == "crds":
        from phasegate.api.crd import CRD_FILES

        if args.output is None:
            sys.stdout.write("---\n".join(render() for render in CRD_FILES.values()))
        else:
            args.output.mkdir(parents=True, exist_ok=True)
            for name, render in CRD_FILES.items():
                target = args.output / name
                target.write_text(render())
                print(f"wrote {target}")
        return 0
    if args.command == "run":
        from phasegate.runtime.run import RunOptions
        from phasegate.runtime.run import main as run_operator

        return run_operator(
            RunOptions(
                namespaces=tuple(args.namespace),
                peering=None
                if args.standalone
                else args.peering
                or ("phasegate-hub" if args.hub else "phasegate")
                + (f"-shard-{args.shard.index}" if args.shard else ""),
                shard=args.shard,
                selector=args.selector,
                hub=args.hub,
                prometheus=args.prometheus,
                prometheus_max_in_flight=args.prometheus_max_in_flight,
                prometheus_coalesce_window=args.prometheus_coalesce_window,
                traffic_providers=args.traffic_providers,
                health_port=args.health_port,
                metrics_port=args.metrics_port,
                log_level=args.log_level,
                log_format=args.log_format,
                priority=args.priority
                if args.priority is not None
                else random.randint(1, 1_000_000),
                peering_lifetime=args.peering_lifetime,
            )
        )
    if args.command == "local-api":
        from phasegate.cli.local_api import serve

        return serve(args.port, args.kubeconfig)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
