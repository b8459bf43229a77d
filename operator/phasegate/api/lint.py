"""Warnings about queries that are valid but mislead: a ratio whose numerator can vanish.

A labelled counter series exists only once something was counted with those labels (so do
the common client libraries): a service that never failed has no 5xx series at all. Then
``sum(rate(x{code=~"5.."}[1m])) / sum(rate(x[1m]))`` is empty, a NoData verdict where the
answer is 0, and a healthy canary holds.

The heuristic, simple on purpose (a hint, never an error):

- a division is a ``/`` outside strings; its numerator and denominator are the text before
  and after it within the parentheses, brackets or argument it sits in;
- the numerator selects a subset when one of its label matchers names a label that no
  matcher of the denominator names (``code=~"5.."``, ``status="500"``); a denominator that
  is a plain number is no ratio;
- an ``or`` in the numerator guards it: ``or vector(0)`` (or ``or on() vector(0)``) for a
  plain ratio; a ratio grouped ``by (...)`` needs ``or <denominator> * 0``, since
  ``vector(0)`` has no labels to match the groups.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")
_COMMENT = re.compile(r"#[^\n]*")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*\"(\d+)\"")
_NUMBER = re.compile(r"[\s()]*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[\s()]*")
_GROUPED = re.compile(r"\b(?:by|without)\s*\(")
_OR = re.compile(r"\bor\b")
_OR_VECTOR = re.compile(r"\bor\b\s*(?:on\s*\(\s*\)\s*)?vector\s*\(")
_OPENS, _CLOSES = "([{", ")]}"


@dataclass(frozen=True)
class Matcher:
    metric: str
    label: str
    op: str
    value: str

    def __str__(self) -> str:
        return f'{self.metric}{{{self.label}{self.op}"{self.value}"}}'


def _masked(query: str) -> tuple[str, list[str]]:
    """The query with each string literal replaced by ``"<index>"``, placeholders outside
    strings by ``0`` and comments removed; and the strings' contents."""
    strings: list[str] = []

    def keep(match: re.Match[str]) -> str:
        strings.append(match.group(0)[1:-1])
        return f'"{len(strings) - 1}"'

    text = _STRING.sub(keep, query)
    return _COMMENT.sub("", _PLACEHOLDER.sub("0", text)), strings


def _divisions(text: str) -> Iterator[tuple[str, str]]:
    """(numerator, denominator) of every ``/``, each within the group it sits in."""
    starts, slashes = [0], [list[int]()]

    def close(end: int) -> Iterator[tuple[str, str]]:
        for at in slashes[-1]:
            yield text[starts[-1] : at], text[at + 1 : end]

    for i, char in enumerate(text):
        if char in _OPENS:
            starts.append(i + 1)
            slashes.append([])
        elif char == "/":
            slashes[-1].append(i)
        elif char == ",":
            yield from close(i)
            starts[-1], slashes[-1] = i + 1, []
        elif char in _CLOSES and len(starts) > 1:
            yield from close(i)
            starts.pop()
            slashes.pop()
    while starts:  # the top level, and any group left open
        yield from close(len(text))
        starts.pop()
        slashes.pop()


def _matchers(text: str, strings: list[str]) -> list[Matcher]:
    return [
        Matcher(selector.group(1) or "a series", label, op, strings[int(index)])
        for selector in _SELECTOR.finditer(text)
        for label, op, index in _MATCHER.findall(selector.group(2))
    ]


def vanishing_numerators(query: str) -> list[str]:
    """Why each ratio in ``query`` may be empty instead of 0 (see the module's heuristic)."""
    text, strings = _masked(query)
    problems: list[str] = []
    for numerator, denominator in _divisions(text):
        if _NUMBER.fullmatch(denominator):
            continue
        named = {m.label for m in _matchers(denominator, strings)}
        subset = [m for m in _matchers(numerator, strings) if m.label not in named]
        if not subset:
            continue
        grouped = bool(_GROUPED.search(numerator))
        guards = _OR.findall(numerator)
        if guards and not (grouped and len(_OR_VECTOR.findall(numerator)) == len(guards)):
            continue
        fix = (
            "guard the numerator with the denominator times 0, "
            "(sum by (...) (...) or <denominator> * 0) / <denominator>: "
            "vector(0) has no labels to match the groups"
            if grouped
            else "guard the numerator, (sum(...) or vector(0)) / sum(...): it is then 0, "
            "and the ratio is still empty when there is no traffic at all"
        )
        problems.append(
            f"the numerator selects {subset[0]}, a series that exists only once a sample "
            f"with that label was counted (no 5xx series before the first failure, say); "
            f"the ratio is then empty (NoData), not 0; {fix}"
        )
    return problems


def spec_warnings(spec: Any) -> list[str]:
    """Warnings about a ProgressiveRollout's spec (as written: any shape), each with its
    field path."""
    metrics = spec.get("metrics") if isinstance(spec, Mapping) else None
    warnings: list[str] = []
    for index, metric in enumerate(metrics if isinstance(metrics, list) else []):
        query = metric.get("query") if isinstance(metric, Mapping) else None
        if not isinstance(query, str):
            continue
        for problem in vanishing_numerators(query):
            warnings.append(f"spec.metrics[{index}].query ({metric.get('name')}): {problem}")
    return warnings
