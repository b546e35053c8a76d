"""Reading the event topics fast: manual assignment, no consumer group, large fetches, and
the end of each partition taken from the Fetch high-water mark (never `end_offsets()`,
which Tansu answers wrongly; see docs/broker.md).

Two readers, one rule (the first high-water mark seen fixes each partition's end):
- `read_record_batches`, the replay's bulk path: aiokafka, whose record batches are parsed
  in C. It hands over whole record batches (lists of aiokafka's C `DefaultRecord`) rather
  than one `ConsumerRecord` per message, and fetches in a thread of its own so that
  waiting for the broker overlaps with folding. Measured on the same broker in the same
  run (bench/audit_replay.py, docs/auditor.md): about 2x the CPU rate of aiokafka's
  `getmany` and 10x kafka-python's pure-Python record parsing.
- `read_batches`, kafka-python `ConsumerRecord` lists: the second read that names events,
  and the tools that want kafka-python's records.
"""

from __future__ import annotations

import asyncio
import gc
import queue
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from aiokafka import errors as _aiokafka_errors
from aiokafka.consumer import fetcher as _aiokafka_fetcher
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from passnum.core.log import (
    FETCH_MAX_WAIT_MILLISECONDS,
    HighWaterTracker,
    PartitionKey,
    ReadStalled,
    POLL_TIMEOUT_MILLISECONDS,
    StartBeyondEnd,
    UnknownTopic,
    make_consumer,
    poll_batches_until_finished,
    seek_to_start,
    topic_partitions,
)
from passnum.core.settings import Settings

# Measured on this machine (bench/audit_replay.py): beyond these sizes the rate is flat.
FETCH_MAX_BYTES = 64 * 1024 * 1024
MAX_PARTITION_FETCH_BYTES = 16 * 1024 * 1024
MAX_POLL_RECORDS = 50_000
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
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
        yield from poll_batches_until_finished(consumer, tracker, stall_timeout_seconds,
                                               max_seconds)
        if ends is not None:
            for partition, target in tracker.targets.items():
                ends[(partition.topic, partition.partition)] = int(target or 0)
    finally:
        consumer.close(autocommit=False)


# ------------------------------------------------------------------ the bulk path (aiokafka)

# Batches waiting between the fetching thread and the fold: bounds the memory in flight
# (each holds at most one fetch's records).
QUEUE_BATCHES = 64
AIOKAFKA_MAX_BATCHES_PER_CALL = 100_000
_END = object()


def _whole_batches(value: bytes | None) -> bytes | None:
    """Marks the auditor's consumers: their fetched records come as whole batches. Never
    called (the batch path bypasses deserialisers); any other consumer is untouched."""
    return value


class _BatchPartitionRecords(_aiokafka_fetcher.PartitionRecords):  # type: ignore[misc]
    """aiokafka's per-partition record iterator, yielding one list per record batch instead
    of one `ConsumerRecord` per record, for consumers marked with `_whole_batches`.

    Same rules as aiokafka's own `_unpack_records` (aiokafka==0.14.0, pinned): CRCs checked,
    control batches skipped (their offsets still advance the position), records below the
    fetch offset dropped. The auditor reads with read_uncommitted, like its kafka-python
    reader did, so aborted-transaction filtering does not apply."""

    def _unpack_records(self):  # type: ignore[no-untyped-def]
        if self._value_deserializer is not _whole_batches:
            yield from super()._unpack_records()
            return
        records, partition = self._records, self._tp
        while records.has_next():
            batch = records.next_batch()
            if self._check_crcs and not batch.validate_crc():
                raise _aiokafka_errors.CorruptRecordException(f"Invalid CRC - {partition}")
            if batch.is_control_batch:
                self.next_fetch_offset = batch.next_offset
                continue
            content = list(batch)
            if content and content[0].offset < self.next_fetch_offset:
                content = [r for r in content if r.offset >= self.next_fetch_offset]
            self.next_fetch_offset = batch.next_offset
            if content:
                yield content


# Installed once: the fetcher looks the class up by name when a fetch response arrives.
if _aiokafka_fetcher.PartitionRecords is not _BatchPartitionRecords:
    _aiokafka_fetcher.PartitionRecords = _BatchPartitionRecords


RecordBatch = tuple[str, int, list]  # topic, partition, records (offset, value, headers...)


def read_record_batches(settings: Settings, topic_names: list[str], *,
                        start_offsets: Mapping[PartitionKey, int] | None = None,
                        ends: dict[PartitionKey, int] | None = None,
                        partitions: list[PartitionKey] | None = None,
                        stall_timeout_seconds: float = STALL_TIMEOUT_SECONDS,
                        max_seconds: float = READ_MAX_SECONDS) -> Iterator[RecordBatch]:
    """(topic, partition, records) from `start_offsets` (default 0) to each partition's
    first-seen Fetch high-water mark; records in offset order within a partition. `ends`
    receives each partition's end offset. A fetching thread runs ahead by at most
    `QUEUE_BATCHES` batches; leaving the loop early stops it."""
    reader = _BatchReader(settings, topic_names, partitions, start_offsets or {},
                          stall_timeout_seconds, max_seconds)
    thread = threading.Thread(target=reader.run, name="audit-fetch", daemon=True)
    thread.start()
    try:
        while True:
            item = reader.queue.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
        if ends is not None:
            ends.update(reader.ends)
    finally:
        reader.stopping.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                reader.queue.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


