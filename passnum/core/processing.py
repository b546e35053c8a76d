"""The processing core: how a batch of input records becomes decided, durable, published
events, exactly once in effect, whatever crashes. See docs/processing.md for the proof.

One batch = one PostgreSQL transaction that
  1. locks the position row of every input partition in the batch (`FOR UPDATE`): a
     second worker holding the same partition after a rebalance waits here, then sees the
     advanced position and skips what was already decided;
  2. drops records below the recorded position (a re-delivered record is a no-op; the
     one just below is checked against the digest kept with the position: `LogMismatch`);
  3. decodes each record; undecodable or schema-invalid input, or another service's
     command, becomes a dead-letter row;
  4. does not decide again a command whose `request_id` already has an outcome: the
     recorded outcome is the answer, and nothing is appended to the log;
  5. lets the service's handler decide the rest and write its state;
  6. appends the decided events to the outbox, chained per input partition, records the
     outcomes, and advances the positions.
Only after the commit are the outbox rows published, in id order, and deleted. A crash
before the commit leaves nothing; a crash after it leaves outbox rows that the next owner of
the partition publishes again, before anything newer, under the same event ids. Nothing here
relies on Kafka transactions, idempotent producers, end offsets or committed offsets.
A batch that fails with an error a record may cause is split by the worker down to that
record, which `dead_letter_record` answers (passnum.core.worker, `_run_transaction`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Protocol, Sequence

import psycopg

from passnum.core.codec import (
    DecodeFailure,
    chain_headers,
    decode_command,
    decode_event,
    encode,
    pack_outcome,
    request_fingerprint,
    unpack_outcome,
)
from passnum.core.head_signatures import sign_batch_heads, split_link
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
    """The events one command produced, each with the topic and key it goes to.
    `final` False: an answer that time or later facts can change (a question, a refusal
    that time lifts): published and answered, but not recorded as the request's outcome,
    so that the same request id sent again is decided again, from the present state."""

    command: Command
    events: list[tuple[str, bytes, Event]]
    final: bool = True
    # Facts the processor records in the same stream just before this decision's events,
    # that are not its answer: published and chained, never part of the request's outcome
    # (e.g. the redeemer applying a block the issuer reported: `BookletBlockApplied`).
    preface: list[tuple[str, bytes, Event]] = field(default_factory=list)


class OutboxEvent(NamedTuple):
    """An event to publish. A named tuple rather than a frozen dataclass: a batch of
    issuance holds 40,000 of them, and a tuple is built for a fraction of the cost; being
    (topic, key, payload, chain link), it is also what `pack_outcome` packs."""

    topic: str
    key: bytes | None
    payload: bytes
    chain_link: bytes | None

    def headers(self) -> list[tuple[str, bytes]]:
        # a stream's last event in its batch also carries its head signature
        return split_link(self.chain_link) if self.chain_link else []


@dataclass(frozen=True)
class OutboxRow:
    """One outbox row: the events one batch decided from one input partition, in order."""

    id: int
    events: list[OutboxEvent]


class Handler(Protocol):
    """What a service provides to the core: its name, which inputs are commands and which
    are other services' events, the command classes it decides (a command of another
    service found on its topic is a dead letter, not a crash), and the decisions themselves
    (state I/O included)."""

    # Read-only: a service may give them as attributes or as properties.
    @property
    def processor(self) -> str: ...

    @property
    def command_topics(self) -> frozenset[str]: ...

    @property
    def event_topics(self) -> frozenset[str]: ...

    @property
    def dead_letter_topic(self) -> str: ...

    @property
    def command_classes(self) -> tuple[type[Command], ...]: ...

    def decide_commands(self, connection: psycopg.Connection, commands: Sequence[Command]
                        ) -> list[Decision]: ...

    def apply_events(self, connection: psycopg.Connection, events: Sequence[Event]) -> None: ...


def command_weight(handler: Handler, command: Command) -> int:
    """How many events deciding `command` may produce, as far as its handler can tell before
    deciding (`weight` method, optional): one unless the handler says more."""
    weigh = getattr(handler, "weight", None)
    return max(1, int(weigh(command))) if weigh is not None else 1


def holds_a_long_decision(handler: Handler, records: Sequence[InputRecord]) -> bool:
    """Whether one of the records is a command whose decision may take seconds, as its
    handler can tell from the record's bytes before deciding (`long_decision(value)`,
    optional; a settlement close locks and pays a month of redemptions). Such a batch is
    not decided on the event loop, however few its records: it would stop the consumer
    group's heartbeats. Asked of every small batch on the event loop, so the handler tells
    without decoding what the decision decodes anyway, but for the rare candidate."""
    is_long = getattr(handler, "long_decision", None)
    if is_long is None:
        return False
    command_topics = handler.command_topics  # a property that may build a set at each call
    return any(record.topic in command_topics and is_long(record.value) for record in records)


def split_by_weight(handler: Handler, records: Sequence[InputRecord],
                    max_weight: int) -> list[list[InputRecord]]:
    """Cut a fetched batch, in order, into transactions of at most `max_weight` expected
    events (a single heavier command gets a transaction of its own). An order of 1,000
    booklets is 1,000 events: 1,000 such orders in one transaction held a million events
    in memory. Undecodable records weigh one; the transaction sends them to dead letters."""
    if getattr(handler, "weight", None) is None and len(records) <= max_weight:
        return [list(records)]  # every command weighs one: no need to decode them twice
    chunks: list[list[InputRecord]] = []
    current: list[InputRecord] = []
    weight = 0
    for record in records:
        command = decode_command(record.value) if record.topic in handler.command_topics else None
        record_weight = command_weight(handler, command) if isinstance(command, Command) else 1
        if current and weight + record_weight > max_weight:
            chunks.append(current)
            current, weight = [], 0
        current.append(record)
        weight += record_weight
    if current:
        chunks.append(current)
    return chunks


class LogMismatch(Exception):
    """The log the broker serves is not the one the stored positions were taken from (it
    was emptied, recreated, or belongs to another cluster). Deciding on would skip commands
    never decided, or decide some twice: the worker must stop and say so."""


def record_digest(key: bytes | None, value: bytes | None) -> bytes:
    """What identifies a record of the log, stored with the position after it."""
    digest = hashlib.sha256()
    for part in (key, value):
        digest.update(b"\x00" if part is None else b"\x01%d:" % len(part))
        digest.update(part or b"")
    return digest.digest()


def is_infrastructure_error(error: BaseException) -> bool:
    """Errors that retrying can fix or that no record causes: the database or its
    connection, and programming errors in SQL (every record would fail alike). They are
    retried, then the worker exits and resumes from the log. Anything else a batch raises
    (a value a column or a date cannot hold, a failed validation, a recursion...) may be
    caused by one record: the worker looks for it rather than loop (passnum.core.worker)."""
    import psycopg.errors as errors

    if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError,
                          psycopg.ProgrammingError, psycopg.InternalError,
                          psycopg.NotSupportedError, MemoryError, LogMismatch)):
        return True
    return isinstance(error, errors.InsufficientResources)


@dataclass
class _Position:
    next_offset: int
    chain_sequence: int
    chain_hash: str
    # record_digest of the record at next_offset - 1 (None: none recorded yet).
    last_record: bytes | None = None


# An outbox row before it has an id: input topic, input partition, topic, key, payload, link.
PendingRow = tuple[str, int, str, "bytes | None", bytes, "bytes | None"]
# A recorded outcome: its fingerprint and its events (topic, key, payload, chain link).
Recorded = tuple[str, list[tuple[str, "bytes | None", bytes, "bytes | None"]]]


@dataclass
class _BatchOutput:
    outbox: list[PendingRow] = field(default_factory=list)
    outcomes: list[tuple[str, str, bytes]] = field(default_factory=list)  # id, print, packed
    not_final: set[str] = field(default_factory=set)  # request ids not to record
    replayed: bool = False  # a retried request was answered from its recorded outcome


_SELECT_POSITIONS = (
    "SELECT topic, partition, next_offset, chain_sequence, chain_hash, last_record_sha256 "
    "FROM processor_positions WHERE processor = %s "
    "AND (topic, partition) IN (SELECT * FROM unnest(%b::text[], %b::int[])) "
    "ORDER BY topic, partition FOR UPDATE")


def _rows_to_positions(rows: Sequence[tuple]) -> dict[tuple[str, int], _Position]:
    return {(topic, number): _Position(offset, sequence, digest, last)
            for topic, number, offset, sequence, digest, last in rows}


def _create_missing_positions(connection: psycopg.Connection, processor: str,
                              partitions: Sequence[tuple[str, int]]
                              ) -> dict[tuple[str, int], _Position]:
    """A partition seen for the first time gets its position row, then every position is
    locked and read again: one more round trip, once per partition and processor."""
    topics = [topic for topic, _ in partitions]
    numbers = [number for _, number in partitions]
    connection.execute(
        "INSERT INTO processor_positions (processor, topic, partition) "
        "SELECT %s, t, p FROM unnest(%b::text[], %b::int[]) AS u(t, p) "
        "ON CONFLICT DO NOTHING", (processor, topics, numbers))
    return _rows_to_positions(
        connection.execute(_SELECT_POSITIONS, (processor, topics, numbers)).fetchall())


_PROCESS_TAGS: dict[int, str] = {}


def process_tag() -> str:
    """This process among every worker's: its id alone is not enough (each worker of the
    production stack is process 1 of its own container), so a random part is added, once
    per process (a forked child gets its own)."""
    pid = os.getpid()
    tag = _PROCESS_TAGS.get(pid)
    if tag is None:
        tag = _PROCESS_TAGS[pid] = f"{pid}-{secrets.token_hex(6)}"
    return tag


def outcomes_notification(processor: str, replayed: bool) -> str:
    """The payload of `NOTIFY passnum_outcomes`: which processor committed outcomes, in
    which process (`process_tag`), and whether the batch answered retried requests from
    their recorded outcomes. The HTTP gateway in the committing process is handed the
    outcomes it decided directly (passnum.core.worker), so it looks up only what another
    process decided, or what was replayed (passnum.edge.http)."""
    return f"{processor} {process_tag()} {'replayed' if replayed else 'decided'}"


def _save_positions(connection: psycopg.Connection, processor: str,
                    positions: dict[tuple[str, int], _Position], notify: bool,
                    replayed: bool = False) -> None:
    """Advance the positions; with `notify`, also wake the HTTP handlers waiting for an
    outcome, new or replayed (passnum.edge.http; delivered at COMMIT). One statement."""
    items = sorted(positions.items())
    connection.execute(
        "WITH advanced AS (UPDATE processor_positions AS p SET next_offset = u.o, "
        "chain_sequence = u.s, chain_hash = u.h, last_record_sha256 = u.r "
        "FROM unnest(%b::text[], %b::int[], %b::int8[], %b::int8[], %b::text[], %b::bytea[]) "
        "AS u(t, n, o, s, h, r) "
        "WHERE p.processor = %s AND p.topic = u.t AND p.partition = u.n RETURNING 1) "
        "SELECT (SELECT count(*) FROM advanced), "
        "CASE WHEN %s THEN pg_notify('passnum_outcomes', %s) END",
        ([topic for (topic, _), _ in items], [number for (_, number), _ in items],
         [p.next_offset for _, p in items], [p.chain_sequence for _, p in items],
         [p.chain_hash for _, p in items], [p.last_record for _, p in items],
         processor, notify, outcomes_notification(processor, replayed)))


# The outcomes already recorded for some request ids: one probe of the key per id, written
# so that the planner has no other choice. Without statistics (this machine's PostgreSQL
# runs with autovacuum off, so nothing is ever analysed; the connections plan each
# execution with its parameters) `processor = %s AND request_id = ANY(%b)` scanned every
# row of the processor and filtered the 1,000 ids (227 ms a batch at 295,000 outcomes), and
# a plain join with the list hashed every outcome of the processor, which it guessed to be
# a few (109 ms at 50,000; in the throughput bench a third of PostgreSQL's CPU, spilling to
# disk, growing with the table). A lateral subquery that may not be flattened (`OFFSET 0`)
# is run once per id: an index probe.
SELECT_RECORDED_OUTCOMES = (
    "SELECT o.request_id, o.fingerprint, o.outcome "
    "FROM unnest(%b::text[]) AS wanted(request_id) CROSS JOIN LATERAL ("
    "SELECT * FROM request_outcomes AS o WHERE o.processor = %s "
    "AND o.request_id = wanted.request_id OFFSET 0) AS o")


def _recorded_from_rows(rows: Sequence[tuple]) -> dict[str, Recorded]:
    return {request_id: (fingerprint, unpack_outcome(outcome))
            for request_id, fingerprint, outcome in rows}


def _dead_letter(output: _BatchOutput, handler: Handler, record: InputRecord,
                 failure: DecodeFailure) -> None:
    """Undecodable input is kept, with its reason, where an operator can see it."""
    document = {"source_topic": record.topic, "source_partition": record.partition,
                "source_offset": record.offset, "reason": failure.reason,
                "detail": failure.detail,
                "value_hex": (record.value or b"")[:4096].hex()}
    output.outbox.append((record.topic, record.partition, handler.dead_letter_topic,
                          record.topic.encode(), json.dumps(document).encode(), None))
    logger.warning("dead letter %s/%s@%s: %s", record.topic, record.partition, record.offset,
                   failure.reason)


def _record_decision(output: _BatchOutput, processor: str, record: InputRecord,
                     position: _Position, decision: Decision) -> Recorded:
    stream = f"{processor}/{record.topic}/{record.partition}"
    routed = [*decision.preface, *decision.events] if decision.preface else decision.events
    payloads = [encode(event) for _, _, event in routed]
    headers, position.chain_hash = chain_headers(stream, position.chain_sequence,
                                                 position.chain_hash, payloads)
    position.chain_sequence += len(payloads)
    chained: list[tuple[str, bytes | None, bytes, bytes | None]] = [
        (topic, key, payload, header)
        for (topic, key, _), payload, header in zip(routed, payloads, headers)]
    input_topic, input_partition = record.topic, record.partition
    output.outbox.extend([(input_topic, input_partition, topic, key, payload, header)
                          for topic, key, payload, header in chained])
    # The request's outcome is its own events: a preface is published, never answered.
    events = chained[len(decision.preface):] if decision.preface else chained
    fingerprint = request_fingerprint(decision.command)
    output.outcomes.append((decision.command.request_id, fingerprint, pack_outcome(events)))
    if not decision.final:
        output.not_final.add(decision.command.request_id)
    return fingerprint, events


def _process_commands(connection: psycopg.Connection, handler: Handler,
                      records: list[tuple[InputRecord, Command | DecodeFailure]],
                      positions: dict[tuple[str, int], _Position],
                      recorded: dict[str, Recorded], output: _BatchOutput) -> None:
    """`recorded`: the outcomes already recorded for the batch's request ids."""
    decoded: list[tuple[InputRecord, Command]] = []
    for record, command in records:
        if isinstance(command, DecodeFailure):
            _dead_letter(output, handler, record, command)
        else:
            decoded.append((record, command))
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
            output.replayed = True
        # Else a retried request: its outcome is recorded (the HTTP edge answers from it)
        # and its events are in the log or in the outbox already. Nothing is appended: the
        # log holds each decision once, so counting its records gives true totals.


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


