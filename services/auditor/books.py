"""The auditor's pure core: fold the whole log with the services' own `evolve` functions and
check that the books balance. No Kafka, no database here.

There is no second copy of any state machine: envelopes are folded with
`services.issuer.domain.evolve`, booklets and redemptions with
`services.redeemer.domain.evolve`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from schemas.base import Event
from schemas.messages import (
    ISSUER_EVENTS,
    RedemptionCancelled,
    VoucherRedeemed,
)
from services.issuer import domain as issuer_domain
from services.redeemer import domain as redeemer_domain


@dataclass(frozen=True)
class Finding:
    code: str
    detail: str
    event_ids: tuple[str, ...] = ()


@dataclass
class Books:
    envelopes: dict[str, issuer_domain.Envelope] = field(default_factory=dict)
    view: redeemer_domain.RedeemerView = field(
        default_factory=lambda: redeemer_domain.RedeemerView({}, {}, {}))
    seen_event_ids: set[str] = field(default_factory=set)
    duplicate_deliveries: int = 0
    event_count: int = 0
    findings: list[Finding] = field(default_factory=list)
    outcomes_per_request: Counter = field(default_factory=Counter)


def apply(books: Books, event: Event) -> None:
    """Fold one event. A re-published event (same event_id) is counted once."""
    if event.event_id in books.seen_event_ids:
        books.duplicate_deliveries += 1
        return
    books.seen_event_ids.add(event.event_id)
    books.event_count += 1
    siren = getattr(event, "siren", None)
    if siren and event.type in _ISSUER_TYPES:
        envelope = books.envelopes.get(siren) or issuer_domain.Envelope(siren)
        books.envelopes[siren] = issuer_domain.evolve(envelope, event)
    if isinstance(event, VoucherRedeemed):
        _check_redemption(books, event)
    if isinstance(event, RedemptionCancelled):
        redemption = books.view.redemptions.get(event.voucher_id)
        if redemption is None or redemption.event_id != event.redemption_event_id:
            books.findings.append(Finding("cancellation_of_unknown_redemption",
                                          event.voucher_id, (event.event_id,)))
    redeemer_domain.evolve(books.view, event)


_ISSUER_TYPES = frozenset(cls.model_fields["type"].default for cls in ISSUER_EVENTS)


def _check_redemption(books: Books, event: VoucherRedeemed) -> None:
    previous = books.view.redemptions.get(event.voucher_id)
    if previous is not None:
        books.findings.append(Finding(
            "voucher_redeemed_twice", event.voucher_id, (previous.event_id, event.event_id)))
    booklet = books.view.booklets.get(event.booklet_id)
    position = int(event.voucher_id.rsplit("-", 1)[1])
    if booklet is None or not 1 <= position <= booklet.voucher_count:
        books.findings.append(Finding("redemption_of_unissued_voucher", event.voucher_id,
                                      (event.event_id,)))
    elif not booklet.activated:
        books.findings.append(Finding("redemption_of_inactive_voucher", event.voucher_id,
                                      (event.event_id,)))
    elif booklet.blocked:
        books.findings.append(Finding("redemption_of_blocked_voucher", event.voucher_id,
                                      (event.event_id,)))


@dataclass(frozen=True)
class CollectiviteTotals:
    siren: str
    received_cents: int
    activated_cents: int
    issued_vouchers: int
    issued_cents: int
    activated_vouchers: int
    redeemed_vouchers: int
    redeemed_cents: int
    blocked_vouchers: int
    blocked_cents: int
    outstanding_vouchers: int
    outstanding_cents: int


def collectivite_totals(books: Books) -> dict[str, CollectiviteTotals]:
    """Count from the booklets up, independently of the envelope's running totals, so that
    the two can be compared."""
    redeemed_by_booklet: dict[str, int] = Counter(
        redemption.booklet_id for redemption in books.view.redemptions.values())
    per_siren: dict[str, Counter] = defaultdict(Counter)
    for booklet in books.view.booklets.values():
        counts = per_siren[booklet.siren]
        value = booklet.face_value_cents
        counts["issued_vouchers"] += booklet.voucher_count
        counts["issued_cents"] += booklet.voucher_count * value
        redeemed = redeemed_by_booklet.get(booklet.booklet_id, 0)
        counts["redeemed_vouchers"] += redeemed
        counts["redeemed_cents"] += redeemed * value
        if not booklet.activated:
            continue
        counts["activated_vouchers"] += booklet.voucher_count
        counts["activated_from_booklets_cents"] += booklet.voucher_count * value
        unused = booklet.voucher_count - redeemed
        bucket = "blocked" if booklet.blocked else "outstanding"
        counts[f"{bucket}_vouchers"] += unused
        counts[f"{bucket}_cents"] += unused * value
    totals = {}
    for siren in sorted(set(per_siren) | set(books.envelopes)):
        counts = per_siren[siren]
        envelope = books.envelopes.get(siren) or issuer_domain.Envelope(siren)
        totals[siren] = CollectiviteTotals(
            siren, envelope.received_cents, envelope.activated_cents,
            counts["issued_vouchers"], counts["issued_cents"], counts["activated_vouchers"],
            counts["redeemed_vouchers"], counts["redeemed_cents"], counts["blocked_vouchers"],
            counts["blocked_cents"], counts["outstanding_vouchers"],
            counts["outstanding_cents"])
        if envelope.activated_cents != counts["activated_from_booklets_cents"]:
            books.findings.append(Finding(
                "activation_mismatch", f"{siren}: envelope says {envelope.activated_cents}, "
                f"booklets say {counts['activated_from_booklets_cents']}"))
    return totals


def check_invariants(books: Books) -> list[Finding]:
    """All findings: those seen while folding, plus the balance checks at the end."""
    totals = collectivite_totals(books)
    for siren, total in totals.items():
        if total.activated_cents > total.received_cents:
            books.findings.append(Finding(
                "activated_exceeds_funds",
                f"{siren}: activated {total.activated_cents} > received {total.received_cents}"))
        balance = total.redeemed_cents + total.outstanding_cents + total.blocked_cents
        activated_value = total.activated_cents
        if balance != activated_value and not _has_inactive_redemptions(books, siren):
            books.findings.append(Finding(
                "books_do_not_balance",
                f"{siren}: redeemed + outstanding + blocked = {balance} "
                f"!= activated {activated_value}"))
    return list(books.findings)


def _has_inactive_redemptions(books: Books, siren: str) -> bool:
    """A redemption of an inactive voucher is already a finding of its own."""
    return any(f.code == "redemption_of_inactive_voucher" and f.detail.startswith(siren)
               for f in books.findings)

