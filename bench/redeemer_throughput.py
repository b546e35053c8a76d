"""Sustained redemptions per second through the faust redeemer worker, end to end, against
(a) the raw produce+consume rate of the same client on the same broker and (b) a naive
design: one PostgreSQL transaction with a row lock per request, fed from the same topic.

    .venv/bin/python bench/redeemer_throughput.py           # quick: 100 k vouchers, 50 k scans
    .venv/bin/python bench/redeemer_throughput.py --full    # 100 k then 2 M vouchers of state
    ... --workers 1                  # one redeemer worker process (default: 2)
    ... --client kafka-python        # the load generator and the raw rate with kafka-python

The client is aiokafka, or kafka-python (passnum.core.log.make_producer / make_consumer) with
`--client kafka-python`. It runs in this process and takes CPU from the same two cores as
what it measures: about 21-25 µs per redemption with aiokafka against 50 µs with
kafka-python (the `cpu_microseconds_per_redemption` line), which is why aiokafka is the
default. Either way the raw rate is measured with the same client, in the same run:
- end to end: the clock runs from the first `redeem_voucher` command produced to the last
  outcome event (`voucher_redeemed`) consumed from the redeemer's event topic;
- raw: the same payloads produced to a scratch topic of the same partition count and
  consumed back, nothing in between: the best this client and broker can do;
- naive: the same commands read back from the command topic by one consumer thread per
  partition, each request decoded like the worker does, then
  `SELECT ... FOR UPDATE; UPDATE; COMMIT` on a one-row-per-voucher table, and an outcome
  produced per request; the clock stops at the last outcome consumed.
The worker's resident memory (VmRSS) is read after each phase. Figures: docs/redeemer.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from kafka import TopicPartition
from redeemer_common import (  # type: ignore[import-not-found]
    BENCH_DAY,
    BENCH_SIREN,
    VOUCHERS_PER_BOOKLET,
    Bench,
    bench_ledger,
    cpu_microseconds_per,
    cpu_seconds_by_process,
    grow_state,
)

from passnum.core.codec import decode_command, encode
from passnum.core.log import fetch_high_water_marks, make_consumer, make_producer
from passnum.core.publisher import BatchSender
from passnum.core.settings import Settings
from passnum.core.topology import route_command, topology_for
from passnum.ledger.voucher_codes import VoucherNumber, make_code, parse_code
from schemas.messages import RedeemVoucher

STALL_SECONDS = 60.0
NAIVE_MOST = 8_000  # requests replayed through the naive design
_REQUEST_ID = re.compile(rb'"request_id":"([^"]+)"')


@dataclass
class Payloads:
    prefix: str
    records: list[tuple[str, bytes, bytes]]  # topic, key, value

    @property
    def size(self) -> int:
        return len(self.records)


def redemption_payloads(bench: Bench, prefix: str, first_voucher: int, count: int
                        ) -> Payloads:
    """`count` redemptions of distinct vouchers, spread over the venues, encoded up front."""
    topology = topology_for(bench.settings)
    key = bench.settings.voucher_code_key.encode()
    records = []
    for index in range(first_voucher, first_voucher + count):
        sequence, position = divmod(index, VOUCHERS_PER_BOOKLET)
        code = make_code(key, VoucherNumber(BENCH_SIREN, sequence + 1, position + 1))
        command = RedeemVoucher(request_id=f"{prefix}-{index}", occurred_at=BENCH_DAY,
                                code=code, siret=bench.venues[index % len(bench.venues)].siret)
        topic, record_key = route_command(topology, command)
        records.append((topic, record_key, encode(command)))
    return Payloads(prefix, records)


class OutcomeCounter(threading.Thread):
    """Consumes a topic from its current end and counts distinct request ids with a prefix;
    remembers when it saw 10 %, 90 % and 100 % of them."""

    def __init__(self, settings: Settings, topic: str, prefix: str, expected: int,
                 client: str = "kafka-python") -> None:
        super().__init__(daemon=True)
        self.settings, self.topic, self.expected = settings, topic, expected
        self.client = client
        self.marker = f'"request_id":"{prefix}-'.encode()
        self.seen: set[bytes] = set()
        self.times: dict[int, float] = {}
        self.ready = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            if self.client == "aiokafka":
                asyncio.run(self._consume_aiokafka())
            else:
                self._consume()
        except BaseException as error:
            self.failure = error

    def _count(self, values: Iterable[bytes]) -> None:
        for value in values:
            if self.marker in value:
                self.seen.add(_REQUEST_ID.search(value).group(1))  # type: ignore[union-attr]
        for percent in (10, 90, 100):
            if percent not in self.times and len(self.seen) * 100 >= self.expected * percent:
                self.times[percent] = time.monotonic()

    def _seek_to_the_end(self, consumer: Any, partition_class: Any) -> None:
        """Assign every partition at its current high-water mark: only new outcomes count."""
        marks = fetch_high_water_marks(self.settings, [self.topic])
        partitions = [partition_class(topic, number) for topic, number in marks]
        consumer.assign(partitions)
        for partition in partitions:
            consumer.seek(partition, marks[(partition.topic, partition.partition)])
        self.ready.set()

    def _take(self, fetched: dict, last_progress: float) -> float:
        """Count a poll's records; the time of the last progress, or a stall error."""
        for records in fetched.values():
            self._count(record.value for record in records)
            last_progress = time.monotonic()
        if time.monotonic() - last_progress > STALL_SECONDS:
            raise TimeoutError(f"{self.topic}: {len(self.seen)} of {self.expected}")
        return last_progress

    async def _consume_aiokafka(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka import TopicPartition as AioPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers,
                                    group_id=None, enable_auto_commit=False,
                                    fetch_max_wait_ms=100, max_partition_fetch_bytes=8 << 20)
        await consumer.start()
        try:
            self._seek_to_the_end(consumer, AioPartition)
            last_progress = time.monotonic()
            while len(self.seen) < self.expected:
                fetched = await consumer.getmany(timeout_ms=100, max_records=50_000)
                last_progress = self._take(fetched, last_progress)
        finally:
            await consumer.stop()

    def _consume(self) -> None:
        consumer = make_consumer(self.settings)
        self._seek_to_the_end(consumer, TopicPartition)
        last_progress = time.monotonic()
        while len(self.seen) < self.expected:
            fetched = consumer.poll(timeout_ms=100, max_records=50_000)
            last_progress = self._take(fetched, last_progress)
        consumer.close(autocommit=False)

    def wait(self, timeout_seconds: float) -> None:
        self.join(timeout_seconds)
        if self.failure is not None:
            raise self.failure
        assert not self.is_alive(), "the outcome counter did not finish in time"


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: float
    steady_per_second: float  # between 10 % and 90 % of the outcomes

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


