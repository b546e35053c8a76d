"""The faust side of every processor: one app per service, the batch consumer, publication
of the outbox, and the crash policy.

Why it is written this way (docs/processing.md has the details and the measurements):
- Input arrives in batches of up to `batch_max_commands` records. By default a
  `BatchConsumer` service of the faust worker takes them with aiokafka's `getmany`: a faust
  stream costs about three event-loop turns per message and capped a do-nothing agent at
  3.4-4.4 k records/s here, while `getmany` reads about 80 k/s. The faust stream path is kept
  (`PASSNUM_CONSUMER=stream`, `_attach_stream_agent`) to measure against.
- Offsets are committed only after a batch's transaction committed (in the background, at
  most once a second); a batch is published while the next ones are decided, in order; a
  rebalance waits for the batch in hand and its publication. Committed offsets are a
  resume hint: the positions recorded in PostgreSQL decide what is skipped.
- If anything fails past the bounded retries, the process exits at once (`os._exit`), before
  anything could be committed or acked: the next start re-reads, and the positions make
  the replay a no-op.
- Faust tables, transactions and `exactly_once` are not used: the broker we must run on
  (Tansu) cannot support them correctly, and correctness lives in PostgreSQL instead.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import sys
import time
from typing import Any, Awaitable, Callable

import faust
import mode
import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import (
    CommitFailedError,
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)

from passnum.core.health import WorkerHealth, http_middleware, mount_observability
from passnum.core.logging_setup import logging_config, silenced
from passnum.core.metrics import MeteredHandler, dead_letter_reasons
from passnum.core.processes import tune_garbage_collection
from passnum.core.processing import (
    BatchResult,
    Handler,
    InputRecord,
    LogMismatch,
    OutboxRow,
    dead_letter_record,
    decide_batch,
    forget_published,
    holds_a_long_decision,
    is_infrastructure_error,
    pending_outbox,
    split_by_weight,
    stored_positions,
    vacuum_outbox,
)
from passnum.core.publisher import Publisher
from passnum.core.settings import Settings
from passnum.core.topology import topology_for

logger = logging.getLogger(__name__)
CRASH_EXIT_CODE = 70
# The broker serves a log that is not the one the positions were taken from: restarting
# cannot fix it, an operator must (docs/processing.md, "Which log").
LOG_MISMATCH_EXIT_CODE = 78
# Once a batch holds records, how long it waits for the next fetch, and how many records
# the last one must have brought for it to be worth waiting (see BatchConsumer._fetch).
FETCH_TOP_UP_SECONDS = 0.005
FETCH_TOP_UP_MIN_RECORDS = 64
# A batch this small is decided on the event loop itself (it blocks the loop for a few
# milliseconds). In a thread, each of its dozen database round trips had to win the GIL
# back from the loop serving HTTP, which doubled the time it took.
INLINE_DECISION_MAX_RECORDS = 32
# Batches decided and waiting for (or in) publication, at most. Publication overlaps the
# next decisions (see BatchRunner); this bounds what a slow broker can make pile up.
PUBLICATIONS_IN_FLIGHT_MAX = 4
# Input offsets are committed at most this often (a hint for the next owner; see
# BatchConsumer._commit).
OFFSET_COMMIT_INTERVAL_SECONDS = 1.0


class PassnumApp(faust.App):
    """A faust app that checks the broker and migrates the database before it consumes."""

    passnum_settings: Settings
    passnum_health: WorkerHealth

    def on_webserver_init(self, web: Any) -> None:
        # Every request is timed and carries its request id into the log (passnum.core.health).
        # Faust calls this once per web server start: the middleware goes in once.
        if not any(getattr(m, "passnum", False) for m in web.web_app.middlewares):
            web.web_app.middlewares.append(http_middleware(self.passnum_health.metrics))

    async def on_first_start(self) -> None:
        await asyncio.to_thread(prepare_environment, self.passnum_settings)
        tune_garbage_collection()
        await super().on_first_start()


def prepare_environment(settings: Settings) -> None:
    from passnum.core.broker import create_topics
    from passnum.core.database import apply_migrations

    create_topics(settings)
    if settings.conformance_required:
        from passnum.core.conformance import assert_conformant, format_verdicts, run_conformance
        from passnum.core.status import save_conformance

        # The probe provokes failures on purpose and closes its clients mid-request: the
        # Kafka clients log those as ERRORs, which the verdicts below report in their place.
        with silenced("aiokafka", "kafka"):
            verdicts = run_conformance(settings)
        logger.info("broker conformance:\n%s", format_verdicts(verdicts))
        save_conformance(settings, verdicts)  # what `passnum status` shows
        assert_conformant(settings, verdicts)
    apply_migrations(settings.database_url)


def build_app(app_id: str, settings: Settings, web_port: int) -> PassnumApp:
    # Batches are decided in a thread (psycopg is synchronous) while the event loop serves
    # HTTP and the broker. Each database round trip of that thread gives up the GIL and
    # must win it back from the loop, which by default holds it for up to 5 ms: a batch of
    # a dozen round trips then waited tens of milliseconds for nothing (measured: 70 ms to
    # decide 24 redemptions under 200 requests/s). A shorter interval hands it back sooner.
    sys.setswitchinterval(settings.gil_switch_interval_seconds)
    app = PassnumApp(
        app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        topic_partitions=settings.partitions,
        # Topics are created explicitly by passnum.core.broker.create_topics, never by faust.
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
        # The configured address only (faust binds 0.0.0.0 by default), and none of faust's
        # debugging pages (/router/, /table/, /graph/, statistics): they describe internals
        # and answer anyone who can reach the port.
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=web_port,
        web_in_thread=False,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        # passnum's JSON logs in place of faust's coloured ones (passnum.core.logging_setup).
        logging_config=logging_config(settings),
    )
    app.passnum_settings = settings
    # /health/live, /health/ready (and /health/), /metrics: passnum.core.health.
    app.passnum_health = mount_observability(app, app_id, settings)
    return app


def _die(message: str) -> None:
    """Crash loudly: never let faust ack a batch that is not durably decided."""
    logger.critical("%s: exiting so that the batch is redelivered", message)
    logging.shutdown()
    os._exit(CRASH_EXIT_CODE)


def _refuse_log(error: LogMismatch) -> None:
    """Stop at once, and say what an operator should do: deciding on would skip commands
    never decided (their offsets are below the stored positions) or decide some twice."""
    logger.critical(
        "the broker's log is not the one this processor's positions in PostgreSQL belong "
        "to (%s). Nothing was skipped and nothing more is decided. Restore the log this "
        "database was built from (`passnum log import` of its export), or point the worker "
        "at the database built from this log; see docs/processing.md, 'Which log'.", error)
    logging.shutdown()
    os._exit(LOG_MISMATCH_EXIT_CODE)


class RecordCausedFailure(Exception):
    """A batch failed with an error that one of its records may cause every time: the
    runner looks for that record instead of retrying the batch for ever."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


