"""Publication of decided events: record batches per output partition, acks from every
replica (acks=all), no idempotent producer.

Why not one `send` per event (faust's producer, or aiokafka's `send`): measured in the
redeemer worker, publishing cost about 95 µs per event that way, most of it per-message
bookkeeping; a batch built with `create_batch` and submitted with `send_batch` costs a
few µs per event. The partition of a keyed event is chosen exactly as every Kafka client's
default partitioner does (murmur2 of the key, modulo the topic's partition count), so the
events of one booklet land on the partition any other producer would pick for it. The HTTP
gateway sends the commands of an event-loop turn the same way (`BatchSender`), for the same
reason.

Duplicates are harmless by design: the outbox row is deleted only after every batch of it
was acknowledged, and a crash in between publishes the same bytes (same `event_id`, same
chain link) again, which every consumer recognises (docs/processing.md).
"""

from __future__ import annotations

import asyncio
import functools
import struct
from typing import Any, Callable, Protocol, Sequence, TypeVar

from aiokafka import AIOKafkaProducer

from passnum.core.processing import OutboxEvent
from passnum.core.settings import Settings


@functools.lru_cache(maxsize=65_536)
def partition_for_key(key: bytes, partition_count: int) -> int:
    """Kafka's default partitioner for a keyed record (Java client, kafka-python, aiokafka)."""
    return (murmur2(key) & 0x7FFFFFFF) % partition_count


_MASK = 0xFFFFFFFF
_MULTIPLIER = 0x5BD1E995
_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """MurmurHash2 as Kafka's clients compute it (`Utils.murmur2` of the Java client), the
    same value as aiokafka's pure-Python `murmur2` at a third of its cost: the 4-byte words
    are read in one `struct` call instead of byte by byte (every issued booklet's key is
    hashed; tests/unit/test_packing_and_partitioning.py holds the two equal)."""
    length = len(data)
    tail = length & 3
    body = length - tail
    value = (_SEED ^ length) & _MASK
    for (word,) in struct.iter_unpack("<I", data[:body]):
        word = (word * _MULTIPLIER) & _MASK
        word ^= word >> 24
        word = (word * _MULTIPLIER) & _MASK
        value = ((value * _MULTIPLIER) & _MASK) ^ word
    if tail == 3:
        value ^= data[body + 2] << 16
    if tail >= 2:
        value ^= data[body + 1] << 8
    if tail >= 1:
        value = ((value ^ data[body]) * _MULTIPLIER) & _MASK
    value ^= value >> 13
    value = (value * _MULTIPLIER) & _MASK
    return value ^ (value >> 15)


class OutgoingRecord(Protocol):
    """What `BatchSender` sends: an outbox event (`OutboxEvent`), or a command the HTTP
    gateway submits (`passnum.edge.http`)."""

    @property
    def topic(self) -> str: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def payload(self) -> bytes: ...

    def headers(self) -> list[tuple[str, bytes]]: ...


RecordT = TypeVar("RecordT", bound=OutgoingRecord)


class BatchSender:
    """Sends records as record batches, one partition after another, each record on the
    partition Kafka's default partitioner gives its key (records without a key take the
    partitions in turn), in their order within each partition. Asks a topic's partition
    count once. Shared by the worker's publisher and the HTTP gateway, which differ only in
    what they do with each batch's acknowledgement."""

    def __init__(self) -> None:
        self.partition_counts: dict[str, int] = {}
        self.unkeyed = 0  # round robin for records without a key (dead letters are keyed)

    async def send(self, producer: AIOKafkaProducer, records: Sequence[RecordT],
                   on_sent: Callable[[asyncio.Future[Any], Sequence[RecordT]], None]) -> None:
        """Submit `records`, and for each record batch, as soon as it is submitted, call
        `on_sent` with the future of its acknowledgement and the records it holds. Waits for
        no acknowledgement. An error (metadata, the producer) propagates; the batches
        submitted before it stay submitted, and were given to `on_sent`."""
        for (topic, partition), group in (await self._by_partition(producer, records)).items():
            batch = producer.create_batch()
            first = 0
            for index, record in enumerate(group):
                if batch.append(key=record.key, value=record.payload, timestamp=None,
                                headers=record.headers()) is None:
                    on_sent(await producer.send_batch(batch, topic, partition=partition),
                            group[first:index])
                    batch, first = producer.create_batch(), index
                    appended = batch.append(key=record.key, value=record.payload,
                                            timestamp=None, headers=record.headers())
                    assert appended is not None, "a record larger than a producer batch"
            on_sent(await producer.send_batch(batch, topic, partition=partition), group[first:])

    async def _by_partition(self, producer: AIOKafkaProducer, records: Sequence[RecordT]
                            ) -> dict[tuple[str, int], list[RecordT]]:
        """The records by (topic, partition), in their order, partitions in order of first
        appearance."""
        groups: dict[tuple[str, int], list[RecordT]] = {}
        counts = self.partition_counts
        for record in records:
            topic, key = record.topic, record.key
            count = counts.get(topic) or await self._partition_count(producer, topic)
            if key is None:
                self.unkeyed += 1
                partition = self.unkeyed % count
            else:
                partition = partition_for_key(key, count)
            group = groups.get((topic, partition))
            if group is None:
                groups[(topic, partition)] = group = []
            group.append(record)
        return groups

    async def _partition_count(self, producer: AIOKafkaProducer, topic: str) -> int:
        if topic not in self.partition_counts:
            self.partition_counts[topic] = len(await producer.partitions_for(topic))
        return self.partition_counts[topic]


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self.sender = BatchSender()

    async def start(self) -> None:
        if self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.bootstrap_servers, acks="all",
                # The batches are built here, whole: lingering would only delay them.
                linger_ms=0,
                max_batch_size=self.settings.producer_max_batch_bytes,
                max_request_size=self.settings.producer_max_batch_bytes * 2,
                enable_idempotence=False)  # refused by Tansu 0.6.0; not relied upon
            await producer.start()
            self.producer = producer

    async def stop(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()

    async def publish(self, events: Sequence[OutboxEvent]) -> None:
        """Publish `events`, keeping their order within each output partition, and return
        once the broker acknowledged all of them."""
        await self.start()
        producer = self.producer
        assert producer is not None
        acknowledgements: list[asyncio.Future[Any]] = []

        def keep(sent: asyncio.Future[Any], _events: Sequence[OutboxEvent]) -> None:
            acknowledgements.append(sent)

        await self.sender.send(producer, events, keep)
        await asyncio.gather(*acknowledgements)