def timed_run(settings: Settings, outcome_topic: str, prefix: str, expected: int,
              start: object, client: str = "kafka-python") -> Rate:
    counter = OutcomeCounter(settings, outcome_topic, prefix, expected, client)
    counter.start()
    counter.ready.wait(60)
    started = time.monotonic()
    start()  # type: ignore[operator]
    counter.wait(STALL_SECONDS * 20)
    steady = 0.8 * expected / max(counter.times[90] - counter.times[10], 1e-9)
    return Rate(expected, counter.times[100] - started, steady)


def produce(settings: Settings, records: list[tuple[str, bytes, bytes]],
            topic_override: str | None = None, client: str = "kafka-python") -> None:
    if client == "aiokafka":
        asyncio.run(produce_aiokafka(settings, records, topic_override))
        return
    producer = make_producer(settings)
    for topic, key, value in records:
        producer.send(topic_override or topic, key=key, value=value)
    producer.flush()
    producer.close()


@dataclass(frozen=True)
class _Command:
    """A command as `BatchSender` sends it (the shape of the HTTP gateway's records)."""

    topic: str
    key: bytes
    payload: bytes

    def headers(self) -> list[tuple[str, bytes]]:
        return []


# The load generator sends its commands as the HTTP gateways do, in record batches
# (passnum.core.publisher.BatchSender); slices keep the partitions interleaved, as many
# counters sending at once would.
PRODUCE_SLICE = 2_000


async def produce_aiokafka(settings: Settings, records: list[tuple[str, bytes, bytes]],
                           topic_override: str | None) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    try:
        sender, acknowledgements = BatchSender(), []
        commands = [_Command(topic_override or topic, key, value)
                    for topic, key, value in records]
        for start in range(0, len(commands), PRODUCE_SLICE):
            await sender.send(producer, commands[start:start + PRODUCE_SLICE],
                              lambda sent, _batch: acknowledgements.append(sent))
        await asyncio.gather(*acknowledgements)
    finally:
        await producer.stop()


