"""One way to send records in record batches (passnum.core.publisher.BatchSender), used by
the worker's publisher and by the HTTP gateway: grouping by partition, order within a
partition, a full batch continued in the next, what each batch's acknowledgement settles,
and what an error does. A fake producer stands in for aiokafka's: no broker here."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Sequence

import pytest
from aiokafka.errors import KafkaError

from passnum.core.processing import OutboxEvent
from passnum.core.publisher import BatchSender, Publisher, partition_for_key
from passnum.core.settings import Settings
from passnum.edge.http import CommandGateway, LogUnavailable

PARTITIONS = 4


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: None,
               headers: Sequence[tuple[str, bytes]] = ()) -> object | None:
        if len(self.records) == self.capacity:
            return None
        self.records.append((key, value, list(headers)))
        return object()


class FakeProducer:
    """Batches of `capacity` records; each submitted batch's acknowledgement is a future
    the test ends (`acknowledge`), or a submission that raises (`failing_submission`, once
    the test sets `may_fail`)."""

    def __init__(self, capacity: int = 100, failing_submission: int | None = None) -> None:
        self.capacity = capacity
        self.failing_submission = failing_submission
        self.sent: list[tuple[str, int, FakeBatch, asyncio.Future[Any]]] = []
        self.partition_questions: list[str] = []
        self.may_fail = asyncio.Event()

    async def partitions_for(self, topic: str) -> set[int]:
        self.partition_questions.append(topic)
        return set(range(PARTITIONS))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int
                         ) -> asyncio.Future[Any]:
        await asyncio.sleep(0)  # the acknowledgements of earlier batches may come meanwhile
        if len(self.sent) == self.failing_submission:
            await self.may_fail.wait()
            raise KafkaError("the accumulator refused the batch")
        acknowledgement: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, batch, acknowledgement))
        return acknowledgement

    def acknowledge(self, error: BaseException | None = None) -> None:
        for _, _, _, acknowledgement in self.sent:
            if not acknowledgement.done():
                if error is None:
                    acknowledgement.set_result(None)
                else:
                    acknowledgement.set_exception(error)

    def batches(self) -> list[tuple[str, int, list[bytes]]]:
        return [(topic, partition, [value for _, value, _ in batch.records])
                for topic, partition, batch, _ in self.sent]


async def _until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until `condition` holds (a bounded wait: a test that waits
    for what never comes fails instead of hanging)."""
    for _ in range(1_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def _key_on(partition: int, prefix: str) -> bytes:
    """A key Kafka's partitioner puts on `partition` of `PARTITIONS`."""
    return next(key for key in (f"{prefix}-{number}".encode() for number in range(1_000))
                if partition_for_key(key, PARTITIONS) == partition)


def test_records_go_by_partition_in_order_a_full_batch_continuing_in_the_next() -> None:
    first, second = _key_on(1, "first"), _key_on(2, "second")
    events = [OutboxEvent("a", first, b"a1-1", None), OutboxEvent("a", second, b"a2-1", None),
              OutboxEvent("b", first, b"b1-1", None), OutboxEvent("a", first, b"a1-2", None),
              OutboxEvent("a", first, b"a1-3", None), OutboxEvent("a", second, b"a2-2", None)]

    async def scenario() -> tuple[FakeProducer, list[list[bytes]]]:
        producer = FakeProducer(capacity=2)
        handed: list[list[bytes]] = []

        def on_sent(sent: asyncio.Future[Any], batch: Any) -> None:
            assert sent is producer.sent[-1][3]  # told at once, with its own future
            handed.append([event.payload for event in batch])

        await BatchSender().send(producer, events, on_sent)  # type: ignore[arg-type]
        return producer, handed

    producer, handed = asyncio.run(scenario())
    assert producer.batches() == [("a", 1, [b"a1-1", b"a1-2"]), ("a", 1, [b"a1-3"]),
                                  ("a", 2, [b"a2-1", b"a2-2"]), ("b", 1, [b"b1-1"])]
    assert handed == [values for _, _, values in producer.batches()]
    assert producer.partition_questions == ["a", "b"]  # once per topic


def test_records_without_a_key_take_the_partitions_in_turn_with_their_headers() -> None:
    link = b"\x01" * 32 + b"\x00" * 8 + b"\x02" * 32
    events = [OutboxEvent("dead", None, f"{number}".encode(), None) for number in range(5)]
    events.append(OutboxEvent("dead", _key_on(3, "chained"), b"chained", link))

    async def scenario() -> FakeProducer:
        producer = FakeProducer()
        sender = BatchSender()
        await sender.send(producer, events, lambda sent, batch: None)  # type: ignore[arg-type]
        return producer

    producer = asyncio.run(scenario())
    assert producer.batches() == [("dead", 1, [b"0", b"4"]), ("dead", 2, [b"1"]),
                                  ("dead", 3, [b"2", b"chained"]), ("dead", 0, [b"3"])]
    headers = {value: headers for _, _, batch, _ in producer.sent
               for _, value, headers in batch.records}
    assert headers[b"chained"] == events[-1].headers() != []
    assert headers[b"0"] == []


def test_the_publisher_returns_once_every_batch_is_acknowledged_and_fails_with_one() -> None:
    events = [OutboxEvent("a", _key_on(partition, "p"), b"v", None) for partition in range(3)]

    async def scenario(error: BaseException | None) -> bool:
        publisher = Publisher(Settings())
        producer = FakeProducer()
        publisher.producer = producer  # type: ignore[assignment]
        publication = asyncio.ensure_future(publisher.publish(events))
        await _until(lambda: len(producer.sent) == 3)
        await asyncio.sleep(0)
        waiting = not publication.done()
        producer.acknowledge(error)
        await publication
        return waiting

    assert asyncio.run(scenario(None))  # waits for the acknowledgements
    with pytest.raises(KafkaError, match="not leader"):
        asyncio.run(scenario(KafkaError("not leader")))


def _gateway(producer: FakeProducer) -> CommandGateway:
    gateway = CommandGateway(Settings(), "redeemer")
    gateway.producer = producer  # type: ignore[assignment]
    return gateway


def test_the_gateway_sends_a_loop_turn_s_commands_together_each_settled_by_its_batch() -> None:
    keys = [_key_on(1, "one"), _key_on(2, "two"), _key_on(1, "three")]

    async def scenario() -> tuple[FakeProducer, list[Any]]:
        producer = FakeProducer(capacity=1)
        gateway = _gateway(producer)
        sends = [asyncio.ensure_future(gateway._send("commands", key, key)) for key in keys]
        await _until(lambda: len(producer.sent) == 3)
        # The batch of the first command is acknowledged, the other two fail.
        producer.sent[0][3].set_result(None)
        producer.acknowledge(KafkaError("not leader"))
        return producer, await asyncio.gather(*sends, return_exceptions=True)

    producer, results = asyncio.run(scenario())
    assert producer.batches() == [("commands", 1, [keys[0]]), ("commands", 1, [keys[2]]),
                                  ("commands", 2, [keys[1]])]
    assert results[0] is None
    assert all(isinstance(result, LogUnavailable) for result in results[1:])


def test_a_gateway_batch_acknowledged_before_a_later_one_fails_stays_answered() -> None:
    keys = [_key_on(1, "one"), _key_on(2, "two")]

    async def scenario() -> list[Any]:
        producer = FakeProducer(failing_submission=1)
        gateway = _gateway(producer)
        sends = [asyncio.ensure_future(gateway._send("commands", key, key)) for key in keys]
        await _until(lambda: len(producer.sent) == 1)
        producer.acknowledge()  # before the second batch's submission fails
        await asyncio.sleep(0)
        producer.may_fail.set()
        return await asyncio.gather(*sends, return_exceptions=True)

    first, second = asyncio.run(scenario())
    assert first is None
    assert isinstance(second, LogUnavailable) and "accumulator" in str(second)


def test_every_gateway_command_fails_when_the_partitions_cannot_be_known() -> None:
    class NoMetadata(FakeProducer):
        async def partitions_for(self, topic: str) -> set[int]:
            raise KafkaError("no metadata")

    async def scenario() -> list[Any]:
        gateway = _gateway(NoMetadata())
        return await asyncio.gather(*(gateway._send("commands", key, b"v")
                                      for key in (b"k1", b"k2")), return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(result, LogUnavailable) and "no metadata" in str(result)
               for result in results)
