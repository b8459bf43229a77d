"""``kubectl phasegate``: the kubectl plugin to read and steer rollouts.

Steering commands add a control annotation (see :mod:`phasegate.api.controls`): the same
mechanism as the Argo CD actions. The operator applies each request once and removes it.
Each is signed with the caller's user name as the API server knows it (SelfSubjectReview),
which is what the chart's admission policy checks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Literal, TextIO, cast

from phasegate import GROUP, PLURAL, VERSION, __version__
from phasegate.api import controls
from phasegate.cli import release as release_cli
from phasegate.dashboard import command as dashboard
from phasegate.kube import JSON

STEER = {
    "approve": "approve a phase's gate for a group (--phase, --group)",
    "reject": "NO-GO: hold a phase's gate until retried (--phase, --group, --reason)",
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
    dashboard.add_arguments(
        commands.add_parser("dashboard", help=dashboard.SUMMARY, description=dashboard.SUMMARY)
    )
    release_cli.add_arguments(
        commands.add_parser("release", help=release_cli.SUMMARY, description=release_cli.SUMMARY)
    )
    for name, summary in STEER.items():
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument("rollout")
        command.add_argument("-n", "--namespace")
        command.add_argument("--reason", default="", required=name == "reject", help="why")
        if name in controls.GATED:
            command.add_argument("--phase", required=True, help="the phase whose gate it is for")
            command.add_argument(
                "--group", help="the group you speak for (needed when the phase has several)"
            )
        # Gone: the API server says who the caller is. Kept only to say so.
        command.add_argument("--as", dest="legacy_as", help=argparse.SUPPRESS)
        if name == "promote":
            command.add_argument("--full", action="store_true", help="complete the release now")
    return parser


class Client:
    def __init__(self, kubeconfig: str | None) -> None:
        import kubernetes

        self.api = kubernetes.config.new_client_from_config(kubeconfig)  # type: ignore[no-untyped-call]
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        _, active = kubernetes.config.list_kube_config_contexts(kubeconfig)  # type: ignore[no-untyped-call]
        self.context: dict[str, Any] = (active or {}).get("context", {})
        self.namespace = self.context.get("namespace", "default")

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return cast(dict[str, Any], found)

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            found = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        else:
            found = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return list(cast(dict[str, Any], found)["items"])

    def user(self, err: TextIO) -> str:
        """The caller's user name, as the API server authenticated it (SelfSubjectReview)."""
        import kubernetes

        review = kubernetes.client.V1SelfSubjectReview(
            api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"
        )
        try:
            answer = kubernetes.client.AuthenticationV1Api(self.api).create_self_subject_review(
                review, _content_type=JSON
            )
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
            # Kubernetes before 1.28 (and no admission policy then): the kubeconfig's user.
            name = str(self.context.get("user") or "unknown")
            print(
                f"note: the API server does not say who you are (no SelfSubjectReview); "
                f"signing as {name!r}, the kubeconfig's user",
                file=err,
            )
            return name
        user = answer.status.user_info if answer.status else None
        if user is None or not user.username:
            raise controls.ControlError("the API server did not say who you are")
        return str(user.username)

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
    for a in status.get("approvals") or []:
        group = a.get("group") or a["by"]
        print(f"  approved {a['phase']} for {group} by {a['by']} at {a['time']}", file=out)
    for r in status.get("rejections") or []:
        why = f": {r['reason']}" if r.get("reason") else ""
        when = r["time"]
        print(f"  REJECTED {r['phase']} for {r['group']} by {r['by']} at {when}{why}", file=out)


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = _build_parser().parse_args(argv)
    try:
        client = Client(args.kubeconfig)
    except Exception as error:
        print(f"cannot reach the cluster: {error}", file=sys.stderr)
        return 1
    namespace = getattr(args, "namespace", None) or client.namespace
    try:
        if args.command == "dashboard":
            from phasegate.kube import Kube

            scope = None if args.all_namespaces else namespace
            return dashboard.run(Kube(client.api), scope, client.user(sys.stderr), args, out)
        if args.command == "release":
            return release_cli.run(client, namespace, args, out)
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
        return _steer(client, namespace, args, out)
    except controls.ControlError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        reason = getattr(error, "reason", None) or error
        print(f"error: {reason}", file=sys.stderr)
        return 1


def _steer(client: Client, namespace: str, args: argparse.Namespace, out: TextIO) -> int:
    """Write the control annotation for a steering command, signed as the caller."""
    if args.legacy_as is not None:
        hint = "; name the group with --group" if args.command in controls.GATED else ""
        raise controls.ControlError(
            f"--as is gone: phasegate acts as you, as the API server knows you{hint}"
        )
    action = "promoteFull" if args.command == "promote" and args.full else args.command
    found = client.get(namespace, args.rollout)  # a clear "not found" before writing anything
    phase: str | None = getattr(args, "phase", None)
    group = _group(found, phase, args.group) if phase is not None else None
    by = client.user(sys.stderr)
    annotation = controls.annotation(action, by=by, phase=phase, group=group, reason=args.reason)
    client.annotate(namespace, args.rollout, annotation)
    speaks = f" for {group}" if group else ""
    print(
        f"{action} requested for {namespace}/{args.rollout} as {by}{speaks} "
        f"({next(iter(annotation))})",
        file=out,
    )
    return 0


def _group(rollout: dict[str, Any], phase: str, group: str | None) -> str:
    """The group an approval or rejection speaks for: ``group``, checked against the phase's
    approvers, or the phase's only one."""
    phases = rollout.get("spec", {}).get("phases") or []
    gated = [p["name"] for p in phases if (p.get("approval") or {}).get("required")]
    found = next((p for p in phases if p.get("name") == phase), None)
    if found is None or found["name"] not in gated:
        raise controls.ControlError(
            f"phase {phase!r} has no approval gate; phases with one: {', '.join(gated) or 'none'}"
        )
    return controls.choose_group(phase, found["approval"]["required"], group)


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
