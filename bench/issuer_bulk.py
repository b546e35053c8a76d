"""Benchmark of bulk issuance through the real issuer worker, against raw kafka-python.

    .venv/bin/python bench/issuer_bulk.py                      # quick: 20,000 booklets
    .venv/bin/python bench/issuer_bulk.py --booklets 200000    # the figure in docs/issuer.md
    .venv/bin/python bench/issuer_bulk.py --profile-batches 20 # where a batch spends its time

1. Starts (or reuses) the broker at PASSNUM_BOOTSTRAP_SERVERS, creates a fresh database next
   to PASSNUM_DATABASE_URL and fresh topics, starts the issuer worker as its own process
   (`faust -A services.issuer.app worker`, as in production), registers the 87 partners and
   commits their envelopes (warm-up, not measured).
2. Measured: orders of `--booklets-per-order` booklets spread over the 87 partners, each
   followed by the payment that funds it, produced with kafka-python; the clock runs from
   the first command produced to the last `booklet_issued` / `booklet_activated` event
   consumed (aiokafka) from the issuer's event topic. The worker's resident memory is
   sampled at 25, 50, 75 and 100 % of the events, and the CPU of every process read from
   /proc before and after (per booklet: worker, database, broker, this process).
3. Baseline: on the same broker, kafka-python produces (in a process of its own, as the
   worker is) as many messages of the same size as the issuer produced events, and this
   process consumes them with the same aiokafka tail as the issuer's events, with nothing
   decided or stored in between.
4. With `--profile-batches N`, also decides N order+payment batches in this process under
   cProfile (same handler, same database code, no broker) and prints the top functions.

Stops what it started and drops its database unless `--keep`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiokafka import TopicPartition  # noqa: E402

import ledgers  # noqa: E402
from redeemer_common import (  # noqa: E402
    cpu_microseconds_per,
    cpu_seconds_by_process,
    resident_megabytes,
)
from passnum.core.broker import ManagedBroker  # noqa: E402
from passnum.core.codec import encode  # noqa: E402
from passnum.core.database import connect  # noqa: E402
from passnum.core.log import fetch_high_water_marks, make_producer  # noqa: E402
from passnum.core.processes import WorkerProcess  # noqa: E402
from passnum.core.settings import Settings  # noqa: E402
from passnum.core.topology import route_command, topology_for  # noqa: E402
from passnum.ledger.partners import Partner, collectivites  # noqa: E402
from schemas.base import Command  # noqa: E402
from schemas.messages import (  # noqa: E402
    FundEnvelope,
    OrderBooklets,
    RecordFundsReceived,
    RegisterCollectivite,
)

FACE_VALUE_CENTS = 1000
WARM_UP_TIMEOUT_SECONDS = 120.0
# No new event for this long: the run failed. Generous, because one batch may hold hundreds
# of orders (batch_max_commands bounds commands, not events) and take minutes to decide.
STALL_TIMEOUT_SECONDS = 300.0
MEMORY_CHECKPOINTS = (25, 50, 75, 100)
_BOOKLET_ID = re.compile(rb'"booklet_id":"(\d{9}-\d{7})"')
_ISSUED = b'"type":"booklet_issued"'
_ACTIVATED = b'"type":"booklet_activated"'


@dataclass
class Run:
    booklets: int
    elapsed_seconds: float = 0.0
    events: int = 0
    event_bytes: int = 0
    rss_megabytes: dict[int, float] = field(default_factory=dict)
    cpu_microseconds_per_booklet: dict[str, float] = field(default_factory=dict)

    @property
    def booklets_per_second(self) -> float:
        return self.booklets / self.elapsed_seconds

    @property
    def average_event_bytes(self) -> int:
        return self.event_bytes // max(self.events, 1)


# ------------------------------------------------------------------ set-up


def bench_settings(arguments: argparse.Namespace) -> Settings:
    """The run's settings, before its ledger (`ledgers.isolated`) gives it topics and a
    database of its own."""
    base = Settings.from_environment()
    if arguments.batch_max_commands:
        base = base.with_overrides(batch_max_commands=arguments.batch_max_commands)
    return base.with_overrides(web_port_issuer=arguments.web_port,
                               run_directory=str(Path(arguments.run_directory).resolve()),
                               conformance_required=False)


# ------------------------------------------------------------------ commands


def plan_orders(partners: list[Partner], booklets: int, per_order: int
                ) -> dict[str, list[int]]:
    """Booklet counts of each partner's orders: round robin, the last order short."""
    orders: dict[str, list[int]] = {p.siren: [] for p in partners}
    remaining, index = booklets, 0
    while remaining > 0:
        count = min(per_order, remaining)
        orders[partners[index % len(partners)].siren].append(count)
        remaining -= count
        index += 1
    return orders


