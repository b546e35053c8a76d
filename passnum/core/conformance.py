"""Broker conformance: measure, on the broker we actually run, the properties the design
relies on (required) and the quirks we know of (informational).

Required properties are what the workers, the tools and the auditor need to be correct; a
worker refuses to start when one fails (`assert_conformant`). Informational ones are
behaviours we deliberately do not rely on; they are measured so that docs/broker.md stays
true and so that a change of broker shows up here first.

Several processes run the check at the same time (compose starts the issuer and the
redeemer together), so no probe may see another run's records. The probes that filter
what they read back by their own keys and offsets write to the topology's shared
`conformance` scratch topic, which is never deleted: every run uses keys, groups and
transactional ids unique to that run. The probes that need a partition to themselves (a
high-water mark is everyone's records) write to the run's own topic, created for the run
and deleted after it. Run it as `python -m passnum.core.conformance` (settings from PASSNUM_*
variables).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import aiokafka
import aiokafka.errors
from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.producer.future import RecordMetadata
from kafka.structs import OffsetAndMetadata

from passnum.core.broker import BrokerError, ensure_topics, make_admin
from passnum.core.log import (
    LogReadError,
    Record,
    make_consumer,
    make_producer,
    read_partitions_to_end,
)
from passnum.core.settings import Settings
from passnum.core.topology import Topic, topology_for

LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

PROBE_TIMEOUT_SECONDS = 10.0
ORDER_KEY_COUNT = 8
ORDER_RECORDS_PER_KEY = 50
BATCH_RECORD_COUNT = 100
# Long enough that every record of a probe batch joins one batch before the flush.
BATCH_LINGER_MILLISECONDS = 1000
# The partitions of the run's own topic. Differs from Tansu's auto-creation default (4), so
# that auto-creation cannot pass for explicit creation.
PARTITION_PROBE_COUNT = 3
# The bound of a group join: the join itself is expected within one session timeout.
JOIN_TIMEOUT_MARGIN_SECONDS = 5.0
TRANSACTION_TIMEOUT_MILLISECONDS = 10_000



class PropertyUntestable(RuntimeError):
    """A probe's precondition failed, so its property could not be measured."""


# What a probe may fail with: the broker's or the client's errors, our own read errors and
# deadlines, an untestable precondition. Anything else is a bug here and propagates.
PROBE_ERRORS: tuple[type[BaseException], ...] = (
    KafkaError, aiokafka.errors.KafkaError, OSError, TimeoutError, LogReadError, BrokerError,
    PropertyUntestable,
)


@dataclass(frozen=True)
class Verdict:
    name: str
    required: bool
    passed: bool
    detail: str


class BrokerNotConformant(RuntimeError):
    def __init__(self, failed: list[Verdict]) -> None:
        self.failed = failed
        super().__init__("the broker fails properties the design relies on:\n"
                         + format_verdicts(failed))


class ProbeTimeout(TimeoutError):
    pass


@dataclass(frozen=True)
class Probe:
    """What one run of the check shares: settings, the shared scratch topic, the run's own
    topic (`own_topic`, written by this run only), and its unique id."""
    settings: Settings
    topic: Topic
    own_topic: Topic
    run_id: str

    def key(self, label: str) -> bytes:
        return f"conformance-{self.run_id}-{label}".encode()

    @property
    def group_id(self) -> str:
        return f"{self.settings.topic_prefix}-conformance-{self.run_id}"

    def partition(self, number: int) -> int:
        return number % self.topic.partitions


# --- helpers --------------------------------------------------------------------------


