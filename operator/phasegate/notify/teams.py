"""Microsoft Teams incoming webhooks: an Adaptive Card in a message."""

from __future__ import annotations

from typing import Any

from phasegate.notify.text import lines_of, report_line


def message(payload: dict[str, Any]) -> dict[str, Any]:
    """The Teams message for one notification."""
    rollout = payload["rollout"]
    facts = [
        {"title": "State", "value": payload["state"]},
        {"title": "Canary weight", "value": f"{payload['canaryWeight']}%"},
    ]
    phase = payload.get("phase")
    if phase:
        facts += [
            {"title": "Phase", "value": f"{phase['name']} ({phase['weight']}%)"},
            {"title": "Elapsed / remaining", "value": f"{phase['elapsed']} / {phase['remaining']}"},
        ]
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "size": "Medium",
            "weight": "Bolder",
            "text": f"{payload['event']}: {rollout['namespace']}/{rollout['name']} "
            f"{rollout['revision']}",
        },
        {"type": "TextBlock", "wrap": True, "text": payload["message"]},
        {"type": "FactSet", "facts": facts},
    ]
    results = (payload.get("checkpoint") or {}).get("results") or payload.get("latest") or []
    body += [
        {"type": "TextBlock", "wrap": True, "fontType": "Monospace", "text": line}
        for line in lines_of(results)
    ]
    decision = payload.get("decision")
    if decision:
        body.append(
            {
                "type": "TextBlock",
                "wrap": True,
                "text": f"{decision['action']}: {decision['reason']}",
            }
        )
    report = payload.get("report")
    if report:
        body.append({"type": "TextBlock", "wrap": True, "text": report_line(report, "")})
    body += [
        {"type": "TextBlock", "wrap": True, "text": step} for step in payload.get("nextSteps") or []
    ]
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }
