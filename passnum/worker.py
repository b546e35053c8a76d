"""The faust side of every processor: one app per service, one batching agent, publication
of the outbox, and the crash policy.

Why the agent is written this way (docs/processing.md has the details):
- `take_events` hands over up to `batch_max_commands` records; faust acks them only when
  the agent asks for the next batch, i.e. after our PostgreSQL commit and publication.
- If anything fails past the bounded retries, the process exits at once (`os._exit`),
  before faust's clean-up could ack the batch: the next start re-reads from the committed
  offset, and positions recorded in PostgreSQL make the replay a no-op.
- Faust tables, transactions and `exactly_once` are not used: the broker we must run on
  (Tansu) cannot support them correctly, and correctness lives in PostgreSQL instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any, Callable

import faust
import psycopg

from passnum.processing import (
    BatchResult,
    Handler,
    InputRecord,
    OutboxRow,
    decide_batch,
    forget_published,
    pending_outbox,
)
from passnum.settings import Settings

logger = logging.getLogger(__name__)
CRASH_EXIT_CODE = 70


class PassnumApp(faust.App):
    """A faust app that checks the broker and migrates the database before it consumes."""

    passnum_settings: Settings

    async def on_first_start(self) -> None:
        await asyncio.to_thread(prepare_environment, self.passnum_settings)
        await super().on_first_start()


def prepare_environment(settings: Settings) -> None:
    from passnum.broker import create_topics
    from passnum.database import apply_migrations

    create_topics(settings)
    if settings.conformance_required:
        from passnum.conformance import assert_conformant, format_verdicts, run_conformance

        verdicts = run_conformance(settings)
        logger.info("broker conformance:\n%s", format_verdicts(verdicts))
        assert_conformant(settings, verdicts)
    apply_migrations(settings.database_url)


def build_app(app_id: str, settings: Settings, web_port: int) -> PassnumApp:
    app = PassnumApp(
        app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        topic_partitions=settings.partitions,
        # Topics are created explicitly by passnum.broker.create_topics, never by faust.
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
        broker_max_poll_records=settings.batch_max_commands,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=settings.producer_linger_milliseconds,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        producer_acks=-1,
        processing_guarantee="at_least_once",
        stream_wait_empty=False,
        web_host="127.0.0.1",
        web_port=web_port,
        web_in_thread=False,
    )
    app.passnum_settings = settings

    @app.page("/health/")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "app": app_id})

    return app


def _die(message: str) -> None:
    """Crash loudly: never let faust ack a batch that is not durably decided."""
    logger.critical("%s: exiting so that the batch is redelivered", message)
    logging.shutdown()
    os._exit(CRASH_EXIT_CODE)


class BatchRunner:
    """Decides batches in a worker thread (psycopg is synchronous) and publishes outboxes
    from the event loop through faust's producer."""

    def __init__(self, app: faust.App, handler: Handler, settings: Settings,
                 connect: Callable[[], psycopg.Connection]) -> None:
        self.app = app
        self.handler = handler
        self.settings = settings
        self.connect = connect
        self.connection: psycopg.Connection | None = None
        self.publish_lock = asyncio.Lock()
        self.busy = False  # true while a batch is being decided or published
        self.batches = 0  # batches that added outbox rows: what the fault injection counts

    def _connection(self) -> psycopg.Connection:
        if self.connection is None or self.connection.closed:
            self.connection = self.connect()
        return self.connection

    async def _with_retries(self, what: str, action: Callable[[], Any]) -> Any:
        for attempt in range(1, self.settings.infra_retry_limit + 1):
            try:
                return await action()
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                logger.warning("%s failed (attempt %s): %s", what, attempt, error)
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
            except Exception as error:  # any other failure: retry, then crash loudly
                logger.warning("%s failed (attempt %s): %r", what, attempt, error)
            await asyncio.sleep(self.settings.infra_retry_backoff_seconds * attempt)
        _die(f"{what} failed {self.settings.infra_retry_limit} times")

    def _maybe_crash(self, point: str) -> None:
        settings = self.settings
        if settings.fault_crash_point == point and self.batches == settings.fault_crash_on_batch:
            logger.critical("fault injection: SIGKILL at %s of batch %s", point, self.batches)
            os.kill(os.getpid(), signal.SIGKILL)

    async def publish(self, rows: list[OutboxRow]) -> None:
        futures = []
        for row in rows:
            futures.append(await self.app.producer.send(
                row.topic, row.key, row.payload, partition=None, timestamp=None,
                headers=row.headers()))
        await asyncio.gather(*futures)
        self._maybe_crash("after_publish")
        await asyncio.to_thread(forget_published, self._connection(), [row.id for row in rows])

    async def _publish_pending(self, partitions: list[tuple[str, int]] | None) -> int:
        async with self.publish_lock:
            rows = await asyncio.to_thread(pending_outbox, self._connection(),
                                           self.handler.processor, partitions)
            if rows:
                await self.publish(rows)
            return len(rows)

    async def run_batch(self, records: list[InputRecord]) -> None:
        async def decide() -> BatchResult:
            # The outbox sweep uses the same connection from another thread: while a batch
            # holds its transaction, a sweep's commit would commit half of it.
            async with self.publish_lock:
                return await asyncio.to_thread(decide_batch, self._connection(),
                                               self.handler, records)

        result = await self._with_retries("decide batch", decide)
        if result.outbox_rows:
            self.batches += 1
            self._maybe_crash("after_decide")
        await self._with_retries("publish batch",
                                 lambda: self._publish_pending(result.partitions))

    async def sweep(self) -> None:
        """Publish outbox rows left by a crash for partitions this worker owns now, even
        when no new input arrives on them."""
        assigned = [(tp.topic, tp.partition) for tp in self.app.consumer.assignment()]
        if assigned:
            await self._with_retries("outbox sweep", lambda: self._publish_pending(assigned))


def attach_batch_agent(app: faust.App, handler: Handler, settings: Settings,
                       topic_names: list[str],
                       connect: Callable[[], psycopg.Connection]) -> BatchRunner:
    runner = BatchRunner(app, handler, settings, connect)
    topic = app.topic(*topic_names, key_serializer="raw", value_serializer="raw")

    async def process(stream: faust.StreamT) -> None:
        try:
            async for events in stream.take_events(settings.batch_max_commands,
                                                   within=settings.batch_max_wait_seconds):
                records = [InputRecord(event.message.topic, event.message.partition,
                                       event.message.offset, event.message.key,
                                       event.message.value) for event in events]
                runner.busy = True
                await runner.run_batch(records)
                runner.busy = False
        except asyncio.CancelledError:
            if not runner.busy:
                raise  # a clean stop between batches: nothing to protect
            # Cancelled mid-batch (shutdown): the transaction did not commit or the rows
            # sit in the outbox; exit before faust's finally-block acks the batch.
            _die("agent cancelled in the middle of a batch")
        except BaseException as error:  # noqa: BLE001 - any failure must not ack
            logger.exception("agent failed")
            _die(f"agent failed: {error!r}")

    app.agent(topic, name=f"{handler.processor}-batches", concurrency=1)(process)

    @app.timer(interval=2.0)
    async def sweep_outbox() -> None:
        await runner.sweep()

    return runner