def _final_outcomes(output: _BatchOutput) -> list[tuple[str, str, bytes]]:
    return [outcome for outcome in output.outcomes if outcome[0] not in output.not_final]


def _write_output(connection: psycopg.Connection, processor: str, output: _BatchOutput,
                  identifiers: Sequence[int], final: Sequence[tuple[str, str, bytes]]
                  ) -> list[OutboxRow]:
    """Record the `final` outcomes and append the outbox (`_write_outbox`)."""
    if final:
        _insert_outcomes(connection, processor, final)
    return _write_outbox(connection, processor, output, identifiers)


def _write_outbox(connection: psycopg.Connection, processor: str, output: _BatchOutput,
                  identifiers: Sequence[int]) -> list[OutboxRow]:
    """Append the outbox: one row per input partition, its events packed, under
    `identifiers` (drawn at the start of the batch, one per input partition, increasing:
    the publication order). Returns the rows with their ids, so that the worker publishes
    them from memory."""
    by_partition: dict[tuple[str, int], list[OutboxEvent]] = defaultdict(list)
    for input_topic, input_partition, topic, key, payload, link in output.outbox:
        by_partition[(input_topic, input_partition)].append(
            OutboxEvent(topic, key, payload, link))
    groups = sorted(by_partition.items())
    assert len(groups) <= len(identifiers), "an outbox row without an id"
    if groups:
        # An INSERT of a handful of rows (one per input partition) rather than a COPY: it
        # can go in the pipeline that also advances the positions and commits, where a COPY
        # costs two round trips of its own (see `decide_batch`).
        connection.execute(
            "INSERT INTO outbox (id, processor, input_topic, input_partition, events) "
            "SELECT i, %b, t, p, e FROM unnest(%b::int8[], %b::text[], %b::int4[], "
            "%b::bytea[]) AS u(i, t, p, e)",
            (processor, list(identifiers[:len(groups)]),
             [input_topic for (input_topic, _), _ in groups],
             [input_partition for (_, input_partition), _ in groups],
             [pack_outcome(events) for _, events in groups]), binary=True)
    return [OutboxRow(identifier, events) for identifier, (_, events) in zip(identifiers, groups)]