class BatchRunner:
    """Decides batches (on the event loop when small, else in a worker thread: psycopg is
    synchronous) and publishes outboxes from the event loop (passnum.core.publisher).

    A batch's publication overlaps the next batches: the HTTP answers and the next decision
    need only the commit, not the broker's acks, so waiting for them in line cost a
    produce round trip per batch (measured 3.8 ms of a 10 ms cycle at 200 requests/s).
    Each publication starts after the previous one ended, so the events of an input
    partition still reach the broker in decision order, and at most
    PUBLICATIONS_IN_FLIGHT_MAX wait. Rows in flight are committed outbox rows: a crash
    republishes them, as before."""

    def __init__(self, app: faust.App, handler: Handler, settings: Settings,
                 connect: Callable[[], psycopg.Connection]) -> None:
        self.app = app
        self.handler = handler
        self.settings = settings
        self.connect = connect
        self.connection: psycopg.Connection | None = None
        self.publisher = Publisher(settings)
        # One user of the database connection at a time (a batch, or the outbox sweep from
        # the timer: its commit in the middle of a batch would commit half of it).
        self.connection_lock = asyncio.Lock()
        # One publication at a time, in order (decisions, or the outbox read back).
        self.publish_lock = asyncio.Lock()
        # The publications not yet known to have ended, oldest first; each starts after
        # the one before it ended.
        self.publications_in_flight: collections.deque[asyncio.Task[None]] = (
            collections.deque())
        self.busy_since: float | None = None  # see `busy`
        self.busy = False  # true while a batch is being decided
        # Outbox rows published and acknowledged, deleted by the next batch's transaction
        # (or by the sweep when no batch comes): a crash before that publishes them again.
        self.published_row_ids: list[int] = []
        # Rows committed and being published: the next batch must not take them for a
        # crash's leftovers.
        self.unacknowledged_row_ids: set[int] = set()
        self.batches = 0  # batches that added outbox rows: what the fault injection counts
        # Records that failed alone and went to the dead-letter topic since the last
        # record decided normally (see _decide_alone).
        self.records_failed_in_a_row = 0
        # Told of every committed batch's outcomes, in this process: the HTTP gateway
        # answers its waiting requests at once, without a notification and a query.
        self.outcome_listeners: list[Callable[[dict[str, tuple[str, bytes]]], None]] = []

    @property
    def busy(self) -> bool:
        return self.busy_since is not None

    @busy.setter
    def busy(self, value: bool) -> None:
        # Since when: readiness says a batch stuck this long is no progress (passnum.core.health).
        self.busy_since = time.monotonic() if value else None

    def _connection(self) -> psycopg.Connection:
        if self.connection is None or self.connection.closed:
            self.connection = self.connect()
        return self.connection

    async def _with_retries(self, what: str, action: Callable[[], Any],
                            records_may_fail: bool = False) -> Any:
        """Retry infrastructure errors with a growing pause, then exit. With
        `records_may_fail`, any other error is raised at once as a RecordCausedFailure: a
        record that fails the same way each time must not make the worker loop."""
        for attempt in range(1, self.settings.infra_retry_limit + 1):
            try:
                return await action()
            except LogMismatch as error:
                _refuse_log(error)
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                logger.warning("%s failed (attempt %s): %s", what, attempt, error)
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
            except Exception as error:  # noqa: BLE001 - sorted below, never swallowed
                if records_may_fail and not is_infrastructure_error(error):
                    raise RecordCausedFailure(error) from error
                logger.warning("%s failed (attempt %s): %r", what, attempt, error)
            await asyncio.sleep(self.settings.infra_retry_backoff_seconds * attempt)
        _die(f"{what} failed {self.settings.infra_retry_limit} times")

    def _maybe_crash(self, point: str, batch: int | None = None) -> None:
        """`batch`: the number of the batch the point belongs to (default: the latest);
        a publication in the background ends while later batches are decided."""
        settings = self.settings
        batch = self.batches if batch is None else batch
        if settings.fault_crash_point == point and batch == settings.fault_crash_on_batch:
            logger.critical("fault injection: SIGKILL at %s of batch %s", point, batch)
            os.kill(os.getpid(), signal.SIGKILL)

    async def publish(self, rows: list[OutboxRow], batch: int | None = None) -> None:
        """Send every event of `rows` in order, wait for the broker's acks (acks=all), then
        mark the rows for deletion. A crash in between publishes them again: same bytes,
        same ids. `batch`: the number of the batch that wrote the rows, if known."""
        await self.publisher.publish([event for row in rows for event in row.events])
        self._maybe_crash("after_publish", batch)
        self.published_row_ids += [row.id for row in rows]

    async def drain(self) -> None:
        """Wait for every publication in flight (the last one ends after all the others)."""
        if self.publications_in_flight:
            await self.publications_in_flight[-1]
        self.publications_in_flight.clear()

    async def _bound_publications(self) -> None:
        """At most PUBLICATIONS_IN_FLIGHT_MAX batches wait to be published: a broker slower
        than the decisions slows the decisions down instead of filling the memory."""
        while self.publications_in_flight and self.publications_in_flight[0].done():
            self.publications_in_flight.popleft()
        if len(self.publications_in_flight) >= PUBLICATIONS_IN_FLIGHT_MAX:
            await self.publications_in_flight.popleft()

    async def _forget_published(self) -> None:
        async with self.connection_lock:
            if self.published_row_ids:
                forgotten = list(self.published_row_ids)
                await asyncio.to_thread(forget_published, self._connection(), forgotten)
                del self.published_row_ids[:len(forgotten)]

    async def _publish_pending(self, partitions: list[tuple[str, int]] | None) -> int:
        """Publish what the outbox holds for `partitions`, oldest first, from the database.
        Nothing may be in flight: its rows would be read back and published twice."""
        await self.drain()
        await self._forget_published()
        async with self.publish_lock:
            async with self.connection_lock:
                rows = await asyncio.to_thread(pending_outbox, self._connection(),
                                               self.handler.processor, partitions)
            if rows:
                await self.publish(rows)
            return len(rows)

    def _publish_in_background(self, rows: list[OutboxRow]) -> None:
        identifiers = [row.id for row in rows]
        batch = self.batches
        self.unacknowledged_row_ids.update(identifiers)
        previous = self.publications_in_flight[-1] if self.publications_in_flight else None

        async def publish() -> None:
            if previous is not None:
                await previous  # in decision order: after the batch before this one
            async with self.publish_lock:
                await self._with_retries("publish batch", lambda: self.publish(rows, batch))
            self.unacknowledged_row_ids.difference_update(identifiers)

        self.publications_in_flight.append(asyncio.get_running_loop().create_task(publish()))

    async def run_batch(self, records: list[InputRecord]) -> None:
        """Decide and publish a fetched batch, in transactions bounded by expected events."""
        for chunk in split_by_weight(self.handler, records, self.settings.batch_max_events):
            await self._run_transaction(chunk)

    async def _run_transaction(self, records: list[InputRecord]) -> None:
        """Decide `records` in one transaction. If that fails with an error a record may
        cause, decide the two halves apart, down to the single record that fails alone
        (twice): that one goes to the dead-letter topic with its reason, and every other
        record of the batch is decided as usual, in order."""
        try:
            result = await self._with_retries("decide batch", self._decider(records),
                                              records_may_fail=True)
        except RecordCausedFailure as failure:
            if len(records) > 1:
                middle = len(records) // 2
                logger.warning("a batch of %s records failed (%r): deciding its halves apart",
                               len(records), failure.error)
                await self._run_transaction(records[:middle])
                await self._run_transaction(records[middle:])
            else:
                await self._decide_alone(records[0])
            return
        self.records_failed_in_a_row = 0
        await self._after_decision(result)

    async def _decide_alone(self, record: InputRecord) -> None:
        """A record that failed alone is decided once more (the failure might have come
        from a passing state); if it fails again, it is a dead letter with the error as its
        reason. Many such records in a row mean a systematic failure, not poison records:
        the worker then exits loudly rather than dead-letter its whole input."""
        try:
            result = await self._with_retries("decide record", self._decider([record]),
                                              records_may_fail=True)
        except RecordCausedFailure as failure:
            self.records_failed_in_a_row += 1
            if self.records_failed_in_a_row > self.settings.records_failed_in_a_row_max:
                _die(f"{self.records_failed_in_a_row} records in a row failed alone, the "
                     f"last with {failure.error!r}: a systematic failure")
            detail = f"{type(failure.error).__name__}: {failure.error}"
            logger.error("dead letter %s[%s]@%s: it fails alone each time it is decided (%s)",
                         record.topic, record.partition, record.offset, detail)

            async def write() -> BatchResult:
                async with self.connection_lock:
                    return await asyncio.to_thread(
                        dead_letter_record, self._connection(), self.handler, record,
                        "processing_failed", detail)

            result = await self._with_retries("dead letter", write)
        else:
            self.records_failed_in_a_row = 0
        await self._after_decision(result)

    def _decider(self, records: list[InputRecord]) -> Callable[[], Awaitable[BatchResult]]:
        marker = self.settings.fault_poison_marker.encode()

        async def decide() -> BatchResult:
            if marker and any(marker in (record.value or b"") for record in records):
                raise ValueError("fault injection: a poison record")
            async with self.connection_lock:
                published = list(self.published_row_ids)
                arguments = (self._connection(), self.handler, records, published,
                             list(self.unacknowledged_row_ids))
                if (len(records) <= INLINE_DECISION_MAX_RECORDS
                        and not holds_a_long_decision(self.handler, records)):
                    result = decide_batch(*arguments)
                else:
                    result = await asyncio.to_thread(decide_batch, *arguments)
                # Deleted with the batch; ids acknowledged meanwhile wait for the next one.
                del self.published_row_ids[:len(published)]
                return result

        return self._timed(decide, len(records))

    def _timed(self, decide: Callable[[], Awaitable[BatchResult]], record_count: int
               ) -> Callable[[], Awaitable[BatchResult]]:
        """`decide`, timed for `passnum_batch_seconds`; each attempt forgets the decisions a
        failed one counted (MeteredHandler), so that only committed ones are counted."""
        async def timed() -> BatchResult:
            if isinstance(self.handler, MeteredHandler):
                self.handler.forget_decisions()
            started = time.monotonic()
            result = await decide()
            self.decided = (time.monotonic() - started, record_count)
            return result

        return timed

    def _observe(self, result: BatchResult) -> None:
        """Count a committed transaction: its time, records, decisions and dead letters."""
        if isinstance(self.handler, MeteredHandler):
            metrics = self.handler.metrics
            seconds, record_count = getattr(self, "decided", (0.0, 0))
            reasons = dead_letter_reasons(result.outbox, self.handler.dead_letter_topic)
            metrics.observe_batch(seconds, record_count, reasons)
            metrics.observe_decisions(self.handler.take_decisions())

    async def _after_decision(self, result: BatchResult) -> None:
        """Tell the waiting HTTP requests, then publish what the transaction committed."""
        self._observe(result)
        if result.outcomes:
            for listener in self.outcome_listeners:
                listener(result.outcomes)
        if result.outbox:
            self.batches += 1
            self._maybe_crash("after_decide")
        await self._bound_publications()
        if result.older_rows_pending:
            # A crash left rows of these partitions: they go first, all from the database.
            await self._with_retries("publish batch",
                                     lambda: self._publish_pending(result.partitions))
        elif result.outbox:
            # The usual case: the rows just committed, published from memory.
            self._publish_in_background(result.outbox)

    async def stored_positions(self, partitions: list[tuple[str, int]]
                               ) -> dict[tuple[str, int], int]:
        async def read() -> dict[tuple[str, int], int]:
            async with self.connection_lock:
                return await asyncio.to_thread(stored_positions, self._connection(),
                                               self.handler.processor, partitions)

        result: dict[tuple[str, int], int] = await self._with_retries("read positions", read)
        return result

    async def sweep(self, assigned: list[tuple[str, int]]) -> None:
        """Publish outbox rows left by a crash for partitions this worker owns now, even
        when no new input arrives on them."""
        if self.busy:
            return
        await self.drain()
        await self._with_retries("outbox clean-up", self._forget_published)
        if assigned:
            await self._with_retries("outbox sweep", lambda: self._publish_pending(assigned))

    async def vacuum_outbox_forever(self) -> None:
        """Vacuum the outbox every `outbox_vacuum_interval_seconds`, on a connection of its
        own and outside the batch lock: batches go on meanwhile (VACUUM blocks no insert or
        delete). A failure is logged and tried again at the next turn."""
        interval = self.settings.outbox_vacuum_interval_seconds
        if interval <= 0:
            return
        connection: psycopg.Connection | None = None
        while True:
            await asyncio.sleep(interval)
            try:
                if connection is None or connection.closed:
                    connection = await asyncio.to_thread(self.connect)
                await asyncio.to_thread(vacuum_outbox, connection)
            except psycopg.Error as error:
                logger.warning("outbox vacuum failed (tried again later): %r", error)
                connection = None

    async def stop(self) -> None:
        """Finish the publication in flight, stop the producer, delete what was published."""
        await self.drain()
        await self.publisher.stop()
        try:
            await self._forget_published()
        except psycopg.Error as error:  # they will only be published once more
            logger.warning("could not delete published outbox rows at stop: %r", error)


