"""The HTTP gateway sends its commands at most once per COMMAND_BATCH_INTERVAL_SECONDS
(passnum.edge.http.CommandGateway._send): a lone command goes at once, the commands that
come within the interval after a batch wait for its end and go together, and every command
of a batch the broker does not take within `log_send_timeout_seconds` is answered
LogUnavailable. A fake producer stands in for aiokafka's: no broker here."""

from __future__ import annotations

import asyncio
from typing import Any


from passnum.core.settings import Settings
from passnum.edge import http
from passnum.edge.http import CommandGateway, LogUnavailable
from tests.unit.test_batch_sending import FakeProducer, _key_on, _until


def _gateway(producer: FakeProducer, settings: Settings | None = None) -> CommandGateway:
    gateway = CommandGateway(settings or Settings(), "redeemer")
    gateway.producer = producer  # type: ignore[assignment]
    return gateway


def test_a_lone_command_goes_at_once_and_the_next_ones_wait_for_the_interval() -> None:
    keys = [_key_on(1, "one"), _key_on(1, "two"), _key_on(1, "three")]

    async def scenario() -> tuple[FakeProducer, list[int], float]:
        producer = FakeProducer()
        gateway = _gateway(producer)
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(gateway._send("commands", keys[0], keys[0]))
        await _until(lambda: len(producer.sent) == 1)  # at once: nothing went before it
        producer.acknowledge()
        await first
        started = loop.time()
        later = [asyncio.ensure_future(gateway._send("commands", key, key))
                 for key in keys[1:]]
        sent_meanwhile = []
        for _ in range(5):  # a few loop turns: within the interval, nothing goes
            await asyncio.sleep(0)
            sent_meanwhile.append(len(producer.sent))
        await asyncio.wait_for(_until_sent(producer, 2), timeout=1.0)
        waited = loop.time() - started
        producer.acknowledge()
        await asyncio.gather(*later)
        return producer, sent_meanwhile, waited

    producer, sent_meanwhile, waited = asyncio.run(scenario())
    assert sent_meanwhile == [1] * 5
    # The two later commands went in one batch, once the interval was over.
    assert producer.batches() == [("commands", 1, [keys[0]]),
                                  ("commands", 1, [keys[1], keys[2]])]
    assert waited >= http.COMMAND_BATCH_INTERVAL_SECONDS * 0.5


async def _until_sent(producer: FakeProducer, count: int) -> None:
    while len(producer.sent) < count:
        await asyncio.sleep(0.0005)


def test_every_command_of_a_batch_not_taken_within_the_bound_is_log_unavailable() -> None:
    settings = Settings().with_overrides(log_send_timeout_seconds=0.05)

    async def scenario() -> tuple[list[Any], float]:
        producer = FakeProducer()  # never acknowledges unless told
        gateway = _gateway(producer, settings)
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Bounded here too: without the gateway's own bound, this fails instead of hanging.
        results = await asyncio.wait_for(asyncio.gather(
            *(gateway._send("commands", key, key)
              for key in (_key_on(1, "a"), _key_on(2, "b"))), return_exceptions=True), 2.0)
        return results, loop.time() - started

    results, seconds = asyncio.run(scenario())
    assert all(isinstance(result, LogUnavailable) and "TimeoutError" in str(result)
               for result in results)
    assert 0.05 <= seconds < 1.0


def test_a_batch_acknowledged_within_the_bound_cancels_its_bound() -> None:
    """Once every command of a batch is answered, its bound's timer is cancelled: it would
    hold the batch in memory for `log_send_timeout_seconds`, for nothing."""
    settings = Settings().with_overrides(log_send_timeout_seconds=0.02)

    async def scenario() -> tuple[Any, list[dict[str, Any]], bool]:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(
            context))
        producer = FakeProducer()
        gateway = _gateway(producer, settings)
        send = asyncio.ensure_future(gateway._send("commands", b"k", b"v"))
        await _until(lambda: len(producer.sent) == 1)
        bound = gateway.outgoing_bound
        producer.acknowledge()
        result = await send
        await _until(lambda: not gateway.sending)  # the batch's send task has ended
        return result, errors, bound is not None and bound.cancelled()

    result, errors, cancelled = asyncio.run(scenario())
    assert result is None and errors == []
    assert cancelled


def test_the_interval_is_a_few_milliseconds() -> None:
    # What these tests rely on: more than a few loop turns, less than a request's patience.
    assert 0.001 <= http.COMMAND_BATCH_INTERVAL_SECONDS <= 0.05