# Up to this many outcomes are recorded with one INSERT, which a pipeline can hold (the
# interactive case: a batch of a few HTTP requests ends in one round trip); more, by COPY,
# which costs two round trips but less CPU per row than psycopg's arrays.
OUTCOMES_INSERT_MAX = 100
# The writes that end a batch go in one pipeline with the commit only when they are small:
# a pipeline holding statements of megabytes (an order of thousands of booklets: its
# outcome and its outbox row) left the worker waiting in COMMIT while PostgreSQL waited
# for the rest of a statement (`ClientRead`), for good: 2 issuances of 20,000 booklets out
# of 6 stalled so. Larger batches write the same statements one after the other.
PIPELINE_BYTES_MAX = 64 * 1024


def written_bytes(final: Sequence[tuple[str, str, bytes]], output: _BatchOutput,
                  bound: int = PIPELINE_BYTES_MAX) -> int:
    """What a batch's last statements carry: its outcomes and its events (before packing),
    counted until past `bound` (an issuance holds 40,000 events: one past is enough)."""
    total = 0
    for _, _, outcome in final:
        total += len(outcome)
        if total > bound:
            return total
    for _, _, _, _, payload, _ in output.outbox:
        total += len(payload)
        if total > bound:
            return total
    return total


def _insert_outcomes(connection: psycopg.Connection, processor: str,
                     outcomes: Sequence[tuple[str, str, bytes]]) -> None:
    """One row per request, with no ON CONFLICT. The request ids were looked up at the start
    of this batch; a client that reused one on another partition, decided by another worker
    in the meantime, makes the insert fail on the primary key: the whole batch rolls back
    and its bounded retry finds the recorded outcome and answers with it. The first outcome
    stands."""
    if len(outcomes) <= OUTCOMES_INSERT_MAX:
        connection.execute(
            "INSERT INTO request_outcomes (processor, request_id, fingerprint, outcome) "
            "SELECT %b, r, f, o FROM unnest(%b::text[], %b::text[], %b::bytea[]) "
            "AS u(r, f, o)",
            (processor, [request_id for request_id, _, _ in outcomes],
             [fingerprint for _, fingerprint, _ in outcomes],
             [outcome for _, _, outcome in outcomes]), binary=True)
        return
    with connection.cursor().copy(
            "COPY request_outcomes (processor, request_id, fingerprint, outcome) FROM STDIN "
            "(FORMAT BINARY)") as copy:
        copy.set_types(["text", "text", "text", "bytea"])
        for request_id, fingerprint, outcome in outcomes:
            copy.write_row((processor, request_id, fingerprint, outcome))


