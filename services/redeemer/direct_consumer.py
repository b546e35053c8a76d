"""An experiment, off by default: feed the redeemer's batches from an aiokafka consumer's
`getmany` instead of a faust stream (`PASSNUM_REDEEMER_CONSUMER=direct`).

Why: measured here, a faust agent that does nothing with its records receives about 1,300
records/s (take_events or plain iteration alike: faust creates tasks and futures per
message), while `AIOKafkaConsumer.getmany` on the same topic reads about 80,000/s. Faust's
stream, not PostgreSQL, caps the redeemer (docs/redeemer.md, "Throughput").

The batch itself is untouched: the same `BatchRunner.run_batch` (one transaction, outbox,
publication), and the same crash policy: offsets are committed only after a batch is
decided and published, and a failure or a cancellation in the middle of a batch exits
the process before anything could be committed. Committed offsets stay a hint; the
positions in PostgreSQL decide what is skipped. The proposal for passnum/worker.py is in
docs/redeemer.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, TopicPartition

from passnum.processing import InputRecord
from passnum.settings import Settings
from passnum.topology import topology_for
from passnum.worker import BatchRunner, _die

logger = logging.getLogger(__name__)
SWEEP_INTERVAL_SECONDS = 2.0


def attach_direct_consumer(app: Any, runner: BatchRunner, settings: Settings,
                           topic_names: list[str], group_id: str) -> None:
    """Register a service on the faust app that drives `runner` from aiokafka."""
    # Faust's conductor refuses to start with no subscription at all: an agent that only
    # reads the dead-letter topic (under the faust group, changing nothing) keeps it up.
    idle_topic = app.topic(topology_for(settings).dead_letters.name,
                           key_serializer="raw", value_serializer="raw")

    @app.agent(idle_topic, name="redeemer-direct-idle")
    async def idle(stream: Any) -> None:
        async for _ in stream:
            pass

    @app.service
    class DirectBatchConsumer(mode.Service):
        consumer: AIOKafkaConsumer | None = None

        async def on_start(self) -> None:
            self.consumer = AIOKafkaConsumer(
                *topic_names, bootstrap_servers=settings.bootstrap_servers,
                group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                max_poll_records=settings.batch_max_commands,
                session_timeout_ms=int(settings.session_timeout_seconds * 1000),
                heartbeat_interval_ms=int(settings.heartbeat_interval_seconds * 1000),
                fetch_max_wait_ms=int(settings.batch_max_wait_seconds * 1000))
            await self.consumer.start()

        async def on_stop(self) -> None:
            if self.consumer is not None:
                await self.consumer.stop()

        @mode.Service.task
        async def _batches(self) -> None:
            try:
                while not self.should_stop:
                    await self._one_batch()
            except asyncio.CancelledError:
                if runner.busy:
                    _die("direct consumer cancelled in the middle of a batch")
                raise
            except BaseException as error:
                logger.exception("direct consumer failed")
                _die(f"direct consumer failed: {error!r}")

        async def _one_batch(self) -> None:
            assert self.consumer is not None
            fetched = await self.consumer.getmany(
                timeout_ms=int(settings.batch_max_wait_seconds * 1000),
                max_records=settings.batch_max_commands)
            records = [InputRecord(message.topic, message.partition, message.offset,
                                   message.key, message.value)
                       for messages in fetched.values() for message in messages]
            if not records:
                return
            runner.busy = True
            await runner.run_batch(records)
            runner.busy = False
            await self.consumer.commit({partition: messages[-1].offset + 1
                                        for partition, messages in fetched.items()})

        @mode.Service.timer(SWEEP_INTERVAL_SECONDS)
        async def _sweep(self) -> None:
            if self.consumer is None or runner.busy:
                return
            assigned = [(p.topic, p.partition) for p in self.consumer.assignment()]
            if assigned:
                await runner._with_retries(
                    "outbox sweep", lambda: runner._publish_pending(assigned))


__all__ = ["attach_direct_consumer", "TopicPartition"]