def warm_up_commands(partners: list[Partner], orders: dict[str, list[int]], at: datetime,
                     tag: str) -> list[Command]:
    commands: list[Command] = []
    for partner in partners:
        value = sum(orders[partner.siren]) * partner.vouchers_per_booklet * FACE_VALUE_CENTS
        commands.append(RegisterCollectivite(
            request_id=f"{tag}-register-{partner.siren}", occurred_at=at, siren=partner.siren,
            name=partner.name, default_vouchers_per_booklet=partner.vouchers_per_booklet))
        if value:
            commands.append(FundEnvelope(request_id=f"{tag}-envelope-{partner.siren}",
                                         occurred_at=at, siren=partner.siren,
                                         committed_cents=value))
    return commands


def measured_commands(partners: list[Partner], orders: dict[str, list[int]], at: datetime,
                      tag: str) -> list[Command]:
    """Each order followed by its payment, partners interleaved as in a bulk campaign."""
    by_siren = {p.siren: p for p in partners}
    commands: list[Command] = []
    longest = max(len(counts) for counts in orders.values())
    for number in range(longest):
        for siren, counts in orders.items():
            if number >= len(counts):
                continue
            vouchers = by_siren[siren].vouchers_per_booklet
            value = counts[number] * vouchers * FACE_VALUE_CENTS
            commands.append(OrderBooklets(
                request_id=f"{tag}-order-{siren}-{number}", occurred_at=at, siren=siren,
                booklet_count=counts[number], vouchers_per_booklet=vouchers,
                face_value_cents=FACE_VALUE_CENTS))
            commands.append(RecordFundsReceived(
                request_id=f"{tag}-payment-{siren}-{number}", occurred_at=at, siren=siren,
                face_value_cents=value, fees_cents=value * 4 // 100,
                payment_reference=f"OP-{siren}-{number}"))
    return commands


def produce(settings: Settings, commands: list[Command]) -> None:
    topology = topology_for(settings)
    producer = make_producer(settings)
    for command in commands:
        topic, key = route_command(topology, command)
        producer.send(topic, key=key, value=encode(command))
    producer.flush()
    producer.close()


def wait_for_outcomes(settings: Settings, request_ids: set[str], timeout_seconds: float) -> None:
    from passnum.edge.client import LedgerClient

    client = LedgerClient(settings)
    try:
        outcomes = client.wait_for(request_ids, timeout_seconds)
    finally:
        client.close()
    rejected = [e for events in outcomes.values() for e in events if "rejected" in e.type]
    assert not rejected, rejected[:3]


# ------------------------------------------------------------------ the measured run


class Tail:
    """Follows partitions from given offsets with aiokafka, whose record parsing is compiled:
    the clock of both the issuer's run and the baseline. kafka-python's consumer decodes
    every record in Python (about 50 µs a booklet, measured from /proc), CPU that the
    measured pipeline shares on two cores; the same consumer on both sides keeps the ratio
    honest."""

    def __init__(self, settings: Settings, start_offsets: dict[tuple[str, int], int]) -> None:
        self.loop = asyncio.new_event_loop()
        self.consumer = self.loop.run_until_complete(self._started(settings, start_offsets))

    @staticmethod
    async def _started(settings: Settings, start_offsets: dict[tuple[str, int], int]) -> Any:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers, group_id=None,
            enable_auto_commit=False, fetch_max_wait_ms=100,
            fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
        await consumer.start()
        partitions = [TopicPartition(topic, number) for topic, number in start_offsets]
        consumer.assign(partitions)
        for partition in partitions:
            consumer.seek(partition, start_offsets[(partition.topic, partition.partition)])
        return consumer

    def values(self) -> list[bytes]:
        """What arrived within 100 ms (possibly nothing)."""
        batches = self.loop.run_until_complete(
            self.consumer.getmany(timeout_ms=100, max_records=50_000))
        return [record.value or b"" for records in batches.values() for record in records]

    def close(self) -> None:
        self.loop.run_until_complete(self.consumer.stop())
        self.loop.close()


class EventCounter:
    """Follows the issuer's events from the given offsets and counts distinct booklets
    issued and activated (a re-published event counts once)."""

    def __init__(self, settings: Settings, start_offsets: dict[tuple[str, int], int]) -> None:
        self.tail = Tail(settings, start_offsets)
        self.issued: set[bytes] = set()
        self.activated: set[bytes] = set()
        self.events = 0
        self.event_bytes = 0

    def poll(self) -> int:
        values = self.tail.values()
        for value in values:
            self.events += 1
            self.event_bytes += len(value)
            match = _BOOKLET_ID.search(value)
            if match is None:
                continue
            if _ISSUED in value:
                self.issued.add(match.group(1))
            elif _ACTIVATED in value:
                self.activated.add(match.group(1))
        return len(values)

    def progress(self) -> int:
        return len(self.issued) + len(self.activated)

    def close(self) -> None:
        self.tail.close()


