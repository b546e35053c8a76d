"""Reading and writing the log with kafka-python, for the tools and the auditor.

Where the end of a partition is: the high-water mark carried by every Fetch response.
We never ask ListOffsets (`end_offsets()`): Tansu 0.6.0 answers it with the base offset of
the last record batch plus one, which is too small after any multi-record batch, so a
reader stopping there would silently miss records. See docs/broker.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from passnum.core.settings import Settings

READ_STALL_TIMEOUT_SECONDS = 30.0
READ_MAX_SECONDS = 600.0
POLL_TIMEOUT_MILLISECONDS = 200
# The broker holds an empty fetch this long at most: short, so that reading to the end of
# an empty or fully read partition takes a fraction of a second, not the 500 ms default.
FETCH_MAX_WAIT_MILLISECONDS = 100
FETCH_MAX_BYTES = 64 * 1024 * 1024
MAX_PARTITION_FETCH_BYTES = 16 * 1024 * 1024
MAX_POLL_RECORDS = 10_000
HIGH_WATER_FETCH_BYTES = 64 * 1024

PartitionKey = tuple[str, int]


class LogReadError(RuntimeError):
    pass


class UnknownTopic(LogReadError):
    pass


class ReadStalled(LogReadError):
    """No progress towards the high-water mark for too long: the broker is not answering."""


class StartBeyondEnd(LogReadError):
    """A start offset lies past the partition's end: the caller's position is not in this log
    (e.g. the broker restarted with memory storage and lost it). Real Kafka answers such a
    fetch with OFFSET_OUT_OF_RANGE; Tansu 0.6.0 answers it with no records and no error."""


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer that waits for every in-sync replica (acks='all') and batches briefly."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.topic_prefix}-producer",
        "acks": "all",
        # Idempotence (kafka-python's default, stated here on purpose): a retried batch is not
        # written twice. kafka-python's InitProducerId works on Tansu 0.6.0 (aiokafka's does not).
        "enable_idempotence": True,
        "linger_ms": settings.producer_linger_milliseconds,
        "batch_size": settings.producer_max_batch_bytes,
        "max_request_size": max(settings.producer_max_batch_bytes, 1_048_576),
    }
    config.update(overrides)
    return KafkaProducer(**config)


def make_consumer(settings: Settings, **overrides: Any) -> KafkaConsumer:
    """A consumer with no group and no automatic commit: the reader decides where to seek."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.topic_prefix}-reader",
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # Reading must never create a topic: a typo would otherwise become an empty topic
        # with the broker's default partition count.
        "allow_auto_create_topics": False,
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MILLISECONDS,
        "fetch_max_bytes": FETCH_MAX_BYTES,
        "max_partition_fetch_bytes": MAX_PARTITION_FETCH_BYTES,
        "max_poll_records": MAX_POLL_RECORDS,
        "session_timeout_ms": int(settings.session_timeout_seconds * 1000),
        "heartbeat_interval_ms": int(settings.heartbeat_interval_seconds * 1000),
    }
    config.update(overrides)
    return KafkaConsumer(**config)


def topic_partitions(consumer: KafkaConsumer, topic_names: Iterable[str]) -> list[TopicPartition]:
    partitions: list[TopicPartition] = []
    for name in topic_names:
        numbers = consumer.partitions_for_topic(name)
        if not numbers:
            raise UnknownTopic(f"topic {name!r} does not exist (create it with create_topics)")
        partitions.extend(TopicPartition(name, number) for number in sorted(numbers))
    return partitions


def to_record(message: ConsumerRecord) -> Record:
    headers = tuple((name, value if value is not None else b"") for name, value in message.headers)
    return Record(topic=message.topic, partition=message.partition, offset=message.offset,
                  key=message.key, value=message.value, headers=headers,
                  timestamp_ms=message.timestamp)


