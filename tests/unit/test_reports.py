"""Phase and release reports of the reference release, against golden files, and the phase
history they are built from."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from phasegate.api import Action, RolloutStatus, State
from phasegate.engine import ControlAction
from phasegate.report.build import Report, UnknownPhase, build_report
from phasegate.report.history import DECISIONS_PER_PHASE
from phasegate.report.markdown import render_markdown
from support.engine import constant, healthy, minimal_spec, reference_spec
from support.reports import RecordingSim, held_then_succeeded, in_phase, rolled_back_in_ramp

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("PHASEGATE_UPDATE_GOLDEN") == "1"


def matches_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing; run with PHASEGATE_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), f"{name} differs; PHASEGATE_UPDATE_GOLDEN=1 rewrites it"


def report_of(sim: RecordingSim, phase: str | None = None) -> Report:
    return build_report("learning", "cohort-analyzer", sim.spec, sim.status, phase)


@pytest.fixture(scope="module")
def succeeded() -> RecordingSim:
    return held_then_succeeded()


def test_release_report_matches_the_golden_markdown_and_json(succeeded: RecordingSim) -> None:
    report = report_of(succeeded)
    matches_golden("reference-release.md", render_markdown(report))
    matches_golden("reference-release.json", report.model_dump_json(by_alias=True, indent=2) + "\n")


def test_phase_report_of_a_rollback_matches_the_golden_files() -> None:
    report = report_of(rolled_back_in_ramp(), "ramp")
    matches_golden("reference-ramp-rolled-back.md", render_markdown(report))
    dumped = report.model_dump_json(by_alias=True, indent=2) + "\n"
    matches_golden("reference-ramp-rolled-back.json", dumped)


def test_release_report_has_every_checkpoint_and_the_hold(succeeded: RecordingSim) -> None:
    report = report_of(succeeded)
    assert [(p.name, p.outcome, p.checkpoints_passed) for p in report.phases] == [
        ("canary", "Passed", 5),
        ("ramp", "Passed", 6),
        ("rollout", "Passed", 8),
    ]
    canary = report.phases[0]
    assert canary.held_for == timedelta(minutes=10)
    assert [d.action for d in canary.decisions] == [Action.START, Action.HOLD, Action.RESUME]
    hold = canary.decisions[1]
    assert hold.evidence[0].rule == "holdTriggers[0]" and hold.evidence[0].value == 0.008
    worst = {w.rule: w for w in canary.worst}
    assert worst["holdTriggers[0]"].worst == 0.008
    assert worst["successCriteria[0]"].worst == 0.008, "kept between checkpoints too"
    assert {(a.group, a.by) for a in report.phases[1].approvals} == {
        ("engineering", "alice"),
        ("operations", "oscar"),
        ("product", "paula"),
        ("finance", "fiona"),
    }
    assert [e.time for e in report.timeline] == sorted(e.time for e in report.timeline)


def test_json_report_reads_back_as_the_same_report(succeeded: RecordingSim) -> None:
    report = report_of(succeeded)
    text = report.model_dump_json(by_alias=True)
    assert json.loads(text)["schemaVersion"] == "phasegate.dev/report/v1"
    assert Report.model_validate_json(text) == report


def test_a_phase_the_spec_does_not_have_is_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownPhase, match="phases: canary, ramp, rollout"):
        build_report("learning", "x", reference_spec(), RolloutStatus(), "bake")


def test_the_worst_value_is_the_one_furthest_on_the_failing_side() -> None:
    sim = RecordingSim(minimal_spec(), healthy())
    sim.metrics = constant({"errors": 0.001, "latency": 0.1})
    sim.run(in_phase("canary"))
    for errors in (0.004, 0.002, 0.009, 0.003):
        sim.metrics = constant({"errors": errors, "latency": 0.1})
        sim.advance(timedelta(seconds=10))
        sim.step()
    record = sim.status.phase_history[0]
    worst = {w.rule: w.worst for w in record.worst}
    assert worst == {
        "successCriteria[0]": 0.009,
        "successCriteria[1]": 0.1,
        "rollbackTriggers[0]": 0.009,
        "holdTriggers[0]": 0.009,
    }


def test_a_steady_phase_writes_nothing_new_between_checkpoints() -> None:
    sim = RecordingSim(minimal_spec(), constant({"errors": 0.001, "latency": 0.1}))
    sim.run(in_phase("canary"))
    sim.advance(timedelta(seconds=10))
    sim.step()
    settled = sim.status
    sim.advance(timedelta(seconds=10))
    sim.step()
    assert sim.status == settled


def test_decisions_kept_per_phase_are_bounded() -> None:
    sim = RecordingSim(minimal_spec(), constant({"errors": 0.001, "latency": 0.1}))
    sim.run(in_phase("canary"))
    for _ in range(DECISIONS_PER_PHASE):
        sim.control(ControlAction.PAUSE, by="alice")
        sim.control(ControlAction.RESUME, by="alice")
    decisions = sim.status.phase_history[0].decisions
    assert len(decisions) == DECISIONS_PER_PHASE
    assert decisions[-1].action is Action.RESUME


def test_a_retry_starts_a_fresh_history() -> None:
    sim = rolled_back_in_ramp()
    assert [r.name for r in sim.status.phase_history] == ["canary", "ramp"]
    sim.control(ControlAction.RETRY, by="alice")
    assert sim.status.state in (State.PENDING, State.PROGRESSING)
    assert all(
        not r.decisions or r.decisions[0].action is Action.START for r in sim.status.phase_history
    )
    assert [r.name for r in sim.status.phase_history] in ([], ["canary"])
