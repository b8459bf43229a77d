"""A report as a ConfigMap: its name, its data within the API's size limit, and its owner.

Pure: :mod:`phasegate.kube` writes what this returns. ``<rollout>-report-<phase>`` holds one
phase's report, ``<rollout>-report`` the release's; each has ``report.md`` and ``report.json``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

from phasegate import GROUP, VERSION
from phasegate.report import render, report_of

# The API refuses a ConfigMap over 1 MiB (data, keys and metadata together); the data is
# kept under this, leaving room for the rest.
DATA_LIMIT: Final = 1_000_000
NAME_LIMIT: Final = 253
MARKDOWN, JSON = "report.md", "report.json"
LABEL = "phasegate.dev/report"  # the phase's name, or "release"
CUT = "phasegate.dev/report-cut"


@dataclass(frozen=True)
class ReportConfigMap:
    namespace: str
    name: str
    data: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    owner: dict[str, Any] = field(default_factory=dict)  # an ownerReferences item


def config_map_name(rollout: str, phase: str | None) -> str:
    """``<rollout>-report[-<phase>]``, shortened with a hash when over the API's limit."""
    name = f"{rollout}-report" + (f"-{phase}" if phase else "")
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: NAME_LIMIT - 11].rstrip('-.')}-{digest}"


def report_command(namespace: str, rollout: str, phase: str | None) -> str:
    """The command that prints the same report."""
    which = f" --phase {phase}" if phase else ""
    return f"kubectl phasegate report {rollout} -n {namespace}{which} --format md"


def report_config_map(obj: dict[str, Any], phase: str | None) -> ReportConfigMap:
    """The ConfigMap of ``phase``'s report (the release's when None) of the rollout ``obj``
    (as the API returns it). When Markdown and JSON together exceed :data:`DATA_LIMIT`, the
    JSON is left out and the Markdown cut, both said in the annotation ``report-cut``."""
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    built = report_of(obj, phase)
    markdown, json = render(built, "md"), render(built, "json")
    annotations = {}
    data = {MARKDOWN: markdown, JSON: json}
    if _size(data) > DATA_LIMIT:
        command = report_command(namespace, name, phase)
        note = f"\n\n… cut to fit a ConfigMap; the whole report: `{command}`\n"
        room = DATA_LIMIT - len(MARKDOWN) - len(note.encode())
        data = {MARKDOWN: _cut(markdown, room) + note}
        annotations[CUT] = f"report.json left out, report.md cut: {_size({JSON: json})} bytes"
    return ReportConfigMap(
        namespace=namespace,
        name=config_map_name(name, phase),
        data=data,
        labels={LABEL: phase or "release", "app.kubernetes.io/managed-by": "phasegate"},
        annotations=annotations,
        owner={
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ProgressiveRollout",
            "name": name,
            "uid": meta["uid"],
        },
    )


def _size(data: dict[str, str]) -> int:
    return sum(len(k) + len(v.encode()) for k, v in data.items())


def _cut(text: str, room: int) -> str:
    """``text`` within ``room`` bytes of UTF-8, cut at a line's end when there is one."""
    head = text.encode()[:room].decode(errors="ignore")
    return head[: head.rfind("\n")] if "\n" in head else head
