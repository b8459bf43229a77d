"""``kubectl phasegate release``: read and steer ProgressiveReleases on the hub cluster.

Steering writes a control annotation on the release, the same mechanism as a rollout's:
the hub applies each request once, removes it, and passes pause, resume and abort on to
the regions' rollouts. Requests are signed with the caller's user name as the API server
knows it; an approval names the group it speaks for.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO, cast

from phasegate import GROUP, VERSION
from phasegate.api import controls
from phasegate.api.release import RELEASE_PLURAL, control_annotation

SUMMARY = "read and steer ProgressiveReleases: one revision across regions, in waves"
STEER = {
    "approve": "approve a wave's start for a group (--wave, --group)",
    "pause": "no wave starts; the regions in progress pause",
    "resume": "continue a paused release",
    "abort": "roll back every region that took this revision",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="release_command", required=True, metavar="COMMAND")
    get = commands.add_parser("get", help="a release's waves and regions; without NAME, all")
    get.add_argument("release", nargs="?")
    get.add_argument("-n", "--namespace")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    for name, summary in STEER.items():
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument("release")
        command.add_argument("-n", "--namespace")
        command.add_argument("--reason", default="", help="why")
        if name == "approve":
            command.add_argument("--wave", required=True, help="the wave whose start it approves")
            command.add_argument(
                "--group", help="the group you speak for (needed when the wave has several)"
            )


def run(client: Any, namespace: str, args: argparse.Namespace, out: TextIO) -> int:
    """``client`` is the plugin's :class:`phasegate.cli.kubectl.Client`."""
    custom = client.custom
    if args.release_command == "get":
        if args.release is None:
            scope = None if args.all_namespaces else namespace
            if scope is None:
                found = custom.list_cluster_custom_object(GROUP, VERSION, RELEASE_PLURAL)
            else:
                found = custom.list_namespaced_custom_object(GROUP, VERSION, scope, RELEASE_PLURAL)
            items = cast(dict[str, Any], found)["items"]
            for item in items:
                summary(item, out, with_namespace=scope is None)
            if not items:
                print("no ProgressiveReleases found", file=out)
            return 0
        show(get(custom, namespace, args.release), out)
        return 0
    found = get(custom, namespace, args.release)  # a clear "not found" before writing
    group = None
    if args.release_command == "approve":
        group = _group(found, args.wave, args.group)
    by = client.user(sys.stderr)
    annotation = control_annotation(
        args.release_command,
        by=by,
        wave=getattr(args, "wave", None),
        group=group,
        reason=args.reason,
    )
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        RELEASE_PLURAL,
        args.release,
        {"metadata": {"annotations": annotation}},
        _content_type="application/merge-patch+json",
    )
    speaks = f" for {group}" if group else ""
    print(
        f"{args.release_command} requested for release {namespace}/{args.release} as "
        f"{by}{speaks} ({next(iter(annotation))})",
        file=out,
    )
    return 0


def get(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    found = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, RELEASE_PLURAL, name)
    return cast(dict[str, Any], found)


def summary(obj: dict[str, Any], out: TextIO, with_namespace: bool = False) -> None:
    status = obj.get("status") or {}
    meta = obj["metadata"]
    name = f"{meta['namespace']}/{meta['name']}" if with_namespace else meta["name"]
    print(
        f"{name}  {obj['spec'].get('revision')}  {status.get('state', 'Pending')}  "
        f"waves {status.get('progress') or '-'}  regions {status.get('regionsSucceeded') or '-'}"
        f"  {status.get('message', '')}",
        file=out,
    )


def show(obj: dict[str, Any], out: TextIO) -> None:
    """The release, then each wave with its regions: state, phase, weight, last decision."""
    status = obj.get("status") or {}
    summary(obj, out, with_namespace=True)
    regions = status.get("regions") or []
    for wave in status.get("waves") or []:
        times = " ".join(
            f"{label} {wave[key]}"
            for label, key in (("started", "startedAt"), ("finished", "finishedAt"))
            if wave.get(key)
        )
        print(f"  {wave['name']}: {wave['state']}  {times}".rstrip(), file=out)
        for region in (r for r in regions if r.get("wave") == wave["name"]):
            where = (
                f" {region['phase']} {region['weight']}%"
                if region.get("phase") and region.get("weight") is not None
                else ""
            )
            seen = "" if region.get("reachable", True) else "  UNREACHABLE"
            decision = region.get("lastDecision") or {}
            said = f"  last: {decision['action']} ({decision['reason']})" if decision else ""
            print(
                f"    {region['name']:<16} {region.get('state', '-')}{where}{seen}"
                f"  seen {region.get('lastSeen') or 'never'}{said}",
                file=out,
            )
            if region.get("message"):
                print(f"      {region['message']}", file=out)
    for a in status.get("approvals") or []:
        print(f"  approved {a['wave']} for {a['group']} by {a['by']} at {a['time']}", file=out)
    for c in status.get("conditions") or []:
        if c.get("status") == "False":
            print(f"  condition {c['type']}: {c['reason']}: {c['message']}", file=out)


def _group(release: dict[str, Any], wave: str, group: str | None) -> str:
    """The group an approval speaks for: ``group``, checked against the wave's approvers, or
    the wave's only one."""
    waves = release.get("spec", {}).get("waves") or []
    names = [w.get("name") or f"wave-{i + 1}" for i, w in enumerate(waves)]
    if wave not in names:
        raise controls.ControlError(f"no wave {wave!r}; waves: {', '.join(names)}")
    required: list[str] = (waves[names.index(wave)].get("approval") or {}).get("required") or []
    if not required:
        raise controls.ControlError(f"wave {wave!r} needs no approval")
    return controls.choose_group(wave, required, group)
