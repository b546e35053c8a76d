"""The national run: a year of the programme at national size, through the real workers.

    .venv/bin/python bench/national.py --scale 0.04     # about 10 minutes on 2 cores
    .venv/bin/python bench/national.py --scale 1.0      # 87 collectivités, 2 million booklets

At `--scale 1.0`: 87 collectivités, 2,000,000 booklets of 10 vouchers (20 million vouchers),
80 % of the vouchers redeemed over the 12 months of the year with about 2 % of the vouchers
scanned a second time (rejected, `already_redeemed`), and the 12 months closed one after
the other. A scale multiplies the booklets (and so the vouchers and redemptions); the
collectivités, venues and months stay.

On fresh topics and a fresh database on the broker at PASSNUM_BOOTSTRAP_SERVERS:
1. Issuance, through the real issuer worker (bench/issuer_bulk.py's commands and clock):
   the partners registered and funded, then orders of `--booklets-per-order` booklets,
   each followed by its payment, in batches of `--issuer-batch-commands`; timed from the first command produced to the last
   booklet issued and activated, while the redeemer workers learn the booklets from the
   issuer's events (also timed: until the redeemer's table holds every activated booklet).
2. Redemptions, through `--workers` real redeemer worker processes, month after month:
   the month's scans (booklet by booklet, every twelfth booklet of each collectivité a
   month) are produced in chunks of at most `--chunk` commands with aiokafka and timed
   end to end by bench/redeemer_throughput.py's clock (first command produced to the last
   outcome consumed); the CPU used per scan by each process (worker, PostgreSQL, broker,
   load generator) is read from /proc around each chunk.
3. Settlement: after each month's scans, `close_settlement_month` for it, timed until the
   redeemer's `settlement_months` row is there (polled every 0.5 s).
4. Checks: the redemptions stored equal the first scans, every one paid by exactly the
   twelve closes (their voucher counts add up), nothing left unsettled.
5. The full audit, with the workers stopped: bench/audit_replay.py's measured replay of the
   whole log (read, chain check, judge, PostgreSQL load into a database of its own) in a
   process of its own, its peak resident memory sampled (bench/audit_growth.py).

Prints a markdown section and one JSON document (last); `--json` and `--markdown` also
write them to files. Every figure comes with the load average it was measured under. The
broker here keeps its log in memory (Tansu's `memory://` engine): its resident memory is
read before and after, because at scale 1.0 the log itself is the largest memory figure.
The estimates at scale 1.0 in the output are the measured rates carried linearly to the
full size (bench/audit_growth.py measures how far the audit is linear); they are
estimates, not measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import ledgers  # noqa: E402
from audit_growth import replay_in_process  # noqa: E402
from audit_replay import REDEEMED_SHARE, SECOND_SCAN_SHARE, VENUE_COUNT  # noqa: E402
from issuer_bulk import (  # noqa: E402
    measure_issuer,
    measured_commands,
    plan_orders,
    warm_up_commands,
    wait_for_outcomes,
)
from issuer_bulk import produce as produce_commands  # noqa: E402
from redeemer_common import (  # noqa: E402
    count,
    cpu_microseconds_per,
    cpu_seconds_by_process,
    free_port,
    isolated_settings,
    resident_megabytes,
    wait_for_count,
)
from redeemer_throughput import Payloads, timed_run  # noqa: E402
from redeemer_throughput import produce as produce_records  # noqa: E402

from passnum.core.broker import ManagedBroker  # noqa: E402
from passnum.core.codec import encode  # noqa: E402
from passnum.core.log import fetch_high_water_marks  # noqa: E402
from passnum.core.processes import WorkerProcess  # noqa: E402
from passnum.core.settings import Settings  # noqa: E402
from passnum.core.topology import route_command, topology_for  # noqa: E402
from passnum.ledger.partners import Partner, Venue, collectivites, venues  # noqa: E402
from passnum.ledger.settlement_month import month_end, month_start  # noqa: E402
from passnum.ledger.voucher_codes import VoucherNumber, make_code  # noqa: E402
from passnum.tools.scenario import accreditations  # noqa: E402
from schemas.messages import CloseSettlementMonth, RedeemVoucher  # noqa: E402

NATIONAL_COLLECTIVITES = 87
NATIONAL_BOOKLETS = 2_000_000
VOUCHERS_PER_BOOKLET = 10
MONTHS = 12
# A year that has ended, so that every scan is in the deciding clock's past and every month
# can be closed; the booklets are issued, paid and the venues accredited on its first day.
YEAR = 2025
OPENING = datetime(YEAR, 1, 1, 9, 0, tzinfo=timezone.utc)
FIRST_SCAN = OPENING + timedelta(days=1)
SECOND_SCAN_DELAY = timedelta(minutes=5)
# Of the redeemed vouchers, the share scanned again: SECOND_SCAN_SHARE of all vouchers.
RESCAN_SHARE_OF_REDEEMED = SECOND_SCAN_SHARE / REDEEMED_SHARE
CLOSE_TIMEOUT_SECONDS = 3_600.0
LEARN_TIMEOUT_SECONDS = 7_200.0
SETUP_TIMEOUT_SECONDS = 300.0


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


# ------------------------------------------------------------------ the plan (pure)


def national_partners() -> list[Partner]:
    """The 87 collectivités, every booklet of 10 vouchers as the national figure counts."""
    return [replace(partner, vouchers_per_booklet=VOUCHERS_PER_BOOKLET)
            for partner in collectivites(NATIONAL_COLLECTIVITES)]


def months() -> list[str]:
    return [f"{YEAR}-{number:02d}" for number in range(1, MONTHS + 1)]


def booklets_by_partner(orders: dict[str, list[int]]) -> dict[str, int]:
    return {siren: sum(counts) for siren, counts in orders.items()}


def scan_window(month: str) -> tuple[datetime, int]:
    """First instant and length in seconds of the month's scans: inside the month in
    France, not before the day after the opening, an hour clear of the month's end."""
    start = max(month_start(month), FIRST_SCAN)
    end = month_end(month) - timedelta(hours=1)
    return start, int((end - start).total_seconds())


