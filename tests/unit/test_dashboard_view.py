"""What the dashboard shows of a rollout: pure functions of the object and the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from phasegate.dashboard import view
from support.world import release

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def rollout(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body = release(**spec)
    body["metadata"]["namespace"] = "shop"
    body["spec"]["phases"][1]["approval"] = {"required": ["engineering", "finance"]}
    if status is not None:
        body["status"] = status
    return body


def at(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def test_a_new_rollout_is_listed_as_pending() -> None:
    assert view.summary(rollout()) == {
        "namespace": "shop", "name": "web", "revision": "v1", "state": "Pending",
        "phase": None, "phases": 2, "phaseIndex": None, "weight": None, "progress": None,
        "message": "",
    }  # fmt: skip


def test_the_phase_clock_leaves_out_time_held_and_a_hold_running_now() -> None:
    current = {"startedAt": at(100), "heldFor": "20s", "heldSince": at(30)}
    assert view.phase_clock(current, NOW) == 50
    assert view.phase_clock({"startedAt": at(100)}, NOW) == 100
    assert view.phase_clock({}, NOW) == 0


def test_the_timeline_has_each_phase_its_checkpoints_and_the_time_left() -> None:
    status = {
        "state": "Progressing",
        "currentPhase": {"name": "canary", "index": 0, "weight": 10, "startedAt": at(5)},
        "checkpoints": [{"phase": "canary", "offset": "4s", "verdict": "Passed"}],
        "phaseHistory": [{"name": "canary", "startedAt": at(5)}],
    }
    line = view.timeline(rollout(status), NOW)
    assert [(p["name"], p["weight"], p["where"]) for p in line["phases"]] == [
        ("canary", 10, "current"),
        ("full", 100, "pending"),
    ]
    assert line["phases"][0]["checkpoints"] == [
        {"offset": 4.0, "verdict": "Passed"},
        {"offset": 6.0, "verdict": None},
        {"offset": 8.0, "verdict": None},
    ]
    assert line["phases"][1]["approval"] == ["engineering", "finance"]
    assert line["phase"] == {"elapsed": 5.0, "duration": 8.0, "remaining": 3.0}
    assert line["release"] == {"elapsed": 5.0, "remaining": 3.0 + 6.0}


def test_a_phase_waiting_at_its_gate_shows_its_whole_duration_elapsed() -> None:
    status = {
        "state": "WaitingForApproval",
        "currentPhase": {"name": "canary", "index": 0, "weight": 10, "startedAt": at(30)},
    }
    line = view.timeline(rollout(status), NOW)
    assert line["phase"] == {"elapsed": 8.0, "duration": 8.0, "remaining": 0.0}
    assert line["release"] == {"elapsed": 30.0, "remaining": 6.0}


def test_an_ended_release_has_no_time_left() -> None:
    status = {"state": "Succeeded", "currentPhase": {"name": "full", "index": 1, "weight": 100}}
    line = view.timeline(rollout(status), NOW)
    assert [p["where"] for p in line["phases"]] == ["done", "done"]
    assert line["release"]["remaining"] == 0


def test_the_gate_says_who_approved_and_who_is_missing() -> None:
    status = {
        "state": "WaitingForApproval",
        "currentPhase": {"name": "canary", "index": 0, "weight": 10},
        "approvals": [
            {"phase": "full", "group": "finance", "by": "ana", "time": at(1)},
            {"phase": "canary", "group": "engineering", "by": "bo", "time": at(9)},
        ],
    }
    gate = view.approvals_waiting(rollout(status))
    assert gate is not None
    assert gate["phase"] == "full" and gate["missing"] == ["engineering"]
    assert gate["given"] == [{"group": "finance", "by": "ana", "time": at(1)}]
    assert view.approvals_waiting(rollout({"state": "Progressing"})) is None


def test_a_chart_per_rule_of_the_current_phase_with_its_queries_and_threshold() -> None:
    spec, charts, problems = view.charts(rollout({"currentPhase": {"index": 1}}))
    assert spec is not None and problems == []
    assert [(c.rule, c.kind, c.max) for c in charts] == [
        ("successCriteria[0]", "success", 0.01),
        ("rollbackTriggers[0]", "rollback", 0.5),
    ]
    assert charts[1].sustain == 2
    assert 'service="web-canary"' in charts[0].queries["canary"]


def test_an_invalid_spec_has_no_charts_and_says_why() -> None:
    body = rollout()
    body["spec"]["phases"] = []
    spec, charts, problems = view.charts(body)
    assert spec is None and charts == [] and problems


def test_canary_against_stable_is_the_relative_difference_where_stable_is_not_zero() -> None:
    canary = [[1.0, 1.1], [2.0, 2.0], [3.0, 5.0]]
    stable = [[1.0, 1.0], [2.0, 0.0], [4.0, 1.0]]
    assert view.relative(canary, stable) == [[1.0, pytest.approx(0.1)]]


@pytest.mark.parametrize(
    ("absolute", "expected"), [(False, [[1.0, 0.5], [2.0, 0.0]]), (True, [[1.0, 1.0], [2.0, 0.0]])]
)
def test_the_segments_spread_as_judged(absolute: bool, expected: list[list[float]]) -> None:
    series = {
        "consumer": [[1.0, 1.5], [2.0, 2.0], [3.0, 9.0]],
        "enterprise": [[1.0, 2.5], [2.0, 2.0]],
    }
    assert view.spread(series, absolute) == expected


def test_the_charts_cover_the_phase_so_far_in_about_240_points() -> None:
    status = {"currentPhase": {"startedAt": at(7200)}}
    start, end, step = view.window(rollout(status), NOW)
    assert (start, end, step) == ((NOW - timedelta(hours=2)).timestamp(), NOW.timestamp(), 30)
    start, _, step = view.window(rollout(), NOW)  # not started: the last 5 minutes
    assert start == (NOW - timedelta(minutes=5)).timestamp() and step == 1


def test_the_kubectl_plugin_does_not_load_the_dashboard_server_to_register_it() -> None:
    """``kubectl phasegate get`` stays quick: no aiohttp, no scipy, until the dashboard runs."""
    import subprocess
    import sys

    probe = (
        "import sys, phasegate.cli.kubectl; print(sorted({'aiohttp', 'scipy'} & set(sys.modules)))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"