@dataclass(frozen=True)
class BatchResult:
    partitions: list[tuple[str, int]]  # the input partitions whose outbox to publish
    outbox: list[OutboxRow]  # the rows this batch added to the outbox, in id order
    # Whether rows older than this batch's (a crash's leftovers) wait in the outbox of these
    # partitions: then they must be published first, from the database.
    older_rows_pending: bool = False
    # The outcome recorded for each request decided here (not the replayed ones), by
    # request id: fingerprint and packed events, as `request_outcomes` holds them.
    outcomes: dict[str, tuple[str, bytes]] = field(default_factory=dict)


# Whether rows older than this batch's wait in the outbox of its input partitions (a
# crash's leftovers), leaving out the rows this worker is still publishing; and the ids of
# this batch's outbox rows, one per input partition. Ids drawn here rather than by COPY,
# which cannot return them; asked under the position locks taken just before it, so no other
# worker adds rows to these partitions meanwhile.
_OUTBOX_STATE = (
    "SELECT EXISTS (SELECT 1 FROM outbox WHERE processor = %s AND (input_topic, "
    "input_partition) IN (SELECT * FROM unnest(%b::text[], %b::int[])) "
    "AND id <> ALL(%b::int8[])), "
    "ARRAY(SELECT nextval('outbox_id_seq') FROM generate_series(1, %s))")