def month_scans(booklet_counts: dict[str, int], month_index: int, venue_list: list[Venue],
                generator: random.Random) -> Iterator[tuple[VoucherNumber, str, datetime, bool]]:
    """The month's scans: (voucher, venue SIRET, instant, is a second scan). Every twelfth
    booklet of each collectivité is used in a month; each of its vouchers is redeemed with
    REDEEMED_SHARE, and a redeemed one scanned again with RESCAN_SHARE_OF_REDEEMED."""
    start, seconds = scan_window(months()[month_index])
    for siren, booklet_count in booklet_counts.items():
        for sequence in range(month_index + 1, booklet_count + 1, MONTHS):
            for position in range(1, VOUCHERS_PER_BOOKLET + 1):
                if generator.random() >= REDEEMED_SHARE:
                    continue
                number = VoucherNumber(siren, sequence, position)
                siret = venue_list[generator.randrange(len(venue_list))].siret
                at = start + timedelta(seconds=generator.randrange(seconds))
                yield number, siret, at, False
                if generator.random() < RESCAN_SHARE_OF_REDEEMED:
                    yield number, siret, at + SECOND_SCAN_DELAY, True


def scan_chunks(settings: Settings, scans: Iterator[tuple[VoucherNumber, str, datetime, bool]],
                label: str, chunk: int) -> Iterator[tuple[Payloads, int]]:
    """Encoded commands in chunks of at most `chunk` (a second scan in the same chunk as
    its first, after it: same booklet key, same partition, decided after); with the count
    of first scans in each."""
    topology = topology_for(settings)
    key = settings.voucher_code_key.encode()
    records: list[tuple[str, bytes, bytes]] = []
    firsts, number_of_chunk = 0, 0
    for index, (number, siret, at, again) in enumerate(scans):
        if len(records) >= chunk and not again:  # a second scan never starts a chunk
            yield Payloads(f"{label}c{number_of_chunk}", records), firsts
            records, firsts, number_of_chunk = [], 0, number_of_chunk + 1
        command = RedeemVoucher(request_id=f"{label}c{number_of_chunk}-{index}",
                                occurred_at=at, code=make_code(key, number), siret=siret)
        topic, record_key = route_command(topology, command)
        records.append((topic, record_key, encode(command)))
        firsts += not again
    if records:
        yield Payloads(f"{label}c{number_of_chunk}", records), firsts