def run_with_deadline(function: Callable[[], T], timeout_seconds: float, what: str) -> T:
    """Run a call whose client API has no timeout of its own (kafka-python's transaction
    commit and abort wait forever; asyncio.run cannot nest in a caller's event loop) in a
    daemon thread, and give up on it after the bound."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the calling thread, which re-raises it
            outcome["error"] = error

    thread = threading.Thread(target=target, name=f"conformance: {what}", daemon=True)
    thread.start()
    thread.join(timeout_seconds)
    if thread.is_alive():
        raise ProbeTimeout(f"{what} did not finish within {timeout_seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def produce(producer: KafkaProducer, topic: Topic,
            records: Sequence[tuple[bytes, bytes, int | None]],
            headers: list[tuple[str, bytes]] | None = None) -> list[RecordMetadata]:
    """Send (key, value, partition) records, flush once, and return their metadata."""
    futures = [producer.send(topic.name, key=key, value=value, partition=partition, headers=headers)
               for key, value, partition in records]
    producer.flush(timeout=PROBE_TIMEOUT_SECONDS)
    return [future.get(timeout=PROBE_TIMEOUT_SECONDS) for future in futures]


def produce_and_close(settings: Settings, topic: Topic,
                      records: Sequence[tuple[bytes, bytes, int | None]],
                      headers: list[tuple[str, bytes]] | None = None,
                      **producer_overrides: Any) -> list[RecordMetadata]:
    producer = make_producer(settings, **producer_overrides)
    try:
        return produce(producer, topic, records, headers)
    finally:
        producer.close(timeout=PROBE_TIMEOUT_SECONDS)


def read_back(probe: Probe, start_offsets: dict[tuple[str, int], int],
              isolation_level: str = "read_uncommitted") -> list[Record]:
    """The records of the probed partitions from the given offsets to their Fetch end."""
    return list(read_partitions_to_end(
        probe.settings, list(start_offsets), start_offsets=start_offsets,
        stall_timeout_seconds=PROBE_TIMEOUT_SECONDS, max_seconds=PROBE_TIMEOUT_SECONDS,
        consumer_overrides={"isolation_level": isolation_level}))


def earliest_offsets(metadata: list[RecordMetadata]) -> dict[tuple[str, int], int]:
    starts: dict[tuple[str, int], int] = {}
    for item in metadata:
        place = (item.topic, item.partition)
        starts[place] = min(starts.get(place, item.offset), item.offset)
    return starts


def fetch_high_water(settings: Settings, topic: Topic, partition: int, from_offset: int) -> int:
    """The high-water mark a Fetch response reports for one partition, fetched from
    `from_offset` (the last record we wrote: cheap, and never out of range)."""
    consumer = make_consumer(settings)
    try:
        place = TopicPartition(topic.name, partition)
        consumer.assign([place])
        consumer.seek(place, from_offset)
        deadline = time.monotonic() + PROBE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
            high_water = consumer.highwater(place)
            if high_water is not None:
                return high_water
        raise ProbeTimeout(f"no Fetch response for {topic.name}[{partition}] "
                           f"within {PROBE_TIMEOUT_SECONDS} s")
    finally:
        consumer.close(autocommit=False)


def produce_one_batch(probe: Probe, label: str, partition: int) -> list[RecordMetadata]:
    """One batch to a partition of the run's own topic: nobody else writes there, so its
    high-water mark counts this run's records only."""
    records = [(probe.key(label), f"{label}-{index}".encode(), partition)
               for index in range(BATCH_RECORD_COUNT)]
    metadata = produce_and_close(probe.settings, probe.own_topic, records,
                                 linger_ms=BATCH_LINGER_MILLISECONDS)
    offsets = [item.offset for item in metadata]
    if offsets != list(range(offsets[0], offsets[0] + len(offsets))):
        raise PropertyUntestable(
            f"batch offsets are not contiguous: {offsets[:3]}...{offsets[-3:]}")
    return metadata


# --- required properties --------------------------------------------------------------


def check_per_key_order(probe: Probe) -> tuple[bool, str]:
    keys = [probe.key(f"order-{number}") for number in range(ORDER_KEY_COUNT)]
    # Interleaved across keys, so that several keys share batches and partitions.
    records = [(key, str(sequence).encode(), None)
               for sequence in range(ORDER_RECORDS_PER_KEY) for key in keys]
    metadata = produce_and_close(probe.settings, probe.topic, records)
    partitions_of_key: dict[bytes, set[int]] = {}
    for (key, _, _), item in zip(records, metadata):
        partitions_of_key.setdefault(key, set()).add(item.partition)
    split = [key.decode() for key, partitions in partitions_of_key.items() if len(partitions) != 1]
    if split:
        return False, f"keys spread over several partitions: {split}"
    sequences: dict[bytes, list[int]] = {key: [] for key in keys}
    for record in read_back(probe, earliest_offsets(metadata)):
        if record.key in sequences and record.value is not None:
            sequences[record.key].append(int(record.value))
    expected = list(range(ORDER_RECORDS_PER_KEY))
    disordered = [key.decode() for key, seen in sequences.items() if seen != expected]
    used = sorted({item.partition for item in metadata})
    if disordered:
        return False, f"read back out of order or incomplete for {disordered}"
    return True, (f"{ORDER_KEY_COUNT} keys x {ORDER_RECORDS_PER_KEY} records, interleaved, over "
                  f"partitions {used}: each key on one partition, read back in produce order")


