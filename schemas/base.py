"""Base classes shared by every message.

Commands are requests (imperative names), events are facts (past tense). Both are frozen
and forbid unknown fields, so that a typo in a producer is a rejection, not silent data.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Siren = Annotated[str, StringConstraints(pattern=r"^[0-9]{9}$")]
Siret = Annotated[str, StringConstraints(pattern=r"^[0-9]{14}$")]
BookletId = Annotated[str, StringConstraints(pattern=r"^[0-9]{9}-[0-9]{7}$")]
VoucherId = Annotated[str, StringConstraints(pattern=r"^[0-9]{9}-[0-9]{7}-[0-9]{2}$")]
ReasonCode = Annotated[str, StringConstraints(pattern=r"^[a-z_]{3,64}$")]
# The largest amount, and the largest running total, that the ledger holds (100 M€): every
# total a decider records (`total_received_cents`, ...) stays within it, so that no
# recorded value can outgrow its column.
CENTS_MAX = 10_000_000_000
Cents = Annotated[int, Field(ge=0, le=CENTS_MAX)]
PositiveCents = Annotated[int, Field(gt=0, le=CENTS_MAX)]

# ------------------------------------------------------------------ bounds of commands
# Events are history and keep their released types; commands, which anyone can put on a
# topic or send over HTTP, get the tighter types below, so that whatever a command carries
# can be decided, stored and computed with (a grace date of 9999-12-31 overflowed the
# calendar). The HTTP request bodies use the same types: the edge refuses what the log would.

# Years a command may name: a date, a month or the instant it was sent.
YEAR_MIN = 2000
YEAR_MAX = 2100
DATE_MIN = date(YEAR_MIN, 1, 1)
DATE_MAX = date(YEAR_MAX, 12, 31)
_WINDOW = f"between {DATE_MIN.isoformat()} and {DATE_MAX.isoformat()}"

# Integers and booleans are taken as JSON numbers and booleans only, as the documents say:
# "3", true or 3.5 for an integer is a refusal, not a conversion.
StrictCents = Annotated[int, Strict(), Field(ge=0, le=CENTS_MAX)]
StrictPositiveCents = Annotated[int, Strict(), Field(gt=0, le=CENTS_MAX)]
LedgerDate = Annotated[date, Field(ge=DATE_MIN, le=DATE_MAX, description=_WINDOW)]
LedgerInstant = Annotated[datetime, Field(ge=datetime(YEAR_MIN, 1, 1, tzinfo=timezone.utc),
                                          lt=datetime(YEAR_MAX + 1, 1, 1, tzinfo=timezone.utc),
                                          description=_WINDOW)]
# YYYY-MM within the years above.
LEDGER_MONTH_PATTERN = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])$"
LedgerMonth = Annotated[str, StringConstraints(pattern=LEDGER_MONTH_PATTERN)]


# Text a command carries: no control characters (PostgreSQL refuses NUL in text and jsonb);
# each use adds its own length bound. (pydantic itself refuses lone surrogates, which UTF-8
# cannot write.)
PlainText = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$")]
CommandRequestId = Annotated[PlainText, StringConstraints(min_length=1, max_length=128)]


class Message(BaseModel):
    """Every message on the wire: frozen, strict about unknown fields, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    request_id: RequestId
    occurred_at: datetime

    if TYPE_CHECKING:
        # Every concrete message declares its `type` (a Literal: the codec's discriminator).
        # Declared here for the type checker only: a field on this base would move `type`
        # ahead of `event_id` in every event's field order, and so in its JSON form.
        type: str


class Command(Message):
    """A request from a client. `request_id` is the client's idempotency key."""

    schema_version: Annotated[int, Strict()] = 1
    request_id: CommandRequestId
    occurred_at: LedgerInstant


class Event(Message):
    """A recorded fact. `event_id` is deterministic: derived from the request that caused it,
    so that re-deciding or re-publishing the same request yields the same id."""

    event_id: EventId