# ------------------------------------------------------------------ the phases


def broker_resident_megabytes() -> float | None:
    """Tansu's resident memory (the log lives in it with the memory engine), or None."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if "tansu" in command:
                return round(resident_megabytes(int(entry.name)), 1)
        except (OSError, RuntimeError):
            continue
    return None


def start_workers(settings: Settings, run_directory: Path, redeemers: int,
                  issuer_batch_commands: int) -> tuple[WorkerProcess, list[WorkerProcess]]:
    issuer_settings = (settings.with_overrides(batch_max_commands=issuer_batch_commands)
                       if issuer_batch_commands else settings)
    issuer = WorkerProcess("issuer", issuer_settings,
                           run_directory / "logs" / "issuer").start()
    redeemer_workers = [WorkerProcess("redeemer", settings if index == 0 else
                                      settings.with_overrides(web_port_redeemer=free_port()),
                                      run_directory / "logs" / f"redeemer-{index}").start()
                        for index in range(redeemers)]
    for worker in (issuer, *redeemer_workers):
        worker.wait_until_healthy(120)
    return issuer, redeemer_workers


def onboard(settings: Settings, partners: list[Partner], orders: dict[str, list[int]],
            venue_list: list[Venue], tag: str) -> None:
    """Not measured: the partners registered, their envelopes committed, venues accredited
    on the opening day."""
    warm = warm_up_commands(partners, orders, OPENING, tag)
    produce_commands(settings, warm)
    wait_for_outcomes(settings, {command.request_id for command in warm}, SETUP_TIMEOUT_SECONDS)
    produce_commands(settings, accreditations(venue_list, OPENING, tag=tag))
    wait_for_count(settings, "SELECT count(*) FROM providers", len(venue_list),
                   SETUP_TIMEOUT_SECONDS)


def issue(settings: Settings, issuer: WorkerProcess, redeemer: WorkerProcess,
          partners: list[Partner], orders: dict[str, list[int]], booklets: int,
          tag: str) -> dict[str, Any]:
    started = time.perf_counter()
    run = measure_issuer(settings, issuer, measured_commands(partners, orders, OPENING, tag),
                         booklets)
    load_at_issued = load_average()
    wait_for_count(settings, "SELECT count(*) FROM redeemer_booklets WHERE activated",
                   booklets, LEARN_TIMEOUT_SECONDS, worker=redeemer)
    learned = time.perf_counter() - started
    return {"booklets": booklets, "seconds": round(run.elapsed_seconds, 2),
            "booklets_per_second": round(run.booklets_per_second),
            "events": run.events, "issuer_worker_rss_mb_max":
            round(max(run.rss_megabytes.values(), default=0.0), 1),
            "redeemer_knows_every_booklet_after_seconds": round(learned, 2),
            "load_average": load_at_issued}


def redeem_month(settings: Settings, workers: list[WorkerProcess], payload_chunks:
                 Iterator[tuple[Payloads, int]], totals: dict[str, Any]) -> None:
    """The month's chunks through the workers; adds to `totals` (count, firsts, seconds,
    CPU seconds by role)."""
    outcome_topic = topology_for(settings).redeemer_events.name
    pids = {worker.process.pid for worker in workers if worker.process is not None}
    for payloads, firsts in payload_chunks:
        before = cpu_seconds_by_process(pids)
        rate = timed_run(settings, outcome_topic, payloads.prefix, payloads.size,
                         lambda: produce_records(settings, payloads.records, client="aiokafka"),
                         "aiokafka")
        per_scan = cpu_microseconds_per(before, cpu_seconds_by_process(pids), payloads.size)
        totals["scans"] += payloads.size
        totals["first_scans"] += firsts
        totals["seconds"] += rate.seconds
        for role, microseconds in per_scan.items():
            totals["cpu_seconds"][role] = (totals["cpu_seconds"].get(role, 0.0)
                                           + microseconds * payloads.size / 1e6)
        if any(not worker.running() for worker in workers):
            raise RuntimeError("a redeemer worker exited; see its log")


def close_month(settings: Settings, month: str, tag: str, worker: WorkerProcess) -> float:
    command = CloseSettlementMonth(request_id=f"{tag}-close-{month}",
                                   occurred_at=month_end(month) + timedelta(hours=8),
                                   month=month)
    started = time.perf_counter()
    produce_commands(settings, [command])
    wait_for_count(settings, f"SELECT count(*) FROM settlement_months WHERE month = '{month}'",
                   1, CLOSE_TIMEOUT_SECONDS, worker=worker)
    return time.perf_counter() - started


def year_of_redemptions(settings: Settings, workers: list[WorkerProcess],
                        booklet_counts: dict[str, int], venue_list: list[Venue], chunk: int,
                        tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    generator = random.Random(2025)
    totals: dict[str, Any] = {"scans": 0, "first_scans": 0, "seconds": 0.0, "cpu_seconds": {}}
    closes: dict[str, float] = {}
    for index, month in enumerate(months()):
        scans = month_scans(booklet_counts, index, venue_list, generator)
        redeem_month(settings, workers, scan_chunks(settings, scans, f"{tag}m{index + 1}",
                                                    chunk), totals)
        closes[month] = round(close_month(settings, month, tag, workers[0]), 2)
        print(f"{month}: {totals['scans']:,} scans so far in {totals['seconds']:.1f} s; "
              f"closed in {closes[month]} s; load {load_average()}", file=sys.stderr,
              flush=True)
    scans = totals["scans"]
    redemption = {
        "scans": scans, "first_scans": totals["first_scans"],
        "second_scans": scans - totals["first_scans"], "seconds": round(totals["seconds"], 2),
        "scans_per_second": round(scans / totals["seconds"]),
        "cpu_microseconds_per_scan": {role: round(seconds / scans * 1e6, 1) for role, seconds
                                      in sorted(totals["cpu_seconds"].items())},
        "redeemer_worker_rss_mb": [round(resident_megabytes(worker.process.pid), 1)
                                   for worker in workers if worker.process is not None],
        "load_average": load_average()}
    settlement = {"closes": len(closes), "seconds_by_month": closes,
                  "seconds": round(sum(closes.values()), 2), "poll_seconds": 0.5}
    return redemption, settlement


def ledger_checks(settings: Settings, first_scans: int) -> dict[str, Any]:
    """What the database says against what was sent: a redemption lost, doubled or left
    unpaid would show here (the audit then checks the same from the log)."""
    stored = count(settings, "SELECT count(*) FROM redemptions")
    unsettled = count(settings, "SELECT count(*) FROM redemptions WHERE settlement_month IS NULL")
    paid = count(settings, "SELECT coalesce(sum(voucher_count), 0) FROM settlement_months")
    closed = count(settings, "SELECT count(*) FROM settlement_months")
    checks = {"redemptions_stored": stored, "first_scans_sent": first_scans,
              "vouchers_paid_by_closes": paid, "unsettled": unsettled, "months_closed": closed}
    checks["consistent"] = (stored == first_scans == paid and unsettled == 0
                            and closed == MONTHS)
    return checks


def log_records(settings: Settings) -> dict[str, int]:
    topology = topology_for(settings)
    marks = fetch_high_water_marks(settings, [topic.name for topic in topology.all_topics()])
    by_topic: dict[str, int] = {}
    for (topic, _), end in marks.items():
        by_topic[topic.removeprefix(settings.topic_prefix + ".")] = (
            by_topic.get(topic.removeprefix(settings.topic_prefix + "."), 0) + end)
    return by_topic


def full_audit(settings: Settings) -> dict[str, Any]:
    root = settings.database_url.rsplit("/", 1)[0]
    url = f"{root}/passnum_{settings.topic_prefix}_audit"
    try:
        replay = replay_in_process(settings.topic_prefix, url)
    finally:
        ledgers.drop_database(url)
    return {"events": replay["records"], "seconds": replay["seconds"],
            "read_seconds": replay["read_seconds"], "judge_seconds": replay["judge_seconds"],
            "load_seconds": replay["load_seconds"],
            "events_per_second": replay["events_per_second"],
            "peak_resident_mb": round(replay["peak_resident_bytes"] / 2**20, 1),
            "resident_mb_at_start": round(replay["resident_bytes_at_start"] / 2**20, 1),
            "state_bytes_per_voucher": replay["memory"]["bytes_per_voucher"],
            "vouchers": replay["memory"]["vouchers_count"],
            "sound": replay["sound"], "findings": replay["findings"],
            "load_average": replay["load_average"]}


# ------------------------------------------------------------------ estimates (pure)


def estimates_at_full_scale(result: dict[str, Any], marginal_bytes_per_voucher: float | None
                            ) -> dict[str, Any]:
    """The measured rates carried linearly to scale 1.0: estimates, not measurements. The
    audit's peak memory grows from the measured peak by the bytes each further voucher adds:
    bench/audit_growth.py's marginal peak per voucher when given, else the auditor's own
    count of its state per voucher (a floor: buffers and objects come on top). Carrying
    the whole peak linearly would multiply the interpreters and libraries too."""
    factor = 1 / result["scale"]
    audit = result["audit"]
    per_voucher = marginal_bytes_per_voucher or audit["state_bytes_per_voucher"]
    further_vouchers = NATIONAL_BOOKLETS * VOUCHERS_PER_BOOKLET - audit["vouchers"]
    broker_growth = (result["broker_rss_mb_after"] or 0) - (result["broker_rss_mb_before"] or 0)
    hours = {"issuance": result["issuance"]["seconds"] * factor / 3600,
             "redeemer_learns_booklets":
             result["issuance"]["redeemer_knows_every_booklet_after_seconds"] * factor / 3600,
             "redemptions": result["redemption"]["seconds"] * factor / 3600,
             "settlement_closes": result["settlement"]["seconds"] * factor / 3600,
             "audit": audit["seconds"] * factor / 3600}
    # The redeemer's learning clock starts with the issuance: the total counts it once.
    return {"hours": {name: round(value, 2) for name, value in hours.items()},
            "total_hours": round(sum(hours.values()) - hours["issuance"], 1),
            "booklets": NATIONAL_BOOKLETS,
            "vouchers": NATIONAL_BOOKLETS * VOUCHERS_PER_BOOKLET,
            "scans": round(result["redemption"]["scans"] * factor),
            "log_records": round(sum(result["log_records"].values()) * factor),
            "audit_peak_resident_mb": round(audit["peak_resident_mb"]
                                            + per_voucher * further_vouchers / 2**20),
            "audit_peak_basis_bytes_per_voucher": per_voucher,
            "audit_state_mb": round(audit["state_bytes_per_voucher"] * NATIONAL_BOOKLETS
                                    * VOUCHERS_PER_BOOKLET / 2**20),
            "broker_log_memory_mb": round(broker_growth * factor)}


def marginal_from(growth_json: Path | None) -> float | None:
    """The largest-size step's marginal peak bytes per voucher of an audit_growth result."""
    if growth_json is None:
        return None
    growth = json.loads(growth_json.read_text())["growth"]
    steps = growth["marginal_peak_resident_bytes_per_voucher"]
    return float(list(steps.values())[-1])


