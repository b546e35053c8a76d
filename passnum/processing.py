"""The processing core: how a batch of input records becomes decided, durable, published
events, exactly once in effect, whatever crashes. See docs/processing.md for the proof.

One batch = one PostgreSQL transaction that
  1. locks the position row of every input partition in the batch (`FOR UPDATE`): a
     second worker holding the same partition after a rebalance waits here, then sees the
     advanced position and skips what was already decided;
  2. drops records below the recorded position (a re-delivered record is a no-op);
  3. decodes each record; undecodable or schema-invalid input becomes a dead-letter row;
  4. answers a command whose `request_id` already has an outcome with the recorded outcome
     (same bytes, same event ids) instead of deciding again;
  5. lets the service's handler decide the rest and write its state;
  6. appends the decided events to the outbox, chained per input partition, records the
     outcomes, and advances the positions.
Only after the commit are the outbox rows published, in id order, and deleted. A crash
before the commit leaves nothing; a crash after it leaves outbox rows that the next owner of
the partition publishes again, before anything newer, under the same event ids. Nothing here
relies on Kafka transactions, idempotent producers, end offsets or committed offsets.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence

import psycopg

from passnum.codec import (
    CHAIN_HEADER,
    DecodeFailure,
    decode_command,
    decode_event,
    encode,
    next_link,
    request_fingerprint,
)
from schemas.base import Command, Event

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Decision:
    """The events one command produced, each with the topic and key it goes to."""

    command: Command
    events: list[tuple[str, bytes, Event]]


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    key: bytes | None
    payload: bytes
    chain_link: bytes | None

    def headers(self) -> list[tuple[str, bytes]]:
        return [(CHAIN_HEADER, self.chain_link)] if self.chain_link else []


class Handler(Protocol):
    """What a service provides to the core: its name, which inputs are commands and which
    are other services' events, and the decisions themselves (state I/O included)."""

    processor: str
    command_topics: frozenset[str]
    event_topics: frozenset[str]
    dead_letter_topic: str

    def decide_commands(self, connection: psycopg.Connection, commands: Sequence[Command]
                        ) -> list[Decision]: ...

    def apply_events(self, connection: psycopg.Connection, events: Sequence[Event]) -> None: ...


@dataclass
class _Position:
    next_offset: int
    chain_sequence: int
    chain_hash: str


@dataclass
class _BatchOutput:
    outbox: list[tuple[str, int, str, bytes | None, bytes, bytes | None]] = field(
        default_factory=list)
    outcomes: list[tuple[str, str, list[str], list[str], list[str], list[bytes], list[bytes],
                         list[bytes]]] = field(default_factory=list)


def _lock_positions(connection: psycopg.Connection, processor: str,
                    partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], _Position]:
    topics = [topic for topic, _ in partitions]
    numbers = [number for _, number in partitions]
    connection.execute(
        "INSERT INTO processor_positions (processor, topic, partition) "
        "SELECT %s, t, p FROM unnest(%s::text[], %s::int[]) AS u(t, p) ON CONFLICT DO NOTHING",
        (processor, topics, numbers))
    rows = connection.execute(
        "SELECT topic, partition, next_offset, chain_sequence, chain_hash "
        "FROM processor_positions WHERE processor = %s "
        "AND (topic, partition) IN (SELECT * FROM unnest(%s::text[], %s::int[])) "
        "ORDER BY topic, partition FOR UPDATE",
        (processor, topics, numbers)).fetchall()
    return {(topic, number): _Position(offset, sequence, digest)
            for topic, number, offset, sequence, digest in rows}


def _save_positions(connection: psycopg.Connection, processor: str,
                    positions: dict[tuple[str, int], _Position]) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE processor_positions SET next_offset = %s, chain_sequence = %s, "
            "chain_hash = %s WHERE processor = %s AND topic = %s AND partition = %s",
            [(p.next_offset, p.chain_sequence, p.chain_hash, processor, topic, number)
             for (topic, number), p in positions.items()])


