"""Reading up to a cut (passnum.core.log.poll_batches_until_finished), the one loop under the
tools' `read_to_end` and the auditor's `read_batches`: the records past a partition's end are
left out, a list within the end is handed over as the poll brought it (the auditor pays
nothing per record), and a read that makes no progress stops. A fake kafka-python consumer:
no broker here (tests/integration/test_broker.py reads a real one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import TopicPartition

from passnum.core.log import (
    HighWaterTracker,
    ReadStalled,
    poll_batches_until_finished,
    poll_until_finished,
)

FIRST, SECOND = TopicPartition("events", 0), TopicPartition("events", 1)


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = b"v"
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp: int = 0


def _messages(partition: TopicPartition, offsets: range) -> list[Message]:
    return [Message(partition.topic, partition.partition, offset) for offset in offsets]


class FakeConsumer:
    """Hands out the scripted polls in turn (then nothing), with fixed high-water marks."""

    def __init__(self, polls: list[dict[TopicPartition, list[Message]]],
                 high_water: dict[TopicPartition, int]) -> None:
        self.polls = polls
        self.high_water = high_water
        self.positions = dict.fromkeys(high_water, 0)
        self.paused: list[TopicPartition] = []

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Message]]:
        polled = self.polls.pop(0) if self.polls else {}
        for partition, messages in polled.items():
            if messages:
                self.positions[partition] = messages[-1].offset + 1
        return polled

    def highwater(self, partition: TopicPartition) -> int:
        return self.high_water[partition]

    def position(self, partition: TopicPartition) -> int:
        return self.positions[partition]

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.extend(partitions)


def _tracker(consumer: Any) -> HighWaterTracker:
    partitions = list(consumer.high_water)
    return HighWaterTracker(consumer, partitions, snapshot=True,
                            start_offsets=dict.fromkeys(partitions, 0))


def _batches(consumer: Any, stall_timeout_seconds: float = 5) -> list[list[Message]]:
    return list(poll_batches_until_finished(consumer, _tracker(consumer),
                                            stall_timeout_seconds, max_seconds=5))


def test_records_past_the_end_are_left_out_and_lists_within_it_are_not_copied() -> None:
    within, crossing, beyond = (_messages(FIRST, range(0, 3)), _messages(SECOND, range(0, 4)),
                                _messages(FIRST, range(3, 5)))
    consumer = FakeConsumer([{FIRST: within, SECOND: crossing}, {FIRST: beyond}],
                            {FIRST: 4, SECOND: 2})
    batches = _batches(consumer)
    assert [[(m.partition, m.offset) for m in batch] for batch in batches] == [
        [(0, 0), (0, 1), (0, 2)], [(1, 0), (1, 1)], [(0, 3)]]
    assert batches[0] is within  # handed over as polled: no work per record
    assert set(consumer.paused) == {FIRST, SECOND}


def test_the_tools_read_the_same_records_one_by_one() -> None:
    def consumer() -> FakeConsumer:
        return FakeConsumer([{FIRST: _messages(FIRST, range(0, 3)),
                              SECOND: _messages(SECOND, range(0, 2))}], {FIRST: 2, SECOND: 2})

    reading: Any = consumer()
    records = list(poll_until_finished(reading, _tracker(reading), stall_timeout_seconds=5,
                                       max_seconds=5))
    batches = _batches(consumer())
    assert [(record.partition, record.offset) for record in records] == [
        (message.partition, message.offset) for batch in batches for message in batch] == [
        (0, 0), (0, 1), (1, 0), (1, 1)]


def test_a_read_that_makes_no_progress_stops() -> None:
    class Silent(FakeConsumer):
        def highwater(self, partition: TopicPartition) -> Any:
            return None  # no Fetch response yet

    consumer = Silent([], {FIRST: 1})
    with pytest.raises(ReadStalled, match="no progress"):
        _batches(consumer, stall_timeout_seconds=0.05)
