"""Base classes shared by every message.

Commands are requests (imperative names), events are facts (past tense). Both are frozen
and forbid unknown fields, so that a typo in a producer is a rejection, not silent data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Siren = Annotated[str, StringConstraints(pattern=r"^[0-9]{9}$")]
Siret = Annotated[str, StringConstraints(pattern=r"^[0-9]{14}$")]
BookletId = Annotated[str, StringConstraints(pattern=r"^[0-9]{9}-[0-9]{7}$")]
VoucherId = Annotated[str, StringConstraints(pattern=r"^[0-9]{9}-[0-9]{7}-[0-9]{2}$")]
ReasonCode = Annotated[str, StringConstraints(pattern=r"^[a-z_]{3,64}$")]
Cents = Annotated[int, Field(ge=0, le=10_000_000_000)]
PositiveCents = Annotated[int, Field(gt=0, le=10_000_000_000)]


class Message(BaseModel):
    """Every message on the wire: frozen, strict about unknown fields, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    request_id: RequestId
    occurred_at: datetime


class Command(Message):
    """A request from a client. `request_id` is the client's idempotency key."""


class Event(Message):
    """A recorded fact. `event_id` is deterministic: derived from the request that caused it,
    so that re-deciding or re-publishing the same request yields the same id."""

    event_id: EventId