def measure_issuer(settings: Settings, worker: WorkerProcess, commands: list[Command],
                   booklets: int) -> Run:
    topology = topology_for(settings)
    start = fetch_high_water_marks(settings, [topology.issuer_events.name])
    counter = EventCounter(settings, start)
    run = Run(booklets)
    target = 2 * booklets
    checkpoints = [(share, target * share // 100) for share in MEMORY_CHECKPOINTS]
    assert worker.process is not None
    database_name = settings.database_url.rsplit("/", 1)[1].split("?")[0]
    cpu_before = cpu_seconds_by_process({worker.process.pid}, database_name)
    started = time.perf_counter()
    sender = threading.Thread(target=produce, args=(settings, commands))
    sender.start()
    last_progress = time.monotonic()
    while counter.progress() < target:
        if counter.poll():
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > STALL_TIMEOUT_SECONDS:
            raise TimeoutError(f"stalled at {counter.progress()} of {target} events")
        while checkpoints and counter.progress() >= checkpoints[0][1]:
            run.rss_megabytes[checkpoints.pop(0)[0]] = resident_megabytes(worker.process.pid)
    run.elapsed_seconds = time.perf_counter() - started
    run.cpu_microseconds_per_booklet = cpu_microseconds_per(
        cpu_before, cpu_seconds_by_process({worker.process.pid}, database_name), booklets)
    sender.join(timeout=60)
    run.events, run.event_bytes = counter.events, counter.event_bytes
    counter.close()
    return run


# ------------------------------------------------------------------ the baseline


def produce_scratch(settings: Settings, topic: str, messages: int, size: int) -> None:
    """The baseline's producer, in its own process like the issuer worker is: in one
    process, kafka-python's producer and consumer would share one interpreter lock."""
    producer = make_producer(settings)
    payload = b"x" * size
    for index in range(messages):
        producer.send(topic, key=f"{index % 50_000:09d}-0000001".encode(), value=payload)
    producer.flush()
    producer.close()


def measure_kafka_python(settings: Settings, messages: int, size: int) -> float:
    """Messages per second through the broker: a kafka-python producer process and this
    process's tail consuming at the same time, on a scratch topic of the same partition
    count. Nothing is decoded, decided or stored in between."""
    import multiprocessing

    topic = topology_for(settings).conformance.name
    tail = Tail(settings, fetch_high_water_marks(settings, [topic]))
    sender = multiprocessing.get_context("spawn").Process(
        target=produce_scratch, args=(settings, topic, messages, size))
    started = time.perf_counter()
    sender.start()
    received, last_progress = 0, time.monotonic()
    while received < messages:
        count = len(tail.values())
        received += count
        if count:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > STALL_TIMEOUT_SECONDS:
            raise TimeoutError(f"baseline stalled at {received} of {messages}")
    elapsed = time.perf_counter() - started
    sender.join(timeout=60)
    tail.close()
    return messages / elapsed


# ------------------------------------------------------------------ profile of a batch


def profile_batches(settings: Settings, partners: list[Partner], batches: int,
                    per_order: int) -> str:
    """Decide `batches` order+payment pairs in this process with the issuer's own handler
    and the processing core, under cProfile: where the time of a batch goes."""
    from passnum.core.processing import InputRecord, decide_batch
    from passnum.ledger.envelope import Policy
    from services.issuer.handler import IssuerHandler

    topology = topology_for(settings)
    handler = IssuerHandler(topology, Policy())
    at = datetime.now(timezone.utc)
    orders = plan_orders(partners, batches * per_order, per_order)
    warm = warm_up_commands(partners, orders, at, "profile")
    measured = measured_commands(partners, orders, at, "profile")
    topic = topology.issuer_commands.name
    records = [InputRecord(topic, 0, offset, None, encode(command))
               for offset, command in enumerate(warm + measured)]
    profiler = cProfile.Profile()
    with connect(settings.database_url) as connection:
        decide_batch(connection, handler, records[:len(warm)])
        started, cpu_started = time.perf_counter(), time.process_time()
        profiler.enable()
        for offset in range(len(warm), len(records), 2):  # one order and its payment a batch
            decide_batch(connection, handler, records[offset:offset + 2])
        profiler.disable()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    output = io.StringIO()
    pstats.Stats(profiler, stream=output).sort_stats("cumulative").print_stats(35)
    return (f"decided {batches * per_order} booklets in {elapsed:.2f} s in-process "
            f"({batches * per_order / elapsed:,.0f} booklets/s, decide only, no broker); "
            f"this process's CPU: {cpu:.2f} s (profiler overhead included)\n"
            + output.getvalue())


# ------------------------------------------------------------------ main


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--booklets", type=int, default=20_000)
    parser.add_argument("--booklets-per-order", type=int, default=1_000)
    parser.add_argument("--batch-max-commands", type=int, default=0,
                        help="the worker's PASSNUM_BATCH_MAX_COMMANDS (0: the setting's)")
    parser.add_argument("--web-port", type=int, default=29_391)
    parser.add_argument("--run-directory", default="/tmp/passnum-bench-issuer")
    parser.add_argument("--profile-batches", type=int, default=0,
                        help="also profile this many order+payment batches in-process")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    return parser.parse_args(argv)


def report(run: Run, baseline_messages_per_second: float | None) -> None:
    events_per_booklet = run.events / run.booklets
    print(f"issuer: {run.booklets:,} booklets (issued and activated) in "
          f"{run.elapsed_seconds:.2f} s = {run.booklets_per_second:,.0f} booklets/s "
          f"({run.events:,} events, {events_per_booklet:.2f} per booklet, "
          f"{run.average_event_bytes} bytes on average, "
          f"{run.events / run.elapsed_seconds:,.0f} events/s)")
    print("CPU per booklet: " + ", ".join(f"{role} {microseconds:.0f} µs" for role, microseconds
                                          in run.cpu_microseconds_per_booklet.items()))
    print("worker RSS: " + ", ".join(f"{share} %: {megabytes:.0f} MB"
                                     for share, megabytes in sorted(run.rss_megabytes.items())))
    if baseline_messages_per_second is not None:
        equivalent = baseline_messages_per_second / events_per_booklet
        print(f"kafka-python produce, aiokafka consume: {baseline_messages_per_second:,.0f} messages/s "
              f"of {run.average_event_bytes} bytes = {equivalent:,.0f} booklets/s at "
              f"{events_per_booklet:.2f} events per booklet")
        print(f"ratio issuer / kafka-python: {run.booklets_per_second / equivalent:.2f}")
    # One JSON line for bench/all.py (the table of docs/performance.md).
    print(json.dumps({
        "booklets": run.booklets, "booklets_per_second": round(run.booklets_per_second),
        "events_per_second": round(run.events / run.elapsed_seconds),
        "worker_rss_mb_max": round(max(run.rss_megabytes.values(), default=0.0), 1),
        "cpu_microseconds_per_booklet": run.cpu_microseconds_per_booklet,
        "baseline_booklets_per_second": None if baseline_messages_per_second is None else
        round(baseline_messages_per_second / events_per_booklet)}), flush=True)


def run_bench(arguments: argparse.Namespace, settings: Settings) -> None:
    partners = collectivites()
    orders = plan_orders(partners, arguments.booklets, arguments.booklets_per_order)
    at = datetime.now(timezone.utc)
    logs = Path(settings.run_directory) / "logs" / settings.topic_prefix
    worker = WorkerProcess("issuer", settings, logs).start()
    print(f"worker log: {worker.log_path}", flush=True)
    try:
        worker.wait_until_healthy()
        warm = warm_up_commands(partners, orders, at, "bench")
        produce(settings, warm)
        wait_for_outcomes(settings, {c.request_id for c in warm}, WARM_UP_TIMEOUT_SECONDS)
        print(f"warm-up done: {len(warm)} commands; measuring {arguments.booklets:,} booklets "
              f"in orders of {arguments.booklets_per_order:,}", flush=True)
        run = measure_issuer(settings, worker, measured_commands(partners, orders, at, "bench"),
                             arguments.booklets)
    finally:
        worker.stop()
    baseline = None
    if not arguments.skip_baseline:
        baseline = measure_kafka_python(settings, run.events, run.average_event_bytes)
    report(run, baseline)


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    settings = bench_settings(arguments)
    with ManagedBroker(settings):
        if arguments.booklets:  # 0: only the in-process profile
            ledger = ledgers.isolated(settings)
            try:
                run_bench(arguments, ledger)
            finally:
                if not arguments.keep:
                    ledgers.discard(ledger)
        if arguments.profile_batches:
            ledger = ledgers.isolated(settings)
            try:
                print(profile_batches(ledger, collectivites(), arguments.profile_batches,
                                      arguments.booklets_per_order))
            finally:
                ledgers.discard(ledger)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
