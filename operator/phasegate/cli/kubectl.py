"""``kubectl phasegate``: the kubectl plugin to read and steer rollouts.

Steering commands add a control annotation (see :mod:`phasegate.api.controls`): the same
mechanism as the Argo CD actions. The operator applies each request once and removes it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import Any, Literal, TextIO, cast

from phasegate import GROUP, PLURAL, VERSION, __version__
from phasegate.api import controls

STEER = {
    "approve": "approve a phase's gate as a group (--phase, --as)",
    "promote": "end the current phase now (--full: complete the release)",
    "pause": "stop the phase clock and keep the weight",
    "resume": "continue a paused or held rollout",
    "abort": "roll back now: canary weight to 0",
    "retry": "start the current revision again",
}
TERMINAL = ("Succeeded", "RolledBack", "Invalid")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl phasegate", description="Read and steer phasegate ProgressiveRollouts."
    )
    parser.add_argument("--version", action="version", version=f"phasegate {__version__}")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    get = commands.add_parser("get", help="list rollouts: phase, weight, state, checkpoints")
    get.add_argument("-n", "--namespace")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    for name, summary in (
        ("watch", "follow one rollout live until it ends"),
        ("report", "checkpoints with values and thresholds, and the decision"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument("rollout")
        command.add_argument("-n", "--namespace")
        if name == "watch":
            command.add_argument(
                "--timeout", type=float, default=0, help="seconds; 0: until it ends"
            )
        else:
            command.add_argument(
                "--format", choices=("text", "md", "json"), default="text", help="default: text"
            )
            command.add_argument("--phase", help="one phase's report (md, json); default: all")
    for name, summary in STEER.items():
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument("rollout")
        command.add_argument("-n", "--namespace")
        command.add_argument("--reason", default="")
        if name == "approve":
            command.add_argument("--phase", required=True, help="the phase whose gate is approved")
            command.add_argument("--as", dest="by", required=True, help="the approving group")
        else:
            command.add_argument("--as", dest="by", default=None, help="who asks (default: you)")
        if name == "promote":
            command.add_argument("--full", action="store_true", help="complete the release now")
    return parser


class Client:
    def __init__(self, kubeconfig: str | None) -> None:
        import kubernetes

        self.api = kubernetes.config.new_client_from_config(kubeconfig)  # type: ignore[no-untyped-call]
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        _, active = kubernetes.config.list_kube_config_contexts(kubeconfig)  # type: ignore[no-untyped-call]
        self.namespace = (active or {}).get("context", {}).get("namespace", "default")

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return cast(dict[str, Any], found)

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            found = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        else:
            found = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return list(cast(dict[str, Any], found)["items"])

    def annotate(self, namespace: str, name: str, annotation: dict[str, str]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": annotation}},
            _content_type="application/merge-patch+json",
        )


def _row(obj: dict[str, Any], with_namespace: bool) -> list[str]:
    status = obj.get("status") or {}
    phase = (status.get("currentPhase") or {}).get("name", "-")
    cells = [
        obj["metadata"]["name"],
        obj["spec"].get("revision", "-"),
        phase,
        f"{status.get('canaryWeight', '-')}",
        status.get("state", "Pending"),
        status.get("progress") or "-",
        status.get("message", ""),
    ]
    return ([obj["metadata"]["namespace"]] if with_namespace else []) + cells


def _table(rows: list[list[str]], header: list[str], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1],
            file=out,
        )


def report(obj: dict[str, Any], out: TextIO) -> None:
    status = obj.get("status") or {}
    meta = obj["metadata"]
    print(
        f"{meta['namespace']}/{meta['name']} {obj['spec'].get('revision')}: "
        f"{status.get('state', 'Pending')}"
        f" — {status.get('message', '')}",
        file=out,
    )
    for record in status.get("checkpoints") or []:
        print(
            f"  {record['phase']} @ {record['offset']}  {record['verdict']}  ({record['time']})",
            file=out,
        )
        for result in record.get("results") or []:
            value = result.get("value")
            shown = "no data" if value is None else f"{value:.6g}"
            print(
                f"      {result['verdict']:<6} {result['metric']:<20} {shown:>12}  "
                f"{result['threshold']}"
                f"  — {result['reason']}",
                file=out,
            )
    decision = status.get("decision")
    if decision:
        print(
            f"  decision {decision['action']} at {decision['time']}: {decision['reason']}", file=out
        )
        for evidence in decision.get("evidence") or []:
            print(
                f"      evidence {evidence['rule']} {evidence['metric']}: {evidence['reason']}",
                file=out,
            )
            print(f"        query: {evidence['query']}", file=out)
    for approval in status.get("approvals") or []:
        print(f"  approved {approval['phase']} by {approval['by']} at {approval['time']}", file=out)


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = _build_parser().parse_args(argv)
    try:
        client = Client(args.kubeconfig)
    except Exception as error:
        print(f"cannot reach the cluster: {error}", file=sys.stderr)
        return 1
    namespace = getattr(args, "namespace", None) or client.namespace
    try:
        if args.command == "get":
            scope = None if args.all_namespaces else namespace
            rows = [_row(o, scope is None) for o in client.list(scope)]
            header = ["NAME", "REVISION", "PHASE", "WEIGHT", "STATE", "CHECKPOINTS", "MESSAGE"]
            _table(rows, (["NAMESPACE"] if scope is None else []) + header, out)
            return 0
        if args.command == "report":
            found = client.get(namespace, args.rollout)
            if args.format == "text" and args.phase is None:
                report(found, out)
            else:
                from phasegate import report as reports

                fmt: Literal["md", "json"] = "json" if args.format == "json" else "md"
                out.write(reports.render(reports.report_of(found, args.phase), fmt))
            return 0
        if args.command == "watch":
            return _watch(client, namespace, args.rollout, args.timeout, out)
        action = "promoteFull" if args.command == "promote" and args.full else args.command
        by = args.by or getpass.getuser()
        annotation = controls.annotation(
            action, by=by, phase=getattr(args, "phase", None), reason=args.reason
        )
        client.get(namespace, args.rollout)  # a clear "not found" before writing anything
        client.annotate(namespace, args.rollout, annotation)
        print(
            f"{action} requested for {namespace}/{args.rollout} as {by} ({next(iter(annotation))})",
            file=out,
        )
        return 0
    except controls.ControlError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        reason = getattr(error, "reason", None) or error
        print(f"error: {reason}", file=sys.stderr)
        return 1


def _watch(client: Client, namespace: str, name: str, timeout: float, out: TextIO) -> int:
    deadline = time.monotonic() + timeout if timeout else None
    last = ""
    while deadline is None or time.monotonic() < deadline:
        status = client.get(namespace, name).get("status") or {}
        line = json.dumps(
            [
                status.get("state"),
                status.get("canaryWeight"),
                status.get("progress"),
                status.get("message"),
            ]
        )
        if line != last:
            phase = (status.get("currentPhase") or {}).get("name", "-")
            print(
                f"{time.strftime('%H:%M:%S')} {status.get('state', 'Pending'):<18} {phase:<10} "
                f"{status.get('canaryWeight', '-'):>3}%  {status.get('progress') or '-':<6} "
                f"{status.get('message', '')}",
                file=out,
                flush=True,
            )
            last = line
        if status.get("state") in TERMINAL:
            return 0 if status["state"] == "Succeeded" else 1
        time.sleep(1)
    return 3


if __name__ == "__main__":
    sys.exit(main())
