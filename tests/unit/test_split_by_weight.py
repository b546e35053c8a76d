"""Transactions bounded by expected events: passnum.core.processing.split_by_weight."""

from __future__ import annotations

from datetime import datetime, timezone

from passnum.core.codec import encode
from passnum.core.processing import InputRecord, split_by_weight
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from passnum.ledger.envelope import Policy
from schemas.messages import OrderBooklets, RecordFundsReceived
from services.issuer.handler import IssuerHandler

AT = datetime(2026, 3, 1, tzinfo=timezone.utc)
TOPOLOGY = topology_for(Settings())
HANDLER = IssuerHandler(TOPOLOGY, Policy(grace_days_after_year_end=31))


def record(offset: int, value: bytes) -> InputRecord:
    return InputRecord(TOPOLOGY.issuer_commands.name, 0, offset, b"k", value)


def order(offset: int, booklets: int) -> InputRecord:
    return record(offset, encode(OrderBooklets(request_id=f"o{offset}", occurred_at=AT,
                                               siren="552100554", booklet_count=booklets)))


def funds(offset: int) -> InputRecord:
    return record(offset, encode(RecordFundsReceived(
        request_id=f"f{offset}", occurred_at=AT, siren="552100554", face_value_cents=100,
        payment_reference="p")))


def offsets(chunks: list[list[InputRecord]]) -> list[list[int]]:
    return [[r.offset for r in chunk] for chunk in chunks]


def test_orders_are_cut_where_their_booklets_would_exceed_the_bound() -> None:
    records = [order(0, 600), funds(1), order(2, 400), order(3, 1), funds(4)]
    assert offsets(split_by_weight(HANDLER, records, 1000)) == [[0, 1], [2, 3, 4]]


def test_a_command_heavier_than_the_bound_is_a_transaction_of_its_own() -> None:
    records = [funds(0), order(1, 5000), funds(2)]
    assert offsets(split_by_weight(HANDLER, records, 1000)) == [[0], [1], [2]]


def test_undecodable_records_weigh_one_and_keep_their_place() -> None:
    records = [order(0, 999), record(1, b"\xff not json"), record(2, b"{}")]
    assert offsets(split_by_weight(HANDLER, records, 1000)) == [[0, 1], [2]]


def test_nothing_is_lost_or_reordered() -> None:
    records = [order(index, 1 + (index * 37) % 900) for index in range(200)]
    chunks = split_by_weight(HANDLER, records, 2000)
    assert [r for chunk in chunks for r in chunk] == records
    assert all(sum(1 + (r.offset * 37) % 900 for r in chunk) <= 2000 for chunk in chunks)
