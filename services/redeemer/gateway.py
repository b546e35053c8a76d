"""A command gateway that looks up the outcomes of all waiting requests in one query.

`passnum.http.CommandGateway.submit` has each waiting request query its own outcome at
every notification: with N requests in flight and a notification per batch commit, that is
N queries per batch on one connection, and at 200 requests/s the queue of waiters grew
faster than the queries drained it (measured: p99 beyond 15 s, two thirds timing out).
Here one resolver task answers every waiter with one `request_id = ANY(...)` query per
notification (or per short poll, should a notification be missed). Same contract as the
base class: `submit` returns the recorded `Outcome`, or raises TimeoutError. Proposed for
passnum/http.py in docs/redeemer.md.
"""

from __future__ import annotations

import asyncio
import logging

from passnum.codec import decode_event, encode, request_fingerprint
from passnum.http import CommandGateway, Outcome
from passnum.topology import route_command
from schemas.base import Command, Event

logger = logging.getLogger(__name__)
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
        recorded = await self._recorded(command)
        if recorded is not None:
            return recorded
        assert self.producer is not None
        loop = asyncio.get_running_loop()
        entry = self.waiting.get(command.request_id)
        if entry is None:
            entry = (command, loop.create_future())
            self.waiting[command.request_id] = entry
        topic, key = route_command(self.topology, command)
        await self.producer.send_and_wait(topic, encode(command), key=key)
        try:
            outcome = await asyncio.wait_for(asyncio.shield(entry[1]), timeout_seconds)
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
            await cursor.execute(
                "SELECT request_id, fingerprint, payloads FROM request_outcomes "
                "WHERE processor = %s AND request_id = ANY(%s)", (self.processor, request_ids))
            rows = await cursor.fetchall()
        for request_id, fingerprint, payloads in rows:
            entry = self.waiting.pop(request_id, None)
            if entry is None or entry[1].done():
                continue
            events = [decode_event(payload) for payload in payloads]
            entry[1].set_result(Outcome([e for e in events if isinstance(e, Event)],
                                        fingerprint == request_fingerprint(entry[0])))
