"""Reading the event topics fast with kafka-python: manual assignment, no consumer group,
large fetches, and the end of each partition taken from the Fetch high-water mark (never
`end_offsets()`, which Tansu answers wrongly; see docs/broker.md).

`passnum.log.read_to_end` yields one `Record` per message; the replay reads tens of
millions of records, so here whole poll batches are handed over as kafka-python's own
`ConsumerRecord` lists, with no copy.
"""

from __future__ import annotations

import time
from typing import Any, Iterator, Mapping

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from passnum.log import (
    HighWaterTracker,
    PartitionKey,
    ReadStalled,
    make_consumer,
    seek_to_start,
    topic_partitions,
)
from passnum.settings import Settings

# Measured on this machine (bench/audit_replay.py): beyond these sizes the rate is flat.
FETCH_MAX_BYTES = 64 * 1024 * 1024
MAX_PARTITION_FETCH_BYTES = 16 * 1024 * 1024
MAX_POLL_RECORDS = 50_000
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
POLL_TIMEOUT_MILLISECONDS = 200
STALL_TIMEOUT_SECONDS = 30.0
READ_MAX_SECONDS = 3_600.0

READER_CONFIGURATION: dict[str, Any] = {
    "fetch_max_bytes": FETCH_MAX_BYTES,
    "max_partition_fetch_bytes": MAX_PARTITION_FETCH_BYTES,
    "max_poll_records": MAX_POLL_RECORDS,
    "receive_buffer_bytes": RECEIVE_BUFFER_BYTES,
    # A start offset outside the log is an error, never a silent jump elsewhere.
    "auto_offset_reset": "none",
    # CRCs are checked (crc32c is installed, so this costs little): a corrupted batch must
    # fail the read, not reach the chain check as a "modified event".
    "check_crcs": True,
}


def partitions_of(settings: Settings, topic_names: list[str]) -> list[PartitionKey]:
    consumer = make_consumer(settings, **READER_CONFIGURATION)
    try:
        return [(p.topic, p.partition) for p in topic_partitions(consumer, topic_names)]
    finally:
        consumer.close(autocommit=False)


def read_batches(settings: Settings, topic_names: list[str], *,
                 partitions: list[PartitionKey] | None = None,
                 start_offsets: Mapping[PartitionKey, int] | None = None,
                 ends: dict[PartitionKey, int] | None = None,
                 stall_timeout_seconds: float = STALL_TIMEOUT_SECONDS,
                 max_seconds: float = READ_MAX_SECONDS) -> Iterator[list[ConsumerRecord]]:
    """Lists of records, each from one partition in offset order, from `start_offsets`
    (default 0) to each partition's high-water mark as first seen (a consistent cut that
    ends even while producers write). When `ends` is given, it receives the end offset of
    every partition read, so that a follower can continue from there."""
    consumer = make_consumer(settings, **READER_CONFIGURATION)
    try:
        if partitions is None:
            assigned = topic_partitions(consumer, topic_names)
        else:
            assigned = [TopicPartition(topic, number) for topic, number in partitions]
        consumer.assign(assigned)
        starts = seek_to_start(consumer, assigned, start_offsets)
        tracker = HighWaterTracker(consumer, assigned, snapshot=True, start_offsets=starts)
        yield from _poll_batches(consumer, tracker, stall_timeout_seconds, max_seconds)
        if ends is not None:
            for partition, target in tracker.targets.items():
                ends[(partition.topic, partition.partition)] = int(target or 0)
    finally:
        consumer.close(autocommit=False)


def _poll_batches(consumer: Any, tracker: HighWaterTracker, stall_timeout_seconds: float,
                  max_seconds: float) -> Iterator[list[ConsumerRecord]]:
    started = last_progress = time.monotonic()
    while not tracker.done():
        now = time.monotonic()
        if now - last_progress > stall_timeout_seconds:
            raise ReadStalled(f"no progress for {stall_timeout_seconds} s: {tracker.unfinished()}")
        if now - started > max_seconds:
            raise ReadStalled(f"not at the end after {max_seconds} s: {tracker.unfinished()}")
        polled = consumer.poll(timeout_ms=POLL_TIMEOUT_MILLISECONDS)
        # Targets first: the Fetch response that carried these records also carried the
        # high-water mark that tells which of them are within the cut.
        progressed = tracker.refresh_targets()
        for partition, messages in polled.items():
            if not messages:
                continue
            progressed = True
            target = tracker.targets[partition]
            if target is not None and messages[-1].offset >= target:
                messages = [message for message in messages if message.offset < target]
            if messages:
                yield messages
        progressed = tracker.mark_finished() or progressed
        if progressed:
            last_progress = time.monotonic()
