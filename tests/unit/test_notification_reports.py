"""Report ConfigMaps (names, size, owner) and what notifications say of them; the Rejected
event as the engine reports a NO-GO."""

from __future__ import annotations

import json
from datetime import timedelta

from phasegate.api import RolloutStatus, State
from phasegate.api.notifications import Receiver
from phasegate.api.spec import RolloutSpec
from phasegate.engine import Evaluation
from phasegate.engine.machine import Event
from phasegate.notify.events import plan_notifications
from phasegate.report import render, report_of
from phasegate.report.configmap import (
    CUT,
    DATA_LIMIT,
    JSON,
    MARKDOWN,
    NAME_LIMIT,
    config_map_name,
    report_config_map,
)
from support.engine import constant, minimal_spec
from support.notify import ROLLOUT, NotifyingSim, rollout_object, with_receivers
from support.reports import in_phase

HOOK = Receiver.model_validate({"name": "audit", "webhook": {"url": {"name": "h", "key": "u"}}})


def reporting(spec: RolloutSpec) -> RolloutSpec:
    config = spec.notifications
    assert config is not None
    reports = config.model_validate({"reports": {"configMaps": True}}).reports
    return spec.model_copy(update={"notifications": config.model_copy(update={"reports": reports})})


def succeeded(spec: RolloutSpec) -> NotifyingSim:
    sim = NotifyingSim(spec, constant({"errors": 0.001, "latency": 0.1}))
    sim.run(sim.state_is(State.SUCCEEDED))
    return sim


def payloads(sim: NotifyingSim) -> list[dict]:  # type: ignore[type-arg]
    assert sim.status.notifications is not None
    return [json.loads(e.payload) for e in sim.status.notifications.outbox]


def test_phase_and_release_ends_link_their_report_configmap_and_command() -> None:
    sim = succeeded(reporting(with_receivers(minimal_spec(), HOOK)))
    linked = [(p["event"], p["report"]) for p in payloads(sim) if p["report"]]

    def link(phase: str | None, configmap: str) -> dict[str, object]:
        which = f" --phase {phase}" if phase else ""
        return {
            "phase": phase,
            "command": f"kubectl phasegate report cohort-analyzer -n learning{which} --format md",
            "configMap": {"namespace": "learning", "name": configmap},
        }

    assert linked == [
        ("PhaseEnded", link("canary", "cohort-analyzer-report-canary")),
        ("PhaseEnded", link("full", "cohort-analyzer-report-full")),
        ("Succeeded", link(None, "cohort-analyzer-report")),
    ]
    assert all(p["report"] is None for p in payloads(sim) if p["event"] == "PhaseStarted")


def test_without_report_configmaps_the_link_is_the_command_alone() -> None:
    sim = succeeded(with_receivers(minimal_spec(), HOOK))
    ended = [p["report"] for p in payloads(sim) if p["event"] == "PhaseEnded"]
    assert [r["configMap"] for r in ended] == [None, None]
    assert ended[0]["command"].endswith("--phase canary --format md")


def test_reports_alone_without_receivers_still_queue_the_phase_ends() -> None:
    spec = reporting(with_receivers(minimal_spec()))
    sim = succeeded(spec)
    assert [p["event"] for p in payloads(sim) if p["report"]] == [
        "PhaseEnded",
        "PhaseEnded",
        "Succeeded",
    ]


def test_the_configmap_holds_the_same_report_as_the_command_and_names_its_owner() -> None:
    sim = succeeded(reporting(with_receivers(minimal_spec(), HOOK)))
    obj = rollout_object(sim.spec, sim.status)
    made = report_config_map(obj, "canary")
    assert made.name == "cohort-analyzer-report-canary" and made.namespace == "learning"
    assert made.data == {
        MARKDOWN: render(report_of(obj, "canary"), "md"),
        JSON: render(report_of(obj, "canary"), "json"),
    }
    assert "## Phase canary" in made.data[MARKDOWN]
    assert json.loads(made.data[JSON])["kind"] == "PhaseReport"
    assert made.owner == {
        "apiVersion": "phasegate.dev/v1alpha1",
        "kind": "ProgressiveRollout",
        "name": ROLLOUT.name,
        "uid": ROLLOUT.uid,
    }
    assert made.labels["phasegate.dev/report"] == "canary" and made.annotations == {}
    release = report_config_map(obj, None)
    assert release.name == "cohort-analyzer-report"
    assert json.loads(release.data[JSON])["kind"] == "ReleaseReport"


