"""Manual controls travel as annotations: the one mechanism for the CLI and Argo CD actions.

A person's request is an annotation on the ProgressiveRollout::

    control.phasegate.dev/<id>: '{"action": "approve", "phase": "ramp", "by": "finance"}'

``<id>`` is unique per request (the CLI uses the time and a random suffix), so requests sent
close together never overwrite each other. The operator applies each once (its id is kept in
``status.handledControls``) and then removes the annotation.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

PREFIX = "control.phasegate.dev/"
ACTIONS = ("approve", "promote", "promoteFull", "pause", "resume", "abort", "retry")


class ControlError(ValueError):
    """An annotation under the control prefix that cannot be understood."""


def new_id(action: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dt%H%M%S")
    return f"{action.lower()}-{stamp}-{secrets.token_hex(3)}"


def annotation(
    action: str,
    *,
    by: str,
    phase: str | None = None,
    reason: str = "",
    control_id: str | None = None,
) -> dict[str, str]:
    """The annotation (key and value) that asks the operator for ``action``."""
    if action not in ACTIONS:
        raise ControlError(f"unknown action {action!r}; one of: {', '.join(ACTIONS)}")
    if action == "approve" and not phase:
        raise ControlError("approve needs the phase whose gate is approved")
    body: dict[str, Any] = {"action": action, "by": by}
    if phase:
        body["phase"] = phase
    if reason:
        body["reason"] = reason
    return {PREFIX + (control_id or new_id(action)): json.dumps(body, separators=(",", ":"))}


def parse(annotations: dict[str, str]) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The control requests among ``annotations``, oldest id first, and the problems found."""
    requests: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    for key in sorted(k for k in annotations if k.startswith(PREFIX)):
        control_id = key[len(PREFIX) :]
        try:
            body = json.loads(annotations[key])
            if not isinstance(body, dict):
                raise ControlError("the value is not a JSON object")
            if body.get("action") not in ACTIONS:
                raise ControlError(
                    f"unknown action {body.get('action')!r}; one of: {', '.join(ACTIONS)}"
                )
            if body["action"] == "approve" and not body.get("phase"):
                raise ControlError("approve needs a phase")
            requests.append((control_id, body))
        except (ValueError, ControlError) as error:
            problems.append(f"annotation {key}: {error}")
    return requests, problems
