"""The booklet aggregate: its life at the issuer (issued, distributed or handed out,
blocked; activated when funds cover it) and the facts the redeemer judges a scan against.

Two views of one booklet, from the same events:
- `Booklet` and `evolve_booklet`: the issuer's, for distributing and blocking;
- `BookletFacts` and `evolve_booklet_facts`: what a scan needs (framing, activation, block).
  The redeemer keeps it as rows (`services.redeemer.store`, a SQL projection of the issuer's
  events); `tests/integration/test_booklet_facts_projection.py` holds those rows equal to
  this fold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Sequence

from passnum.ledger.envelope import (
    Envelope,
    IssuerEvents,
    add_activations,
    evolve,
    issuer_rejection,
    replaced,
)
from passnum.ledger.identity import booklet_sequence
from schemas.base import Event
from schemas.messages import (
    BlockBooklet,
    BookletActivated,
    BookletBlockApplied,
    BookletBlocked,
    BookletDistributed,
    BookletIssued,
    DistributeBooklet,
)


@dataclass(frozen=True)
class Booklet:
    booklet_id: str
    siren: str
    sequence: int
    order_id: str
    voucher_count: int
    face_value_cents: int
    status: str = "issued"  # issued | distributed | handed_out | blocked
    activated: bool = False
    distributor: str | None = None
    beneficiary_reference: str | None = None


def evolve_booklet(booklet: Booklet | None, event: Event) -> Booklet | None:
    if isinstance(event, BookletIssued):
        return Booklet(event.booklet_id, event.siren, booklet_sequence(event.booklet_id),
                       event.order_id, event.voucher_count, event.face_value_cents)
    if booklet is None:
        return None
    if isinstance(event, BookletActivated):
        return replaced(booklet, activated=True)
    if isinstance(event, BookletDistributed):
        status = "handed_out" if event.beneficiary_reference else "distributed"
        return replace(booklet, status=status, distributor=event.distributor,
                       beneficiary_reference=event.beneficiary_reference)
    if isinstance(event, BookletBlocked):
        return replace(booklet, status="blocked")
    return booklet


def booklet_refusal(envelope: Envelope, booklet: Booklet | None, siren: str) -> str | None:
    """Why a collectivité may not act on this booklet (distribute or block it), or None."""
    if not envelope.registered:
        return "unknown_collectivite"
    if booklet is None or booklet.siren != siren:
        return "unknown_booklet"
    if booklet.status == "blocked":
        return "booklet_blocked"
    return None


def decide_distribute(envelope: Envelope, booklet: Booklet | None,
                      command: DistributeBooklet) -> list[Event]:
    reason = booklet_refusal(envelope, booklet, command.siren)
    if reason is None and booklet is not None and booklet.status == "handed_out":
        reason = "already_handed_out"
    if reason is not None:
        return issuer_rejection(command, command.siren, reason)
    builder = IssuerEvents(command)
    builder.add(BookletDistributed, siren=command.siren, booklet_id=command.booklet_id,
                distributor=command.distributor,
                beneficiary_reference=command.beneficiary_reference)
    return builder.events


def decide_block(envelope: Envelope, booklet: Booklet | None, command: BlockBooklet) -> list[Event]:
    reason = booklet_refusal(envelope, booklet, command.siren)
    if reason is not None:
        return issuer_rejection(command, command.siren, reason)
    builder = IssuerEvents(command)
    builder.add(BookletBlocked, siren=command.siren, booklet_id=command.booklet_id,
                reason=command.reason)
    # Blocking the unfunded head of the activation queue lets the funds already received
    # reach the booklets behind it now, not at some later payment.
    add_activations(builder, evolve(envelope, builder.events[-1]))
    return builder.events


# ------------------------------------------------------------------- as a scan sees it


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
    blocked: bool = False  # reported by the issuer (`BookletBlocked`)
    activated_at: datetime | None = None  # the earliest activation (None: before it was kept)
    # the redeemer applied the block in the stream that decides the booklet's scans
    # (`BookletBlockApplied`, `passnum.ledger.voucher.block_to_apply`)
    block_applied: bool = False


def evolve_booklet_facts(booklet: BookletFacts | None, event: Event) -> BookletFacts | None:
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
    if isinstance(event, BookletBlockApplied):
        return replace(booklet, block_applied=True)
    return booklet


def in_perimeter(perimeter: Sequence[str], address_code: str) -> bool:
    """Empty perimeter: everywhere. Otherwise the venue's commune code must be listed, or
    its department (2 characters, 3 for overseas departments 97x)."""
    if not perimeter:
        return True
    department = address_code[:3] if address_code.startswith("97") else address_code[:2]
    return address_code in perimeter or department in perimeter
