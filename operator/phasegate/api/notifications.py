"""Notifications in the spec: where they go (receivers) and what is sent (events).

URLs and signing keys are never in the spec: a receiver names the Secret that holds them.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AfterValidator, Field, model_validator

from phasegate.api.durations import Duration
from phasegate.api.spec import DNS_LABEL, SecretKeyRef, SpecModel


class EventKind(StrEnum):
    """What a receiver can subscribe to."""

    PHASE_STARTED = "PhaseStarted"
    PHASE_ENDED = "PhaseEnded"
    CHECKPOINT_PASSED = "CheckpointPassed"
    CHECKPOINT_FAILED = "CheckpointFailed"
    HOLD = "Hold"
    ROLLBACK = "Rollback"
    APPROVAL_NEEDED = "ApprovalNeeded"
    APPROVED = "Approved"
    REJECTED = "Rejected"
    PAUSED = "Paused"
    RESUMED = "Resumed"
    SUCCEEDED = "Succeeded"
    DEGRADED = "Degraded"
    DIGEST = "Digest"


class SlackReceiver(SpecModel):
    url: SecretKeyRef = Field(description="Secret key holding the Slack incoming-webhook URL.")


class TeamsReceiver(SpecModel):
    url: SecretKeyRef = Field(description="Secret key holding the Teams incoming-webhook URL.")


class WebhookReceiver(SpecModel):
    url: SecretKeyRef = Field(description="Secret key holding the URL to POST to.")
    signing_key: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the HMAC-SHA256 key; unsigned when unset."
    )


class Receiver(SpecModel):
    """A place notifications go. With no service set, the name refers to a receiver
    defined once for the namespace or the cluster (ConfigMap ``phasegate-notifications``)."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    slack: SlackReceiver | None = None
    teams: TeamsReceiver | None = None
    webhook: WebhookReceiver | None = None
    events: list[EventKind] | None = Field(
        default=None, description="Events sent to this receiver; default: all but Digest."
    )

    @model_validator(mode="after")
    def _at_most_one_service(self) -> Self:
        services = [s for s in (self.slack, self.teams, self.webhook) if s is not None]
        if len(services) > 1:
            raise ValueError(f"receiver {self.name!r}: set one of slack, teams or webhook")
        return self

    @property
    def service(self) -> SlackReceiver | TeamsReceiver | WebhookReceiver | None:
        return self.slack or self.teams or self.webhook

    def wants(self, event: str) -> bool:
        if self.events is None:
            return event != EventKind.DIGEST
        return event in self.events


def _digest_interval(value: timedelta | None) -> timedelta | None:
    if value is not None and value < timedelta(minutes=1):
        raise ValueError("digest: at most one every 1m")
    return value


class ReportsSpec(SpecModel):
    config_maps: bool = Field(
        default=False,
        description="Write each phase's report to the ConfigMap <rollout>-report-<phase> when "
        "the phase ends, and the release's to <rollout>-report when it succeeds or rolls back "
        "(Markdown and JSON, owned by the rollout), and link it from the notification.",
    )


class NotificationsSpec(SpecModel):
    receivers: list[Receiver] = Field(default_factory=list)
    reports: ReportsSpec | None = Field(
        default=None, description="Where the operator writes phase and release reports."
    )
    digest: Annotated[Duration | None, AfterValidator(_digest_interval)] = Field(
        default=None,
        description="Send a Digest (phase, weight, time left, latest values) this often "
        "while the rollout is active, to receivers subscribed to Digest.",
    )

    @property
    def report_config_maps(self) -> bool:
        return self.reports is not None and self.reports.config_maps

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [r.name for r in self.receivers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"receivers listed twice: {', '.join(twice)}")
        return self