def end_to_end(bench: Bench, payloads: Payloads, client: str = "kafka-python") -> Rate:
    topic = topology_for(bench.settings).redeemer_events.name
    return timed_run(bench.settings, topic, payloads.prefix, payloads.size,
                     lambda: produce(bench.settings, payloads.records, client=client), client)


def raw_client(bench: Bench, payloads: Payloads, client: str = "kafka-python") -> Rate:
    """Same client, same broker, same payloads and partitions, nothing in between."""
    scratch = topology_for(bench.settings).conformance.name
    return timed_run(bench.settings, scratch, payloads.prefix, payloads.size,
                     lambda: produce(bench.settings, payloads.records, scratch, client), client)


# ------------------------------------------------------------------ the naive baseline


def prepare_naive_table(settings: Settings, payloads: Payloads) -> None:
    """One row per voucher of the run, unredeemed."""
    import psycopg

    key = settings.voucher_code_key.encode()
    with psycopg.connect(settings.database_url) as connection, connection.transaction():
        connection.execute("CREATE TABLE IF NOT EXISTS bench_naive_vouchers ("
                           "voucher_id text PRIMARY KEY, redeemed_by text, "
                           "redeemed_at timestamptz)")
        with connection.cursor().copy("COPY bench_naive_vouchers (voucher_id) FROM STDIN") as copy:
            for _, _, value in payloads.records:
                number = parse_code(key, json.loads(value)["code"]).number
                assert number is not None
                copy.write_row((number.voucher_id,))


def naive_partition(settings: Settings, topic: str, partition: int, start: int, end: int,
                    outcome_topic: str) -> None:
    """Per request: decode, check the code, lock the row, update it, commit, answer."""
    import psycopg

    key = settings.voucher_code_key.encode()
    consumer = make_consumer(settings)
    place = TopicPartition(topic, partition)
    consumer.assign([place])
    consumer.seek(place, start)
    producer = make_producer(settings)
    position = start
    with psycopg.connect(settings.database_url) as connection:
        while position < end:
            for records in consumer.poll(timeout_ms=100, max_records=1000).values():
                for record in records:
                    position = record.offset + 1
                    command = decode_command(record.value)
                    number = parse_code(key, command.code).number  # type: ignore[attr-defined]
                    with connection.transaction():
                        row = connection.execute(
                            "SELECT redeemed_by FROM bench_naive_vouchers WHERE voucher_id = %s "
                            "FOR UPDATE", (number.voucher_id,)).fetchone()
                        if row is not None and row[0] is None:
                            connection.execute(
                                "UPDATE bench_naive_vouchers SET redeemed_by = %s, "
                                "redeemed_at = %s WHERE voucher_id = %s",
                                (command.siret, command.occurred_at,  # type: ignore[attr-defined]
                                 number.voucher_id))
                    producer.send(outcome_topic, key=record.key, value=json.dumps({
                        "type": "voucher_redeemed", "request_id": command.request_id,
                        "voucher_id": number.voucher_id}, separators=(",", ":")).encode())
    producer.flush()
    producer.close()
    consumer.close(autocommit=False)


