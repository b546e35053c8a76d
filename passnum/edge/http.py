"""Shared pieces of the workers' HTTP APIs: tokens, submitting a command and waiting for
its recorded outcome, and error answers with reason codes.

An HTTP request becomes a command on the command topic, decided by the same processor as
any other (one path to every decision); the handler then waits for the outcome that the
processor records in `request_outcomes` (woken by `NOTIFY passnum_outcomes`, with a short
poll as a fallback), and answers with the events.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, NamedTuple, Sequence

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from passnum.core.codec import (
    decode_event,
    encode,
    fingerprint_matches,
    request_fingerprint,
    unpack_outcome,
)
from passnum.core.database import SESSION_OPTIONS
from passnum.core.processing import SELECT_RECORDED_OUTCOMES, process_tag
from passnum.core.publisher import BatchSender
from passnum.core.settings import Settings
from passnum.core.topology import route_command, topology_for
from passnum.edge.problems import problem
from schemas.base import Command, Event

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tenant:
    kind: str  # collectivite | venue | operator
    identifier: str  # SIREN, SIRET or operator name


def token_digest(token: str) -> str:
    # surrogateescape: a header's bytes that are not UTF-8 reach us as lone surrogates; such
    # a token names no tenant (401), it does not fail the request.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def issue_token(connection: psycopg.Connection, kind: str, identifier: str) -> str:
    token = f"pn_{kind[:3]}_{secrets.token_urlsafe(24)}"
    with connection.transaction():
        connection.execute(
            "INSERT INTO api_tokens (token_sha256, tenant_kind, tenant_id) VALUES (%s, %s, %s)",
            (token_digest(token), kind, identifier))
    return token


class TokenCache:
    """Recently verified tokens, so that an API does not query PostgreSQL for the same token
    at every request (half of a request's database work at 200 requests/s). A revoked token
    keeps working for at most `seconds`; unknown tokens are not cached, so a new token works
    at once. Bounded: it forgets everything when it holds `max_entries`."""

    def __init__(self, seconds: float, max_entries: int = 10_000) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self.entries: dict[str, tuple[float, Tenant]] = {}
        # The database lookup of a token in flight, shared by the requests that miss the
        # cache meanwhile: when an entry expires under load, the hundreds of requests
        # queued with that token made one query each (a quarter of the API's CPU at
        # 1,000 requests/s, measured), where one answers them all.
        self.lookups: dict[str, asyncio.Future[Tenant | None]] = {}
        # Moved on by `forget`: a lookup begun before a revocation caches nothing.
        self.generation = 0

    def get(self, digest: str, now: float) -> Tenant | None:
        entry = self.entries.get(digest)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def put(self, digest: str, tenant: Tenant, now: float) -> None:
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
        self.entries[digest] = (now + self.seconds, tenant)

    def forget(self, tenant: Tenant) -> None:
        """After a rotation or a revocation in this process: the tenant's old tokens stop
        working here at once (other processes forget them within `seconds`)."""
        for digest in [d for d, (_, known) in self.entries.items() if known == tenant]:
            self.entries.pop(digest, None)
        # The lookups in flight may have read the token before it was revoked: requests
        # that come now look it up again, and what those lookups find is not cached.
        self.generation += 1
        self.lookups.clear()

    def look_up(self, digest: str, lookup: Callable[[], Awaitable[Tenant | None]]
                ) -> asyncio.Future[Tenant | None]:
        """The lookup of `digest` in flight, or `lookup()` started: one per token, whose
        answer is cached once, when it comes, unless the cache forgot tenants meanwhile."""
        future = self.lookups.get(digest)
        if future is not None:
            return future
        future = asyncio.ensure_future(lookup())
        self.lookups[digest] = future
        generation = self.generation

        def done(finished: asyncio.Future[Tenant | None]) -> None:
            if self.lookups.get(digest) is finished:
                del self.lookups[digest]
            if finished.cancelled() or finished.exception() is not None:
                return
            tenant = finished.result()
            if tenant is not None and generation == self.generation:
                self.put(digest, tenant, time.monotonic())

        future.add_done_callback(done)
        return future


async def authenticate(connection_source: Any, authorization: str | None,
                       cache: TokenCache | None = None) -> Tenant | None:
    """`connection_source`: an async context manager giving a connection (a pool's
    `connection()`), entered only when the cache does not know the token."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    digest = token_digest(authorization.removeprefix("Bearer ").strip())
    now = time.monotonic()
    if cache is None:
        return await _look_up_token(connection_source, digest)
    if (tenant := cache.get(digest, now)) is not None:
        return tenant
    lookup = cache.look_up(digest, lambda: _look_up_token(connection_source, digest))
    # Shielded: a request that ends early must not cancel the others' lookup.
    return await asyncio.shield(lookup)


async def _look_up_token(connection_source: Any, digest: str) -> Tenant | None:
    async with connection_source as connection:
        async with connection.cursor() as cursor:
            await cursor.execute(
                "SELECT tenant_kind, tenant_id FROM api_tokens "
                "WHERE token_sha256 = %s AND revoked_at IS NULL", (digest,))
            row = await cursor.fetchone()
        await connection.commit()
    return None if row is None else Tenant(*row)


@dataclass(frozen=True)
class Outcome:
    events: list[Event]
    fingerprint_matches: bool  # False: the request_id was used before for another body


# The gateway sends its commands at most once per this interval: under load, the commands
# of a few milliseconds share one produce request instead of one request each. At 1,000
# HTTP requests/s on two cores this took the broker from 360-540 to 235-340 µs of CPU per
# request, and p99 from 435-560 to 43-168 ms (docs/redeemer.md; 8 ms did no better); a lone
# command still goes at once, so a quiet API waits for nothing.
COMMAND_BATCH_INTERVAL_SECONDS = 0.004


class LogUnavailable(Exception):
    """The broker did not take a command within `log_send_timeout_seconds`: the request
    is answered 503 at once (retry with the same key), instead of hanging until the
    client's own timeout."""


class _Outgoing(NamedTuple):
    """A command waiting for its batch (`CommandGateway._send`): a record for `BatchSender`,
    and the future its request waits on."""

    topic: str
    key: bytes
    payload: bytes
    acknowledged: asyncio.Future[None]

    def headers(self) -> list[tuple[str, bytes]]:
        return []  # a command carries no chain link


class CommandGateway:
    """Submits commands to the log and waits for their recorded outcomes."""

    def __init__(self, settings: Settings, processor: str) -> None:
        self.settings = settings
        self.processor = processor
        self.topology = topology_for(settings)
        self.producer: AIOKafkaProducer | None = None
        self.listener: psycopg.AsyncConnection | None = None
        self.reader: psycopg.AsyncConnection | None = None
        self.listen_task: asyncio.Task[None] | None = None
        # Replaced at each notification, so that every waiter wakes (an Event cleared by
        # one waiter could hide the notification from another).
        self.wakeup: asyncio.Future[None] | None = None
        # True once a batch runner hands over the outcomes it commits
        # (`BatchedCommandGateway.resolve_decided`): that runner's own notifications then
        # need no lookup, unless the batch replayed recorded outcomes. The runner is this
        # process's, or that of the worker which started this API process and feeds it
        # (passnum.edge.web_server.OutcomeFeed): `feeding_process` is its `process_tag`.
        self.fed_by_runner = False
        self.feeding_process = process_tag()
        # Commands waiting for their batch (see `_send`), and what sends them.
        self.outgoing: list[_Outgoing] = []
        self.sender = BatchSender()
        # When the last batch went (the event loop's clock): the next goes no sooner than
        # COMMAND_BATCH_INTERVAL_SECONDS after it.
        self.last_flush = float("-inf")
        # The bound of the batch being gathered (`_time_out`), and the batches being sent.
        self.outgoing_bound: asyncio.TimerHandle | None = None
        self.sending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers,
                                         acks="all", linger_ms=0)
        await self.producer.start()
        self.wakeup = asyncio.get_running_loop().create_future()
        self.reader = await psycopg.AsyncConnection.connect(self.settings.database_url,
                                                            options=SESSION_OPTIONS,
                                                            autocommit=True)
        self.listener = await psycopg.AsyncConnection.connect(self.settings.database_url,
                                                              autocommit=True)
        await self.listener.execute("LISTEN passnum_outcomes")
        self.listen_task = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        assert self.listener is not None
        async for notification in self.listener.notifies():
            if not self._worth_a_lookup(notification.payload):
                continue
            woken, self.wakeup = self.wakeup, asyncio.get_running_loop().create_future()
            if woken is not None and not woken.done():
                woken.set_result(None)

    def _worth_a_lookup(self, payload: str) -> bool:
        """Whether a notification (passnum.core.processing.outcomes_notification) may bring
        an outcome this gateway's waiters do not have: not another processor's, and not
        one decided by the process whose runner hands its outcomes over."""
        processor, _, rest = payload.partition(" ")
        if processor != self.processor:
            return False
        process, _, kind = rest.partition(" ")
        return not (self.fed_by_runner and process == self.feeding_process
                    and kind == "decided")

    async def stop(self) -> None:
        if self.listen_task is not None:
            # Cancel the listener before closing its connection, or it logs a spurious error.
            self.listen_task.cancel()
            await asyncio.gather(self.listen_task, return_exceptions=True)
        if self.producer is not None:
            await self.producer.stop()
        for connection in (self.reader, self.listener):
            if connection is not None:
                await connection.close()

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        """Append a command to the log, within a bound. A command the broker may still take
        after the bound is harmless: the client's retry carries the same request id.

        Commands go together, one record batch per partition (`_send_outgoing`), as the
        worker's publisher does: aiokafka's `send` costs tens of microseconds of bookkeeping
        per record, paid by every HTTP request. A batch goes at once when the previous one
        went at least COMMAND_BATCH_INTERVAL_SECONDS ago, else when that interval is over."""
        assert self.producer is not None
        loop = asyncio.get_running_loop()
        acknowledged: asyncio.Future[None] = loop.create_future()
        self.outgoing.append(_Outgoing(topic, key, value, acknowledged))
        if len(self.outgoing) == 1:
            # The bound counts from the batch's first command, the earliest of them.
            self.outgoing_bound = loop.call_later(self.settings.log_send_timeout_seconds,
                                                  _time_out, self.outgoing)
            wait = self.last_flush + COMMAND_BATCH_INTERVAL_SECONDS - loop.time()
            if wait > 0:
                loop.call_later(wait, self._flush_outgoing)
            else:
                loop.call_soon(self._flush_outgoing)
        try:
            await acknowledged
        except (TimeoutError, KafkaError) as error:
            raise LogUnavailable(f"the broker did not take the command: {error!r}") from None

    def _flush_outgoing(self) -> None:
        taken, self.outgoing = self.outgoing, []
        if taken:
            loop = asyncio.get_running_loop()
            self.last_flush = loop.time()
            task = loop.create_task(self._send_outgoing(taken, self.outgoing_bound))
            self.sending.add(task)  # held until it ends (the loop keeps weak references)
            task.add_done_callback(self.sending.discard)

    async def _send_outgoing(self, taken: list[_Outgoing], bound: asyncio.TimerHandle | None
                             ) -> None:
        """One record batch per partition, each record on the partition Kafka's default
        partitioner gives its key (the one `send` would have chosen); each command's future
        ends with its batch's acknowledgement (acks=all), or with its error. Then the
        batch's bound is cancelled: its timer would hold the batch for seconds."""
        producer = self.producer
        assert producer is not None
        try:
            await self.sender.send(producer, taken, _settle_when_sent)
        except Exception as error:  # noqa: BLE001 - each request answers 503 with it
            for command in taken:
                if not command.acknowledged.done():
                    command.acknowledged.set_exception(KafkaError(repr(error)))
        await asyncio.gather(*(command.acknowledged for command in taken),
                             return_exceptions=True)
        if bound is not None:
            bound.cancel()

    async def _recorded(self, command: Command) -> Outcome | None:
        assert self.reader is not None
        async with self.reader.cursor(binary=True) as cursor:
            await cursor.execute(
                "SELECT fingerprint, outcome FROM request_outcomes "
                "WHERE processor = %s AND request_id = %s", (self.processor, command.request_id))
            row = await cursor.fetchone()
        if row is None:
            return None
        return _outcome(row[0], row[1], command)

    async def submit(self, command: Command, timeout_seconds: float = 10.0) -> Outcome:
        """Send the command (unless already decided) and wait for its outcome."""
        recorded = await self._recorded(command)
        if recorded is not None:
            return recorded
        assert self.producer is not None
        topic, key = route_command(self.topology, command)
        await self._send(topic, key, encode(command))
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        while True:
            wakeup = self.wakeup
            assert wakeup is not None
            recorded = await self._recorded(command)
            if recorded is not None:
                return recorded
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(command.request_id)
            try:
                await asyncio.wait_for(asyncio.shield(wakeup), timeout=min(remaining, 0.25))
            except asyncio.TimeoutError:
                pass  # a bounded wait: look again even if a notification was missed


