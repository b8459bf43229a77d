"""Where an evaluation hands over to notifications: the outbox it writes, then a wake-up."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from phasegate.api.spec import RolloutSpec
from phasegate.api.status import RolloutStatus
from phasegate.engine import Evaluation, Measurement
from phasegate.notify.delivery import Notifier
from phasegate.notify.events import Rollout, plan_notifications
from phasegate.report.history import judge_phase


def with_notifications(
    notifier: Notifier | None,
    spec: RolloutSpec,
    before: RolloutStatus,
    evaluation: Evaluation,
    meta: Mapping[str, str],
    measurements: Mapping[str, Measurement],
    now: datetime,
) -> Evaluation:
    """The evaluation with its notifications in the outbox; unchanged without receivers
    and without report ConfigMaps."""
    config = spec.notifications
    if notifier is None or config is None or not (config.receivers or config.report_config_maps):
        return evaluation
    namespace, name = meta["namespace"], meta["name"]
    latest = None
    if config.digest is not None:
        judged = judge_phase(spec, before, measurements, namespace)
        latest = {rule: result for rule, (_, result) in judged.items()}
    rollout = Rollout(namespace, name, meta.get("uid", ""))
    delivered = notifier.delivered(namespace, name)
    return plan_notifications(
        spec, before, evaluation, rollout, now, delivered=delivered, latest=latest
    )


def hand_over(notifier: Notifier | None, evaluation: Evaluation, meta: Mapping[str, str]) -> None:
    """Wake delivery when the written outbox holds something; returns at once."""
    box = evaluation.status.notifications
    if notifier is not None and box is not None and box.outbox:
        notifier.wake(meta["namespace"], meta["name"])
