"""Writing events straight to the event topics, chained exactly as a processor's outbox
chains them (`passnum.core.processing`): the tamper tests and the benchmark build their logs
with it, without running workers. Production never uses it.

A stream is `processor/command-topic/partition`: the command partition is the one the
command's key lands on (murmur2, as the Kafka clients partition), so that a log built here
has the same shape as a real one: one collectivité's issuer facts in one chain, a booklet's
redemptions in one chain, events spread over the output partitions by their own key.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from kafka.partitioner.default import murmur2

from passnum.core.codec import CHAIN_HEADER, GENESIS_HASH, encode, next_link
from passnum.core.topology import Topology
from schemas.base import Event

if TYPE_CHECKING:
    from datetime import datetime


def partition_of(key: bytes, partition_count: int) -> int:
    """The partition the Java, kafka-python and aiokafka default partitioners choose."""
    return (murmur2(key) & 0x7FFFFFFF) % partition_count


# A record as a reader hands it to the replay (the fields the Replayer uses).
ReadMessage = namedtuple("ReadMessage", "topic partition offset value headers")


def in_read_order(records: Iterable["ChainedRecord"], topics_in_order: list[str]
                  ) -> list[ReadMessage]:
    """The records as a reader of the log would deliver them: offsets numbered per partition
    in writing order, topics in the replay's order (tests replay without a broker)."""
    offsets: dict[tuple[str, int], int] = {}
    messages = []
    for record in records:
        place = (record.topic, record.partition)
        offsets[place] = offsets.get(place, -1) + 1
        messages.append(ReadMessage(record.topic, record.partition, offsets[place],
                                    record.value, list(record.headers)))
    rank = {name: index for index, name in enumerate(topics_in_order)}
    messages.sort(key=lambda m: (rank[m.topic], m.partition, m.offset))
    return messages


def rechained(records: list["ChainedRecord"], index: int, value: bytes,
              topic_prefix: tuple[str, str] | None = None) -> list["ChainedRecord"]:
    """The log with record `index` holding `value`, every stream chained anew around it
    under its own name: a rewrite that no link gives away. With `topic_prefix` (old, new),
    the records move to the topics of the new prefix."""
    heads: dict[str, tuple[int, str]] = {}
    out = []
    for position, record in enumerate(records):
        stream = record.headers[0][1].split(b"|")[0].decode()
        sequence, previous = heads.get(stream, (0, GENESIS_HASH))
        new_value = value if position == index else record.value
        link = next_link(stream, sequence + 1, previous, new_value)
        heads[stream] = (sequence + 1, link.hash)
        topic = record.topic if topic_prefix is None else record.topic.replace(*topic_prefix, 1)
        out.append(ChainedRecord(topic, record.partition, record.key, new_value,
                                 ((CHAIN_HEADER, link.to_header()),)))
    return out


@dataclass(frozen=True)
class ChainedRecord:
    topic: str
    partition: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass
class ChainHead:
    sequence: int = 0
    hash: str = GENESIS_HASH


@dataclass
class ChainedLogWriter:
    """Numbers and links events per stream; knows nothing of Kafka connections."""

    topology: Topology
    heads: dict[str, ChainHead] = field(default_factory=dict)

    def stream_for(self, processor: str, command_key: bytes) -> str:
        commands = (self.topology.issuer_commands if processor == "issuer"
                    else self.topology.redeemer_commands)
        return f"{processor}/{commands.name}/{partition_of(command_key, commands.partitions)}"

    def chain(self, stream: str, value: bytes) -> bytes:
        """The chain header of the next event of `stream`, advancing its head."""
        head = self.heads.setdefault(stream, ChainHead())
        head.sequence += 1
        link = next_link(stream, head.sequence, head.hash, value)
        head.hash = link.hash
        return link.to_header()

    def record(self, processor: str, command_key: bytes, event: Event | bytes,
               event_key: bytes) -> ChainedRecord:
        """One event decided by `processor` from a command keyed `command_key`."""
        value = event if isinstance(event, bytes) else encode(event)
        topic = (self.topology.issuer_events if processor == "issuer"
                 else self.topology.redeemer_events)
        header = self.chain(self.stream_for(processor, command_key), value)
        return ChainedRecord(topic.name, partition_of(event_key, topic.partitions), event_key,
                             value, ((CHAIN_HEADER, header),))

    def issuer(self, siren: str, events: Iterable[Event]) -> list[ChainedRecord]:
        """Events of one issuer decision (issuer commands are keyed by SIREN)."""
        return [self.record("issuer", siren.encode(), event, issuer_event_key(event))
                for event in events]

    def redeemer(self, command_key: bytes, events: Iterable[Event]) -> list[ChainedRecord]:
        return [self.record("redeemer", command_key, event, redeemer_event_key(event))
                for event in events]


