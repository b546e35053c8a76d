"""The 87 partner collectivités of the programme each register, commit an envelope, order
booklets of varied sizes and pay (some in full, some in part, some twice, some not at all),
through the real broker and a real issuer worker. The log, read back from offset 0 with the
one codec, must account for every cent requested: face value ordered and issued, funds
received, fees (apart), and activations exactly as FIFO funding allows."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from passnum.core.codec import DecodeFailure, decode_event
from passnum.core.log import read_to_end
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import Partner, collectivites
from schemas.base import Command
from schemas.messages import FundEnvelope, OrderBooklets, RecordFundsReceived, RegisterCollectivite
from tests.integration.helpers import MARCH, scalar

pytestmark = pytest.mark.integration


@dataclass
class Plan:
    """What one collectivité asks for, and what the log must therefore show."""

    partner: Partner
    booklet_values: list[int] = field(default_factory=list)  # in issue order
    payments: list[tuple[int, int]] = field(default_factory=list)  # (face value, fees)
    commands: list[Command] = field(default_factory=list)
    payment_commands: list[Command] = field(default_factory=list)

    @property
    def ordered_cents(self) -> int:
        return sum(self.booklet_values)

    @property
    def received_cents(self) -> int:
        return sum(face for face, _ in self.payments)

    @property
    def fees_cents(self) -> int:
        return sum(fees for _, fees in self.payments)

    def expected_activation(self) -> tuple[int, int]:
        """(booklets, cents): the longest prefix of the issue order the funds cover. Worked
        out here independently of the issuer's own code."""
        booklets = cents = 0
        for value in self.booklet_values:
            if cents + value > self.received_cents:
                break
            booklets, cents = booklets + 1, cents + value
        return booklets, cents


