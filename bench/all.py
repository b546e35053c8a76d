"""Every benchmark, each with its baseline measured in the same run, into one table:
`python bench/all.py [--full] [--runs N]` runs them one after another, N times (2 by
default), and writes docs/performance.md (figure, baseline, ratio, target, CPU per
operation, peak memory, load average, date, for each run).

The baselines:
- issuance: kafka-python producing and consuming the same number of events
  (bench/issuer_bulk.py);
- redemption: the plain PostgreSQL application a team without a log would write, measured
  here: one `UPDATE ... WHERE redeemed_by IS NULL` per attempt from 8 client threads, 10 %
  duplicate attempts (`plain_postgresql_attempts_per_second`); bench/redeemer_throughput.py
  also reports its own raw-client and naive baselines;
- HTTP latency: the target itself (p99 under 25 ms at 1,000 requests/s);
- audit replay: the fastest raw reader of the same log (bench/audit_replay.py);
- with `--growth`, the audit's growth: the replay of a 4x log against the 1x log's, same
  run (bench/audit_growth.py; the national run and its figures: docs/scale.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

REPOSITORY = Path(__file__).resolve().parents[1]
OUTPUT = REPOSITORY / "docs" / "performance.md"
PLAIN_THREADS = 8
PLAIN_DUPLICATE_SHARE = 0.10


def plain_postgresql_attempts_per_second(database_url: str, attempts: int) -> float:
    """The application without a log: a voucher table, one UPDATE per redemption attempt,
    8 client threads, 10 % of attempts repeat a voucher already tried."""
    root = database_url.rsplit("/", 1)[0]
    name = f"passnum_plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{root}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{root}/{name}"
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE vouchers (id bigint PRIMARY KEY, redeemed_by text,"
                               " redeemed_at timestamptz)")
            connection.execute("INSERT INTO vouchers (id) SELECT generate_series(1, %s)",
                               (attempts,))
        generator = random.Random(2026)
        plan = [generator.randint(1, index) if index > 1 and
                generator.random() < PLAIN_DUPLICATE_SHARE else index
                for index in range(1, attempts + 1)]
        shares = [plan[number::PLAIN_THREADS] for number in range(PLAIN_THREADS)]

        def client(share: list[int]) -> None:
            with psycopg.connect(url, autocommit=True) as connection:
                for voucher in share:
                    connection.execute(
                        "UPDATE vouchers SET redeemed_by = 'venue', redeemed_at = now() "
                        "WHERE id = %s AND redeemed_by IS NULL", (voucher,))

        threads = [threading.Thread(target=client, args=(share,)) for share in shares]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return attempts / (time.perf_counter() - started)
    finally:
        with psycopg.connect(f"{root}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def calibration_milliseconds(repeats: int = 3) -> float:
    """How long one fixed piece of Python takes on this machine now, the best of `repeats`
    (lower is faster). The load average does not show how fast the virtual machine's cores
    are: with nothing else running, this same piece took 183 to 248 ms over eight tries a
    second apart, and the benchmarks' CPU per operation moves as much between runs. Taken
    before and after each run, it says how fast the machine was while the run measured."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        # Work of the ledger's kind: formatting ids, a dictionary, JSON, SHA-256.
        identifiers = {f"213300063-{index:07d}-{index % 10:02d}": index
                       for index in range(200_000)}
        document = json.dumps(list(identifiers.items())[:50_000]).encode()
        for _ in range(20):
            hashlib.sha256(document).digest()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def run_json(arguments: list[str], timeout_seconds: float) -> dict[str, Any]:
    """Run a benchmark script; its last JSON document on stdout is its result."""
    completed = subprocess.run([sys.executable, *arguments], cwd=REPOSITORY, text=True,
                               capture_output=True, timeout=timeout_seconds)
    if completed.returncode != 0:
        raise RuntimeError(f"{arguments[0]} failed:\n{completed.stderr[-3000:]}")
    text = completed.stdout
    decoder = json.JSONDecoder()
    found: dict[str, Any] | None = None
    index = 0
    while index < len(text):
        start = text.find("{", index)
        if start < 0:
            break
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            index = start + 1
            continue
        if isinstance(value, dict):
            found = value
        index = end
    if found is None:
        raise RuntimeError(f"{arguments[0]} printed no JSON result")
    return found