def markdown_section(result: dict[str, Any]) -> str:
    """The run's table. Below national size, a column carries each phase to scale 1.0; at
    scale 1.0 it would only repeat the measurements, and is left out."""
    issuance, redemption = result["issuance"], result["redemption"]
    settlement, audit, estimate = result["settlement"], result["audit"], result["estimate"]
    hours = estimate["hours"]
    cpu = redemption["cpu_microseconds_per_scan"]
    rows = [  # phase, measured, load average, estimate at scale 1.0
        ("Issuance (issuer worker)",
         f"{issuance['booklets']:,} booklets in {issuance['seconds']} s = "
         f"{issuance['booklets_per_second']:,} booklets/s; worker RSS "
         f"{issuance['issuer_worker_rss_mb_max']} MB", issuance["load_average"],
         f"{hours['issuance']} h"),
        ("Redeemer learns every booklet",
         f"{issuance['redeemer_knows_every_booklet_after_seconds']} s after the first order",
         issuance["load_average"], f"{hours['redeemer_learns_booklets']} h"),
        ("Redemptions end to end",
         f"{redemption['scans']:,} scans ({redemption['second_scans']:,} second scans, "
         f"rejected) in {redemption['seconds']} s = {redemption['scans_per_second']:,} "
         f"scans/s; CPU µs per scan by process {cpu} ('other': the rest of the shared "
         f"machine); worker RSS {redemption['redeemer_worker_rss_mb']} MB",
         redemption["load_average"], f"{hours['redemptions']} h for {estimate['scans']:,} scans"),
        ("Settlement",
         f"{settlement['closes']} monthly closes in {settlement['seconds']} s (each polled "
         f"every {settlement['poll_seconds']} s)", "", f"{hours['settlement_closes']} h"),
        ("Full audit (replay, judge, PostgreSQL load)",
         f"{audit['events']:,} events in {audit['seconds']} s = "
         f"{audit['events_per_second']:,} events/s; peak RSS {audit['peak_resident_mb']} MB; "
         f"state {audit['state_bytes_per_voucher']} bytes/voucher; sound: {audit['sound']}",
         audit["load_average"],
         f"{hours['audit']} h; peak RSS about {estimate['audit_peak_resident_mb']:,} MB at "
         f"{estimate['audit_peak_basis_bytes_per_voucher']} bytes per further voucher (state "
         f"{estimate['audit_state_mb']:,} MB)"),
    ]
    with_estimates = result["scale"] < 1.0
    columns = 4 if with_estimates else 3
    broker_estimate = (f" (estimate at scale 1.0: {estimate['broker_log_memory_mb']:,} MB more "
                       f"for about {estimate['log_records']:,} records)"
                       if with_estimates else "")
    lines = [
        f"Run of {result['date']} at scale {result['scale']} "
        f"({result['booklets']:,} booklets, {result['vouchers']:,} vouchers, "
        f"{result['collectivites']} collectivités, {result['venues']} venues, "
        f"{result['redeemer_workers']} redeemer workers); load average before "
        f"{result['load_average_before']}, after {result['load_average_after']}.",
        "",
        "| " + " | ".join(("Phase", "Measured", "Load average",
                          "Estimate at scale 1.0")[:columns]) + " |",
        "|" + "---|" * columns,
        *("|" + "|".join(f" {cell} " if cell != "" else " " for cell in row[:columns]) + "|"
          for row in rows),
        "",
        f"Checks: {result['checks']}. Log: {sum(result['log_records'].values()):,} records "
        f"({result['log_records']}); broker RSS (the whole broker, shared with whatever else "
        f"uses it meanwhile) {result['broker_rss_mb_before']} MB before, "
        f"{result['broker_rss_mb_after']} MB after{broker_estimate}.",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ the run


def national_run(arguments: argparse.Namespace) -> dict[str, Any]:
    booklets = max(NATIONAL_COLLECTIVITES, round(NATIONAL_BOOKLETS * arguments.scale))
    run_directory = Path(tempfile.mkdtemp(prefix="passnum-national-"))
    base = Settings.from_environment()
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scale": arguments.scale, "collectivites": NATIONAL_COLLECTIVITES,
        "booklets": booklets, "vouchers": booklets * VOUCHERS_PER_BOOKLET,
        "venues": arguments.venues, "issuer_batch_max_commands": arguments.issuer_batch_commands,
        "redeemer_workers": arguments.workers, "load_average_before": load_average()}
    with ManagedBroker(base.with_overrides(run_directory=str(run_directory))):
        result["broker_rss_mb_before"] = broker_resident_megabytes()
        settings = isolated_settings(base, run_directory, web_port_issuer=free_port())
        print(f"topics {settings.topic_prefix}, database {settings.database_url}, "
              f"logs {run_directory}", file=sys.stderr, flush=True)
        try:
            measure_ledger(arguments, settings, run_directory, result)
        finally:
            if not arguments.keep:
                ledgers.discard(settings)
    if not arguments.keep:
        shutil.rmtree(run_directory, ignore_errors=True)
    result["load_average_after"] = load_average()
    result["estimate"] = estimates_at_full_scale(result, marginal_from(arguments.growth))
    return result


