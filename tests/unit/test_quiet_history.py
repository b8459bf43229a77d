"""A new worst value alone writes nothing: it waits in memory for the next status write."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from phasegate.api.status import PhaseRecord, RolloutStatus, State
from phasegate.engine import Evaluation
from phasegate.runtime.reconcile import Context, _quiet_history
from phasegate.runtime.telemetry import Telemetry

STORED = RolloutStatus(state=State.PROGRESSING, phase_history=[PhaseRecord(name="canary")])
WORSE = [PhaseRecord(name="canary", held_for=timedelta(seconds=1))]  # any history change


def evaluation(status: RolloutStatus) -> Evaluation:
    return Evaluation(status, None, None, (), timedelta(seconds=10))


def context() -> Context:
    return Context(kube=cast(Any, None), telemetry=Telemetry())


def test_a_history_change_alone_is_kept_in_memory_and_not_written() -> None:
    ctx = context()
    quiet = _quiet_history(
        ctx, STORED, evaluation(STORED.model_copy(update={"phase_history": WORSE})), "ns", "web"
    )
    assert quiet.status == STORED, "nothing to write"
    assert ctx.unwritten_history[("ns", "web")] == (STORED.phase_history, WORSE)


def test_it_goes_out_with_the_next_change_and_is_forgotten_with_the_rollout() -> None:
    ctx = context()
    ctx.unwritten_history[("ns", "web")] = (STORED.phase_history, WORSE)
    changed = STORED.model_copy(update={"phase_history": WORSE, "state": State.HOLDING})
    written = _quiet_history(ctx, STORED, evaluation(changed), "ns", "web")
    assert written.status == changed, "written with the rest"
    assert ("ns", "web") not in ctx.unwritten_history
    ctx.unwritten_history[("ns", "web")] = (STORED.phase_history, WORSE)
    ctx.forget("ns", "web")
    assert not ctx.unwritten_history