def decide_batch(connection: psycopg.Connection, handler: Handler,
                 records: Sequence[InputRecord],
                 published_row_ids: Sequence[int] = (),
                 unacknowledged_row_ids: Sequence[int] = ()) -> BatchResult:
    """Steps 1 to 6 in one transaction. `published_row_ids`: outbox rows whose events the
    broker acknowledged since the last batch, deleted in this same transaction (it saves a
    commit per batch; a crash before it only publishes them once more).
    `unacknowledged_row_ids`: rows this worker committed and is publishing now, while this
    batch is decided; they are not a crash's leftovers.

    Round trips: the statements that need nothing from each other go together in pipeline
    mode: the transaction's start, the deletion, the position locks, the outbox state and
    the recorded outcomes in one; the positions' update and the commit in another. A small
    batch (interactive traffic) went from 16 round trips to 9."""
    partitions = sorted({(record.topic, record.partition) for record in records})
    if not partitions:
        return BatchResult([], [])
    # Read once: a handler's topic sets may be properties that build a set at each call.
    command_topics, event_topics = handler.command_topics, handler.event_topics
    ordered = sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
    # Commands are decoded before the transaction (pure): their request ids are looked up
    # at its start. None for an event record (decoded by `_process_events`).
    decoded: list[tuple[InputRecord, Command | DecodeFailure | None]] = []
    for record in ordered:
        assert record.topic in command_topics or record.topic in event_topics, record.topic
        decoded.append((record, decode_for(handler, record.value)
                        if record.topic in command_topics else None))
    request_ids = sorted({command.request_id for _, command in decoded
                          if isinstance(command, Command)})
    topics = [topic for topic, _ in partitions]
    numbers = [number for _, number in partitions]
    processor = handler.processor
    try:
        with connection.pipeline():
            if published_row_ids:
                connection.execute("DELETE FROM outbox WHERE id = ANY(%b)",
                                   (list(published_row_ids),))
            positions_cursor = connection.execute(_SELECT_POSITIONS,
                                                  (processor, topics, numbers))
            accounted = [*published_row_ids, *unacknowledged_row_ids]
            outbox_cursor = connection.execute(
                _OUTBOX_STATE, (processor, topics, numbers, accounted, len(partitions)),
                binary=True)
            recorded_cursor = connection.execute(
                SELECT_RECORDED_OUTCOMES, (request_ids, processor),
                binary=True) if request_ids else None
        positions = _rows_to_positions(positions_cursor.fetchall())
        outbox_state = outbox_cursor.fetchone()
        if len(positions) < len(partitions):
            # First batch of a partition: create, lock, and look at the outbox again
            # under the locks.
            positions = _create_missing_positions(connection, processor, partitions)
            outbox_state = connection.execute(
                _OUTBOX_STATE, (processor, topics, numbers, accounted, len(partitions)),
                binary=True).fetchone()
        assert outbox_state is not None
        older_pending, identifiers = bool(outbox_state[0]), outbox_state[1]
        recorded = _recorded_from_rows(recorded_cursor.fetchall()) if recorded_cursor else {}
        command_records: list[tuple[InputRecord, Command | DecodeFailure]] = []
        events: list[InputRecord] = []
        last_decided: dict[tuple[str, int], InputRecord] = {}
        for record, command in decoded:
            position = positions[(record.topic, record.partition)]
            if record.offset < position.next_offset:
                # Decided before: a re-delivery changes nothing, once the record proves to
                # be the one decided (the last one's digest is kept with the position).
                check_redelivery(position, record)
                continue
            position.next_offset = record.offset + 1
            last_decided[(record.topic, record.partition)] = record
            if command is None:
                events.append(record)
            else:
                command_records.append((record, command))
        # One digest per partition and batch, of its last record: not one per record.
        for partition, record in last_decided.items():
            positions[partition].last_record = record_digest(record.key, record.value)
        output = _BatchOutput()
        if events:
            _process_events(connection, handler, events, output)
        if command_records:
            _process_commands(connection, handler, command_records, positions, recorded, output)
        sign_batch_heads(output.outbox, getattr(handler, "head_signer", None))
        # The writes that end a small batch go in one pipeline with the commit: one round
        # trip (a COPY of many outcomes cannot go in a pipeline, nor, safely, megabytes:
        # `PIPELINE_BYTES_MAX`). 9 round trips a batch became 4.
        final = _final_outcomes(output)
        small = (len(final) <= OUTCOMES_INSERT_MAX
                 and written_bytes(final, output) <= PIPELINE_BYTES_MAX)
        with connection.pipeline() if small else contextlib.nullcontext():
            written = _write_output(connection, processor, output, identifiers, final)
            _save_positions(connection, processor, positions, bool(command_records),
                            output.replayed)
            connection.commit()
    except BaseException:
        _roll_back(connection)
        raise
    return BatchResult(partitions, written, older_pending, {
        request_id: (fingerprint, packed) for request_id, fingerprint, packed in output.outcomes})