def check_partition_count(probe: Probe) -> tuple[bool, str]:
    """Creates the run's own topic (the probes that need a partition to themselves write
    there afterwards) and compares both topics' partition counts with the requested ones."""
    ensure_topics(probe.settings, [probe.own_topic], timeout_seconds=PROBE_TIMEOUT_SECONDS)
    admin = make_admin(probe.settings, PROBE_TIMEOUT_SECONDS)
    try:
        described = {item["name"]: len(item["partitions"])
                     for item in admin.describe_topics([probe.own_topic.name, probe.topic.name])}
    finally:
        admin.close()
    wanted = {probe.own_topic.name: probe.own_topic.partitions,
              probe.topic.name: probe.topic.partitions}
    passed = described == wanted
    return passed, f"metadata shows {described}, requested {wanted}"


def delete_topic(admin: Any, name: str) -> str:
    """Delete the probe topic; a broker that cannot delete only leaves litter behind."""
    try:
        admin.delete_topics([name], timeout_ms=int(PROBE_TIMEOUT_SECONDS * 1000))
    except KafkaError as error:
        return f"probe topic {name} left behind (delete failed: {error})"
    return f"probe topic {name} deleted"


def delete_own_topic(probe: Probe) -> None:
    """The run's own topic is litter once the run is over, whatever its verdicts."""
    try:
        admin = make_admin(probe.settings, PROBE_TIMEOUT_SECONDS)
    except PROBE_ERRORS as error:
        LOGGER.warning("probe topic %s left behind: %s", probe.own_topic.name, error)
        return
    try:
        LOGGER.info(delete_topic(admin, probe.own_topic.name))
    finally:
        admin.close()


def check_headers(probe: Probe) -> tuple[bool, str]:
    headers = [("passnum-run", probe.run_id.encode()), ("empty", b""),
               ("binary", bytes(range(256))), ("repeated", b"1"), ("repeated", b"2"),
               ("unicode-é", "é".encode())]
    key = probe.key("headers")
    metadata = produce_and_close(probe.settings, probe.topic, [(key, b"headers", None)],
                                 headers=headers)
    found = [record for record in read_back(probe, earliest_offsets(metadata)) if record.key == key]
    if len(found) != 1:
        return False, f"expected the one probe record back, found {len(found)}"
    passed = found[0].headers == tuple(headers)
    outcome = "came back identical, in order" if passed else f"came back as {found[0].headers!r}"
    return passed, (f"{len(headers)} headers (empty, binary, repeated name, non-ASCII name) "
                    f"{outcome}")


def check_acknowledged_record_readable(probe: Probe) -> tuple[bool, str]:
    key, value = probe.key("acks"), f"acknowledged {probe.run_id}".encode()
    metadata = produce_and_close(probe.settings, probe.topic, [(key, value, None)])
    place = metadata[0]
    found = [record for record in read_back(probe, earliest_offsets(metadata))
             if record.offset == place.offset]
    passed = len(found) == 1 and found[0].key == key and found[0].value == value
    return passed, (f"acks=all (idempotent kafka-python producer) acknowledged offset "
                    f"{place.offset} of partition {place.partition}; "
                    f"{'read back identical' if passed else f'read back {found!r}'}")


