"""The redeemer's pure core: where a voucher is redeemed, and why it cannot be twice.

`decide_redeem` looks at the voucher's state and answers with exactly one event:
`VoucherRedeemed`, or `RedemptionRejected` with the first failing reason in
`REDEMPTION_PRECEDENCE`. A voucher that has a redemption is `already_redeemed`: commands
about one booklet share a partition (see `passnum.topology`) and are decided one at a time,
and the `redemptions` table's primary key refuses a second row even if this code were wrong.

No Kafka, no database, no clock: the instant a scan is judged at is the command's
`occurred_at` (the scan's own instant, back-dated for an offline scan), against the facts as
they stood then: a booklet activated after it, or a venue accredited (or reinstated) after
it, refuses the scan. The decision's own instant, `decided_at`, is the handler's clock: it
only bounds how far ahead a scan may be dated (`scan_in_the_future`). The auditor judges
every redemption at that same instant with the same facts (`services.auditor.invariants`),
so that the two cannot disagree on a history the redeemer accepted.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Mapping, MutableMapping, Sequence
from zoneinfo import ZoneInfo

from passnum.codec import event_id_for
from passnum.voucher_codes import parse_code, parse_voucher_id
from schemas.base import Event
from schemas.messages import (
    AccreditProvider,
    BookletActivated,
    BookletBlocked,
    BookletIssued,
    CancelRedemption,
    ChangeProviderStatus,
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

# A batch parses each code twice (to load its booklets, then to decide): parsing is pure
# and costs an HMAC, so it is memoised, within a bound.
parse_code = functools.lru_cache(maxsize=8192)(parse_code)

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

# What the redeemer's batch handler passes when it decides: its clock, and the tolerance
# (passnum.settings.Settings.scan_clock_tolerance_seconds). None: no bound (unit tests
# that judge the facts only).
DEFAULT_SCAN_CLOCK_TOLERANCE = timedelta(seconds=300)


@dataclass(frozen=True)
class BookletFacts:
    booklet_id: str
    siren: str
    voucher_count: int
    face_value_cents: int
    perimeter: tuple[str, ...]
    valid_from: date
    valid_until: date
    grace_until: date
    activated: bool = False
    blocked: bool = False
    activated_at: datetime | None = None  # the earliest activation (None: before it was kept)


@dataclass(frozen=True)
class Redemption:
    voucher_id: str
    booklet_id: str
    siren: str
    siret: str
    face_value_cents: int
    redeemed_at: str  # ISO timestamp, as recorded in the event
    event_id: str
    # The month of the statement that paid it (services.redeemer.settlement), None until
    # then. Loaded from the database; the log records it in `SettlementStatementIssued`.
    settlement_month: str | None = None


@dataclass(frozen=True)
class Provider:
    siret: str
    name: str
    iban: str
    address_code: str
    status: str  # accredited | suspended | revoked
    # since when the venue has been accredited without a break (None: not kept then)
    accredited_since: datetime | None = None


@dataclass
class RedeemerView:
    """The slice of redeemer state one batch of decisions needs (loaded by the adapter)."""

    booklets: MutableMapping[str, BookletFacts]
    redemptions: MutableMapping[str, Redemption]
    providers: MutableMapping[str, Provider]


# ------------------------------------------------------------------------------ evolve


def evolve_booklet(booklet: BookletFacts | None, event: Event) -> BookletFacts | None:
    """Issuer facts as the redeemer sees them. Monotonic on purpose: issuance is
    insert-if-absent and the flags only turn on, so a duplicated or late re-published
    issuer event can never undo a later one."""
    if isinstance(event, BookletIssued):
        if booklet is not None:
            return booklet
        return BookletFacts(event.booklet_id, event.siren, event.voucher_count,
                            event.face_value_cents, tuple(event.perimeter), event.valid_from,
                            event.valid_until, event.grace_until)
    if booklet is None:
        return None
    if isinstance(event, BookletActivated):
        earliest = event.occurred_at if booklet.activated_at is None else min(
            booklet.activated_at, event.occurred_at)
        return replace(booklet, activated=True, activated_at=earliest)
    if isinstance(event, BookletBlocked):
        return replace(booklet, blocked=True)
    return booklet


def evolve(view: RedeemerView, event: Event) -> RedeemerView:
    """Fold one redeemer or issuer event into the view (used in a batch and by the auditor)."""
    if isinstance(event, (BookletIssued, BookletActivated, BookletBlocked)):
        updated = evolve_booklet(view.booklets.get(event.booklet_id), event)
        if updated is not None:
            view.booklets[event.booklet_id] = updated
    elif isinstance(event, VoucherRedeemed):
        view.redemptions.setdefault(event.voucher_id, Redemption(
            event.voucher_id, event.booklet_id, event.siren, event.siret,
            event.face_value_cents, event.occurred_at.isoformat(), event.event_id))
    elif isinstance(event, RedemptionCancelled):
        view.redemptions.pop(event.voucher_id, None)
    elif isinstance(event, ProviderAccredited):
        view.providers[event.siret] = Provider(event.siret, event.name, event.iban,
                                               event.address_code, "accredited",
                                               event.occurred_at)
    elif isinstance(event, ProviderStatusChanged):
        provider = view.providers.get(event.siret)
        if provider is not None and provider.status != "revoked":
            since = provider.accredited_since
            if event.status == "accredited" and provider.status != "accredited":
                since = event.occurred_at  # reinstated: scans before it are not covered
            view.providers[event.siret] = replace(provider, status=event.status,
                                                  accredited_since=since)
    return view


# ------------------------------------------------------------------------------ rules


def in_perimeter(perimeter: Sequence[str], address_code: str) -> bool:
    """Empty perimeter: everywhere. Otherwise the venue's commune code must be listed, or
    its department (2 characters, 3 for overseas departments 97x)."""
    if not perimeter:
        return True
    department = address_code[:3] if address_code.startswith("97") else address_code[:2]
    return address_code in perimeter or department in perimeter


def scan_in_the_future(scanned_at: datetime, now: datetime, tolerance: timedelta) -> bool:
    """A scan dated later than `now` by more than the clock tolerance: a venue's clock or
    file is wrong, and such a date would move the books' "as of" for everyone."""
    return scanned_at > now + tolerance