def decode_for(handler: Handler, raw: bytes | None) -> Command | DecodeFailure:
    """A command of this handler's service, or the reason it is not one (a command of
    another service on this topic is refused like undecodable bytes: deciding it would
    only fail, every time)."""
    command = decode_command(raw)
    if isinstance(command, Command) and not isinstance(command, handler.command_classes):
        return DecodeFailure("command_for_another_service",
                             f"{command.type!r} is not decided by the {handler.processor}")
    return command


def check_redelivery(position: _Position, record: InputRecord) -> None:
    """A record below the position must be one this processor decided. The last one is
    checked against its digest: the worker reads each partition again from that record
    (passnum.core.worker), so a log that is not the one the positions were taken from shows
    there, before any of its commands could be skipped."""
    if (record.offset == position.next_offset - 1 and position.last_record is not None
            and record_digest(record.key, record.value) != position.last_record):
        raise LogMismatch(
            f"{record.topic}[{record.partition}] offset {record.offset} is not the record "
            f"this processor decided there")


def _roll_back(connection: psycopg.Connection) -> None:
    """Undo a failed batch, keeping its own error: a connection that broke cannot roll back
    (the server already ended the transaction with the session)."""
    try:
        connection.rollback()
    except psycopg.Error as error:
        logger.warning("rollback after a failed batch failed: %r", error)


