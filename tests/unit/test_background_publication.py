"""Publication off the batch path (passnum.core.worker.BatchRunner): batches are published in the
order they were decided even when an earlier one is slower to acknowledge, at most
PUBLICATIONS_IN_FLIGHT_MAX wait, and `drain` leaves nothing in flight. The broker is
replaced by a recorder that acknowledges after a chosen delay: the code under test is the
ordering around it, not the broker (the crash proofs cover that with the real one)."""

from __future__ import annotations

import asyncio

from passnum.core.processing import OutboxEvent, OutboxRow
from passnum.core.settings import Settings
from passnum.core.worker import PUBLICATIONS_IN_FLIGHT_MAX, BatchRunner


class RecordingPublisher:
    """Acknowledges the first batches last: a later publication that did not wait for them
    would be recorded first."""

    def __init__(self, delays: list[float]) -> None:
        self.delays = delays
        self.published: list[bytes] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def publish(self, events: list[OutboxEvent]) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.delays.pop(0))
        self.published += [event.payload for event in events]
        self.in_flight -= 1


def _row(number: int) -> OutboxRow:
    return OutboxRow(number, [OutboxEvent("events", b"key", f"batch-{number}".encode(), None)])


def test_batches_are_published_in_decision_order_and_bounded() -> None:
    async def scenario() -> tuple[RecordingPublisher, BatchRunner, int]:
        batches = 10
        runner = BatchRunner(None, None, Settings(), lambda: None)  # type: ignore[arg-type]
        publisher = RecordingPublisher([0.05 / (number + 1) for number in range(batches)])
        runner.publisher = publisher  # type: ignore[assignment]
        most_waiting = 0
        for number in range(1, batches + 1):
            await runner._bound_publications()
            runner._publish_in_background([_row(number)])
            most_waiting = max(most_waiting, len(runner.publications_in_flight))
        await runner.drain()
        return publisher, runner, most_waiting

    publisher, runner, most_waiting = asyncio.run(scenario())
    assert publisher.published == [f"batch-{number}".encode() for number in range(1, 11)]
    assert publisher.most_in_flight == 1  # each starts after the one before it ended
    assert most_waiting <= PUBLICATIONS_IN_FLIGHT_MAX
    assert runner.published_row_ids == list(range(1, 11))  # acknowledged, in order
    assert not runner.unacknowledged_row_ids and not runner.publications_in_flight
