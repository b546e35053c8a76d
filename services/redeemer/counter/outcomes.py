"""What the counter shows after a click, decided from the outcome the redeemer recorded for
the command: pure, no I/O.

The counter submits the same commands as the JSON API (`CheckVoucher`, `RedeemVoucher`,
`CancelRedemption`) through the same gateway, so a refusal has the same reason code here
and there. Request ids are namespaced `counter:<SIRET>:...`, apart from the API's `http:...`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from passnum.edge.http import Outcome
from schemas.messages import (
    RedeemerCommandRejected,
    RedemptionCancelled,
    RedemptionRejected,
    VoucherChecked,
    VoucherRedeemed,
)

Action = Literal["check", "redeem", "cancel"]
# The key a rendered form carries: a double click sends it twice, and the redeemer answers
# the second with the first one's outcome (never a second redemption).
FORM_KEY = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Result:
    action: Action
    accepted: bool
    reason: str | None = None
    voucher_id: str | None = None
    face_value_cents: int | None = None
    # When it was redeemed: now (a redemption), or before (`already_redeemed`).
    redeemed_at: datetime | None = None


def new_form_key() -> str:
    return uuid.uuid4().hex


def request_id(action: Action, siret: str, form_key: str, voucher_id: str = "") -> str:
    """A check asks nothing twice, so each gets a fresh id; a redemption or a cancellation
    reuses its form's key, so that a double submit is one request. A cancellation names its
    voucher: one page lists several, each with its own button, under one form key."""
    if action == "check":
        return f"counter:{siret}:check:{new_form_key()}"
    assert FORM_KEY.match(form_key), "the caller checks the form key"
    suffix = f"{voucher_id}:{form_key}" if action == "cancel" else form_key
    return f"counter:{siret}:{action}:{suffix}"


def result_of(action: Action, outcome: Outcome) -> Result:
    """In the JSON API's order of precedence: a key reused for another body, then the
    recorded event."""
    if not outcome.fingerprint_matches:
        return Result(action, False, "request_id_reused")
    assert len(outcome.events) == 1, "every venue command records exactly one event"
    event = outcome.events[0]
    if isinstance(event, VoucherChecked):
        return Result(action, event.valid, event.reason, event.voucher_id)
    if isinstance(event, VoucherRedeemed):
        return Result(action, True, None, event.voucher_id, event.face_value_cents,
                      event.occurred_at)
    if isinstance(event, RedemptionRejected):
        earlier = datetime.fromisoformat(event.redeemed_at) if event.redeemed_at else None
        return Result(action, False, event.reason, event.voucher_id, redeemed_at=earlier)
    if isinstance(event, RedemptionCancelled):
        return Result(action, True, None, event.voucher_id, event.face_value_cents)
    if isinstance(event, RedeemerCommandRejected):
        return Result(action, False, event.reason)
    raise AssertionError(f"a venue command recorded {event.type}")


def pending(action: Action, voucher_id: str | None = None) -> Result:
    """The command is in the log but its outcome came late: the same click later gets it."""
    return Result(action, False, "outcome_pending", voucher_id)