def _time_out(batch: Sequence[_Outgoing]) -> None:
    """The bound of `CommandGateway._send`, one timer per batch rather than one per request
    (an `asyncio.timeout` per request cost about 4 µs of the worker's CPU each)."""
    for command in batch:
        if not command.acknowledged.done():
            command.acknowledged.set_exception(TimeoutError())


def _settle_when_sent(sent: asyncio.Future[Any], batch: Sequence[_Outgoing]) -> None:
    """End each request's future with its record batch's acknowledgement or error (a
    request that timed out meanwhile has its future ended already)."""
    def settle(done: asyncio.Future[Any]) -> None:
        error = None if done.cancelled() else done.exception()
        for command in batch:
            acknowledged = command.acknowledged
            if acknowledged.done():
                continue
            if done.cancelled():
                acknowledged.set_exception(KafkaError("the record batch was cancelled"))
            elif error is not None:
                acknowledged.set_exception(
                    error if isinstance(error, KafkaError) else KafkaError(repr(error)))
            else:
                acknowledged.set_result(None)

    sent.add_done_callback(settle)


def error_body(reason: str, detail: str = "", status: int | None = None) -> dict[str, Any]:
    """An error answer's body: RFC 9457 problem details with the reason as `code`
    (passnum/edge/problems.py). An answer without its status gets it where it is sent."""
    return problem(reason, detail, status)


