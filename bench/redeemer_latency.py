"""HTTP redemption latency at a steady request rate, through the real redeemer worker (faust
web server, gateway, broker, batch transaction, recorded outcome).

    .venv/bin/python bench/redeemer_latency.py           # quick: 200 requests/s for 15 s
    .venv/bin/python bench/redeemer_latency.py --full    # 200 requests/s for 60 s

Open loop: request i is due at start + i / rate and its latency is measured from that due
time, so a slow answer delays nobody's clock (no coordinated omission). Every request is a
first redemption of a distinct voucher, by one venue, with its own Idempotency-Key. Prints
p50, p90, p99 and the maximum in milliseconds, and the statuses. Figures: docs/redeemer.md.

The load generator speaks HTTP/1.1 itself over keep-alive connections (one request at a time
on each, up to `CONNECTIONS_MAX`), with each request's bytes prepared before the clock
starts. It shares the two cores with what it measures: aiohttp's client took about a core
at 1,000 requests/s here (with the machine loaded, every request of a 10 s run timed out in
the client's own queue while the worker sampled 68 % idle), so the figure was the load
generator's, not the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psycopg
from redeemer_common import (  # type: ignore[import-not-found]
    BENCH_SIREN,
    VOUCHERS_PER_BOOKLET,
    bench_ledger,
    cpu_microseconds_per,
    cpu_seconds_by_process,
    grow_state,
)

from passnum.core.settings import Settings
from passnum.edge.http import issue_token
from passnum.ledger.voucher_codes import VoucherNumber, make_code

REQUEST_TIMEOUT_SECONDS = 15.0
WARM_UP_REQUESTS = 200


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


CONNECTIONS_MAX = 256


class Connections:
    """Keep-alive connections to the server, one request in flight on each: a request whose
    due time comes while all are busy opens another, up to CONNECTIONS_MAX, then waits for one
    (its latency runs from its due time all the same)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0
        self.freed = asyncio.Condition()

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while not self.idle:
            if self.opened < CONNECTIONS_MAX:
                self.opened += 1
                try:
                    return await asyncio.open_connection(self.host, self.port)
                except OSError:
                    self.opened -= 1
                    raise
            async with self.freed:
                await self.freed.wait()
        return self.idle.pop()

    async def give_back(self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]
                        | None) -> None:
        if connection is None:
            self.opened -= 1  # broken: closed by the caller
        else:
            self.idle.append(connection)
        async with self.freed:
            self.freed.notify()


