"""How long a redeemer worker's event loop stops while a month's close is decided.

A close is decided in a thread (`RedeemerHandler.long_decision`), so that the event loop
goes on sending the consumer group's heartbeats. A call into psycopg's C code (converting a
result, dumping an array parameter) holds the GIL for as long as it runs, and a month at
national size is 1.37 million redemptions. This benchmark fills a database with one month of
unpaid redemptions (COPY), after the paid redemptions of the months before, then decides
the month's close exactly as the worker does
(`passnum.core.processing.decide_batch` in a thread, with the worker's handler), while a task
on the event loop wakes every 5 ms and records how late each wake-up is. Each close runs
on a fresh copy of the filled database (`CREATE DATABASE ... TEMPLATE`).

The baseline is the same close with one call for the whole month
(`close_rows_per_call` = the month's redemptions); the figure is the setting's value.
The two alternate, `--repeats` times each.

    .venv/bin/python bench/close_stall.py [--redemptions 1370000] [--paid-before 5470000]
                                          [--venues 200] [--repeats 2] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg

from ledgers import drop_database
from passnum.core.codec import encode
from passnum.core.database import apply_migrations, create_database_if_missing
from passnum.core.processing import InputRecord, decide_batch
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from passnum.ledger.partners import collectivites, venues
from schemas.messages import CloseSettlementMonth
from redeemer_common import count
from services.redeemer.handler import handler_for

MONTH = "2025-01"
MONTH_START = datetime(2025, 1, 1, tzinfo=timezone.utc)  # UTC: inside the Paris month too
CLOSED_AT = datetime(2025, 2, 1, 6, 0, tzinfo=timezone.utc)
TICK_SECONDS = 0.005


def fill(url: str, redemptions: int, paid_before: int, venue_count: int) -> None:
    """`paid_before` redemptions of the months before, paid (inserted unpaid, then marked,
    as the closes of those months did: with no VACUUM since, as on this machine, the
    partial index of unpaid redemptions keeps their entries), then one month of unpaid
    redemptions: booklets of 10 vouchers of one collectivité, each redemption by one of the
    venues, spread over the month. Nothing is analysed, as nothing is here."""
    siren = collectivites(1)[0].siren
    sirets = [venue.siret for venue in venues(venue_count)]
    month_seconds = 27 * 24 * 3600
    earlier = MONTH_START - timedelta(days=150)
    with psycopg.connect(url) as connection:
        with connection.cursor().copy(
                "COPY redemptions (voucher_id, booklet_id, siren, siret, face_value_cents, "
                "redeemed_at, event_id) FROM STDIN") as copy:
            for index in range(paid_before + redemptions):
                booklet = f"{siren}-{index // 10 + 1:07d}"
                if index < paid_before:
                    at = earlier + timedelta(seconds=index * 120 * 24 * 3600 // paid_before)
                else:
                    at = MONTH_START + timedelta(
                        hours=6, seconds=(index - paid_before) * month_seconds // redemptions)
                copy.write_row((f"{booklet}-{index % 10 + 1:02d}", booklet, siren,
                                sirets[index % len(sirets)], 1000, at, str(uuid.uuid4())))
        connection.execute("UPDATE redemptions SET settlement_month = '2024-12' "
                           "WHERE redeemed_at < %s", (MONTH_START,))


def close_record(settings: Settings) -> InputRecord:
    command = CloseSettlementMonth(request_id=f"close-{MONTH}", occurred_at=CLOSED_AT,
                                   month=MONTH)
    return InputRecord(topology_for(settings).redeemer_commands.name, 0, 0,
                       MONTH.encode(), encode(command))


async def decide_while_ticking(url: str, settings: Settings, rows_per_call: int
                               ) -> dict[str, Any]:
    """The close decided in a thread; the event loop's wake-ups meanwhile."""
    handler = replace(handler_for(settings), close_rows_per_call=rows_per_call)
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            due = loop.time() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            lateness.append(loop.time() - due)

    with psycopg.connect(url) as connection:
        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        result = await asyncio.to_thread(decide_batch, connection, handler,
                                         [close_record(settings)])
        seconds = time.monotonic() - started
        done.set()
        await ticker
    database = settings.with_overrides(database_url=url)
    statements = count(database, "SELECT count(*) FROM settlement_statements")
    paid = count(database, f"SELECT count(*) FROM redemptions WHERE settlement_month = '{MONTH}'")
    lateness.sort()
    return {"rows_per_call": rows_per_call, "close_seconds": round(seconds, 2),
            "longest_stall_seconds": round(lateness[-1], 3),
            "p99_stall_seconds": round(lateness[int(0.99 * (len(lateness) - 1))], 3),
            "wake_ups": len(lateness), "statements": statements, "paid": paid,
            "outbox_rows": len(result.outbox) if result.outbox else 0}