def attach_batch_consumer(app: faust.App, handler: Handler, settings: Settings,
                          topic_names: list[str],
                          connect: Callable[[], psycopg.Connection]) -> BatchRunner:
    """The default input path: `BatchConsumer` (below) feeds the runner from aiokafka."""
    health: WorkerHealth | None = getattr(app, "passnum_health", None)
    if health is not None:
        health.processor = handler.processor
        handler = MeteredHandler(handler, health.metrics)
    runner = BatchRunner(app, handler, settings, connect)
    if health is not None:
        health.runner = runner
    if settings.consumer == "stream":
        _attach_stream_agent(app, runner, settings, topic_names)
        return runner
    assert settings.consumer == "batch", f"unknown consumer {settings.consumer!r}"
    # Faust's conductor refuses to start without a subscription: an agent that only reads
    # the dead-letter topic (under the faust group, changing nothing) keeps it content.
    idle_topic = app.topic(topology_for(settings).dead_letters.name,
                           key_serializer="raw", value_serializer="raw")

    async def idle(stream: faust.StreamT) -> None:
        async for _ in stream:
            pass

    app.agent(idle_topic, name=f"{handler.processor}-idle")(idle)
    service = BatchConsumer(runner, settings, topic_names, f"{app.conf.id}-batches")
    app.service(service)  # type: ignore[arg-type]
    return runner