def _recorded_outcomes(connection: psycopg.Connection, processor: str,
                       request_ids: list[str]) -> dict[str, tuple]:
    if not request_ids:
        return {}
    rows = connection.execute(
        "SELECT request_id, fingerprint, event_ids, event_types, topics, keys, payloads, "
        "chain_links FROM request_outcomes WHERE processor = %s AND request_id = ANY(%s)",
        (processor, request_ids), binary=True).fetchall()
    return {row[0]: row[1:] for row in rows}


def _dead_letter(output: _BatchOutput, handler: Handler, record: InputRecord,
                 failure: DecodeFailure) -> None:
    """Undecodable input is kept, with its reason, where an operator can see it."""
    import json

    document = {"source_topic": record.topic, "source_partition": record.partition,
                "source_offset": record.offset, "reason": failure.reason,
                "detail": failure.detail,
                "value_hex": (record.value or b"")[:4096].hex()}
    output.outbox.append((record.topic, record.partition, handler.dead_letter_topic,
                          record.topic.encode(), json.dumps(document).encode(), None))
    logger.warning("dead letter %s/%s@%s: %s", record.topic, record.partition, record.offset,
                   failure.reason)


def _replay_outcome(output: _BatchOutput, record: InputRecord, recorded: tuple) -> None:
    _, _, _, topics, keys, payloads, links = recorded
    for topic, key, payload, link in zip(topics, keys, payloads, links):
        output.outbox.append((record.topic, record.partition, topic, key, payload, link or None))


def _record_decision(output: _BatchOutput, processor: str, record: InputRecord,
                     position: _Position, decision: Decision) -> tuple:
    stream = f"{processor}/{record.topic}/{record.partition}"
    outcome: tuple = (decision.command.request_id, request_fingerprint(decision.command),
                      [], [], [], [], [], [])
    for topic, key, event in decision.events:
        payload = encode(event)
        position.chain_sequence += 1
        link = next_link(stream, position.chain_sequence, position.chain_hash, payload)
        position.chain_hash = link.hash
        header = link.to_header()
        output.outbox.append((record.topic, record.partition, topic, key, payload, header))
        for column, value in zip(outcome[2:], (event.event_id, event.type, topic, key,
                                               payload, header)):
            column.append(value)
    output.outcomes.append(outcome)
    return outcome[1:]


def _process_commands(connection: psycopg.Connection, handler: Handler,
                      records: list[InputRecord], positions: dict[tuple[str, int], _Position],
                      output: _BatchOutput) -> None:
    decoded: list[tuple[InputRecord, Command]] = []
    for record in records:
        command = decode_command(record.value)
        if isinstance(command, DecodeFailure):
            _dead_letter(output, handler, record, command)
        else:
            decoded.append((record, command))
    recorded = _recorded_outcomes(connection, handler.processor,
                                  sorted({command.request_id for _, command in decoded}))
    fresh: list[tuple[InputRecord, Command]] = []
    seen_in_batch: set[str] = set()
    for record, command in decoded:
        if command.request_id not in recorded and command.request_id not in seen_in_batch:
            seen_in_batch.add(command.request_id)
            fresh.append((record, command))
    decisions = iter(handler.decide_commands(connection, [command for _, command in fresh]))
    fresh_ids = {id(command) for _, command in fresh}
    for record, command in decoded:
        if id(command) in fresh_ids:
            position = positions[(record.topic, record.partition)]
            recorded[command.request_id] = _record_decision(
                output, handler.processor, record, position, next(decisions))
        else:
            # A retried request: the recorded outcome again, same bytes and event ids.
            _replay_outcome(output, record, recorded[command.request_id])


def _process_events(connection: psycopg.Connection, handler: Handler,
                    records: list[InputRecord], output: _BatchOutput) -> None:
    events: list[Event] = []
    for record in records:
        event = decode_event(record.value)
        if isinstance(event, DecodeFailure):
            _dead_letter(output, handler, record, event)
        else:
            events.append(event)
    handler.apply_events(connection, events)