def run(redemptions: int, paid_before: int, venue_count: int, repeats: int
        ) -> dict[str, Any]:
    base = Settings.from_environment()
    root = base.database_url.rsplit("/", 1)[0]
    suffix = uuid.uuid4().hex[:8]
    template = f"passnum_closestall{suffix}"
    settings = base.with_overrides(topic_prefix=f"closestall{suffix}",
                                   run_directory=os.environ.get("PASSNUM_RUN_DIRECTORY",
                                                                base.run_directory))
    load_before = os.getloadavg()
    create_database_if_missing(f"{root}/{template}")
    runs: list[dict[str, Any]] = []
    try:
        apply_migrations(f"{root}/{template}")
        started = time.monotonic()
        fill(f"{root}/{template}", redemptions, paid_before, venue_count)
        print(f"filled {paid_before:,} paid and {redemptions:,} unpaid redemptions in "
              f"{time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        for repeat in range(repeats):
            for rows_per_call in (redemptions, settings.close_rows_per_call):
                name = f"{template}r{repeat}c{rows_per_call}"
                with psycopg.connect(f"{root}/postgres", autocommit=True) as admin:
                    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                try:
                    outcome = asyncio.run(decide_while_ticking(f"{root}/{name}", settings,
                                                               rows_per_call))
                finally:
                    drop_database(f"{root}/{name}")
                outcome["load_average"] = [round(value, 2) for value in os.getloadavg()]
                print(json.dumps(outcome), file=sys.stderr, flush=True)
                if outcome["paid"] != redemptions:
                    raise SystemExit(f"the close paid {outcome['paid']} of {redemptions}")
                runs.append(outcome)
    finally:
        drop_database(f"{root}/{template}")
    baseline = [run for run in runs if run["rows_per_call"] == redemptions]
    figure = [run for run in runs if run["rows_per_call"] != redemptions]
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "redemptions": redemptions, "paid_before": paid_before, "venues": venue_count,
        "rows_per_call": settings.close_rows_per_call,
        "longest_stall_seconds": max(run["longest_stall_seconds"] for run in figure),
        "baseline_longest_stall_seconds": max(run["longest_stall_seconds"] for run in baseline),
        "close_seconds": [run["close_seconds"] for run in figure],
        "baseline_close_seconds": [run["close_seconds"] for run in baseline],
        "session_timeout_seconds": settings.session_timeout_seconds,
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redemptions", type=int, default=1_370_000,
                        help="the month's unpaid redemptions (1.37 million: a national month)")
    parser.add_argument("--paid-before", type=int, default=5_470_000,
                        help="redemptions of earlier months, paid (the year so far before "
                        "the fifth month at national size)")
    parser.add_argument("--venues", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default="", help="also write the result here")
    arguments = parser.parse_args()
    result = run(arguments.redemptions, arguments.paid_before, arguments.venues,
                 arguments.repeats)
    text = json.dumps(result, indent=1)
    print(text)
    if arguments.json:
        Path(arguments.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