def pending_outbox(connection: psycopg.Connection, processor: str,
                   partitions: Iterable[tuple[str, int]] | None = None) -> list[OutboxRow]:
    """Rows decided but not yet confirmed published, oldest first."""
    if partitions is None:
        query = "SELECT id, events FROM outbox WHERE processor = %s ORDER BY id"
        parameters: tuple = (processor,)
    else:
        pairs = list(partitions)
        query = ("SELECT id, events FROM outbox WHERE processor = %s "
                 "AND (input_topic, input_partition) IN "
                 "(SELECT * FROM unnest(%b::text[], %b::int[])) ORDER BY id")
        parameters = (processor, [t for t, _ in pairs], [p for _, p in pairs])
    rows = connection.execute(query, parameters, binary=True).fetchall()
    connection.commit()
    return [OutboxRow(identifier, [OutboxEvent(*event) for event in unpack_outcome(events)])
            for identifier, events in rows]


def vacuum_outbox(connection: psycopg.Connection) -> None:
    """Reclaim the deleted outbox rows (and their compressed events). VACUUM refuses a
    transaction, so the connection is in autocommit mode for it; SKIP_LOCKED: when another
    worker is vacuuming the table already, there is nothing to add."""
    connection.autocommit = True
    try:
        connection.execute("VACUUM (SKIP_LOCKED) outbox")
    finally:
        connection.autocommit = False