def check_fetch_high_water(probe: Probe) -> tuple[bool, str]:
    partition = 0
    metadata = produce_one_batch(probe, "high-water", partition)
    first, last = metadata[0].offset, metadata[-1].offset
    high_water = fetch_high_water(probe.settings, probe.own_topic, partition, last)
    return high_water == last + 1, (
        f"one batch of {len(metadata)} records at offsets {first}..{last} of partition "
        f"{partition}; Fetch high-water mark {high_water}, expected {last + 1}")


@dataclass(frozen=True)
class GroupSession:
    join_seconds: float
    committed_offset: int
    committed_after_restart: int | None


def measure_group_session(probe: Probe) -> GroupSession:
    """Join a fresh group as a real member, commit within that generation, close; then
    read the committed offset with a new consumer of the same group (a restart)."""
    partition = probe.partition(1)
    metadata = produce_and_close(probe.settings, probe.topic,
                                 [(probe.key("group"), b"group", partition)])
    committed_offset = metadata[0].offset + 1
    place = TopicPartition(probe.topic.name, partition)
    join_seconds = join_commit_and_leave(probe, place, committed_offset)
    restarted = make_consumer(probe.settings, group_id=probe.group_id)
    try:
        committed_after_restart = restarted.committed(place)
    finally:
        restarted.close(autocommit=False)
    return GroupSession(join_seconds, committed_offset, committed_after_restart)


def join_commit_and_leave(probe: Probe, place: TopicPartition, offset: int) -> float:
    session_timeout = probe.settings.session_timeout_seconds
    consumer = make_consumer(probe.settings, group_id=probe.group_id,
                             # "latest": this member need not read the scratch topic's past.
                             auto_offset_reset="latest", max_poll_records=1)
    try:
        started = time.monotonic()
        consumer.subscribe([probe.topic.name])
        deadline = started + session_timeout * 2 + JOIN_TIMEOUT_MARGIN_SECONDS
        while place not in consumer.assignment():
            if time.monotonic() > deadline:
                raise ProbeTimeout(
                    f"group {probe.group_id} not joined within {deadline - started:.1f} s")
            consumer.poll(timeout_ms=100)
        join_seconds = time.monotonic() - started
        consumer.commit({place: OffsetAndMetadata(offset, f"conformance {probe.run_id}", -1)})
        return join_seconds
    finally:
        consumer.close(autocommit=False)


def check_committed_offset(session: GroupSession) -> tuple[bool, str]:
    passed = session.committed_after_restart == session.committed_offset
    return passed, (f"a group member committed {session.committed_offset}; after close, a new "
                    f"consumer of the group reads committed() = {session.committed_after_restart}")


# --- informational properties ---------------------------------------------------------


def check_end_offsets(probe: Probe) -> tuple[bool, str]:
    partition = 2 % probe.own_topic.partitions
    metadata = produce_one_batch(probe, "end-offsets", partition)
    first, last = metadata[0].offset, metadata[-1].offset
    place = TopicPartition(probe.own_topic.name, partition)
    consumer = make_consumer(probe.settings)
    try:
        end_offsets = consumer.end_offsets([place], timeout_ms=int(PROBE_TIMEOUT_SECONDS * 1000))
        end_offset = end_offsets[place]
    finally:
        consumer.close(autocommit=False)
    passed = end_offset == last + 1
    explanation = "" if passed else (" (the ListOffsets answer is the last batch's base offset + 1)"
                                     if end_offset == first + 1 else "")
    return passed, (f"one batch of {len(metadata)} records at offsets {first}..{last} of "
                    f"partition {partition}; end_offsets() = {end_offset}, "
                    f"expected {last + 1}{explanation}")


def check_read_committed(probe: Probe) -> tuple[bool, str]:
    try:
        placed = run_with_deadline(lambda: write_aborted_then_committed(probe),
                                   PROBE_TIMEOUT_SECONDS, "transactional producer")
    except PROBE_ERRORS as error:
        return False, f"could not test: {type(error).__name__}: {error}"
    aborted_offset, committed_offset = placed
    partition = probe.partition(3)
    start = {(probe.topic.name, partition): aborted_offset}
    values = {record.value for record in read_back(probe, start, isolation_level="read_committed")
              if record.key == probe.key("transaction")}
    aborted_hidden = b"aborted" not in values
    committed_shown = b"committed" in values
    aborted_seen = "hidden" if aborted_hidden else "VISIBLE"
    committed_seen = "visible" if committed_shown else "MISSING"
    return aborted_hidden and committed_shown, (
        f"to a read_committed consumer: aborted record (offset {aborted_offset}) {aborted_seen}, "
        f"committed record (offset {committed_offset}) {committed_seen}")