def measure(full: bool, database_url: str, growth: bool = False) -> dict[str, Any]:
    load_before = os.getloadavg()
    figures: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "full": full,
                               "calibration_ms_before": calibration_milliseconds()}
    figures["issuer"] = run_json(["bench/issuer_bulk.py", "--booklets",
                                  "200000" if full else "20000"], 3600)
    figures["redeemer"] = run_json(["bench/redeemer_throughput.py",
                                    *(["--full"] if full else [])], 3600)
    attempts = 200_000 if full else 40_000
    figures["plain_postgresql_attempts_per_second"] = round(
        plain_postgresql_attempts_per_second(database_url, attempts))
    figures["latency"] = run_json(["bench/redeemer_latency.py", "--rate", "1000", "--seconds",
                                   "60" if full else "20"], 1800)
    figures["audit"] = run_json(["bench/audit_replay.py", *(["--full"] if full else [])], 3600)
    if growth:
        figures["growth"] = run_json(["bench/audit_growth.py", "--base",
                                      "250000" if full else "100000"], 3600)
    figures["load_average_before"] = [round(value, 2) for value in load_before]
    figures["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
    figures["calibration_ms_after"] = calibration_milliseconds()
    return figures


def _ratio(value: float | None, baseline: float | None) -> str:
    return f"{value / baseline:.2f}" if value and baseline else "n/a"


def _total(cpu: dict[str, float] | float) -> float:
    """The CPU of every process, summed (a figure from before the split by process: as is)."""
    return round(sum(cpu.values()), 1) if isinstance(cpu, dict) else cpu


def _calibration(figures: dict[str, Any]) -> str:
    if "calibration_ms_before" not in figures:
        return ""  # figures measured before the calibration existed
    return (f" A fixed piece of Python (`calibration_milliseconds`, lower is faster) took "
            f"{figures['calibration_ms_before']} ms before the run and "
            f"{figures['calibration_ms_after']} ms after it.")


def table(figures: dict[str, Any], number: int = 1) -> list[str]:
    """The section of docs/performance.md for the figures of one run (pure)."""
    issuer, audit, latency = figures["issuer"], figures["audit"], figures["latency"]
    phase = figures["redeemer"]["phases"][-1]
    plain = figures["plain_postgresql_attempts_per_second"]
    cpu = phase.get("cpu_microseconds_per_redemption", {})
    cpu_total = _total(cpu)
    replay = audit["replay"]
    rows = [
        ("Issuance (booklets/s)", issuer["booklets_per_second"],
         issuer.get("baseline_booklets_per_second"), "kafka-python produce, aiokafka consume",
         ">= 10,000", f"CPU {_total(issuer.get('cpu_microseconds_per_booklet', {}))} "
         f"µs/booklet ({issuer.get('cpu_microseconds_per_booklet', {})}); "
         f"worker RSS {issuer['worker_rss_mb_max']} MB"),
        ("Redemption end to end (/s)", phase["end_to_end_per_second"], plain,
         "plain PostgreSQL app, 8 threads", ">= 2x baseline",
         f"CPU {cpu_total} µs/redemption ({cpu}); worker RSS {phase['worker_rss_mb_after']} MB"),
        ("HTTP redemption p99 (ms) at 1,000/s", latency["p99_ms"], 25.0, "target",
         "< 25 ms", f"p50 {latency['p50_ms']} ms, statuses {latency['statuses']}; "
         f"CPU {_total(latency.get('cpu_microseconds_per_request', {}))} µs/request "
         f"({latency.get('cpu_microseconds_per_request', {})})"),
        ("Audit replay (events/s)", replay["events_per_second"],
         audit["fastest_raw_per_second"], "fastest raw reader", ">= 250,000, ratio >= 0.7",
         f"{replay.get('memory', {}).get('bytes_per_voucher', 'n/a')} B state/voucher; "
         f"ratio target 0.7; sound: {replay.get('sound')}"),
    ]
    if "growth" in figures:
        growth = figures["growth"]
        largest = growth["growth"]["ratios"]["4x"]
        rows.append((
            "Audit growth (time 4x log / 1x log)", largest["time_ratio"],
            largest["events_ratio"], "events ratio of the two logs",
            "<= 1.05x the events ratio; state/voucher within 5 %",
            "state B/voucher by size " + str([row["state_bytes_per_voucher"]
                                              for row in growth["rows"]])
            + "; peak RSS added per voucher "
            + str(growth["growth"]["marginal_peak_resident_bytes_per_voucher"])
            + "; national run: docs/scale.md"))
    lines = [
        f"## Run {number}: {figures['date']}",
        "",
        f"On this machine (2 cores); load average before {figures['load_average_before']}, "
        f"after {figures['load_average_after']}.{_calibration(figures)}",
        "",
        "| Benchmark | Figure | Baseline | Ratio | Baseline is | Target | CPU, memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, value, baseline, what, target, detail in rows:
        lines.append(f"| {name} | {value:,} | {baseline if baseline is not None else 'n/a'} | "
                     f"{_ratio(value, baseline)} | {what} | {target} | {detail} |")
    lines += ["", "Raw results:", "", "```json", json.dumps(figures, indent=1,
                                                            ensure_ascii=False), "```", ""]
    return lines


def page(runs: list[dict[str, Any]]) -> str:
    """docs/performance.md: every run of one invocation, one section each (pure)."""
    full = " --full" if runs[0]["full"] else ""
    full += " --growth" if "growth" in runs[0] else ""
    lines = [
        "# Performance",
        "",
        f"Written by `python bench/all.py{full} --runs {len(runs)}`, which runs every benchmark "
        "with its baseline in the same run, once per run. Rerun it to regenerate this page. "
        "Where a target is missed, the profile that shows where the time goes and what was "
        "tried are in the service's document: issuance in [issuer.md](issuer.md), "
        "redemption and HTTP latency in [redeemer.md](redeemer.md), the audit replay in "
        "[auditor.md](auditor.md); the national run and the growth in [scale.md](scale.md).",
        "",
    ]
    for number, figures in enumerate(runs, start=1):
        lines += table(figures, number)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the long versions")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--growth", action="store_true",
                        help="also the audit's growth at 1x, 2x and 4x (bench/audit_growth.py)")
    parser.add_argument("--runs", type=int, default=2,
                        help="how many times to run everything (each run has its baselines)")
    arguments = parser.parse_args()
    sys.path.insert(0, str(REPOSITORY))
    from passnum.core.settings import Settings

    runs = [measure(arguments.full, Settings.from_environment().database_url, arguments.growth)
            for _ in range(max(1, arguments.runs))]
    arguments.output.write_text(page(runs))
    print(f"written: {arguments.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
