"""Server-side Tables (``Accept: application/json;as=Table``): what ``kubectl get`` prints."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from phasegate.localapi.resources import Resource

Cell = Callable[[dict[str, Any]], Any]
Column = tuple[dict[str, Any], Cell]
_INDEX = re.compile(r"^(\w*)\[(\d+)\]$")


def human_age(created: str | None, now: datetime) -> str:
    """Like kubectl's ages: 45s, 5m30s, 3h, 2d4h, 12d."""
    if not created:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    seconds = max(0, int((now - then).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def json_path(obj: Any, path: str) -> Any:
    """The subset of JSONPath printer columns use: ``.a.b[0].c``."""
    node = obj
    for part in path.strip().lstrip(".").split("."):
        if not part:
            continue
        match = _INDEX.match(part)
        key, index = (match.group(1), int(match.group(2))) if match else (part, None)
        if key:
            node = node.get(key) if isinstance(node, dict) else None
        if index is not None:
            node = node[index] if isinstance(node, list) and index < len(node) else None
        if node is None:
            return None
    return node


def _cell(path: str, is_date: bool, now: datetime) -> Cell:
    if is_date:
        return lambda obj: human_age(json_path(obj, path), now)
    return lambda obj: json_path(obj, path)


def _builtin_columns(resource: Resource) -> list[tuple[dict[str, Any], Cell]]:
    if resource.kind == "Deployment":

        def ready(o: dict[str, Any]) -> str:
            status = o.get("status") or {}
            return f"{status.get('readyReplicas', 0)}/{(o.get('spec') or {}).get('replicas', 1)}"

        return [
            ({"name": "Ready", "type": "string"}, ready),
            (
                {"name": "Up-to-date", "type": "integer"},
                lambda o: (o.get("status") or {}).get("updatedReplicas", 0),
            ),
            (
                {"name": "Available", "type": "integer"},
                lambda o: (o.get("status") or {}).get("availableReplicas", 0),
            ),
        ]
    if resource.kind == "Namespace":
        return [
            (
                {"name": "Status", "type": "string"},
                lambda o: (o.get("status") or {}).get("phase", "Active"),
            )
        ]
    return []


def table(
    resource: Resource,
    objects: list[dict[str, Any]],
    resource_version: str,
    include_object: str = "Metadata",
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects``."""
    now = datetime.now(UTC)
    name_column = {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": "Name must be unique within a namespace.",
    }
    columns: list[Column] = [(name_column, lambda o: o["metadata"]["name"])]
    if resource.printer_columns:
        for column in resource.printer_columns:
            definition: dict[str, Any] = {
                k: column[k]
                for k in ("name", "type", "format", "description", "priority")
                if k in column
            }
            definition.setdefault("format", "")
            definition.setdefault("description", "")
            definition.setdefault("priority", 0)
            columns.append(
                (definition, _cell(column["jsonPath"], column.get("type") == "date", now))
            )
    else:
        columns += _builtin_columns(resource)
        age = {
            "name": "Age",
            "type": "string",
            "format": "",
            "description": "Time since creation (metadata.creationTimestamp).",
        }
        columns.append((age, lambda o: human_age(o["metadata"].get("creationTimestamp"), now)))
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [cell(obj) for _, cell in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {"format": "", "description": "", "priority": 0, **definition}
            for definition, _ in columns
        ],
        "rows": rows,
    }