def write_aborted_then_committed(probe: Probe) -> tuple[int, int]:
    """One aborted and one committed transaction, each holding one record."""
    producer = make_producer(probe.settings, transactional_id=probe.group_id,
                             transaction_timeout_ms=TRANSACTION_TIMEOUT_MILLISECONDS,
                             max_block_ms=int(PROBE_TIMEOUT_SECONDS * 1000))
    key, partition = probe.key("transaction"), probe.partition(3)
    try:
        producer.init_transactions()
        producer.begin_transaction()
        aborted = produce(producer, probe.topic, [(key, b"aborted", partition)])[0]
        producer.abort_transaction()
        producer.begin_transaction()
        committed = produce(producer, probe.topic, [(key, b"committed", partition)])[0]
        producer.commit_transaction()
        return aborted.offset, committed.offset
    finally:
        producer.close(timeout=PROBE_TIMEOUT_SECONDS)


def check_aiokafka_idempotent_producer(probe: Probe) -> tuple[bool, str]:
    from passnum.core.logging_setup import silenced

    # Tansu refuses InitProducerId and aiokafka's sender logs it as an ERROR: the verdict
    # reports the failure, so the log of a healthy start carries no ERROR line for it.
    with silenced("aiokafka"):
        offset = run_with_deadline(lambda: asyncio.run(send_idempotently(probe)),
                                   PROBE_TIMEOUT_SECONDS, "aiokafka idempotent producer")
    return True, f"started and wrote offset {offset}"


async def send_idempotently(probe: Probe) -> int:
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=probe.settings.bootstrap_servers,
                                         enable_idempotence=True, acks="all",
                                         request_timeout_ms=int(PROBE_TIMEOUT_SECONDS * 1000))
    try:
        await asyncio.wait_for(producer.start(), PROBE_TIMEOUT_SECONDS)
        metadata = await asyncio.wait_for(
            producer.send_and_wait(probe.topic.name, b"idempotent", key=probe.key("aiokafka")),
            PROBE_TIMEOUT_SECONDS)
        return metadata.offset
    finally:
        await asyncio.wait_for(producer.stop(), PROBE_TIMEOUT_SECONDS)


def check_join_time(session: GroupSession, settings: Settings) -> tuple[bool, str]:
    session_timeout = settings.session_timeout_seconds
    ratio = session.join_seconds / session_timeout
    return session.join_seconds <= session_timeout, (
        f"a fresh group's first member joined in {session.join_seconds:.2f} s "
        f"(session timeout {session_timeout:.1f} s, ratio {ratio:.2f})")


# --- the run --------------------------------------------------------------------------


def verdict(name: str, required: bool, check: Callable[[], tuple[bool, str]]) -> Verdict:
    started = time.monotonic()
    try:
        passed, detail = check()
    except PROBE_ERRORS as error:
        passed, detail = False, f"error: {type(error).__name__}: {error}"
    elapsed = time.monotonic() - started
    return Verdict(name=name, required=required, passed=passed,
                   detail=f"{detail} [{elapsed:.2f} s]")


def group_verdicts(probe: Probe) -> list[Verdict]:
    """The restart and join-time properties share one (slow: about half the session
    timeout on Tansu) group join, so they are measured together and timed together."""
    committed_name = "committed offset survives a consumer restart"
    join_name = "group join time"
    started = time.monotonic()
    try:
        session = measure_group_session(probe)
    except PROBE_ERRORS as error:
        detail = f"error: {type(error).__name__}: {error} [{time.monotonic() - started:.2f} s]"
        return [Verdict(committed_name, True, False, detail),
                Verdict(join_name, False, False, detail)]
    elapsed = f" [{time.monotonic() - started:.2f} s for both group properties]"
    committed_passed, committed_detail = check_committed_offset(session)
    join_passed, join_detail = check_join_time(session, probe.settings)
    return [Verdict(committed_name, True, committed_passed, committed_detail + elapsed),
            Verdict(join_name, False, join_passed, join_detail + elapsed)]


