"""The voucher aggregate: where a voucher is redeemed, and why it cannot be twice.

`decide_redeem` looks at the voucher's state and answers with exactly one event:
`VoucherRedeemed`, or `RedemptionRejected` with the first failing reason in
`REDEMPTION_PRECEDENCE`. A voucher that has a redemption is `already_redeemed`: commands
about one booklet share a partition (see `passnum.core.topology`) and are decided one at a
time, in log order, so the second of two scans always sees the first.

Pure: the instant a scan is judged at is the command's `occurred_at` (the scan's own
instant, back-dated for an offline scan), against the facts as they stood then: a booklet
activated after it, or a venue accredited (or reinstated) after it, refuses the scan. The
decision's own instant, `decided_at`, is the redeemer's clock: it only bounds how far ahead a
scan may be dated (`scan_in_the_future`). The auditor judges every redemption with these
same rules at the same instant (`services.auditor.invariants`), so that the two cannot
disagree on a history the redeemer accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, MutableMapping

from passnum.ledger.booklet import BookletFacts, evolve_booklet_facts, in_perimeter
from passnum.ledger.identity import decided_event, event_id_for
from passnum.ledger.time import (
    DEFAULT_SCAN_CLOCK_TOLERANCE,
    same_local_day,
    scan_in_the_future,
    venue_day,
    within_validity,
)
from passnum.ledger.venue import Provider, accreditation_refusal, evolve_venue
from passnum.ledger.voucher_codes import parse_code
from schemas.base import Event
from schemas.messages import (
    BookletActivated,
    BookletBlockApplied,
    BookletBlocked,
    BookletIssued,
    CancelRedemption,
    CheckVoucher,
    ProviderAccredited,
    ProviderStatusChanged,
    RedeemerCommandRejected,
    RedeemVoucher,
    RedemptionCancelled,
    RedemptionRejected,
    VoucherChecked,
    VoucherRedeemed,
)

ORIGIN = "redeemer"

# Checked in this order; the first failing reason is the answer.
REDEMPTION_PRECEDENCE = (
    "malformed_code",
    "mistyped_code",
    "forged_code",
    "unknown_voucher",
    "scan_in_the_future",
    "booklet_not_activated",
    "booklet_not_activated_at_scan_time",
    "booklet_blocked",
    "outside_validity",
    "outside_perimeter",
    "provider_not_accredited",
    "venue_not_accredited_at_scan_time",
    "already_redeemed",
)

@dataclass(frozen=True)
class Redemption:
    voucher_id: str
    booklet_id: str
    siren: str
    siret: str
    face_value_cents: int
    redeemed_at: str  # ISO timestamp, as recorded in the event
    event_id: str
    # The month of the statement that paid it (passnum.ledger.settlement_month), None until
    # then. Loaded from the database; the log records it in `SettlementStatementIssued`.
    settlement_month: str | None = None


@dataclass
class RedeemerView:
    """The slice of redeemer state one batch of decisions needs (loaded by the adapter)."""

    booklets: MutableMapping[str, BookletFacts]
    redemptions: MutableMapping[str, Redemption]
    providers: MutableMapping[str, Provider]
    # The latest scan each venue had accepted (None: none), loaded for the venues whose
    # status the batch changes: a restriction never takes effect before it
    # (`passnum.ledger.venue.effective_instant`).
    latest_scans: MutableMapping[str, datetime | None] = field(default_factory=dict)


# ------------------------------------------------------------------------------ evolve


def evolve(view: RedeemerView, event: Event) -> RedeemerView:
    """Fold one redeemer or issuer event into the view (used in a batch and by the auditor).
    A redemption is tested first: it is nearly every event, and each `isinstance` that
    fails against an event class costs a trip through pydantic's ABCMeta (the types are
    disjoint, so the order changes nothing else)."""
    if isinstance(event, VoucherRedeemed):
        view.redemptions.setdefault(event.voucher_id, Redemption(
            event.voucher_id, event.booklet_id, event.siren, event.siret,
            event.face_value_cents, event.occurred_at.isoformat(), event.event_id))
        if event.siret in view.latest_scans:
            latest = view.latest_scans[event.siret]
            view.latest_scans[event.siret] = event.occurred_at if latest is None else max(
                latest, event.occurred_at)
    elif isinstance(event, (BookletIssued, BookletActivated, BookletBlocked,
                            BookletBlockApplied)):
        updated = evolve_booklet_facts(view.booklets.get(event.booklet_id), event)
        if updated is not None:
            view.booklets[event.booklet_id] = updated
    elif isinstance(event, RedemptionCancelled):
        view.redemptions.pop(event.voucher_id, None)
    elif isinstance(event, (ProviderAccredited, ProviderStatusChanged)):
        provider = evolve_venue(view.providers.get(event.siret), event)
        if provider is not None:
            view.providers[event.siret] = provider
    return view


# ------------------------------------------------------------------------------ rules


def voucher_refusal(view: RedeemerView, code: str, siret: str, scanned_at: datetime,
                    code_key: bytes, decided_at: datetime | None = None,
                    tolerance: timedelta = DEFAULT_SCAN_CLOCK_TOLERANCE,
                    ) -> tuple[str | None, str | None]:
    """(voucher_id, first failing reason or None). The precedence is the order below.
    Every fact is judged at `scanned_at`; `decided_at` (None: unbounded) bounds it above."""
    parsed = parse_code(code_key, code)
    if parsed.number is None:
        return None, parsed.outcome
    number = parsed.number
    voucher_id = number.voucher_id
    booklet = view.booklets.get(number.booklet_id)
    if booklet is None or not 1 <= number.position <= booklet.voucher_count:
        return voucher_id, "unknown_voucher"
    if decided_at is not None and scan_in_the_future(scanned_at, decided_at, tolerance):
        return voucher_id, "scan_in_the_future"
    if not booklet.activated:
        return voucher_id, "booklet_not_activated"
    if booklet.activated_at is not None and scanned_at < booklet.activated_at:
        return voucher_id, "booklet_not_activated_at_scan_time"
    if booklet.blocked:
        return voucher_id, "booklet_blocked"
    if not within_validity(venue_day(scanned_at), booklet.valid_from, booklet.grace_until):
        return voucher_id, "outside_validity"
    provider = view.providers.get(siret)
    if provider is not None and not in_perimeter(booklet.perimeter, provider.address_code):
        return voucher_id, "outside_perimeter"
    refusal = accreditation_refusal(provider, scanned_at)
    if refusal is not None:
        return voucher_id, refusal
    if voucher_id in view.redemptions:
        return voucher_id, "already_redeemed"
    return voucher_id, None


# ------------------------------------------------------------------------------ deciders


def _event(command: Any, event_class: type[Event], index: int = 0, **fields: Any) -> Event:
    return decided_event(ORIGIN, command, event_class, index, **fields)


def block_to_apply(view: RedeemerView, command: RedeemVoucher, code_key: bytes,
                   decided_at: datetime | None = None) -> Event | None:
    """The block to record before deciding this redemption, if any: one the issuer
    reported that this redeemer has not applied yet. Scans of one booklet are decided in
    one stream; the block reaches the redeemer on another topic, at a moment the log of
    that stream does not show. `BookletBlockApplied` shows it: scans of the booklet before
    it in the stream were decided without the block, those after it with the block. The
    auditor judges each one so, and reaches the redeemer's verdict."""
    number = parse_code(code_key, command.code).number
    booklet = view.booklets.get(number.booklet_id) if number is not None else None
    if booklet is None or not booklet.blocked or booklet.block_applied:
        return None
    request_id = f"block-applied-{booklet.booklet_id}"
    return BookletBlockApplied(event_id=event_id_for(ORIGIN, request_id, 0),
                               request_id=request_id,
                               occurred_at=decided_at or command.occurred_at,
                               siren=booklet.siren, booklet_id=booklet.booklet_id)