def forget_published(connection: psycopg.Connection, row_ids: list[int]) -> None:
    if row_ids:
        with connection.transaction():
            connection.execute("DELETE FROM outbox WHERE id = ANY(%b)", (row_ids,))


def dead_letter_record(connection: psycopg.Connection, handler: Handler, record: InputRecord,
                       reason: str, detail: str) -> BatchResult:
    """One record that failed alone, the same way each time it was decided: it goes to the
    dead-letter topic with its reason and the position moves past it, in one transaction,
    so that the partition goes on. Nothing else of it is decided or recorded. The rows are
    published from the database (`older_rows_pending`): this path is rare."""
    partitions = [(record.topic, record.partition)]
    try:
        position = _create_missing_positions(connection, handler.processor, partitions)[
            partitions[0]]
        if record.offset < position.next_offset:
            check_redelivery(position, record)
            connection.commit()
            return BatchResult([], [])
        position.next_offset = record.offset + 1
        position.last_record = record_digest(record.key, record.value)
        output = _BatchOutput()
        _dead_letter(output, handler, record, DecodeFailure(reason, detail[:1000]))
        identifiers = connection.execute(
            "SELECT ARRAY(SELECT nextval('outbox_id_seq'))").fetchone()
        assert identifiers is not None
        written = _write_outbox(connection, handler.processor, output, identifiers[0])
        _save_positions(connection, handler.processor, {partitions[0]: position}, False)
        connection.commit()
    except BaseException:
        _roll_back(connection)
        raise
    return BatchResult(partitions, written, older_rows_pending=True)


def stored_positions(connection: psycopg.Connection, processor: str,
                     partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The next offset to decide on each partition (0 where none is recorded)."""
    rows = connection.execute(
        "SELECT topic, partition, next_offset FROM processor_positions WHERE processor = %s "
        "AND (topic, partition) IN (SELECT * FROM unnest(%b::text[], %b::int[]))",
        (processor, [topic for topic, _ in partitions], [number for _, number in partitions])
    ).fetchall()
    connection.commit()
    found = {(topic, number): offset for topic, number, offset in rows}
    return {partition: found.get(partition, 0) for partition in partitions}


class SkipRefused(Exception):
    """An operator's skip that would skip something else than the record named."""


def skip_record(connection: psycopg.Connection, handler: Handler, record: InputRecord,
                note: str, events: list[tuple[str, bytes, Event]]) -> int:
    """The operator's way out for a record no rule foresaw (it kills the worker before any
    answer can be recorded): in one transaction, the partition's position moves past that
    record, which goes to the dead-letter topic with the operator's note, and `events`
    (a rejection naming the record) are chained on the processor's stream, so that the
    audit counts the intervention. Refused unless the partition stands at that very
    record. Returns the outbox row id; the worker that owns the partition publishes it."""
    partition = (record.topic, record.partition)
    try:
        position = _create_missing_positions(connection, handler.processor, [partition])[
            partition]
        if position.next_offset != record.offset:
            raise SkipRefused(f"{record.topic}[{record.partition}] stands at offset "
                              f"{position.next_offset}, not {record.offset}: nothing skipped")
        position.next_offset = record.offset + 1
        position.last_record = record_digest(record.key, record.value)
        output = _BatchOutput()
        _dead_letter(output, handler, record, DecodeFailure("skipped_by_operator", note))
        stream = f"{handler.processor}/{record.topic}/{record.partition}"
        payloads = [encode(event) for _, _, event in events]
        headers, position.chain_hash = chain_headers(stream, position.chain_sequence,
                                                     position.chain_hash, payloads)
        position.chain_sequence += len(payloads)
        output.outbox.extend((record.topic, record.partition, topic, key, payload, header)
                             for (topic, key, _), payload, header in
                             zip(events, payloads, headers))
        sign_batch_heads(output.outbox, getattr(handler, "head_signer", None))
        identifiers = connection.execute(
            "SELECT ARRAY(SELECT nextval('outbox_id_seq'))").fetchone()
        assert identifiers is not None
        written = _write_outbox(connection, handler.processor, output, identifiers[0])
        _save_positions(connection, handler.processor, {partition: position}, False)
        connection.commit()
    except BaseException:
        _roll_back(connection)
        raise
    return written[0].id
