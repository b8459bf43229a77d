"""PromQL templates: ``{{variable}}`` placeholders, substituted with escaping.

A value is escaped for the context its placeholder sits in, so it can never end the
string it is in: inside ``"..."`` or ``'...'`` it is escaped as a PromQL string; inside a
raw ```...``` string a value holding a backtick is refused; outside any string only plain
names and numbers are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

TEMPLATE_VARIABLES = (
    "namespace",
    "service",
    "stable.service",
    "canary.service",
    "phase",
    "weight",
)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")
_BARE_SAFE = re.compile(r"^[A-Za-z0-9_.:-]+$")
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\x00"}


class TemplateError(ValueError):
    """A template cannot be rendered safely with the given values."""


def template_variables(template: str) -> list[str]:
    """The variable names a template uses, in order of appearance."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(template)]


def escape_string(value: str, quote: str) -> str:
    """Escape ``value`` for a PromQL string literal opened with ``quote``."""
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == quote:
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def render(template: str, values: Mapping[str, str | int | float]) -> str:
    """Substitute every placeholder of ``template`` with its escaped value."""
    return _render(template, tuple(sorted((k, str(v)) for k, v in values.items())))


@lru_cache(maxsize=8192)  # every evaluation renders the same few templates again
def _render(template: str, items: tuple[tuple[str, str], ...]) -> str:
    values = dict(items)
    out: list[str] = []
    quote: str | None = None  # the quote of the string literal we are inside, if any
    i = 0
    while i < len(template):
        match = _PLACEHOLDER.match(template, i)
        if match:
            name = match.group(1)
            if name not in values:
                raise TemplateError(f"unknown template variable {{{{{name}}}}}")
            out.append(_substitute(name, values[name], quote))
            i = match.end()
            continue
        ch = template[i]
        out.append(ch)
        if quote is None:
            if ch in "\"'`":
                quote = ch
            elif ch == "#":  # a comment runs to the end of the line; nothing in it is parsed
                end = template.find("\n", i)
                end = len(template) if end < 0 else end
                out.append(template[i + 1 : end])
                i = end
                continue
        elif ch == "\\" and quote != "`" and i + 1 < len(template):
            out.append(template[i + 1])
            i += 1
        elif ch == quote:
            quote = None
        i += 1
    if quote is not None:
        raise TemplateError(f"unterminated {quote} string in query template")
    return "".join(out)


def _substitute(name: str, value: str, quote: str | None) -> str:
    if quote is None:
        if not _BARE_SAFE.match(value):
            raise TemplateError(
                f"{{{{{name}}}}} is outside quotes and its value {value!r} is not a plain "
                "name or number; put the placeholder inside a quoted string"
            )
        return value
    if quote == "`":
        if "`" in value:
            raise TemplateError(f"{{{{{name}}}}} value {value!r} contains a backtick")
        return value
    return escape_string(value, quote)
