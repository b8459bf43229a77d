"""OpenAPI v3 structural-schema validation of custom resources, as the apiserver does it:
prune unknown fields, apply defaults, then check types, required fields, enums, bounds,
patterns and CEL rules (``x-kubernetes-validations``), reporting each field that fails."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

Schema = dict[str, Any]
_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


@dataclass(frozen=True)
class Cause:
    """One problem, in the shape of a Kubernetes ``StatusCause``."""

    field: str
    reason: str
    message: str

    def text(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass
class Result:
    value: Any
    causes: list[Cause] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)  # unknown fields that were dropped


def _json_type(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return f'"{_json_type(value)}"'
    return str(value)


def validate(schema: Schema, obj: dict[str, Any]) -> Result:
    """Prune, default and validate a whole object against its CRD's openAPIV3Schema."""
    result = Result(value=None)
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    root = {
        **schema,
        "properties": {
            k: v
            for k, v in schema.get("properties", {}).items()
            if k not in ("apiVersion", "kind", "metadata")
        },
    }
    checked = _walk(root, body, "", result)
    result.value = {
        **{k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj},
        **(checked or {}),
    }
    return result


def _walk(schema: Schema, value: Any, path: str, result: Result) -> Any:
    where = path or "<root>"
    if value is None:
        if schema.get("nullable"):
            return None
        return _PRUNE
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            result.causes.append(
                Cause(
                    where,
                    "FieldValueInvalid",
                    f"Invalid value: {_show(value)}: {where} in body must be of type int-or-string",
                )
            )
        return value
    kind = schema.get("type")
    if kind and not _is_type(value, kind):
        result.causes.append(
            Cause(
                where,
                "FieldValueTypeInvalid",
                f'Invalid value: "{_json_type(value)}": {where} in body must be of type '
                f'{kind}: "{_json_type(value)}"',
            )
        )
        return value
    if isinstance(value, dict):
        value = _object(schema, value, path, result)
    elif isinstance(value, list):
        value = _array(schema, value, path, result)
    else:
        _scalar(schema, value, where, result)
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_show(v) for v in schema["enum"])
        result.causes.append(
            Cause(
                where,
                "FieldValueNotSupported",
                f"Unsupported value: {_show(value)}: supported values: {supported}",
            )
        )
    for rule in schema.get("x-kubernetes-validations", []):
        _cel(rule, value, where, result)
    return value


class _Prune:
    pass


_PRUNE = _Prune()


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return _json_type(value) == kind


def _object(schema: Schema, value: dict[str, Any], path: str, result: Result) -> dict[str, Any]:
    properties: dict[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields", False)
    out: dict[str, Any] = {}
    for key, item in value.items():
        sub = f"{path}.{key}" if path else key
        if key in properties:
            checked = _walk(properties[key], item, sub, result)
        elif isinstance(extra, dict):
            checked = _walk(extra, item, sub, result)
        elif keep_unknown or extra is True:
            checked = item
        else:
            result.pruned.append(sub)
            continue
        if checked is not _PRUNE:
            out[key] = checked
    for key, sub_schema in properties.items():
        if key not in out and "default" in sub_schema:
            out[key] = sub_schema["default"]
    for key in schema.get("required", []):
        if key not in out:
            where = f"{path}.{key}" if path else key
            result.causes.append(Cause(where, "FieldValueRequired", "Required value"))
    _count(schema, len(out), path or "<root>", "properties", result)
    return out


def _array(schema: Schema, value: list[Any], path: str, result: Result) -> list[Any]:
    items = schema.get("items")
    out = []
    for i, item in enumerate(value):
        checked = _walk(items, item, f"{path}[{i}]", result) if items else item
        out.append(None if checked is _PRUNE else checked)
    _count(schema, len(value), path, "items", result)
    return out


def _count(schema: Schema, n: int, where: str, noun: str, result: Result) -> None:
    low, high = schema.get(f"min{noun.capitalize()}"), schema.get(f"max{noun.capitalize()}")
    if low is not None and n < low:
        result.causes.append(
            Cause(
                where,
                "FieldValueInvalid",
                f"Invalid value: {n}: {where} in body should have at least {low} {noun}",
            )
        )
    if high is not None and n > high:
        result.causes.append(
            Cause(where, "FieldValueTooMany", f"Too many: {n}: must have at most {high} {noun}")
        )


def _scalar(schema: Schema, value: Any, where: str, result: Result) -> None:
    shown = _show(value)
    if isinstance(value, str):
        low, high = schema.get("minLength"), schema.get("maxLength")
        if low is not None and len(value) < low:
            result.causes.append(
                Cause(
                    where,
                    "FieldValueInvalid",
                    f"Invalid value: {shown}: {where} in body should be at least {low} chars long",
                )
            )
        if high is not None and len(value) > high:
            result.causes.append(
                Cause(where, "FieldValueTooLong", f"Too long: may not be more than {high} bytes")
            )
        pattern = schema.get("pattern")
        if pattern is not None and not _regex(pattern).search(value):
            result.causes.append(
                Cause(
                    where,
                    "FieldValueInvalid",
                    f"Invalid value: {shown}: {where} in body should match '{pattern}'",
                )
            )
        if schema.get("format") == "date-time" and not RFC3339.fullmatch(value):
            result.causes.append(
                Cause(
                    where,
                    "FieldValueInvalid",
                    f"Invalid value: {shown}: {where} in body must be of type date-time: {shown}",
                )
            )
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and (value <= low if schema.get("exclusiveMinimum") else value < low):
            word = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
            result.causes.append(
                Cause(
                    where,
                    "FieldValueInvalid",
                    f"Invalid value: {shown}: {where} in body should be {word} {low}",
                )
            )
        if high is not None and (value >= high if schema.get("exclusiveMaximum") else value > high):
            word = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
            result.causes.append(
                Cause(
                    where,
                    "FieldValueInvalid",
                    f"Invalid value: {shown}: {where} in body should be {word} {high}",
                )
            )


# RFC 3339 date-time, as the apiserver checks ``format: date-time``: the offset is required.
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@lru_cache(maxsize=512)
def _program(rule: str) -> Any:
    import celpy  # optional: CEL rules are skipped when cel-python is not installed

    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def _cel(rule: dict[str, Any], value: Any, where: str, result: Result) -> None:
    text = rule.get("rule", "")
    if "oldSelf" in text:
        return  # transition rules need the old object; not evaluated here
    try:
        import celpy
    except ImportError:
        return
    message = rule.get("message") or f"failed rule: {text}"
    try:
        verdict = _program(text).evaluate({"self": celpy.json_to_cel(value)})  # type: ignore[attr-defined]
    except Exception as error:  # a rule that cannot be evaluated is reported, never fatal
        result.causes.append(
            Cause(
                where,
                "FieldValueInvalid",
                f"Invalid value: {_show(value)}: rule evaluation error: {error}",
            )
        )
        return
    if isinstance(verdict, Exception) or not bool(verdict):
        field_path = where + (rule.get("fieldPath") or "")
        result.causes.append(
            Cause(field_path, "FieldValueInvalid", f"Invalid value: {_show(value)}: {message}")
        )