class HighWaterTracker:
    """Per partition: where we are and where the end is, as Fetch responses report it.

    `snapshot=True` fixes each partition's end at the first high-water mark seen, so the
    read is a consistent cut that ends even while producers keep writing. Otherwise the
    end follows every newer high-water mark (catch up with a moving log)."""

    def __init__(self, consumer: KafkaConsumer, partitions: list[TopicPartition],
                 snapshot: bool, start_offsets: Mapping[TopicPartition, int]) -> None:
        self.consumer = consumer
        self.snapshot = snapshot
        self.start_offsets = start_offsets
        self.targets: dict[TopicPartition, int | None] = dict.fromkeys(partitions)
        self.finished: set[TopicPartition] = set()

    def refresh_targets(self) -> bool:
        """Take the high-water marks of the latest Fetch responses; True if any changed."""
        changed = False
        for partition, target in self.targets.items():
            if self.snapshot and target is not None:
                continue
            high_water = self.consumer.highwater(partition)
            if high_water is None or high_water == target:
                continue
            if target is None and self.start_offsets[partition] > high_water:
                raise StartBeyondEnd(
                    f"{partition.topic}[{partition.partition}]: start offset "
                    f"{self.start_offsets[partition]} is past the end {high_water}")
            self.targets[partition] = high_water
            changed = True
        return changed

    def mark_finished(self) -> bool:
        """Pause every partition that reached its end; True if any did just now."""
        newly_finished = []
        for partition, target in self.targets.items():
            if partition in self.finished or target is None:
                continue
            # `position` is local here (assigned, sought) and steps over transaction
            # markers, which occupy offsets but are never returned as records.
            if self.consumer.position(partition) >= target:
                newly_finished.append(partition)
        self.finished.update(newly_finished)
        if newly_finished:
            self.consumer.pause(*newly_finished)
        return bool(newly_finished)

    def done(self) -> bool:
        return len(self.finished) == len(self.targets)

    def unfinished(self) -> str:
        return ", ".join(f"{partition.topic}[{partition.partition}] at "
                         f"{self.consumer.position(partition)} of {self.targets[partition]}"
                         for partition in self.targets if partition not in self.finished)


def seek_to_start(consumer: KafkaConsumer, partitions: list[TopicPartition],
                  start_offsets: Mapping[PartitionKey, int] | None) -> dict[TopicPartition, int]:
    """Seek every partition to its start (0 unless given); return the starts."""
    starts: dict[TopicPartition, int] = {}
    for partition in partitions:
        place = (partition.topic, partition.partition)
        start = 0 if start_offsets is None else start_offsets.get(place, 0)
        consumer.seek(partition, start)
        starts[partition] = start
    return starts


def read_to_end(settings: Settings, topic_names: Iterable[str], *, until_high_water: bool = True,
                start_offsets: Mapping[PartitionKey, int] | None = None,
                stall_timeout_seconds: float = READ_STALL_TIMEOUT_SECONDS,
                max_seconds: float = READ_MAX_SECONDS,
                consumer_overrides: Mapping[str, Any] | None = None) -> Iterator[Record]:
    """Every record of every partition of the topics, from offset 0 (or `start_offsets`)
    to the end of each partition as the Fetch high-water mark gives it (never
    `end_offsets()`). Terminates on empty partitions. See `read_partitions_to_end` for the
    meaning of `until_high_water` and for the bounds."""
    consumer = make_reader(settings, consumer_overrides)
    try:
        partitions = topic_partitions(consumer, topic_names)
        yield from read_assigned_to_end(consumer, partitions, until_high_water=until_high_water,
                                        start_offsets=start_offsets,
                                        stall_timeout_seconds=stall_timeout_seconds,
                                        max_seconds=max_seconds)
    finally:
        consumer.close(autocommit=False)


def read_partitions_to_end(settings: Settings, partitions: Iterable[PartitionKey], *,
                           until_high_water: bool = True,
                           start_offsets: Mapping[PartitionKey, int] | None = None,
                           stall_timeout_seconds: float = READ_STALL_TIMEOUT_SECONDS,
                           max_seconds: float = READ_MAX_SECONDS,
                           consumer_overrides: Mapping[str, Any] | None = None) -> Iterator[Record]:
    """Records of the given (topic, partition) pairs from offset 0 (or `start_offsets`) to
    the end of each partition.

    The end is the high-water mark of the Fetch responses: with `until_high_water=True`
    the first one seen (a consistent cut, which ends even under concurrent writes); with
    False the latest one seen (catches up with a moving log). Records come in offset order
    within each partition; partitions are interleaved. An empty partition ends at once
    (its Fetch high-water mark is 0). Raises `ReadStalled` when nothing moves for
    `stall_timeout_seconds`, or when the end is not reached within `max_seconds`. A start
    offset outside the log raises (`StartBeyondEnd`, or Kafka's `OffsetOutOfRangeError`)
    rather than silently reading from elsewhere."""
    consumer = make_reader(settings, consumer_overrides)
    try:
        assigned = [TopicPartition(topic, partition) for topic, partition in partitions]
        yield from read_assigned_to_end(consumer, assigned, until_high_water=until_high_water,
                                        start_offsets=start_offsets,
                                        stall_timeout_seconds=stall_timeout_seconds,
                                        max_seconds=max_seconds)
    finally:
        consumer.close(autocommit=False)


