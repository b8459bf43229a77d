"""The notification outbox in status: each event is written with the decision that caused
it and stays until every receiver has it, so a restart neither loses nor repeats it."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from phasegate.api.status import StatusModel


class OutboxEntry(StatusModel):
    """One event waiting to reach its receivers: written with the decision that caused it."""

    key: str = Field(description="Idempotency key: the same event always has the same key.")
    event: str = Field(description="The EventKind.")
    time: datetime
    payload: str = Field(description="The JSON body, as sent to webhooks.")
    delivered_to: list[str] = Field(default_factory=list)
    given_up: list[str] = Field(
        default_factory=list, description="Receivers that failed every attempt."
    )


class ReceiverFailure(StatusModel):
    """A receiver that could not be reached; never its URL, which is a secret."""

    receiver: str
    reason: str
    since: datetime


class NotificationsStatus(StatusModel):
    outbox: list[OutboxEntry] = Field(default_factory=list)
    delivered: list[str] = Field(
        default_factory=list, description="Keys of the latest events delivered to all receivers."
    )
    dropped: int = Field(default=0, description="Events given up on (outbox full or too old).")
    last_digest: datetime | None = None
    failing: list[ReceiverFailure] = Field(
        default_factory=list, description="Receivers whose latest delivery failed."
    )
