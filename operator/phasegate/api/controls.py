"""Manual controls travel as annotations: the one mechanism for the CLI and Argo CD actions.

A person's request is an annotation on the ProgressiveRollout::

    control.phasegate.dev/<id>: '{"action":"approve","phase":"ramp","group":"finance","by":"alice"}'

``<id>`` is unique per request (the CLI uses the time and a random suffix), so requests sent
close together never overwrite each other. The operator applies each once (its id is kept in
``status.handledControls``) and then removes the annotation.

An approval (or a rejection, the NO-GO) names the ``group`` it speaks for and the user who
gives it, ``by``. An older approval without ``group`` is read with ``by`` as the group.

Writers produce one **canonical** form: compact JSON, keys in the order ``action``, ``phase``,
``group``, ``by``, ``reason``, no escapes except in ``reason``. The chart's admission policy
reads controls with regular expressions (CEL has no JSON parser) and admits only this form,
so that what the API server checks is exactly what the operator's JSON parser reads.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

PREFIX = "control.phasegate.dev/"
ACTIONS = ("approve", "reject", "promote", "promoteFull", "pause", "resume", "abort", "retry")
GATED = ("approve", "reject")  # the actions that speak for a group at a phase's gate

# The canonical form, as the admission policy in the chart matches it (RE2 and Python agree
# on this subset). Phase and group are DNS labels; ``by`` is any user name without a quote,
# a backslash or a control character, so it cannot end early or hide an escape; ``reason``
# may hold JSON's short escapes and \u00XX for control characters, and comes last.
ID_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
USER_PATTERN = r'[^"\\\x00-\x1f]+'
TEXT_PATTERN = r'([^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u00[01][0-9a-fA-F])*'
CANONICAL = (
    r'^\{"action":"(approve|reject)","phase":"' + ID_PATTERN + r'","group":"' + ID_PATTERN
    + r'","by":"' + USER_PATTERN + r'"(,"reason":"' + TEXT_PATTERN + r'")?\}$'
    + r'|^\{"action":"(promote|promoteFull|pause|resume|abort|retry)","by":"' + USER_PATTERN
    + r'"(,"reason":"' + TEXT_PATTERN + r'")?\}$'
)  # fmt: skip
_CANONICAL = re.compile(CANONICAL)
_ID = re.compile(ID_PATTERN)
_USER = re.compile(USER_PATTERN)


class ControlError(ValueError):
    """An annotation under the control prefix that cannot be understood."""


def new_id(action: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dt%H%M%S")
    return f"{action.lower()}-{stamp}-{secrets.token_hex(3)}"


def is_canonical(value: str) -> bool:
    """Whether ``value`` is in the one form the admission policy admits."""
    return _CANONICAL.fullmatch(value) is not None


def annotation(
    action: str,
    *,
    by: str,
    phase: str | None = None,
    group: str | None = None,
    reason: str = "",
    control_id: str | None = None,
) -> dict[str, str]:
    """The annotation (key and value) that asks the operator for ``action``, canonical.

    ``approve`` and ``reject`` need the ``phase`` whose gate they speak for and the ``group``
    they speak for (by default ``by``, the older meaning)."""
    if action not in ACTIONS:
        raise ControlError(f"unknown action {action!r}; one of: {', '.join(ACTIONS)}")
    body: dict[str, Any] = {"action": action}
    if action in GATED:
        if not phase:
            raise ControlError(f"{action} needs the phase whose gate it is for")
        group = group or by
        for what, value in (("phase", phase), ("group", group)):
            if _ID.fullmatch(value) is None:
                raise ControlError(f"{what} {value!r} is not a name (lower case, digits, '-')")
        body |= {"phase": phase, "group": group}
    if _USER.fullmatch(by) is None:
        raise ControlError(f"user {by!r} has a quote, a backslash or a control character")
    body["by"] = by
    if reason:
        body["reason"] = reason
    value = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    if not is_canonical(value):  # a reason json.dumps escapes beyond the canonical form
        raise ControlError("the reason has a character the control annotation cannot carry")
    return {PREFIX + (control_id or new_id(action)): value}


def choose_group(gate: str, required: list[str], group: str | None) -> str:
    """The group an approval or rejection of ``gate`` speaks for: ``group`` if it is one of
    the ``required`` approvers, or the only one when ``group`` is not given."""
    if group is None and len(required) == 1:
        return required[0]
    if group is None:
        raise ControlError(
            f"{gate} needs approvals from {', '.join(required)}: say which with --group"
        )
    if group not in required:
        raise ControlError(
            f"{group!r} is not an approver of {gate}; its groups: {', '.join(required)}"
        )
    return group


def parse(annotations: dict[str, str]) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The control requests among ``annotations``, oldest id first, and the problems found.

    Any JSON object is read (the canonical form is the admission policy's to require); an
    older approval without ``group`` gets ``by`` as its group."""
    requests: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    for key in sorted(k for k in annotations if k.startswith(PREFIX)):
        control_id = key[len(PREFIX) :]
        try:
            body = json.loads(annotations[key])
            if not isinstance(body, dict):
                raise ControlError("the value is not a JSON object")
            action = body.get("action")
            if action not in ACTIONS:
                raise ControlError(f"unknown action {action!r}; one of: {', '.join(ACTIONS)}")
            for field in ("phase", "group", "by", "reason"):
                if not isinstance(body.get(field, ""), str):
                    raise ControlError(f"{field} is not a string")
            # A lone surrogate (\ud800) parses, then fails wherever the text is sent on.
            json.dumps(body, ensure_ascii=False).encode()
            if action in GATED and not body.get("phase"):
                raise ControlError(f"{action} needs a phase")
            if action in GATED and not body.get("group"):
                body = {**body, "group": str(body.get("by") or "unknown")}
            requests.append((control_id, body))
        except (ValueError, ControlError) as error:
            problems.append(f"annotation {key}: {error}")
    return requests, problems