def _write_output(connection: psycopg.Connection, processor: str, output: _BatchOutput) -> None:
    if output.outcomes:
        _insert_outcomes(connection, processor, output.outcomes)
    if output.outbox:
        # Binary COPY: in text format every payload byte would be written as hex escapes.
        with connection.cursor().copy(
                "COPY outbox (processor, input_topic, input_partition, topic, key, payload, "
                "chain_link) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "int4", "text", "bytea", "bytea", "bytea"])
            for row in output.outbox:
                copy.write_row((processor, *row))


def _insert_outcomes(connection: psycopg.Connection, processor: str, outcomes: list) -> None:
    """One row per request. `ON CONFLICT DO NOTHING`: a client that reuses a request_id on
    another partition must not crash the worker; the first recorded outcome stands.
    Binary parameters (%b): in text format psycopg escapes every array element with a
    regular expression, which cost a third of a 1000-booklet order's batch."""
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO request_outcomes (processor, request_id, fingerprint, event_ids, "
            "event_types, topics, keys, payloads, chain_links) "
            "VALUES (%b, %b, %b, %b, %b, %b, %b, %b, %b) ON CONFLICT DO NOTHING",
            [(processor, *outcome) for outcome in outcomes])


@dataclass(frozen=True)
class BatchResult:
    partitions: list[tuple[str, int]]  # the input partitions whose outbox to publish
    outbox_rows: int  # rows this batch added to the outbox


def decide_batch(connection: psycopg.Connection, handler: Handler,
                 records: Sequence[InputRecord]) -> BatchResult:
    """Steps 1 to 6 in one transaction."""
    partitions = sorted({(record.topic, record.partition) for record in records})
    if not partitions:
        return BatchResult([], 0)
    with connection.transaction():
        positions = _lock_positions(connection, handler.processor, partitions)
        by_kind: dict[str, list[InputRecord]] = defaultdict(list)
        for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
            position = positions[(record.topic, record.partition)]
            if record.offset < position.next_offset:
                continue  # decided before: a re-delivery changes nothing
            position.next_offset = record.offset + 1
            kind = "command" if record.topic in handler.command_topics else "event"
            assert record.topic in handler.command_topics | handler.event_topics, record.topic
            by_kind[kind].append(record)
        output = _BatchOutput()
        if by_kind["event"]:
            _process_events(connection, handler, by_kind["event"], output)
        if by_kind["command"]:
            _process_commands(connection, handler, by_kind["command"], positions, output)
        _write_output(connection, handler.processor, output)
        _save_positions(connection, handler.processor, positions)
        if output.outcomes:
            # Wakes HTTP handlers waiting for an outcome (passnum.http); delivered at COMMIT.
            connection.execute("SELECT pg_notify('passnum_outcomes', %s)", (handler.processor,))
    return BatchResult(partitions, len(output.outbox))


def pending_outbox(connection: psycopg.Connection, processor: str,
                   partitions: Iterable[tuple[str, int]] | None = None) -> list[OutboxRow]:
    """Rows decided but not yet confirmed published, oldest first."""
    if partitions is None:
        query = ("SELECT id, topic, key, payload, chain_link FROM outbox WHERE processor = %s "
                 "ORDER BY id")
        parameters: tuple = (processor,)
    else:
        pairs = list(partitions)
        query = ("SELECT id, topic, key, payload, chain_link FROM outbox WHERE processor = %s "
                 "AND (input_topic, input_partition) IN "
                 "(SELECT * FROM unnest(%s::text[], %s::int[])) ORDER BY id")
        parameters = (processor, [t for t, _ in pairs], [p for _, p in pairs])
    rows = connection.execute(query, parameters, binary=True).fetchall()
    connection.commit()
    return [OutboxRow(*row) for row in rows]


def forget_published(connection: psycopg.Connection, row_ids: list[int]) -> None:
    if row_ids:
        with connection.transaction():
            connection.execute("DELETE FROM outbox WHERE id = ANY(%s)", (row_ids,))
