"""Validation errors in the user's words: the field path on the wire and what is wrong."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from phasegate.api.resource import ProgressiveRollout
from phasegate.api.spec import RolloutSpec


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('spec', 'phases', 1, 'weight')`` -> ``spec.phases[1].weight``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")):
            continue
        else:
            out += f".{part}" if out else part
    return out or "(root)"


# A model-level message that starts with a field path below the model, e.g. "phases[1].weight: ".
_SUBFIELD = re.compile(r"^([A-Za-z]\w*(?:\[\d+\])?(?:\.[A-Za-z]\w*(?:\[\d+\])?)*): ")


def describe(error: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[str]:
    """One line per problem: ``field.path: message``."""
    lines = []
    for problem in error.errors(include_url=False):
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
        elif problem["type"] == "missing":
            message = "required field is missing"
        path = field_path(prefix + tuple(problem["loc"]))
        sub = _SUBFIELD.match(message)
        if sub:
            path = f"{path}.{sub.group(1)}" if path != "(root)" else sub.group(1)
            message = message[sub.end() :]
        lines.append(f"{path}: {message}")
    return lines


def validate_rollout(obj: dict[str, Any]) -> tuple[ProgressiveRollout | None, list[str]]:
    """Validate a whole manifest; the parsed object, or the problems found."""
    try:
        return ProgressiveRollout.model_validate(obj), []
    except ValidationError as error:
        return None, describe(error)


def validate_spec(spec: Any) -> tuple[RolloutSpec | None, list[str]]:
    """Validate ``spec`` alone, as the operator receives it."""
    try:
        return RolloutSpec.model_validate(spec), []
    except ValidationError as error:
        return None, describe(error, ("spec",))