def naive(bench: Bench, payloads: Payloads, before: dict, after: dict, most: int) -> Rate:
    """Replays (at most `most` of) the commands of the end-to-end run, which sit at offsets
    `before`..`after` of the command topic: a rate needs no more, and this design is slow."""
    prepare_naive_table(bench.settings, payloads)
    topology = topology_for(bench.settings)
    outcome_topic = topology.conformance.name
    ranges = {}
    for (topic, partition), end in after.items():
        start = before.get((topic, partition), 0)
        ranges[(topic, partition)] = (start, min(end, start + most // len(after)))
    expected = sum(end - start for start, end in ranges.values())

    def start() -> None:
        threads = [threading.Thread(target=naive_partition, daemon=True, args=(
            bench.settings, topic, partition, first, end, outcome_topic))
            for (topic, partition), (first, end) in ranges.items()]
        for thread in threads:
            thread.start()

    return timed_run(bench.settings, outcome_topic, payloads.prefix, expected, start)


# ------------------------------------------------------------------ the run


def phase(bench: Bench, vouchers: int, scans: int, first_voucher: int, label: str,
          only_end_to_end: bool = False, client: str = "kafka-python") -> dict:
    grow_state(bench, vouchers)
    rss_before = bench.resident_megabytes()
    warm = redemption_payloads(bench, f"warm{label}", first_voucher, min(5_000, scans // 10))
    end_to_end(bench, warm, client)
    payloads = redemption_payloads(bench, f"run{label}", first_voucher + warm.size, scans)
    commands_topic = topology_for(bench.settings).redeemer_commands.name
    before = fetch_high_water_marks(bench.settings, [commands_topic])
    database_name = bench.settings.database_url.rsplit("/", 1)[1].split("?")[0]
    cpu_before = cpu_seconds_by_process(bench.worker_pids, database_name)
    print(f"measuring {scans} redemptions end to end", file=sys.stderr, flush=True)
    worker_rate = end_to_end(bench, payloads, client)
    cpu = cpu_microseconds_per(cpu_before, cpu_seconds_by_process(bench.worker_pids,
                                                                  database_name), scans)
    after = fetch_high_water_marks(bench.settings, [commands_topic])
    rss_after = bench.resident_megabytes()
    print(f"end to end: {worker_rate}; CPU µs per redemption: {cpu}", file=sys.stderr,
          flush=True)
    if only_end_to_end:
        return {"vouchers_of_state": vouchers, "redemptions": scans,
                "end_to_end_per_second": round(worker_rate.per_second),
                "end_to_end_steady_per_second": round(worker_rate.steady_per_second),
                "cpu_microseconds_per_redemption": cpu,
                "worker_rss_mb_after": round(rss_after, 1)}
    raw = raw_client(bench, payloads, client)
    baseline = naive(bench, payloads, before, after, NAIVE_MOST)
    return {"vouchers_of_state": vouchers, "redemptions": scans,
            "end_to_end_per_second": round(worker_rate.per_second),
            "end_to_end_steady_per_second": round(worker_rate.steady_per_second),
            "raw_client_per_second": round(raw.per_second),
            "ratio_to_raw": round(worker_rate.per_second / raw.per_second, 3),
            "naive_per_second": round(baseline.per_second),
            "speedup_over_naive": round(worker_rate.per_second / baseline.per_second, 2),
            "cpu_microseconds_per_redemption": cpu,
            "worker_rss_mb_before": round(rss_before, 1),
            "worker_rss_mb_after": round(rss_after, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true",
                        help="100 k then 2 M vouchers of state, 200 k redemptions each")
    parser.add_argument("--scans", type=int, default=None, help="redemptions per phase")
    parser.add_argument("--venues", type=int, default=20)
    parser.add_argument("--client", choices=("kafka-python", "aiokafka"),
                        default="aiokafka", help="the client that produces the commands, "
                        "consumes the outcomes, and is measured raw (the ratio's denominator)")
    parser.add_argument("--workers", type=int, default=2,
                        help="redeemer worker processes sharing the 4 input partitions "
                        "(default: one per core of the 2-core machine)")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--profile", default="", help="'timing' or a cProfile output path: "
                        "sets PASSNUM_REDEEMER_PROFILE for the worker (see its log)")
    parser.add_argument("--only-end-to-end", action="store_true",
                        help="skip the raw and naive measurements (profiling runs)")
    arguments = parser.parse_args()
    if arguments.profile:
        os.environ["PASSNUM_REDEEMER_PROFILE"] = arguments.profile
    scans = arguments.scans or (200_000 if arguments.full else 50_000)
    states = (100_000, 2_000_000) if arguments.full else (100_000,)
    results = []
    # With --keep, the run directory (worker log included) stays for inspection.
    directory = tempfile.mkdtemp(prefix="passnum-bench-redeemer-")
    print(f"run directory: {directory}", file=sys.stderr, flush=True)
    with bench_ledger(Settings.from_environment(), Path(directory), arguments.venues,
                      keep=arguments.keep, worker_count=arguments.workers) as bench:
        first_voucher = 0
        for vouchers in states:
            # Every redemption is of a fresh voucher: at most half the state per phase.
            phase_scans = min(scans, (vouchers - first_voucher) // 2)
            results.append(phase(bench, vouchers, phase_scans, first_voucher, str(vouchers),
                                 arguments.only_end_to_end, arguments.client))
            print(json.dumps(results[-1]), flush=True)
            first_voucher += phase_scans + min(5_000, phase_scans // 10)
    if not arguments.keep:
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps({"client": arguments.client, "workers": arguments.workers,
                      "consumer": Settings.from_environment().consumer, "phases": results},
                     indent=2))


if __name__ == "__main__":
    main()