def new_probe(settings: Settings) -> Probe:
    """A run with an id of its own: 48 random bits besides the time, so that two processes
    started in the same second (compose starts the workers together) never share one."""
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
    shared = topology_for(settings).conformance
    own = Topic(f"{shared.name}.run-{run_id}", PARTITION_PROBE_COUNT, "probe key",
                "this run's own scratch topic, deleted after the run")
    return Probe(settings=settings, topic=shared, own_topic=own, run_id=run_id)


def on_own_topic(created: Verdict, check: Callable[[], tuple[bool, str]]
                 ) -> Callable[[], tuple[bool, str]]:
    """A check that writes to the run's own topic measures nothing if that topic was not
    created as requested (a produce might auto-create it elsewhere)."""
    def guarded() -> tuple[bool, str]:
        if not created.passed:
            raise PropertyUntestable("the run's own topic was not created as requested")
        return check()
    return guarded


def run_conformance(settings: Settings) -> list[Verdict]:
    probe = new_probe(settings)
    ensure_topics(settings, [probe.topic], timeout_seconds=PROBE_TIMEOUT_SECONDS)
    try:
        return measure(probe)
    finally:
        delete_own_topic(probe)


def measure(probe: Probe) -> list[Verdict]:
    # First: it creates the topic that the high-water and end-offsets probes write to.
    created = verdict("explicit topics have the requested partition count", True,
                      lambda: check_partition_count(probe))
    verdicts = [
        verdict("per-key order within a partition", True, lambda: check_per_key_order(probe)),
        created,
        verdict("record headers round-trip", True, lambda: check_headers(probe)),
        verdict("acks=all record is readable afterwards", True,
                lambda: check_acknowledged_record_readable(probe)),
        verdict("Fetch high-water mark = records produced (multi-record batch)", True,
                on_own_topic(created, lambda: check_fetch_high_water(probe))),
    ]
    committed, join_time = group_verdicts(probe)
    verdicts.append(committed)
    verdicts.extend([
        verdict("end_offsets() = records produced (multi-record batch)", False,
                on_own_topic(created, lambda: check_end_offsets(probe))),
        verdict("read_committed hides aborted transactional records", False,
                lambda: check_read_committed(probe)),
        verdict("aiokafka idempotent producer can start", False,
                lambda: check_aiokafka_idempotent_producer(probe)),
        join_time,
    ])
    return verdicts


def format_verdicts(verdicts: list[Verdict]) -> str:
    return "\n".join(format_verdict(item) for item in verdicts)


def format_verdict(item: Verdict) -> str:
    outcome = "PASS" if item.passed else "FAIL"
    kind = "required" if item.required else "informational"
    return f"{outcome}  {kind:<13}  {item.name}: {item.detail}"


def failed_required(verdicts: list[Verdict]) -> list[Verdict]:
    return [item for item in verdicts if item.required and not item.passed]


def assert_conformant(settings: Settings, verdicts: list[Verdict] | None = None) -> list[Verdict]:
    """Raise `BrokerNotConformant` if a required property fails, unless
    `settings.conformance_required` is off (then it only warns). Runs the check unless the
    caller passes the verdicts it already measured. Returns the verdicts."""
    if verdicts is None:
        verdicts = run_conformance(settings)
    failed = failed_required(verdicts)
    if failed and settings.conformance_required:
        raise BrokerNotConformant(failed)
    if failed:
        LOGGER.warning("broker fails required properties (conformance_required is off):\n%s",
                       format_verdicts(failed))
    return verdicts


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    settings = Settings.from_environment()
    started = time.monotonic()
    verdicts = run_conformance(settings)
    print(format_verdicts(verdicts))
    failed = failed_required(verdicts)
    print(f"{'NOT CONFORMANT' if failed else 'conformant'}: {len(failed)} required failure(s), "
          f"checked in {time.monotonic() - started:.1f} s at {settings.bootstrap_servers}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
