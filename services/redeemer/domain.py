"""The redeemer's decisions: each command goes to its rule in the ledger (where a voucher is
redeemed, and why only once: `passnum.ledger.voucher.decide_redeem`; venues:
`passnum.ledger.venue`). This module routes, and says what a batch must load."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Mapping, Sequence

from passnum.ledger.booklet import BookletFacts
from passnum.ledger.identity import decided_event
from passnum.ledger.time import DEFAULT_SCAN_CLOCK_TOLERANCE
from passnum.ledger.venue import decide_accredit, decide_provider_status
from passnum.ledger.voucher import (
    ORIGIN,
    RedeemerView,
    block_to_apply,
    decide_cancel,
    decide_check,
    decide_redeem,
    parse_code,
)
from passnum.ledger.voucher_codes import parse_voucher_id
from schemas.base import Event
from schemas.messages import (
    AccreditProvider,
    CancelRedemption,
    ChangeProviderStatus,
    CheckVoucher,
    RedeemerCommandRejected,
    RedeemVoucher,
)


def decide(view: RedeemerView, command: object, code_key: bytes,
           decided_at: datetime | None = None,
           tolerance: timedelta = DEFAULT_SCAN_CLOCK_TOLERANCE) -> list[Event]:
    """`decided_at`: the handler's clock when it decides (bounds how far ahead a scan may
    be dated); None in tests of the facts alone."""
    if isinstance(command, RedeemVoucher):
        return decide_redeem(view, command, code_key, decided_at, tolerance)
    if isinstance(command, CheckVoucher):
        return decide_check(view, command, code_key, decided_at, tolerance)
    if isinstance(command, CancelRedemption):
        return decide_cancel(view, command)
    if isinstance(command, AccreditProvider):
        return decide_accredit(view.providers, command)
    if isinstance(command, ChangeProviderStatus):
        return decide_provider_status(view.providers, command,
                                      view.latest_scans.get(command.siret))
    return [decided_event(ORIGIN, command, RedeemerCommandRejected,
                          command_type=getattr(command, "type", "unknown"),
                          reason="not_supported")]


def preface(view: RedeemerView, command: object, code_key: bytes,
            decided_at: datetime | None = None) -> list[Event]:
    """Facts recorded in the stream before the command's decision: a block the issuer
    reported, applied before the first redemption of the booklet that follows it
    (`passnum.ledger.voucher.block_to_apply`)."""
    if isinstance(command, RedeemVoucher):
        applied = block_to_apply(view, command, code_key, decided_at)
        if applied is not None:
            return [applied]
    return []


def restricting_venues(commands: Sequence[object]) -> set[str]:
    """The venues whose status a batch changes: their latest accepted scan is loaded."""
    return {command.siret for command in commands if isinstance(command, ChangeProviderStatus)}


def touched_by(commands: Sequence[object], code_key: bytes) -> tuple[set[str], set[str]]:
    """The booklets and the vouchers a batch of commands names: what the adapter must load
    (a decision reads a booklet's facts and the redemption of the named voucher only)."""
    booklet_ids: set[str] = set()
    voucher_ids: set[str] = set()
    for command in commands:
        number = None
        if isinstance(command, (RedeemVoucher, CheckVoucher)):
            number = parse_code(code_key, command.code).number
        elif isinstance(command, CancelRedemption):
            number = parse_voucher_id(command.voucher_id)
        if number is not None:
            booklet_ids.add(number.booklet_id)
            voucher_ids.add(number.voucher_id)
    return booklet_ids, voucher_ids


def empty_view(booklets: Mapping[str, BookletFacts] | None = None) -> RedeemerView:
    return RedeemerView(dict(booklets or {}), {}, {})
