"""Text shared by the chat services: bounded lengths and the values-against-thresholds lines."""

from __future__ import annotations

from typing import Any


def fit(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lines_of(results: list[dict[str, Any]]) -> list[str]:
    """One line per criterion: verdict, metric, value, threshold."""
    lines = []
    for r in results:
        value = "no data" if r.get("value") is None else f"{r['value']:.6g}"
        lines.append(f"{r['verdict']:<6} {r['metric']:<20} {value:>10}  {r['threshold']}")
    return lines


def report_line(report: dict[str, Any], code: str) -> str:
    """Where the report is read: its ConfigMap when written, and the command (``code`` marks
    literal text, e.g. a backtick)."""
    what = f"Report of {report['phase']}" if report.get("phase") else "Release report"
    where = report.get("configMap")
    kept = f" in ConfigMap {code}{where['namespace']}/{where['name']}{code}," if where else ""
    return f"{what}:{kept} {code}{report['command']}{code}"