def venue_day(instant: datetime) -> date:
    """The calendar day a voucher's validity is judged on: the day of the instant as it is
    written (its own offset; the auditor reads the same digits, `wire.local_day`)."""
    return instant.date()


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
    if not booklet.valid_from <= venue_day(scanned_at) <= booklet.grace_until:
        return voucher_id, "outside_validity"
    provider = view.providers.get(siret)
    if provider is not None and not in_perimeter(booklet.perimeter, provider.address_code):
        return voucher_id, "outside_perimeter"
    if provider is None or provider.status != "accredited":
        return voucher_id, "provider_not_accredited"
    if provider.accredited_since is not None and scanned_at < provider.accredited_since:
        return voucher_id, "venue_not_accredited_at_scan_time"
    if voucher_id in view.redemptions:
        return voucher_id, "already_redeemed"
    return voucher_id, None


# ------------------------------------------------------------------------------ deciders


def _event(command: object, event_class: type[Event], index: int = 0, **fields: Any) -> Event:
    return event_class(
        event_id=event_id_for(ORIGIN, command.request_id, index),  # type: ignore[attr-defined]
        request_id=command.request_id,  # type: ignore[attr-defined]
        occurred_at=command.occurred_at,  # type: ignore[attr-defined]
        **fields,
    )


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


FRANCE = ZoneInfo("Europe/Paris")


def same_local_day(redeemed_at: str, cancelled_at: datetime) -> bool:
    """"The same day" is a day at the venue, in France: judged on the instants, whatever
    UTC offset each timestamp happens to be written with."""
    redeemed = datetime.fromisoformat(redeemed_at)
    return redeemed.astimezone(FRANCE).date() == cancelled_at.astimezone(FRANCE).date()


def decide_cancel(view: RedeemerView, command: CancelRedemption) -> list[Event]:
    """A venue may undo its own redemption on the same day (a mistaken scan), unless it
    is already on a settlement statement: a paid redemption is never taken back."""
    redemption = view.redemptions.get(command.voucher_id)
    if redemption is None or redemption.siret != command.siret:
        reason = "not_redeemed_here"
    elif redemption.settlement_month is not None:
        reason = "already_settled"
    elif not same_local_day(redemption.redeemed_at, command.occurred_at):
        reason = "cancellation_too_late"
    else:
        return [_event(command, RedemptionCancelled, siret=command.siret,
                       siren=redemption.siren, booklet_id=redemption.booklet_id,
                       voucher_id=command.voucher_id,
                       face_value_cents=redemption.face_value_cents,
                       redemption_event_id=redemption.event_id)]
    return [_event(command, RedeemerCommandRejected, command_type=command.type, reason=reason)]


def decide_accredit(view: RedeemerView, command: AccreditProvider) -> list[Event]:
    from stdnum import iban as stdnum_iban
    from stdnum.fr import siret as stdnum_siret

    reason = None
    if not stdnum_siret.is_valid(command.siret):
        reason = "invalid_siret"
    elif not stdnum_iban.is_valid(command.iban):
        reason = "invalid_iban"
    elif command.siret in view.providers:
        reason = "already_accredited"
    if reason:
        return [_event(command, RedeemerCommandRejected, command_type=command.type,
                       reason=reason)]
    return [_event(command, ProviderAccredited, siret=command.siret, name=command.name,
                   iban=command.iban, address_code=command.address_code,
                   services=command.services)]


def decide_provider_status(view: RedeemerView, command: ChangeProviderStatus) -> list[Event]:
    provider = view.providers.get(command.siret)
    if provider is None:
        reason = "unknown_provider"
    elif provider.status == "revoked":
        reason = "provider_revoked"
    else:
        return [_event(command, ProviderStatusChanged, siret=command.siret,
                       status=command.status, reason=command.reason)]
    return [_event(command, RedeemerCommandRejected, command_type=command.type, reason=reason)]


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
        return decide_accredit(view, command)
    if isinstance(command, ChangeProviderStatus):
        return decide_provider_status(view, command)
    return [_event(command, RedeemerCommandRejected,
                   command_type=getattr(command, "type", "unknown"), reason="not_supported")]


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