def decide_redeem(view: RedeemerView, command: RedeemVoucher, code_key: bytes,
                  decided_at: datetime | None = None,
                  tolerance: timedelta = DEFAULT_SCAN_CLOCK_TOLERANCE) -> list[Event]:
    voucher_id, reason = voucher_refusal(view, command.code, command.siret,
                                         command.occurred_at, code_key, decided_at, tolerance)
    if reason is not None:
        previous = view.redemptions.get(voucher_id) if voucher_id else None
        # Say when it was redeemed, never where: other venues' data stays private.
        redeemed_at = previous.redeemed_at if reason == "already_redeemed" and previous else None
        return [_event(command, RedemptionRejected, siret=command.siret, voucher_id=voucher_id,
                       reason=reason, redeemed_at=redeemed_at)]
    assert voucher_id is not None
    booklet = view.booklets[voucher_id.rsplit("-", 1)[0]]
    return [_event(command, VoucherRedeemed, siret=command.siret, siren=booklet.siren,
                   booklet_id=booklet.booklet_id, voucher_id=voucher_id,
                   face_value_cents=booklet.face_value_cents)]


def decide_check(view: RedeemerView, command: CheckVoucher, code_key: bytes,
                 decided_at: datetime | None = None,
                 tolerance: timedelta = DEFAULT_SCAN_CLOCK_TOLERANCE) -> list[Event]:
    voucher_id, reason = voucher_refusal(view, command.code, command.siret,
                                         command.occurred_at, code_key, decided_at, tolerance)
    return [_event(command, VoucherChecked, siret=command.siret, voucher_id=voucher_id,
                   valid=reason is None, reason=reason)]


def decide_cancel(view: RedeemerView, command: CancelRedemption) -> list[Event]:
    """A venue may undo its own redemption on the same day (a mistaken scan), unless it
    is already on a settlement statement: a paid redemption is never taken back."""
    redemption = view.redemptions.get(command.voucher_id)
    if redemption is None or redemption.siret != command.siret:
        reason = "not_redeemed_here"
    elif redemption.settlement_month is not None:
        reason = "already_settled"
    elif not same_local_day(datetime.fromisoformat(redemption.redeemed_at),
                            command.occurred_at):
        reason = "cancellation_too_late"
    else:
        return [_event(command, RedemptionCancelled, siret=command.siret,
                       siren=redemption.siren, booklet_id=redemption.booklet_id,
                       voucher_id=command.voucher_id,
                       face_value_cents=redemption.face_value_cents,
                       redemption_event_id=redemption.event_id)]
    return [_event(command, RedeemerCommandRejected, command_type=command.type, reason=reason)]


