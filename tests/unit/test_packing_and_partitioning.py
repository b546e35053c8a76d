"""The packed outcome format, the fingerprint versions, and the publisher's partitioner."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from passnum.core.codec import (
    _legacy_request_fingerprint,
    fingerprint_matches,
    pack_outcome,
    request_fingerprint,
    unpack_outcome,
)
from passnum.core.publisher import partition_for_key
from schemas.messages import RedeemVoucher

EVENT = st.tuples(st.text(min_size=1, max_size=40), st.none() | st.binary(max_size=50),
                  st.binary(max_size=300), st.none() | st.binary(min_size=1, max_size=80))


@given(st.lists(EVENT, max_size=20))
def test_an_outcome_unpacks_to_what_was_packed(events: list) -> None:
    assert unpack_outcome(pack_outcome(events)) == events


@given(st.lists(EVENT, max_size=20))
def test_an_outcome_is_packed_in_the_documented_layout(events: list) -> None:
    # A 4-byte big-endian count, then per event topic, key, payload and chain link, each a
    # 4-byte big-endian length (-1 for none) and its bytes: the layout migration 0006 wrote
    # in SQL and the recorded outcomes keep.
    def field(value: bytes | None) -> bytes:
        return (-1).to_bytes(4, "big", signed=True) if value is None else (
            len(value).to_bytes(4, "big") + value)

    expected = len(events).to_bytes(4, "big") + b"".join(
        field(topic.encode()) + field(key) + field(payload) + field(link)
        for topic, key, payload, link in events)
    assert pack_outcome(events) == expected


def test_a_truncated_outcome_is_refused() -> None:
    packed = pack_outcome([("t", b"k", b"payload", b"link")])
    with pytest.raises(Exception):
        unpack_outcome(packed[:-1])


def _redeem(code: str, at: datetime) -> RedeemVoucher:
    return RedeemVoucher(request_id="r-1", occurred_at=at, code=code, siret="73282932000074")


def test_fingerprints_of_both_versions_match_the_same_request_only() -> None:
    first = _redeem("AAAA-BBBB-CCCC-DDDD-EEEE-F", datetime(2026, 3, 1, tzinfo=timezone.utc))
    retried = _redeem("AAAA-BBBB-CCCC-DDDD-EEEE-F", datetime(2026, 3, 2, tzinfo=timezone.utc))
    other = _redeem("AAAA-BBBB-CCCC-DDDD-EEEE-G", datetime(2026, 3, 1, tzinfo=timezone.utc))
    for recorded in (request_fingerprint(first), _legacy_request_fingerprint(first)):
        assert fingerprint_matches(recorded, retried)
        assert not fingerprint_matches(recorded, other)
    assert request_fingerprint(first) != _legacy_request_fingerprint(first)


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_the_publisher_partitions_keys_like_kafka_clients(key: bytes, count: int) -> None:
    # kafka-python's DefaultPartitioner: murmur2 of the serialised key, positive, modulo.
    expected = (kafka_python_murmur2(key) & 0x7FFFFFFF) % count
    assert partition_for_key(key, count) == expected