def measure_ledger(arguments: argparse.Namespace, settings: Settings, run_directory: Path,
                   result: dict[str, Any]) -> None:
    """The phases, on the ledger `settings` names; the figures into `result`."""
    booklets, tag = result["booklets"], settings.topic_prefix
    partners = national_partners()
    orders = plan_orders(partners, booklets, arguments.booklets_per_order)
    venue_list = venues(arguments.venues)
    issuer, redeemers = start_workers(settings, run_directory, arguments.workers,
                                      arguments.issuer_batch_commands)
    workers = [issuer, *redeemers]
    try:
        onboard(settings, partners, orders, venue_list, tag)
        result["issuance"] = issue(settings, issuer, redeemers[0], partners, orders,
                                   booklets, tag)
        print(f"issuance: {result['issuance']}", file=sys.stderr, flush=True)
        issuer.stop()  # the redeemer needs only what the issuer published
        result["redemption"], result["settlement"] = year_of_redemptions(
            settings, redeemers, booklets_by_partner(orders), venue_list, arguments.chunk,
            tag)
        result["checks"] = ledger_checks(settings, result["redemption"]["first_scans"])
    finally:
        for worker in workers:
            worker.stop()
    result["log_records"] = log_records(settings)
    result["broker_rss_mb_after"] = broker_resident_megabytes()
    result["audit"] = full_audit(settings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.02,
                        help="share of the national size (1.0: 2 million booklets)")
    parser.add_argument("--workers", type=int, default=2, help="redeemer worker processes")
    parser.add_argument("--venues", type=int, default=VENUE_COUNT)
    parser.add_argument("--booklets-per-order", type=int, default=1_000)
    # The setting bounds a batch's commands, not its booklets: 20 commands are 10 orders and
    # their payments, 10,000 booklets and 20,000 events at any scale (the default of 1,000
    # would put up to 500,000 booklets in one batch at scale 1.0).
    parser.add_argument("--issuer-batch-commands", type=int, default=20,
                        help="the issuer worker's batch_max_commands (0: the setting's)")
    parser.add_argument("--chunk", type=int, default=100_000,
                        help="scans produced and timed at once (bounds this process's memory)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the topics, the database and the workers' logs")
    parser.add_argument("--growth", type=Path, metavar="JSON",
                        help="an audit_growth.py result: its marginal peak memory per voucher "
                        "carries the audit's peak to scale 1.0")
    parser.add_argument("--json", type=Path, help="also write the JSON result here")
    parser.add_argument("--markdown", type=Path, help="also write the markdown section here")
    arguments = parser.parse_args()
    result = national_run(arguments)
    section = markdown_section(result)
    document = json.dumps(result, indent=2, ensure_ascii=False)
    if arguments.json:
        arguments.json.write_text(document + "\n")
    if arguments.markdown:
        arguments.markdown.write_text(section + "\n")
    print(section)
    print(document, flush=True)
    return 0 if result["checks"]["consistent"] and result["audit"]["sound"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