def make_reader(settings: Settings, consumer_overrides: Mapping[str, Any] | None) -> KafkaConsumer:
    # "none": a start offset outside the log is an error, never a silent jump elsewhere.
    config: dict[str, Any] = {"auto_offset_reset": "none"}
    config.update(consumer_overrides or {})
    return make_consumer(settings, **config)


def read_assigned_to_end(consumer: KafkaConsumer, partitions: list[TopicPartition], *,
                         until_high_water: bool, start_offsets: Mapping[PartitionKey, int] | None,
                         stall_timeout_seconds: float, max_seconds: float) -> Iterator[Record]:
    consumer.assign(partitions)
    starts = seek_to_start(consumer, partitions, start_offsets)
    tracker = HighWaterTracker(consumer, partitions, snapshot=until_high_water,
                               start_offsets=starts)
    yield from poll_until_finished(consumer, tracker, stall_timeout_seconds, max_seconds)


def poll_until_finished(consumer: KafkaConsumer, tracker: HighWaterTracker,
                        stall_timeout_seconds: float, max_seconds: float) -> Iterator[Record]:
    for messages in poll_batches_until_finished(consumer, tracker, stall_timeout_seconds,
                                                max_seconds):
        for message in messages:
            yield to_record(message)


def poll_batches_until_finished(consumer: KafkaConsumer, tracker: HighWaterTracker,
                                stall_timeout_seconds: float,
                                max_seconds: float) -> Iterator[list[ConsumerRecord]]:
    """kafka-python's records as the polls bring them, a list per partition in offset order,
    up to the tracker's ends. The cut is applied to a list, not record by record: only a
    list that crosses its partition's end is copied, so the auditor's read
    (services/auditor/reader.py) pays nothing per record here."""
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


def fetch_high_water_marks(settings: Settings, topic_names: Iterable[str],
                           timeout_seconds: float = READ_STALL_TIMEOUT_SECONDS,
                           ) -> dict[PartitionKey, int]:
    """The high-water mark of every partition, from Fetch responses (not ListOffsets).

    One fetch per partition from offset 0 is enough: the response carries the mark
    whatever records it brings, and a partition is paused as soon as its mark is known."""
    # Small fetches: only the mark matters, the records that come with it are dropped.
    consumer = make_consumer(settings, max_partition_fetch_bytes=HIGH_WATER_FETCH_BYTES,
                             fetch_max_bytes=HIGH_WATER_FETCH_BYTES)
    try:
        partitions = topic_partitions(consumer, topic_names)
        consumer.assign(partitions)
        seek_to_start(consumer, partitions, None)
        marks: dict[PartitionKey, int] = {}
        deadline = time.monotonic() + timeout_seconds
        while len(marks) < len(partitions):
            if time.monotonic() > deadline:
                missing = [f"{partition.topic}[{partition.partition}]" for partition in partitions
                           if (partition.topic, partition.partition) not in marks]
                raise ReadStalled(f"no Fetch high-water mark within {timeout_seconds} s "
                                  f"for {', '.join(missing)}")
            consumer.poll(timeout_ms=POLL_TIMEOUT_MILLISECONDS)
            for partition in partitions:
                high_water = consumer.highwater(partition)
                if high_water is not None and (partition.topic, partition.partition) not in marks:
                    marks[(partition.topic, partition.partition)] = high_water
                    consumer.pause(partition)
        return marks
    finally:
        consumer.close(autocommit=False)