def issuer_event_key(event: Event) -> bytes:
    booklet_id = getattr(event, "booklet_id", None)
    return (booklet_id or event.siren).encode()  # type: ignore[attr-defined]


def redeemer_event_key(event: Event) -> bytes:
    booklet_id = getattr(event, "booklet_id", None)
    voucher_id = getattr(event, "voucher_id", None)
    if booklet_id is None and voucher_id:
        booklet_id = voucher_id.rsplit("-", 1)[0]
    return (booklet_id or getattr(event, "siret", None) or getattr(event, "month", None)
            or "settlement").encode()


def send_with_kafka_python(producer: object, records: Iterable[ChainedRecord]) -> int:
    """Send through a kafka-python producer to the record's own partition; flush."""
    count = 0
    for record in records:
        producer.send(record.topic, key=record.key, value=record.value,  # type: ignore[attr-defined]
                      headers=list(record.headers), partition=record.partition)
        count += 1
    producer.flush()  # type: ignore[attr-defined]
    return count


# ---------------------------------------------------------------- a sample ledger
# A small but complete ledger decided by the services' own deciders (not hand-written
# events), for the auditor's tests: two collectivités order booklets and pay for some, a
# venue is accredited and redeems, a second scan is refused, a booklet is reported lost.

SAMPLE_CODE_KEY = b"auditor-sample-code-key"


@dataclass
class SampleLedger:
    writer: ChainedLogWriter
    records: list[ChainedRecord] = field(default_factory=list)
    redeemed_event_ids: list[str] = field(default_factory=list)

    def issuer_decision(self, envelope: object, booklet: object, command: object
                        ) -> tuple[object, list[Event]]:
        from passnum.ledger import envelope as envelope_rules
        from services.issuer import domain as issuer_domain

        events = list(issuer_domain.decide(envelope, booklet, command,  # type: ignore[arg-type]
                                           envelope_rules.Policy()))
        for event in events:
            envelope = envelope_rules.evolve(envelope, event)  # type: ignore[arg-type]
        self.records += self.writer.issuer(command.siren, events)  # type: ignore[attr-defined]
        return envelope, events


def sample_ledger(topology: Topology) -> SampleLedger:
    from datetime import datetime, timezone

    from passnum.ledger.partners import collectivites
    from passnum.tools.scenario import onboarding
    from passnum.ledger import envelope as envelope_rules
    from passnum.ledger import voucher as voucher_rules
    from services.redeemer import domain as redeemer_domain

    ledger = SampleLedger(ChainedLogWriter(topology))
    at = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
    view = redeemer_domain.empty_view()
    for partner in collectivites(2):
        envelope: object = envelope_rules.Envelope(partner.siren)
        for command in onboarding(partner, 3, at, funded_booklets=2, tag="sample"):
            envelope, events = ledger.issuer_decision(envelope, None, command)
            for event in events:
                voucher_rules.evolve(view, event)
    _redeem(ledger, view, at)
    return ledger


def _redeem(ledger: SampleLedger, view: object, at: datetime) -> None:
    from datetime import timedelta

    from passnum.ledger.partners import collectivites, venues
    from passnum.tools.scenario import accreditations, booklet_codes
    from passnum.ledger import voucher as voucher_rules
    from schemas.messages import RedeemVoucher
    from services.redeemer import domain as redeemer_domain

    venue = venues(1)[0]
    for command in accreditations([venue], at, tag="sample"):
        events = redeemer_domain.decide(view, command, SAMPLE_CODE_KEY)  # type: ignore[arg-type]
        for event in events:
            voucher_rules.evolve(view, event)  # type: ignore[arg-type]
        ledger.records += ledger.writer.redeemer(venue.siret.encode(), events)
    partner = collectivites(2)[0]
    codes = booklet_codes(SAMPLE_CODE_KEY, partner, range(1, 3))
    scans = [(f"scan-{n}", code) for n, code in enumerate(codes[:4])] + [("rescan-0", codes[0])]
    for index, (request_id, code) in enumerate(scans):
        command = RedeemVoucher(request_id=request_id, code=code, siret=venue.siret,
                                occurred_at=at + timedelta(hours=1, minutes=index))
        events = redeemer_domain.decide(view, command, SAMPLE_CODE_KEY)  # type: ignore[arg-type]
        for event in events:
            voucher_rules.evolve(view, event)  # type: ignore[arg-type]
            if event.type == "voucher_redeemed":
                ledger.redeemed_event_ids.append(event.event_id)
        booklet_id = code and events[0].voucher_id.rsplit("-", 1)[0]  # type: ignore[attr-defined]
        ledger.records += ledger.writer.redeemer(booklet_id.encode(), events)