# ------------------------------------------------------------------ batched lookups
# `CommandGateway.submit` has each waiting request query its own outcome at every
# notification: N queries per batch commit with N requests in flight (measured at 200
# requests/s: p99 beyond 15 s). `BatchedCommandGateway` answers every waiter with one
# `request_id = ANY(...)` query per notification (or per short poll). Both HTTP APIs use it.
# A bound on how long a missed notification can delay an answer.
POLL_SECONDS = 0.25
# A bound on one lookup: waiters beyond it are looked up at the next turn.
LOOKUP_MAX_REQUESTS = 5_000


class BatchedCommandGateway(CommandGateway):
    def __init__(self, *arguments: object, **keywords: object) -> None:
        super().__init__(*arguments, **keywords)  # type: ignore[arg-type]
        self.waiting: dict[str, tuple[Command, asyncio.Future[Outcome]]] = {}
        self.resolver: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        self.resolver = asyncio.get_running_loop().create_task(self._resolve_forever())

    async def stop(self) -> None:
        if self.resolver is not None:
            self.resolver.cancel()
        await super().stop()

    async def submit(self, command: Command, timeout_seconds: float = 10.0) -> Outcome:
        """No lookup before sending: a retried request goes to the log again and the worker
        answers it with the recorded outcome (same events, same ids), which the batched
        lookup then finds. A query per request cost more than the rare retry's extra trip."""
        assert self.producer is not None
        loop = asyncio.get_running_loop()
        entry = self.waiting.get(command.request_id)
        created = entry is None
        if entry is None:
            entry = (command, loop.create_future())
            self.waiting[command.request_id] = entry
        topic, key = route_command(self.topology, command)
        try:
            await self._send(topic, key, encode(command))
        except LogUnavailable:
            if created and not entry[1].done():
                self.waiting.pop(command.request_id, None)  # else looked up for ever
            raise
        try:
            async with asyncio.timeout(timeout_seconds):
                outcome = await asyncio.shield(entry[1])
        except TimeoutError:
            raise TimeoutError(command.request_id) from None
        finally:
            if entry[1].done():
                self.waiting.pop(command.request_id, None)
        # Two concurrent submissions of one request_id share the lookup; each is judged
        # against its own body.
        if command is not entry[0]:
            return Outcome(outcome.events, outcome.fingerprint_matches and request_fingerprint(
                command) == request_fingerprint(entry[0]))
        return outcome

    def resolve_decided(self, outcomes: dict[str, tuple[str, bytes]]) -> None:
        """Outcomes just committed by the feeding worker (`feeding_process`: this process's
        own, passnum.core.worker, or the one that started this API process): waiting
        requests among them are answered now. The others (decided by another worker
        process, or replayed) are found by the lookup below, at the notification. Only
        this way are answers that are not recorded (a check, a refusal that time lifts)
        known at all."""
        self.fed_by_runner = True
        for request_id in outcomes.keys() & self.waiting.keys():
            command, waiter = self.waiting.pop(request_id)
            if not waiter.done():
                fingerprint, packed = outcomes[request_id]
                waiter.set_result(_outcome(fingerprint, packed, command))

    async def _resolve_forever(self) -> None:
        while True:
            wakeup = self.wakeup
            if self.waiting:
                try:
                    await self._resolve_waiting()
                except Exception:
                    logger.exception("outcome lookup failed; retrying at the next turn")
            assert wakeup is not None
            try:
                await asyncio.wait_for(asyncio.shield(wakeup), POLL_SECONDS)
            except TimeoutError:
                pass

    async def _resolve_waiting(self) -> None:
        assert self.reader is not None
        request_ids = list(self.waiting)[:LOOKUP_MAX_REQUESTS]
        async with self.reader.cursor(binary=True) as cursor:
            await cursor.execute(SELECT_RECORDED_OUTCOMES, (request_ids, self.processor))
            rows = await cursor.fetchall()
        for request_id, fingerprint, packed in rows:
            entry = self.waiting.pop(request_id, None)
            if entry is None or entry[1].done():
                continue
            entry[1].set_result(_outcome(fingerprint, packed, entry[0]))


def _outcome(fingerprint: str, packed: bytes, command: Command) -> Outcome:
    """A recorded outcome as the APIs answer it: its events, and whether the request that
    recorded it had this command's body."""
    events = [decode_event(payload) for _, _, payload, _ in unpack_outcome(packed)]
    return Outcome([e for e in events if isinstance(e, Event)],
                   fingerprint_matches(fingerprint, command))