def test_a_report_too_large_for_a_configmap_is_cut_and_says_so() -> None:
    sim = succeeded(reporting(with_receivers(minimal_spec(), HOOK)))
    status = sim.status.model_copy(deep=True)
    record = next(c for c in status.checkpoints if c.phase == "canary")
    for result in record.results or []:
        result.reason = "ü" * 400_000  # two bytes each in UTF-8
    status = RolloutStatus.model_validate(status.model_dump(mode="json", by_alias=True))
    made = report_config_map(rollout_object(sim.spec, status), "canary")
    size = sum(len(k) + len(v.encode()) for k, v in made.data.items())
    assert size <= DATA_LIMIT < 1024 * 1024
    assert list(made.data) == [MARKDOWN]
    assert made.data[MARKDOWN].startswith("# Phase canary report")
    assert made.data[MARKDOWN].endswith(
        "the whole report: `kubectl phasegate report cohort-analyzer -n learning "
        "--phase canary --format md`\n"
    )
    assert made.annotations[CUT].startswith("report.json left out, report.md cut:")


def test_configmap_names_stay_within_the_api_limit_and_apart() -> None:
    assert config_map_name("web", "canary") == "web-report-canary"
    assert config_map_name("web", None) == "web-report"
    long = "r" * 250
    first, second = config_map_name(long, "canary"), config_map_name(long, "ramp")
    assert len(first) <= NAME_LIMIT and len(second) <= NAME_LIMIT and first != second


def test_a_rejected_gate_is_sent_as_rejected_with_what_a_person_can_do() -> None:
    spec = with_receivers(minimal_spec(), HOOK)
    sim = NotifyingSim(spec, constant({"errors": 0.001, "latency": 0.1}))
    sim.run(in_phase("canary"))
    before = sim.status
    quiet = sim.step()
    rejected = quiet._replace(
        events=(Event("Warning", "Rejected", "canary rejected by bob for finance"),)
    )
    planned: Evaluation = plan_notifications(spec, before, rejected, ROLLOUT, sim.now)
    assert planned.status.notifications is not None
    (entry,) = [e for e in planned.status.notifications.outbox if e.event == "Rejected"]
    body = json.loads(entry.payload)
    assert body["message"] == "canary rejected by bob for finance"
    assert body["nextSteps"] == [
        "kubectl phasegate retry cohort-analyzer -n learning",
        "kubectl phasegate abort cohort-analyzer -n learning",
    ]
    again = plan_notifications(spec, before, rejected, ROLLOUT, sim.now + timedelta(0))
    assert again.status.notifications == planned.status.notifications, "same key, queued once"


def test_the_demo_prints_the_release_report_as_the_cli_does() -> None:
    from phasegate.demo.run import final_report

    sim = succeeded(with_receivers(minimal_spec(), HOOK))
    obj = rollout_object(sim.spec, sim.status)
    printed = final_report(obj)
    assert printed == render(report_of(obj), "md"), "what kubectl phasegate report prints"
    assert printed.startswith("# Release report: learning/cohort-analyzer")
    headings = [line for line in printed.splitlines() if line.startswith("## ")]
    assert [h.rsplit(": ", 1)[-1] for h in headings] == ["Passed", "Passed", "## Timeline"]


def test_a_no_go_at_a_gate_is_sent_as_rejected_with_who_and_why() -> None:
    from phasegate.engine import Control, ControlAction
    from support.engine import healthy, reference_spec

    spec = with_receivers(reference_spec(), HOOK)
    sim = NotifyingSim(spec, healthy())
    sim.run(sim.state_is(State.WAITING_FOR_APPROVAL))
    sim.step(
        [
            Control(
                "ramp-no",
                ControlAction.REJECT,
                by="bob",
                phase="ramp",
                group="finance",
                reason="revenue dip in EU",
            )
        ]
    )
    (rejected,) = [p for p in payloads(sim) if p["event"] == "Rejected"]
    assert "bob" in rejected["message"] and "finance" in rejected["message"]
    assert "revenue dip in EU" in rejected["message"]
    assert rejected["state"] == sim.status.state.value
    assert rejected["nextSteps"] == [
        "kubectl phasegate retry cohort-analyzer -n learning",
        "kubectl phasegate abort cohort-analyzer -n learning",
    ]