class _WaitForBatch(ConsumerRebalanceListener):  # type: ignore[misc]
    """A rebalance waits until the batch in hand is decided and published: the next owner
    of a partition would otherwise find its rows in the outbox and publish them too."""

    def __init__(self, lock: asyncio.Lock, runner: BatchRunner,
                 commit_now: Callable[[], Awaitable[None]],
                 seek: Callable[[Any], Awaitable[None]]) -> None:
        self.lock = lock
        self.runner = runner
        self.commit_now = commit_now
        self.seek = seek

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Logged so that a rebalance can be told from the workers' logs (which member
        # lost and got what, and when).
        logger.info("partitions revoked: %s", _partition_names(revoked))
        async with self.lock:
            await self.runner.drain()
            # So that the next owner does not re-read what was decided since the last
            # commit (it would only skip it).
            await self.commit_now()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        logger.info("partitions assigned: %s", _partition_names(assigned))
        await self.seek(assigned)


def _partition_names(partitions: Any) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)) or "none"


class BatchConsumer(mode.Service):
    """Reads input records in batches with `AIOKafkaConsumer.getmany` and hands each batch
    to the runner; commits offsets after the batch (a hint only). Any failure, or a
    cancellation in the middle of a batch, exits the process before a commit."""

    def __init__(self, runner: BatchRunner, settings: Settings, topic_names: list[str],
                 group_id: str, **kwargs: Any) -> None:
        self.runner = runner
        self.settings = settings
        self.topic_names = topic_names
        self.group_id = group_id
        self.consumer: AIOKafkaConsumer | None = None
        self.batch_lock = asyncio.Lock()
        # Offsets decided but not yet committed, and the commit in flight: see _commit.
        self.uncommitted: dict[Any, int] = {}
        self.committing: asyncio.Task[None] | None = None
        self.last_commit = 0.0  # event-loop time of the last commit
        # Per assigned partition, how many records its log holds at least: see
        # _check_log_end.
        self.log_end_at_least: dict[Any, int] = {}
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        settings = self.settings
        # No automatic reset: every assigned partition is read from its position in
        # PostgreSQL (_seek_to_positions), and a position beyond the broker's log means the
        # log is not the one the positions belong to (a reset to the earliest offset would
        # make the worker skip the new log's commands as already decided).
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers, group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="none",
            max_poll_records=settings.batch_max_commands,
            session_timeout_ms=int(settings.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(settings.heartbeat_interval_seconds * 1000),
            fetch_max_wait_ms=int(settings.fetch_max_wait_seconds * 1000))
        await self.consumer.start()
        health: WorkerHealth | None = getattr(self.runner.app, "passnum_health", None)
        if health is not None:
            health.consumer = self.consumer  # its lag and group membership: readiness
        self.consumer.subscribe(self.topic_names, listener=_WaitForBatch(
            self.batch_lock, self.runner, self._commit_pending, self._seek_to_positions))

    async def _seek_to_positions(self, assigned: Any) -> None:
        """Read each assigned partition again from the last record decided on it (the one
        before its position in PostgreSQL): the batch checks that record's digest, which
        tells whether the broker still serves the log the positions were taken from."""
        assert self.consumer is not None
        partitions = sorted(assigned, key=lambda tp: (tp.topic, tp.partition))
        if not partitions:
            return
        positions = await self.runner.stored_positions(
            [(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            position = positions[(tp.topic, tp.partition)]
            self.consumer.seek(tp, max(0, position - 1))
            self.log_end_at_least[tp] = position

    def _check_log_end(self, fetched: dict[Any, list[Any]]) -> None:
        """The log of a partition holds at least every record decided on it. A fetch
        high-water mark below that means the log is not the positions' own (a memory broker
        restarted empty answers fetches beyond its end with no error and no record: left
        alone, the worker would wait there, then skip the new log's first commands)."""
        assert self.consumer is not None
        for tp, messages in fetched.items():
            if messages:
                self.log_end_at_least[tp] = max(self.log_end_at_least.get(tp, 0),
                                                messages[-1].offset + 1)
        for tp in self.consumer.assignment():
            high_water = self.consumer.highwater(tp)
            expected = self.log_end_at_least.get(tp)
            if high_water is not None and expected is not None and high_water < expected:
                raise LogMismatch(f"{tp.topic}[{tp.partition}] ends at offset {high_water}, "
                                  f"before the {expected} records decided on it")

    async def on_stop(self) -> None:
        if self.committing is not None:
            self.committing.cancel()  # it may be waiting for its interval: commit now
            await asyncio.gather(self.committing, return_exceptions=True)
        if self.consumer is not None:
            await self._commit_pending()
            await self.consumer.stop()
        await self.runner.stop()

    @mode.Service.task
    async def _batches(self) -> None:
        try:
            while not self.should_stop:
                await self._one_batch()
        except asyncio.CancelledError:
            if self.runner.busy:
                _die("batch consumer cancelled in the middle of a batch")
            raise
        except LogMismatch as error:
            _refuse_log(error)
        except OffsetOutOfRangeError as error:
            _refuse_log(LogMismatch(
                f"a stored position is beyond the broker's log ({error!r}): the log was "
                f"emptied or replaced"))
        except BaseException as error:  # noqa: BLE001 - any failure must not commit
            logger.exception("batch consumer failed")
            _die(f"batch consumer failed: {error!r}")

    async def _fetch(self) -> dict[Any, list[Any]]:
        """Up to `batch_max_commands` records. One `getmany` returns what the fetcher holds,
        about one record batch per partition (a few hundred records at most here). Under
        load, keep taking while full record batches keep coming, within
        `batch_max_wait_seconds`: bigger batches, fewer transactions. A trickle (interactive
        traffic) is decided at once: waiting for more would only add latency."""
        assert self.consumer is not None
        settings = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.batch_max_wait_seconds
        fetched: dict[Any, list[Any]] = {}
        taken = 0
        timeout = settings.batch_max_wait_seconds
        while taken < settings.batch_max_commands:
            try:
                more = await self.consumer.getmany(
                    timeout_ms=int(timeout * 1000),
                    max_records=settings.batch_max_commands - taken)
            except NoOffsetForPartitionError as error:
                # A new partition (no committed offset) asked for its offset before the
                # assignment listener's seek landed: seek it again and fetch.
                await self._seek_to_positions(list(error.args))
                continue
            arrived = 0
            for partition, messages in more.items():
                fetched.setdefault(partition, []).extend(messages)
                arrived += len(messages)
            taken += arrived
            timeout = min(FETCH_TOP_UP_SECONDS, deadline - loop.time())
            if arrived < FETCH_TOP_UP_MIN_RECORDS or timeout <= 0:
                break
        self._check_log_end(fetched)
        return fetched

    async def _one_batch(self) -> None:
        assert self.consumer is not None
        fetched = await self._fetch()
        records = [InputRecord(message.topic, message.partition, message.offset,
                               message.key, message.value)
                   for messages in fetched.values() for message in messages]
        if not records:
            return
        async with self.batch_lock:
            self.runner.busy = True
            await self.runner.run_batch(records)
            self.runner.busy = False
        self.uncommitted.update({partition: messages[-1].offset + 1
                                 for partition, messages in fetched.items()})
        if self.committing is None or self.committing.done():
            self.committing = asyncio.get_running_loop().create_task(self._commit())

    async def _commit(self) -> None:
        """Commit the offsets of decided batches, off the batches' path and at most every
        OFFSET_COMMIT_INTERVAL_SECONDS: committed offsets are only where the next owner
        starts reading (the positions in PostgreSQL decide what is skipped), so the next
        batch need not wait for them, nor every batch pay for a request to the broker
        (each costs CPU in the worker and the broker: 6 % of a worker's at 200 requests/s
        when every batch committed). Runs until nothing is left."""
        loop = asyncio.get_running_loop()
        while self.uncommitted:
            await asyncio.sleep(max(0.0, self.last_commit + OFFSET_COMMIT_INTERVAL_SECONDS
                                    - loop.time()))
            await self._commit_pending()

    async def _commit_pending(self) -> None:
        if self.consumer is None or not self.uncommitted:
            return
        offsets, self.uncommitted = self.uncommitted, {}
        self.last_commit = asyncio.get_running_loop().time()
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as error:
            # Only a hint is lost: the next owner re-reads and the positions skip.
            logger.warning("offset commit failed (the positions still hold): %r", error)

    @mode.Service.task
    async def _vacuum(self) -> None:
        await self.runner.vacuum_outbox_forever()

    @mode.Service.timer(2.0)
    async def _sweep(self) -> None:
        if self.consumer is None or self.batch_lock.locked():
            return
        async with self.batch_lock:
            await self.runner.sweep([(p.topic, p.partition) for p in self.consumer.assignment()])


def _attach_stream_agent(app: faust.App, runner: BatchRunner, settings: Settings,
                         topic_names: list[str]) -> None:
    """The faust stream path (`PASSNUM_CONSUMER=stream`): `take_events` hands over up to
    `batch_max_commands` records and faust acks them when the agent asks for the next
    batch, i.e. after our commit and publication."""
    topic = app.topic(*topic_names, key_serializer="raw", value_serializer="raw")

    async def process(stream: faust.StreamT) -> None:
        try:
            # faust's StreamT declares take but not take_events, which its Stream has
            async for events in stream.take_events(  # type: ignore[attr-defined]
                    settings.batch_max_commands, within=settings.batch_max_wait_seconds):
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

    app.agent(topic, name=f"{runner.handler.processor}-batches", concurrency=1)(process)
    app.service(_RunnerLifecycle(runner))  # type: ignore[arg-type]

    @app.task
    async def vacuum_outbox() -> None:
        await runner.vacuum_outbox_forever()

    @app.timer(interval=2.0)
    async def sweep_outbox() -> None:
        await runner.sweep([(tp.topic, tp.partition) for tp in app.consumer.assignment()])


class _RunnerLifecycle(mode.Service):
    """Stops the runner with the worker (the stream path has no BatchConsumer to do it)."""

    def __init__(self, runner: BatchRunner, **kwargs: Any) -> None:
        self.runner = runner
        super().__init__(**kwargs)

    async def on_stop(self) -> None:
        await self.runner.stop()