def plan_for(partner: Partner, random_source: random.Random) -> Plan:
    plan = Plan(partner)
    tag = f"t87-{partner.siren}"
    orders = []
    for number in range(random_source.randint(1, 3)):
        vouchers = random_source.choice((5, 10))
        face_value = random_source.choice((1000, 1000, 1000, 800))
        count = random_source.randint(1, 40)
        orders.append(OrderBooklets(request_id=f"{tag}-order-{number}", occurred_at=MARCH,
                                    siren=partner.siren, booklet_count=count,
                                    vouchers_per_booklet=vouchers, face_value_cents=face_value))
        plan.booklet_values += [vouchers * face_value] * count
    margin = random_source.choice((0, 0, 12_345))
    plan.commands = [
        RegisterCollectivite(request_id=f"{tag}-register", occurred_at=MARCH,
                             siren=partner.siren, name=partner.name),
        FundEnvelope(request_id=f"{tag}-envelope", occurred_at=MARCH, siren=partner.siren,
                     committed_cents=plan.ordered_cents + margin),
        *orders,
    ]
    share = random_source.choice((0.0, 0.37, 0.5, 1.0, 1.0))
    first = int(plan.ordered_cents * share)
    amounts = [first] if random_source.random() < 0.5 else [first // 2, first - first // 2]
    for number, amount in enumerate(a for a in amounts if a > 0):
        plan.payments.append((amount, amount * 4 // 100))
        plan.payment_commands.append(RecordFundsReceived(
            request_id=f"{tag}-payment-{number}", occurred_at=MARCH, siren=partner.siren,
            face_value_cents=amount, fees_cents=amount * 4 // 100,
            payment_reference=f"OP-{partner.siren}-{number}"))
    return plan


@dataclass
class LogTotals:
    ordered_cents: int = 0
    ordered_booklets: int = 0
    issued_cents: int = 0
    issued_booklets: int = 0
    received_cents: int = 0
    fees_cents: int = 0
    activated_cents: int = 0
    activated_booklets: int = 0
    rejections: int = 0


def totals_from_log(settings) -> tuple[dict[str, LogTotals], set[str]]:
    totals: dict[str, LogTotals] = defaultdict(LogTotals)
    seen: set[str] = set()
    booklet_ids: set[str] = set()
    for record in read_to_end(settings, [topology_for(settings).issuer_events.name]):
        event = decode_event(record.value)
        assert not isinstance(event, DecodeFailure), event
        if event.event_id in seen:
            continue  # a re-published event (after a crash) is the same fact
        seen.add(event.event_id)
        row = totals[event.siren]
        if event.type == "booklets_ordered":
            row.ordered_booklets += event.booklet_count
            row.ordered_cents += (event.booklet_count * event.vouchers_per_booklet
                                  * event.face_value_cents)
        elif event.type == "booklet_issued":
            assert event.booklet_id not in booklet_ids, "a booklet id issued twice"
            booklet_ids.add(event.booklet_id)
            row.issued_booklets += 1
            row.issued_cents += event.voucher_count * event.face_value_cents
        elif event.type == "funds_received":
            row.received_cents += event.face_value_cents
            row.fees_cents += event.fees_cents
        elif event.type == "booklet_activated":
            row.activated_booklets += 1
            row.activated_cents += event.activated_cents
        elif event.type == "issuer_command_rejected":
            row.rejections += 1
    return totals, booklet_ids


def send_all(client: LedgerClient, commands: list[Command]) -> None:
    client.send(commands)
    outcomes = client.wait_for([c.request_id for c in commands], timeout_seconds=120)
    rejected = [e for events in outcomes.values() for e in events if "rejected" in e.type]
    assert not rejected, rejected[:3]


def test_87_collectivites_account_to_the_cent(ledger, start_worker) -> None:
    start_worker("issuer")
    random_source = random.Random(87)
    plans = [plan_for(partner, random_source) for partner in collectivites()]
    assert len(plans) == 87
    client = LedgerClient(ledger)
    send_all(client, [command for plan in plans for command in plan.commands])
    # Payments in a second wave, decided in later batches than the orders: the booklets
    # they activate are then not in the batch's memory, as in real life (days later).
    send_all(client, [command for plan in plans for command in plan.payment_commands])

    totals, booklet_ids = totals_from_log(ledger)
    assert set(totals) == {plan.partner.siren for plan in plans}
    for plan in plans:
        row = totals[plan.partner.siren]
        expected_booklets, expected_cents = plan.expected_activation()
        assert (row.ordered_booklets, row.ordered_cents) == (len(plan.booklet_values),
                                                             plan.ordered_cents)
        assert (row.issued_booklets, row.issued_cents) == (len(plan.booklet_values),
                                                           plan.ordered_cents)
        assert (row.received_cents, row.fees_cents) == (plan.received_cents, plan.fees_cents)
        assert (row.activated_booklets, row.activated_cents) == (expected_booklets,
                                                                 expected_cents)
        assert row.activated_cents <= row.received_cents
        assert row.rejections == 0

    grand = {name: sum(getattr(row, name) for row in totals.values())
             for name in ("ordered_cents", "received_cents", "fees_cents", "activated_cents")}
    assert grand == {
        "ordered_cents": sum(plan.ordered_cents for plan in plans),
        "received_cents": sum(plan.received_cents for plan in plans),
        "fees_cents": sum(plan.fees_cents for plan in plans),
        "activated_cents": sum(plan.expected_activation()[1] for plan in plans),
    }
    # Enough variety that the test means something: partial funding stops somewhere.
    assert any(0 < plan.expected_activation()[0] < len(plan.booklet_values) for plan in plans)
    assert any(not plan.payments for plan in plans)
    # The issuer's own state agrees with its log, activations from later batches included.
    assert scalar(ledger, "SELECT count(*) FROM issuer_booklets") == len(booklet_ids)
    assert scalar(ledger, "SELECT count(*) FROM issuer_booklets WHERE activated") == sum(
        plan.expected_activation()[0] for plan in plans)
