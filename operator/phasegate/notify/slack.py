"""Slack incoming webhooks: a Block Kit message within Slack's documented limits."""

from __future__ import annotations

from typing import Any

from phasegate.notify.text import fit, lines_of, report_line

MAX_BLOCKS = 50  # per message
SECTION_TEXT = 3000  # characters of a section's text
HEADER_TEXT = 150  # characters of a header's plain text
FIELD_TEXT = 2000  # characters of one section field
MAX_FIELDS = 10


def message(payload: dict[str, Any]) -> dict[str, Any]:
    """The Block Kit message for one notification."""
    rollout = payload["rollout"]
    title = f"{payload['event']}: {rollout['namespace']}/{rollout['name']} {rollout['revision']}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": fit(title, HEADER_TEXT)}},
        _section(payload["message"]),
    ]
    fields = [f"*State*\n{payload['state']}", f"*Canary weight*\n{payload['canaryWeight']}%"]
    phase = payload.get("phase")
    if phase:
        fields += [
            f"*Phase*\n{phase['name']} ({phase['weight']}%)",
            f"*Checkpoints*\n{phase['checkpointsPassed']}/{phase['checkpointsTotal']}",
            f"*Elapsed*\n{phase['elapsed']}",
            f"*Remaining*\n{phase['remaining']}",
        ]
    blocks.append(
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": fit(f, FIELD_TEXT)} for f in fields][:MAX_FIELDS],
        }
    )
    results = (payload.get("checkpoint") or {}).get("results") or payload.get("latest") or []
    if results:
        table = fit("\n".join(lines_of(results)), SECTION_TEXT - 6)
        blocks.append(_section(f"```{table}```"))  # cut inside the fence, so it stays closed
    decision = payload.get("decision")
    if decision:
        evidence = "\n".join(
            f"• {e['rule']} {e['metric']}: {e['reason']}" for e in decision["evidence"]
        )
        blocks.append(_section(f"*{decision['action']}*: {decision['reason']}\n{evidence}".strip()))
    report = payload.get("report")
    if report:
        blocks.append(_section(report_line(report, "`")))
    if payload.get("nextSteps"):
        blocks.append(_section("*Next:*\n" + "\n".join(f"`{s}`" for s in payload["nextSteps"])))
    return {
        "text": fit(f"{title}: {payload['message']}", SECTION_TEXT),
        "blocks": blocks[:MAX_BLOCKS],
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text, SECTION_TEXT)}}
