"""The fast path must read exactly what the schemas define, and the benchmark's templates
must be the codec's bytes: otherwise a schema change would silently bypass validation."""

from __future__ import annotations

import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from passnum.core.codec import GENESIS_HASH, encode, next_link
from passnum.ledger.time import FRANCE
from schemas import messages
from services.auditor import wire
from services.auditor.chain import DUPLICATE, NEW, REJECTED, ChainVerifier

CLASSES = {"voucher_redeemed": messages.VoucherRedeemed,
           "booklet_issued": messages.BookletIssued,
           "booklet_activated": messages.BookletActivated,
           "redemption_rejected": messages.RedemptionRejected,
           "voucher_checked": messages.VoucherChecked}


@pytest.mark.parametrize("event_type", sorted(wire.HOT_FIELDS))
def test_hot_fields_are_the_schema_fields(event_type: str) -> None:
    assert wire.HOT_FIELDS[event_type] == frozenset(CLASSES[event_type].model_fields)


def test_bench_templates_are_the_codec_bytes() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench import audit_replay as bench

    at = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
    redeemed = messages.VoucherRedeemed(
        event_id="e", request_id="r", occurred_at=at, siret="73282932000074",
        siren="123456789", booklet_id="123456789-0000001", voucher_id="123456789-0000001-01",
        face_value_cents=1000)
    assert bench.voucher_redeemed_bytes("e", "r", bench.iso(at), "73282932000074", "123456789",
                                        "123456789-0000001", "123456789-0000001-01") == encode(redeemed)
    for moment in (at, datetime(2026, 7, 14, 23, 30, tzinfo=timezone.utc)):  # +01:00, +02:00
        in_france = redeemed.model_copy(update={"occurred_at": moment.astimezone(FRANCE)})
        assert bench.voucher_redeemed_bytes(
            "e", "r", bench.iso_in_france(moment), "73282932000074", "123456789",
            "123456789-0000001", "123456789-0000001-01") == encode(in_france)
    issued = messages.BookletIssued(
        event_id="e", request_id="r", occurred_at=at, siren="123456789", order_id="o",
        booklet_id="123456789-0000001", voucher_count=10, face_value_cents=1000,
        target_group="pic", perimeter=(), valid_from=date(2026, 1, 1),
        valid_until=date(2026, 12, 31), grace_until=date(2027, 1, 31))
    assert bench.booklet_issued_bytes("e", "r", bench.iso(at), "123456789", "o",
                                      "123456789-0000001", 10) == encode(issued)


def test_instants_parse_like_datetime() -> None:
    for text in ("2026-03-02T10:00:00Z", "2026-03-02T11:00:00+01:00",
                 "2026-03-02T10:00:00.250000Z"):
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        assert wire.instant_micros(text) == wire.micros_of(moment)
    with pytest.raises(wire.InvalidEvent):
        wire.instant_micros("2026-03-02T10:00:00")


def test_chain_verifier_tells_new_duplicate_and_rejected() -> None:
    chains = ChainVerifier()
    first = next_link("s", 1, GENESIS_HASH, b"one")
    second = next_link("s", 2, first.hash, b"two")
    assert chains.admit("s", 2, second.previous_hash, second.hash, b"two", "t", 0, 1) == NEW
    assert chains.admit("s", 1, first.previous_hash, first.hash, b"one", "t", 1, 0) == NEW
    assert chains.admit("s", 1, first.previous_hash, first.hash, b"one", "t", 1, 5) == DUPLICATE
    assert chains.admit("s", 1, first.previous_hash, first.hash, b"ONE", "t", 1, 6) == REJECTED
    assert [f.code for f in chains.finish()] == ["altered_event"]
    third = next_link("s", 4, second.hash, b"four")  # links to #2: #3 was deleted
    chains.admit("s", 4, third.previous_hash, third.hash, b"four", "t", 0, 2)
    assert any("s#3 is missing" in f.detail for f in chains.finish())


def _batch_bytes(base_offset: int, values: list[bytes]) -> bytes:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=1, key=None, value=value,
                       headers=[("passnum-chain", b"link")])
    raw = bytearray(builder.build())
    raw[0:8] = base_offset.to_bytes(8, "big")  # the broker assigns the base offset
    # the CRC covers what follows it, not the base offset: the batch stays valid
    return bytes(raw)


def test_the_bulk_reader_hands_over_whole_batches_and_leaves_other_consumers_alone() -> None:
    from aiokafka.consumer import fetcher
    from aiokafka.record.memory_records import MemoryRecords
    from aiokafka.structs import TopicPartition

    from services.auditor import reader

    assert fetcher.PartitionRecords is reader._BatchPartitionRecords
    data = _batch_bytes(0, [b"a", b"b", b"c"]) + _batch_bytes(3, [b"d", b"e"])

    def records(value_deserializer, fetch_offset: int = 0) -> list:  # type: ignore[no-untyped-def]
        return list(fetcher.PartitionRecords(
            TopicPartition("t", 0), MemoryRecords(data), None, fetch_offset, None,
            value_deserializer, True, 0))

    batches = records(reader._whole_batches, fetch_offset=1)
    assert [[(r.offset, r.value, r.headers) for r in batch] for batch in batches] == [
        [(1, b"b", [("passnum-chain", b"link")]), (2, b"c", [("passnum-chain", b"link")])],
        [(3, b"d", [("passnum-chain", b"link")]), (4, b"e", [("passnum-chain", b"link")])]]
    plain = records(None)
    assert [(m.offset, m.value) for m in plain] == [(0, b"a"), (1, b"b"), (2, b"c"),
                                                    (3, b"d"), (4, b"e")]
    corrupted = bytearray(data)
    corrupted[-1] ^= 0xFF
    data = bytes(corrupted)
    with pytest.raises(Exception, match="CRC"):
        records(reader._whole_batches)


@pytest.mark.parametrize("event_id", [
    "-0000000-0000-5000-8000-000000000000",  # a sign: int() read it as negative
    "+0000000-0000-5000-8000-000000000000",
    "0000_000-0000-5000-8000-000000000000",  # underscores, spaces, other digits
    " 0000000-0000-5000-8000-000000000000",
    "\u0663" * 8 + "-0000-5000-8000-000000000000",
])
def test_event_fingerprints_are_64_bit_whatever_the_id(event_id: str) -> None:
    """A settlement statement may list any id the schema allows: its fingerprint must fit
    the 64-bit columns (a negative one crashed the replay with OverflowError), and an id
    that is not plain hex is hashed, not read as a number."""
    fingerprint = wire.event_fingerprint(event_id)
    assert 0 < fingerprint < 1 << 64
    plain = "00000000-0000-5000-8000-000000000000"
    assert fingerprint != wire.event_fingerprint(plain)