class _BatchReader:
    def __init__(self, settings: Settings, topic_names: list[str],
                 partitions: list[PartitionKey] | None, start_offsets: Mapping[PartitionKey, int],
                 stall_timeout_seconds: float, max_seconds: float) -> None:
        self.settings, self.topic_names, self.partitions = settings, topic_names, partitions
        self.start_offsets = start_offsets
        self.stall_timeout_seconds, self.max_seconds = stall_timeout_seconds, max_seconds
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
        self.stopping = threading.Event()
        self.ends: dict[PartitionKey, int] = {}

    def run(self) -> None:
        try:
            asyncio.run(self._read())
            self._put(_END)
        except BaseException as error:  # noqa: BLE001 (raised in the reading thread)
            self._put(error)

    def _put(self, item: object) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    async def _read(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka import TopicPartition as AioPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            client_id=f"{self.settings.topic_prefix}-auditor", group_id=None,
            enable_auto_commit=False, auto_offset_reset="none", check_crcs=True,
            fetch_max_bytes=FETCH_MAX_BYTES, max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MILLISECONDS,
            max_poll_records=AIOKAFKA_MAX_BATCHES_PER_CALL,
            value_deserializer=_whole_batches)
        await consumer.start()
        try:
            places = self.partitions or await _partitions_of(consumer, self.topic_names)
            assigned = [AioPartition(topic, number) for topic, number in places]
            consumer.assign(assigned)
            starts = {}
            for partition in assigned:
                starts[partition] = self.start_offsets.get(
                    (partition.topic, partition.partition), 0)
                consumer.seek(partition, starts[partition])
            await self._drain(consumer, assigned, starts)
        finally:
            await consumer.stop()

    async def _drain(self, consumer: Any, assigned: list, starts: dict) -> None:
        targets: dict = dict.fromkeys(assigned)
        finished: set = set()
        started = last_progress = time.monotonic()
        while len(finished) < len(assigned):
            now = time.monotonic()
            if now - last_progress > self.stall_timeout_seconds:
                raise ReadStalled(f"no progress for {self.stall_timeout_seconds} s: "
                                  f"{_unfinished(targets, finished)}")
            if now - started > self.max_seconds:
                raise ReadStalled(f"not at the end after {self.max_seconds} s: "
                                  f"{_unfinished(targets, finished)}")
            fetched = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MILLISECONDS)
            # Targets first: the Fetch response that carried these records also carried the
            # high-water mark that tells which of them are within the cut.
            for partition, target in targets.items():
                if target is None:
                    high_water = consumer.highwater(partition)
                    if high_water is not None:
                        if starts[partition] > high_water:
                            raise StartBeyondEnd(
                                f"{partition.topic}[{partition.partition}]: start offset "
                                f"{starts[partition]} is past the end {high_water}")
                        targets[partition] = high_water
                        last_progress = time.monotonic()
            for partition, batches in fetched.items():
                target = targets[partition]
                for records in batches:
                    if target is not None and records[-1].offset >= target:
                        records = [r for r in records if r.offset < target]
                    if records and not self._put((partition.topic, partition.partition,
                                                  records)):
                        return
                    last_progress = time.monotonic()
            for partition, target in targets.items():
                if partition in finished or target is None:
                    continue
                # The position steps over control records, which are never handed over.
                if await consumer.position(partition) >= target:
                    finished.add(partition)
                    consumer.pause(partition)
        self.ends.update({(p.topic, p.partition): int(t or 0) for p, t in targets.items()})


async def _partitions_of(consumer: Any, topic_names: list[str]) -> list[PartitionKey]:
    await consumer.topics()  # a metadata request for every topic
    places: list[PartitionKey] = []
    for name in topic_names:
        numbers = consumer.partitions_for_topic(name)
        if not numbers:
            raise UnknownTopic(f"topic {name!r} does not exist (create it with create_topics)")
        places.extend((name, number) for number in sorted(numbers))
    return places


def _unfinished(targets: dict, finished: set) -> str:
    return ", ".join(f"{p.topic}[{p.partition}] (end {t})" for p, t in targets.items()
                     if p not in finished)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while records are read and folded. The fold makes
    millions of short-lived objects (bytes, tuples, match objects) and no reference cycles
    worth waiting for, but each 700 allocations trigger a collection that walks the young
    objects, and every tenth of those the older ones, record batches waiting in the
    reader's queue included. Reference counting still frees everything at once; what a
    cycle might hold (an exception's traceback) is collected when the read ends.
    Measured: about 10 % of the read (docs/auditor.md)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