def request_bytes(path: str, host: str, token: str, code: str, key: str) -> bytes:
    body = json.dumps({"code": code}).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Idempotency-Key: {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def read_status(reader: asyncio.StreamReader) -> int:
    """The status of one answer, its headers and body read whole (Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def one_request(connections: Connections, payload: bytes, due: float,
                      latencies: list[tuple[float, float]], statuses: Counter) -> None:
    try:
        # Given back only once taken: a connection that failed to open is counted out by
        # `take` itself, and a request cancelled while waiting for one holds none.
        reader, writer = await connections.take()
    except OSError as error:
        statuses[type(error).__name__] += 1
        latencies.append((due, (time.monotonic() - due) * 1000))
        return
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = (reader, writer)
    try:
        writer.write(payload)
        statuses[await read_status(reader)] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError) as error:
        statuses[type(error).__name__] += 1
        writer.close()
        connection = None
    finally:
        await connections.give_back(connection)
    latencies.append((due, (time.monotonic() - due) * 1000))


async def drive(url: str, token: str, codes: list[str], rate: float, prefix: str
                ) -> tuple[list[tuple[float, float]], Counter]:
    """Start request i at its due time; answers still missing REQUEST_TIMEOUT_SECONDS after
    the last due time count as timeouts. (seconds from the first due time, milliseconds)
    of every request, in due order."""
    latencies: list[tuple[float, float]] = []
    statuses: Counter = Counter()
    address = url.split("/")[2]
    host, port = address.rsplit(":", 1)
    path = "/" + url.split("/", 3)[3]
    payloads = [request_bytes(path, address, token, code, f"{prefix}-{index}")
                for index, code in enumerate(codes)]
    connections = Connections(host, int(port))
    tasks: dict[asyncio.Task, float] = {}  # each request's task and its due time
    start = time.monotonic() + 0.5
    for index, payload in enumerate(payloads):
        due = start + index / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one_request(connections, payload, due, latencies,
                                               statuses))
        tasks[task] = due
    _, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_SECONDS)
    if pending:
        for task in pending:
            task.cancel()
        statuses["TimeoutError"] += len(pending)
        latencies += [(tasks[task], REQUEST_TIMEOUT_SECONDS * 1000) for task in pending]
    for reader_writer in connections.idle:
        reader_writer[1].close()
    return sorted((due - start, milliseconds) for due, milliseconds in latencies), statuses


def by_window(timed: list[tuple[float, float]], seconds: float) -> list[dict[str, float]]:
    """p50 and p99 of the requests due in each window of `seconds` (pure): whether the
    latency holds over the run or grows with it."""
    windows: dict[int, list[float]] = {}
    for due, milliseconds in timed:
        windows.setdefault(int(due // seconds), []).append(milliseconds)
    return [{"from_second": number * seconds,
             "p50_ms": round(percentile(sorted(values), 0.50), 1),
             "p99_ms": round(percentile(sorted(values), 0.99), 1)}
            for number, values in sorted(windows.items())]


def codes_for(settings: Settings, first: int, count: int) -> list[str]:
    key = settings.voucher_code_key.encode()
    return [make_code(key, VoucherNumber(BENCH_SIREN, index // VOUCHERS_PER_BOOKLET + 1,
                                         index % VOUCHERS_PER_BOOKLET + 1))
            for index in range(first, first + count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="60 s instead of 15 s")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--batch-max-wait", type=float, default=None,
                        help="the worker's batch_max_wait_seconds (default: the setting)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    arguments = parser.parse_args()
    seconds = arguments.seconds or (60.0 if arguments.full else 15.0)
    count = int(seconds * arguments.rate)
    overrides = {} if arguments.batch_max_wait is None else {
        "batch_max_wait_seconds": arguments.batch_max_wait}
    directory = tempfile.mkdtemp(prefix="passnum-bench-latency-")
    with bench_ledger(Settings.from_environment(), Path(directory), 1, **overrides) as bench:
        grow_state(bench, count + WARM_UP_REQUESTS + VOUCHERS_PER_BOOKLET)
        with psycopg.connect(bench.settings.database_url) as connection:
            token = issue_token(connection, "venue", bench.venues[0].siret)
        url = f"http://127.0.0.1:{bench.settings.web_port_redeemer}/v1/redemptions"
        asyncio.run(drive(url, token, codes_for(bench.settings, 0, WARM_UP_REQUESTS),
                          arguments.rate, "warm"))
        load_before = os.getloadavg()
        cpu_before = cpu_seconds_by_process(bench.worker_pids)
        timed, statuses = asyncio.run(drive(
            url, token, codes_for(bench.settings, WARM_UP_REQUESTS, count), arguments.rate,
            "run"))
        latencies = sorted(milliseconds for _, milliseconds in timed)
        # Where each request's CPU went (worker, PostgreSQL, broker, this load generator,
        # anything else): unlike the latencies, it moves little when other jobs share the
        # cores, and it says how far the machine is from serving the rate at all.
        cpu_after = cpu_seconds_by_process(bench.worker_pids)
        cpu = cpu_microseconds_per(cpu_before, cpu_after, count)
        settings = bench.settings
    if not arguments.keep:
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps({"run_directory": directory if arguments.keep else None,
        "rate_per_second": arguments.rate, "requests": count,
        "batch_max_wait_seconds": settings.batch_max_wait_seconds,
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p90_ms": round(percentile(latencies, 0.90), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(latencies[-1], 1),
        "by_10_seconds": by_window(timed, 10.0),
        "statuses": {str(key): value for key, value in statuses.items()},
        "cpu_microseconds_per_request": cpu,
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()]}, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
