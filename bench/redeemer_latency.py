"""HTTP redemption latency at a steady request rate, through the real redeemer worker (faust
web server, gateway, broker, batch transaction, recorded outcome).

    .venv/bin/python bench/redeemer_latency.py           # quick: 200 requests/s for 15 s
    .venv/bin/python bench/redeemer_latency.py --full    # 200 requests/s for 60 s

Open loop: request i is due at start + i / rate and its latency is measured from that due
time, so a slow answer delays nobody's clock (no coordinated omission). Every request is a
first redemption of a distinct voucher, by one venue, with its own Idempotency-Key. Prints
p50, p90, p99 and the maximum in milliseconds, and the statuses. Figures: docs/redeemer.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import psycopg
from redeemer_common import (  # type: ignore[import-not-found]
    BENCH_SIREN,
    VOUCHERS_PER_BOOKLET,
    bench_ledger,
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


async def one_request(session: aiohttp.ClientSession, url: str, token: str, code: str,
                      key: str, due: float, latencies: list[float], statuses: Counter) -> None:
    delay = due - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    try:
        async with session.post(url, json={"code": code}, headers={
                "Authorization": f"Bearer {token}", "Idempotency-Key": key}) as response:
            await response.read()
            statuses[response.status] += 1
    except (TimeoutError, aiohttp.ClientError) as error:
        statuses[type(error).__name__] += 1
    latencies.append((time.monotonic() - due) * 1000)


async def drive(url: str, token: str, codes: list[str], rate: float, prefix: str
                ) -> tuple[list[float], Counter]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        start = time.monotonic() + 0.5
        await asyncio.gather(*(one_request(session, url, token, code, f"{prefix}-{index}",
                                           start + index / rate, latencies, statuses)
                               for index, code in enumerate(codes)))
    return sorted(latencies), statuses


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
        latencies, statuses = asyncio.run(drive(
            url, token, codes_for(bench.settings, WARM_UP_REQUESTS, count), arguments.rate,
            "run"))
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
        "statuses": {str(key): value for key, value in statuses.items()}}, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
