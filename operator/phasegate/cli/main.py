"""``phasegate``: validate manifests, generate the CRD, and (later) run the operator."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phasegate import __version__


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


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "validate":
        from phasegate.cli.validate import validate_files

        return validate_files(args.files)
    if args.command == "crds":
        from phasegate.api.crd import render_yaml

        text = render_yaml()
        if args.output is None:
            sys.stdout.write(text)
        else:
            args.output.mkdir(parents=True, exist_ok=True)
            target = args.output / "phasegate.dev_progressiverollouts.yaml"
            target.write_text(text)
            print(f"wrote {target}")
        return 0
    if args.command == "local-api":
        from phasegate.cli.local_api import serve

        return serve(args.port, args.kubeconfig)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
