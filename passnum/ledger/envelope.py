"""The envelope aggregate: one per collectivité. Registration, funding, orders and the
activation order of its booklets.

`decide_*(envelope, command[, policy]) -> events` and `evolve(envelope, event) -> envelope`.
Pure: time and ids come from the command. The issuer decides with these; the auditor folds
the log with the same `evolve` (`services.auditor.invariants`).

Funding invariant (checked here at decision time and again by the auditor):
    per collectivité, face value of activated vouchers <= funds received.
Activation order: booklets are activated in issue order (booklet sequence), first in,
first out; a booklet that the remaining funds cannot fully cover stops the activation, so
a later, cheaper booklet never jumps the queue. Booklets blocked before activation are
skipped and consume no funds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Sequence

from passnum.ledger.identity import (
    booklet_id_for,
    booklet_sequence,
    event_id_for,
    event_ids_for,
)
from schemas.base import CENTS_MAX, Event
from schemas.messages import (
    BookletActivated,
    BookletBlocked,
    BookletIssued,
    BookletsOrdered,
    CollectiviteRegistered,
    EnvelopeFunded,
    FundEnvelope,
    FundsReceived,
    IssuerCommandRejected,
    OrderBooklets,
    RecordFundsReceived,
    RegisterCollectivite,
)

ORIGIN = "issuer"
MAXIMUM_BOOKLET_SEQUENCE = 9_999_999

# Rejection reasons, in the order in which they are checked (first failing one wins).
REJECTION_PRECEDENCE = (
    "invalid_siren",
    "already_registered",
    "unknown_collectivite",
    "invalid_framing",
    "over_cap",
    "over_envelope",
    "total_exceeds_limit",
    "booklet_numbering_exhausted",
    "unknown_booklet",
    "booklet_blocked",
    "already_handed_out",
)


@dataclass(frozen=True)
class Policy:
    grace_days_after_year_end: int = 31
    cap_per_collectivite_cents: int = 300_000_000  # 3 M€ (2020 call for projects)


@dataclass(frozen=True)
class Order:
    order_id: str
    first_sequence: int
    booklet_count: int
    booklet_value_cents: int  # vouchers per booklet x face value


@dataclass(frozen=True)
class Envelope:
    siren: str
    name: str = ""
    registered: bool = False
    default_vouchers_per_booklet: int = 10
    default_face_value_cents: int = 1000
    committed_cents: int = 0
    received_cents: int = 0
    fees_received_cents: int = 0
    ordered_cents: int = 0
    activated_cents: int = 0
    next_sequence: int = 1
    # Every sequence below this one is activated or was skipped because blocked inactive.
    activation_cursor: int = 1
    orders: tuple[Order, ...] = ()
    blocked_inactive: frozenset[int] = field(default_factory=frozenset)


def siren_is_valid(siren: str) -> bool:
    """A SIREN is 9 digits with a Luhn check digit (python-stdnum implements it)."""
    from stdnum.fr import siren as stdnum_siren

    return bool(stdnum_siren.is_valid(siren))


# ------------------------------------------------------------------------------ evolve


def evolve(envelope: Envelope, event: Event) -> Envelope:
    """Fold one issuer event into the envelope it belongs to."""
    if isinstance(event, CollectiviteRegistered):
        return replace(
            envelope,
            name=event.name,
            registered=True,
            default_vouchers_per_booklet=event.default_vouchers_per_booklet,
            default_face_value_cents=event.default_face_value_cents,
        )
    if isinstance(event, EnvelopeFunded):
        return replace(envelope, committed_cents=event.total_committed_cents)
    if isinstance(event, FundsReceived):
        return replace(
            envelope,
            received_cents=envelope.received_cents + event.face_value_cents,
            fees_received_cents=envelope.fees_received_cents + event.fees_cents,
        )
    if isinstance(event, BookletsOrdered):
        booklet_value = event.vouchers_per_booklet * event.face_value_cents
        order = Order(event.order_id, envelope.next_sequence, event.booklet_count, booklet_value)
        return replace(
            envelope,
            orders=envelope.orders + (order,),
            next_sequence=envelope.next_sequence + event.booklet_count,
            ordered_cents=envelope.ordered_cents + booklet_value * event.booklet_count,
        )
    if isinstance(event, BookletActivated):
        sequence = booklet_sequence(event.booklet_id)
        return _advance_cursor(
            replaced(envelope, activated_cents=envelope.activated_cents + event.activated_cents,
                     activation_cursor=max(envelope.activation_cursor, sequence + 1))
        )
    if isinstance(event, BookletBlocked):
        sequence = booklet_sequence(event.booklet_id)
        if sequence >= envelope.activation_cursor:
            blocked = envelope.blocked_inactive | {sequence}
            return _advance_cursor(replace(envelope, blocked_inactive=blocked))
    return envelope


def replaced(instance: Any, **changes: Any) -> Any:
    """`dataclasses.replace` for the ledger's frozen dataclasses, which have no
    `__post_init__` and no field left out of `__init__`: the same value, without a call to
    `__init__` through keyword arguments (a fifth of the cost; an order of 1,000 booklets
    folds 1,000 activations into its envelope and 1,000 into its booklets)."""
    copy = object.__new__(instance.__class__)
    values = copy.__dict__
    values.update(instance.__dict__)
    values.update(changes)
    return copy


def _advance_cursor(envelope: Envelope) -> Envelope:
    """Skip booklets blocked before activation: they never consume funds."""
    cursor = envelope.activation_cursor
    while cursor in envelope.blocked_inactive:
        cursor += 1
    if cursor == envelope.activation_cursor:
        return envelope  # the common case: no copy (an order of 1000 folds 1000 of these)
    return replace(envelope, activation_cursor=cursor)


# ------------------------------------------------------------------------------ helpers


class IssuerEvents:
    """Builds the events of one decision with deterministic ids: (request_id, index)."""

    def __init__(self, command: object) -> None:
        self.command = command
        self.events: list[Event] = []

    def add(self, event_class: type[Event], **fields: Any) -> None:
        command = self.command
        self.events.append(event_class(
            event_id=event_id_for(ORIGIN, command.request_id, len(self.events)),  # type: ignore[attr-defined]
            request_id=command.request_id,  # type: ignore[attr-defined]
            occurred_at=command.occurred_at,  # type: ignore[attr-defined]
            **fields,
        ))

    def add_booklet_events(self, event_class: type[Event], siren: str,
                           sequences: Sequence[int], **fields: Any) -> None:
        """One event of `event_class` per booklet sequence (increasing), all with the same
        `fields`. The first is validated like any event; the others are copies of it that
        differ only in their event id and booklet id, valid by construction: the SIREN was
        validated in the first, the sequences lie within 1..MAXIMUM_BOOKLET_SEQUENCE
        (checked here on the first and the last), and `event_id_for` always gives a UUID.
        Validating each of them cost three times the copy (an order issues 1,000)."""
        if not sequences:
            return
        assert 1 <= sequences[0] <= sequences[-1] <= MAXIMUM_BOOKLET_SEQUENCE, (
            sequences[0], sequences[-1])
        command = self.command
        request_id: str = command.request_id  # type: ignore[attr-defined]
        event_ids = event_ids_for(ORIGIN, request_id, len(self.events), len(sequences))
        fields = {"siren": siren, "booklet_id": booklet_id_for(siren, sequences[0]), **fields}
        first = event_class(event_id=event_ids[0], request_id=request_id,
                            occurred_at=command.occurred_at,  # type: ignore[attr-defined]
                            **fields)
        append = self.events.append
        append(first)
        for event_id, sequence in zip(event_ids[1:], sequences[1:]):
            append(_copy_event(first, event_id, booklet_id_for(siren, sequence)))


_set_attribute = object.__setattr__


def _copy_event(template: Event, event_id: str, booklet_id: str) -> Event:
    """`template` with another event id and booklet id, without validation: what
    `template.model_copy(update=...)` gives, at a third of its cost. Equal to the event
    validated from the same fields (tests/unit/test_issuer_domain.py holds it so)."""
    copy = template.__class__.__new__(template.__class__)
    values = template.__dict__.copy()
    values["event_id"] = event_id
    values["booklet_id"] = booklet_id
    _set_attribute(copy, "__dict__", values)
    _set_attribute(copy, "__pydantic_fields_set__", template.__pydantic_fields_set__)
    _set_attribute(copy, "__pydantic_extra__", None)
    _set_attribute(copy, "__pydantic_private__", None)
    return copy


def issuer_rejection(command: object, siren: str, reason: str, detail: str = "") -> list[Event]:
    assert reason in REJECTION_PRECEDENCE or reason == "request_id_reused", reason
    builder = IssuerEvents(command)
    builder.add(IssuerCommandRejected, siren=siren, reason=reason, detail=detail,
                command_type=command.type)  # type: ignore[attr-defined]
    return builder.events


def _order_of_sequence(envelope: Envelope, sequence: int) -> Order:
    for order in reversed(envelope.orders):
        if order.first_sequence <= sequence:
            return order
    raise AssertionError(f"sequence {sequence} belongs to no order")


def activations_covered(envelope: Envelope) -> list[tuple[int, int]]:
    """(sequence, booklet value) of the booklets that the funds now cover, FIFO."""
    available = envelope.received_cents - envelope.activated_cents
    covered: list[tuple[int, int]] = []
    sequence = envelope.activation_cursor
    while sequence < envelope.next_sequence:
        if sequence in envelope.blocked_inactive:
            sequence += 1
            continue
        value = _order_of_sequence(envelope, sequence).booklet_value_cents
        if value > available:
            break
        covered.append((sequence, value))
        available -= value
        sequence += 1
    return covered


def add_activations(builder: IssuerEvents, envelope: Envelope) -> None:
    covered = activations_covered(envelope)
    start = 0
    while start < len(covered):  # runs of one booklet value: booklets of one order
        value, end = covered[start][1], start + 1
        while end < len(covered) and covered[end][1] == value:
            end += 1
        builder.add_booklet_events(BookletActivated, envelope.siren,
                                   [sequence for sequence, _ in covered[start:end]],
                                   activated_cents=value)
        start = end


# ------------------------------------------------------------------------------ deciders


def decide_register(envelope: Envelope, command: RegisterCollectivite) -> list[Event]:
    if not siren_is_valid(command.siren):
        return issuer_rejection(command, command.siren, "invalid_siren")
    if envelope.registered:
        return issuer_rejection(command, command.siren, "already_registered")
    builder = IssuerEvents(command)
    builder.add(CollectiviteRegistered, siren=command.siren, name=command.name,
                default_vouchers_per_booklet=command.default_vouchers_per_booklet,
                default_face_value_cents=command.default_face_value_cents)
    return builder.events


def decide_fund_envelope(envelope: Envelope, command: FundEnvelope, policy: Policy) -> list[Event]:
    if not envelope.registered:
        return issuer_rejection(command, command.siren, "unknown_collectivite")
    total = envelope.committed_cents + command.committed_cents
    if total > policy.cap_per_collectivite_cents:
        return issuer_rejection(command, command.siren, "over_cap",
                       f"{total} > {policy.cap_per_collectivite_cents}")
    builder = IssuerEvents(command)
    builder.add(EnvelopeFunded, siren=command.siren, committed_cents=command.committed_cents,
                total_committed_cents=total)
    return builder.events


def decide_funds_received(envelope: Envelope, command: RecordFundsReceived) -> list[Event]:
    if not envelope.registered:
        return issuer_rejection(command, command.siren, "unknown_collectivite")
    total = envelope.received_cents + command.face_value_cents
    if total > CENTS_MAX:
        # The running total is recorded in every FundsReceived: one the ledger cannot hold
        # is refused with its reason, never left to fail (and stop the issuer) at recording.
        return issuer_rejection(command, command.siren, "total_exceeds_limit",
                       f"received {envelope.received_cents} + {command.face_value_cents} "
                       f"> {CENTS_MAX}")
    builder = IssuerEvents(command)
    builder.add(FundsReceived, siren=command.siren, face_value_cents=command.face_value_cents,
                fees_cents=command.fees_cents, payment_reference=command.payment_reference,
                total_received_cents=total)
    add_activations(builder, evolve(envelope, builder.events[-1]))
    return builder.events


def validity_window(command: OrderBooklets, policy: Policy) -> tuple[date, date, date]:
    valid_from = command.valid_from or command.occurred_at.date()
    valid_until = command.valid_until or date(valid_from.year, 12, 31)
    grace_until = valid_until + timedelta(days=policy.grace_days_after_year_end)
    return valid_from, valid_until, grace_until


def decide_order(envelope: Envelope, command: OrderBooklets, policy: Policy) -> list[Event]:
    if not envelope.registered:
        return issuer_rejection(command, command.siren, "unknown_collectivite")
    valid_from, valid_until, grace_until = validity_window(command, policy)
    if valid_until < valid_from:
        return issuer_rejection(command, command.siren, "invalid_framing", "valid_until < valid_from")
    vouchers_per_booklet = command.vouchers_per_booklet or envelope.default_vouchers_per_booklet
    face_value_cents = command.face_value_cents or envelope.default_face_value_cents
    value = command.booklet_count * vouchers_per_booklet * face_value_cents
    if envelope.ordered_cents + value > envelope.committed_cents:
        return issuer_rejection(command, command.siren, "over_envelope",
                       f"ordered {envelope.ordered_cents} + {value} > {envelope.committed_cents}")
    if envelope.next_sequence + command.booklet_count > MAXIMUM_BOOKLET_SEQUENCE + 1:
        # Booklet ids and printed codes carry 7 digits of sequence per collectivité.
        return issuer_rejection(command, command.siren, "booklet_numbering_exhausted")
    builder = IssuerEvents(command)
    order_id = f"{command.siren}-order-{len(envelope.orders) + 1:05d}"
    framing = dict(face_value_cents=face_value_cents, target_group=command.target_group,
                   perimeter=command.perimeter, valid_from=valid_from, valid_until=valid_until,
                   grace_until=grace_until)
    builder.add(BookletsOrdered, siren=command.siren, order_id=order_id,
                booklet_count=command.booklet_count,
                vouchers_per_booklet=vouchers_per_booklet, **framing)
    ordered = evolve(envelope, builder.events[-1])
    builder.add_booklet_events(BookletIssued, command.siren,
                               range(envelope.next_sequence, ordered.next_sequence),
                               order_id=order_id, voucher_count=vouchers_per_booklet, **framing)
    add_activations(builder, ordered)
    return builder.events


