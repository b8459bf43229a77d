"""The control annotations and the operator's own metrics."""

from __future__ import annotations

import pytest

from phasegate.api import controls
from phasegate.runtime.telemetry import Telemetry


def test_a_control_annotation_round_trips() -> None:
    annotation = controls.annotation(
        "approve", by="fiona", group="finance", phase="ramp", control_id="a1"
    )
    assert annotation == {
        "control.phasegate.dev/a1": (
            '{"action":"approve","phase":"ramp","group":"finance","by":"fiona"}'
        )
    }
    requests, problems = controls.parse({**annotation, "unrelated": "x"})
    body = {"action": "approve", "phase": "ramp", "group": "finance", "by": "fiona"}
    assert requests == [("a1", body)] and problems == []


def test_ids_are_unique_per_request() -> None:
    assert len({next(iter(controls.annotation("pause", by="a"))) for _ in range(50)}) == 50


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("not json", "Expecting value"),
        ('{"action": "explode"}', "unknown action"),
        ('{"action": "approve"}', "approve needs a phase"),
        ("[1]", "not a JSON object"),
    ],
)
def test_bad_control_annotations_are_reported_not_applied(value: str, words: str) -> None:
    requests, problems = controls.parse({"control.phasegate.dev/x": value})
    assert requests == [] and words in problems[0] and "control.phasegate.dev/x" in problems[0]


def test_unknown_actions_are_refused_when_writing() -> None:
    with pytest.raises(controls.ControlError, match="unknown action"):
        controls.annotation("explode", by="a")
    with pytest.raises(controls.ControlError, match="needs the phase"):
        controls.annotation("approve", by="a")


def test_telemetry_renders_the_prometheus_text_format() -> None:
    t = Telemetry()
    t.describe("phasegate_decisions_total", "Decisions.")
    t.inc("phasegate_decisions_total", action="Rollback")
    t.inc("phasegate_decisions_total", action="Rollback")
    t.set("phasegate_canary_weight", 10, namespace="shop", rollout='we"b')
    t.observe("phasegate_query_duration_seconds", 0.02)
    text = t.exposition()
    assert "# TYPE phasegate_decisions_total counter" in text
    assert 'phasegate_decisions_total{action="Rollback"} 2' in text
    assert 'phasegate_canary_weight{namespace="shop",rollout="we\\"b"} 10' in text
    assert 'phasegate_query_duration_seconds_bucket{le="0.025"} 1' in text
    assert 'phasegate_query_duration_seconds_bucket{le="0.01"} 0' in text
    assert "phasegate_query_duration_seconds_count 1" in text
    t.forget("phasegate_canary_weight", rollout='we"b')
    assert "phasegate_canary_weight{" not in t.exposition()
