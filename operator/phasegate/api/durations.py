"""Durations as users write them: ``500ms``, ``30s``, ``15m``, ``2h``, ``1h30m``, ``36h``."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
# Units must come largest first and at most once each, as in Go's time.ParseDuration output.
PATTERN = r"^(\d+(\.\d+)?h)?(\d+(\.\d+)?m)?(\d+(\.\d+)?s)?(\d+ms)?$"
_FULL = re.compile(PATTERN)


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m``-style text; raise ``ValueError`` naming what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"a duration is a string like '30s' or '1h30m', not {text!r}")
    raw = text.strip()
    if raw.startswith("-"):
        raise ValueError(f"duration {text!r} is negative; durations count forward from zero")
    if not raw or not _FULL.match(raw) or _PART.sub("", raw):
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit ms, s, m or h, "
            "largest unit first (e.g. 500ms, 30s, 15m, 2h, 1h30m)"
        )
    total_ms = sum(float(n) * _UNITS_MS[u] for n, u in _PART.findall(raw))
    return timedelta(milliseconds=total_ms)


@lru_cache(maxsize=1024)  # the same few offsets, durations and intervals, over and over
def format_duration(value: timedelta) -> str:
    """The shortest canonical text for ``value`` (``5400s`` -> ``1h30m``)."""
    ms = round(value.total_seconds() * 1000)
    if ms < 0:
        return "-" + format_duration(-value)
    if ms == 0:
        return "0s"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if seconds:
        out += f"{seconds}s"
    if ms:
        out += f"{ms}ms"
    return out


def _coerce(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str, when_used="json-unless-none"),
    WithJsonSchema({"type": "string", "pattern": PATTERN, "minLength": 1}),
]
"""A duration field: text on the wire, :class:`timedelta` in Python."""
