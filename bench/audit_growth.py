"""Growth of the audit replay with the log: the same replay at 1x, 2x and 4x a base size.

    .venv/bin/python bench/audit_growth.py                  # base about 250,000 events
    .venv/bin/python bench/audit_growth.py --base 100000    # quicker
    .venv/bin/python bench/audit_growth.py --database       # with the PostgreSQL load

1. Generates three logs on the broker with bench/audit_replay.py's generator (87
   collectivités, 80 % of the vouchers redeemed over the year, a few rejected second scans,
   monthly settlement statements), of about 1x, 2x and 4x `--base` events, each under its
   own topic prefix.
2. Replays each log with audit_replay's measured path (`replay_once`: read, chain check,
   judge; the PostgreSQL load with `--database`), each replay in a fresh process so that
   its peak memory is its own, `--repeats` times, the sizes interleaved (1x, 2x, 4x, 1x,
   ...) so that a change of load on the shared machine falls on every size alike; the
   fastest replay of each size counts.
3. Reports, per size: events, vouchers, seconds, events/s, the replay state in bytes per
   voucher (the auditor's own count of its columns), the peak resident memory of the
   replay's processes (sampled, the read's worker processes included) in total and per
   voucher, and the load average; then the time ratios 2x/1x and 4x/1x against the event
   ratios, and the acceptance: the 4x log replays in at most 1.05 times its event ratio
   (4.2x for exactly 4x the events), and the state per voucher stays within 5 %.

The topics are deleted at the end unless `--keep`; `--reuse P1,P2,P4` measures logs an
earlier `--keep` run left.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import audit_replay  # noqa: E402
import ledgers  # noqa: E402
from redeemer_common import resident_megabytes  # noqa: E402

from passnum.core.settings import Settings  # noqa: E402

MULTIPLES = (1, 2, 4)
# The brief's bounds: 4x the log in at most 4.2x the time, state per voucher flat.
TIME_GROWTH_ALLOWANCE = 1.05
STATE_DRIFT_ALLOWED = 0.05
SAMPLE_SECONDS = 0.1


# ------------------------------------------------------------------ memory of a process tree


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _resident_bytes(pid: int) -> int:
    try:
        return int(resident_megabytes(pid) * 2**20)
    except (OSError, RuntimeError):
        return 0  # the process ended meanwhile


def tree_resident_bytes(pid: int) -> int:
    """Resident memory of a process and of all its descendants, now."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        total += _resident_bytes(current)
        pending.extend(_children(current))
    return total


class PeakSampler(threading.Thread):
    """Samples a process tree's resident memory until it ends; keeps the largest sum (the
    read's worker processes live at the same time as their parent)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_bytes = pid, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_SECONDS):
            self.peak_bytes = max(self.peak_bytes, tree_resident_bytes(self.pid))


# ------------------------------------------------------------------ one replay, in a process


def replay_settings(prefix: str, database_url: str = "") -> Settings:
    base = Settings.from_environment()
    return base.with_overrides(topic_prefix=prefix, database_url=database_url or
                               base.database_url.rsplit("/", 1)[0] + f"/passnum_{prefix}")


def replay_child_main(prefix: str, database_url: str, processes: int) -> int:
    """In the child: audit_replay's measured replay of the log under `prefix`, one JSON
    line with its figures and the resident memory it started from."""
    settings = replay_settings(prefix, database_url)
    started_resident = _resident_bytes(os.getpid())
    figures = audit_replay.replay_once(settings, bool(database_url), False, processes)
    figures["resident_bytes_at_start"] = started_resident
    print(json.dumps(figures), flush=True)
    return 0


def replay_in_process(prefix: str, database_url: str = "", processes: int = 0) -> dict[str, Any]:
    """Runs the replay of the log under `prefix` in a fresh process (this script with
    `--replay`) and samples its memory; its figures plus `peak_resident_bytes` (the whole
    process tree) and the load average at its end."""
    command = [sys.executable, str(Path(__file__).resolve()), "--replay", prefix,
               "--processes", str(processes)]
    if database_url:
        command += ["--database-url", database_url]
    child = subprocess.Popen(command, cwd=BENCH.parent, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    sampler = PeakSampler(child.pid)
    sampler.start()
    stdout, stderr = child.communicate()
    sampler.done.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"the replay of {prefix} failed:\n{stderr[-3000:]}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    figures["peak_resident_bytes"] = max(sampler.peak_bytes,
                                         figures.get("resident_bytes_at_start", 0))
    figures["load_average"] = [round(value, 2) for value in os.getloadavg()]
    return figures


# ------------------------------------------------------------------ the logs


def generate_log(base: Settings, target_events: int) -> dict[str, Any]:
    """A log of about `target_events` under a fresh prefix, by audit_replay's generator."""
    from passnum.core.broker import create_topics

    prefix = f"growth{uuid.uuid4().hex[:8]}"
    settings = base.with_overrides(topic_prefix=prefix)
    create_topics(settings)
    generator = audit_replay.LedgerGenerator(settings, target_events)
    started = time.perf_counter()
    events = asyncio.run(audit_replay.produce(settings, generator.records()))
    return {"prefix": prefix, "events": events, "vouchers": generator.voucher_count,
            "produce_seconds": round(time.perf_counter() - started, 1)}


def existing_log(base: Settings, prefix: str) -> dict[str, Any]:
    from passnum.core.log import fetch_high_water_marks
    from passnum.core.topology import topology_for

    topology = topology_for(base.with_overrides(topic_prefix=prefix))
    marks = fetch_high_water_marks(base.with_overrides(topic_prefix=prefix),
                                   [topology.issuer_events.name, topology.redeemer_events.name])
    return {"prefix": prefix, "events": sum(marks.values()), "vouchers": None}


# ------------------------------------------------------------------ figures (pure)


def size_figures(multiple: int, log: dict[str, Any], replays: list[dict[str, Any]]
                 ) -> dict[str, Any]:
    """One size's row: its fastest replay, and its memory per voucher."""
    fastest = min(replays, key=lambda replay: replay["seconds"])
    memory = fastest["memory"]
    vouchers = int(memory["vouchers_count"])
    peak = max(replay["peak_resident_bytes"] for replay in replays)
    return {"multiple": multiple, "prefix": log["prefix"], "events": fastest["records"],
            "vouchers": vouchers, "seconds": fastest["seconds"],
            "all_seconds": [replay["seconds"] for replay in replays],
            "events_per_second": fastest["events_per_second"],
            "state_bytes_per_voucher": memory["bytes_per_voucher"],
            "peak_resident_megabytes": round(peak / 2**20, 1),
            "peak_resident_bytes_per_voucher": round(peak / max(vouchers, 1), 1),
            "peak_resident_bytes": peak, "state_bytes": memory,
            "sound": fastest["sound"], "findings": fastest["findings"],
            "load_average": fastest["load_average"]}


def growth(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios to the 1x row and the acceptance."""
    first = rows[0]
    ratios = {}
    for row in rows[1:]:
        events_ratio = row["events"] / first["events"]
        time_ratio = row["seconds"] / first["seconds"]
        ratios[f"{row['multiple']}x"] = {
            "events_ratio": round(events_ratio, 3), "time_ratio": round(time_ratio, 3),
            "time_ratio_per_event_ratio": round(time_ratio / events_ratio, 3)}
    # The interpreter, the libraries and the broker clients are in every replay's peak:
    # what the log adds is the growth of the peak from one size to the next, per voucher.
    marginal = {f"{low['multiple']}x_to_{high['multiple']}x": round(
        (high["peak_resident_bytes"] - low["peak_resident_bytes"])
        / max(high["vouchers"] - low["vouchers"], 1), 1) for low, high in zip(rows, rows[1:])}
    last = rows[-1]
    states = [row["state_bytes_per_voucher"] for row in rows]
    drift = (max(states) - min(states)) / min(states)
    largest = ratios[f"{last['multiple']}x"]
    return {"ratios": ratios, "state_bytes_per_voucher_drift": round(drift, 4),
            "marginal_peak_resident_bytes_per_voucher": marginal,
            "time_acceptable": largest["time_ratio"]
            <= TIME_GROWTH_ALLOWANCE * largest["events_ratio"],
            "state_flat": drift <= STATE_DRIFT_ALLOWED,
            "all_sound": all(row["sound"] for row in rows)}


def markdown_table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = ["| Log | Events | Vouchers | Replay (s, fastest) | Events/s | Time ratio to 1x "
             "(events ratio) | State bytes/voucher | Peak RSS (MB) | Peak RSS bytes/voucher "
             "| Load average |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = summary["ratios"].get(f"{row['multiple']}x")
        growth_text = (f"{ratio['time_ratio']:.2f} ({ratio['events_ratio']:.2f})" if ratio
                       else "1.00 (1.00)")
        lines.append(f"| {row['multiple']}x | {row['events']:,} | {row['vouchers']:,} | "
                     f"{row['seconds']} | {row['events_per_second']:,} | {growth_text} | "
                     f"{row['state_bytes_per_voucher']} | {row['peak_resident_megabytes']} | "
                     f"{row['peak_resident_bytes_per_voucher']} | {row['load_average']} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ the run


def measure(base: Settings, base_events: int, repeats: int, database: bool, processes: int,
            reuse: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if reuse:
        logs = [existing_log(base, prefix) for prefix in reuse]
    else:
        logs = []
        for multiple in MULTIPLES:
            logs.append(generate_log(base, base_events * multiple))
            print(f"generated {multiple}x: {json.dumps(logs[-1])}", file=sys.stderr, flush=True)
    replays: dict[int, list[dict[str, Any]]] = {multiple: [] for multiple in MULTIPLES}
    for round_number in range(repeats):
        for multiple, log in zip(MULTIPLES, logs):
            url = ""
            if database:
                root = base.database_url.rsplit("/", 1)[0]
                url = f"{root}/passnum_{log['prefix']}_{round_number}"
            replay = replay_in_process(log["prefix"], url, processes)
            replays[multiple].append(replay)
            if url:
                ledgers.drop_database(url)
            print(f"replay {multiple}x round {round_number + 1}: {replay['seconds']} s, "
                  f"{replay['events_per_second']:,} events/s, peak "
                  f"{replay['peak_resident_bytes'] / 2**20:.0f} MB, load {replay['load_average']}",
                  file=sys.stderr, flush=True)
    rows = [size_figures(multiple, log, replays[multiple])
            for multiple, log in zip(MULTIPLES, logs)]
    return logs, rows


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    from passnum.core.broker import ManagedBroker

    base = Settings.from_environment()
    reuse = [prefix for prefix in arguments.reuse.split(",") if prefix]
    if reuse and len(reuse) != len(MULTIPLES):
        raise SystemExit("--reuse takes three prefixes: 1x,2x,4x")
    load_before = [round(value, 2) for value in os.getloadavg()]
    with ManagedBroker(base):  # reuses the broker answering there, else starts Tansu
        logs, rows = measure(base, arguments.base, arguments.repeats, arguments.database,
                             arguments.processes, reuse)
        if not (arguments.keep or reuse):
            for log in logs:
                ledgers.delete_topics(base.with_overrides(topic_prefix=log["prefix"]))
    summary = growth(rows)
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "base_events": arguments.base, "repeats": arguments.repeats,
            "database_load": arguments.database, "rows": rows, "growth": summary,
            "load_average_before": load_before,
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
            "kept_prefixes": [log["prefix"] for log in logs] if arguments.keep else []}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=250_000, help="events of the 1x log")
    parser.add_argument("--repeats", type=int, default=2,
                        help="replays of each size; the fastest counts")
    parser.add_argument("--database", action="store_true", help="include the PostgreSQL load")
    parser.add_argument("--processes", type=int, default=0,
                        help="replay worker processes (0: the auditor's default)")
    parser.add_argument("--keep", action="store_true", help="keep the topics afterwards")
    parser.add_argument("--reuse", default="", metavar="P1,P2,P4",
                        help="measure the logs an earlier --keep run left (1x,2x,4x prefixes)")
    parser.add_argument("--replay", default="", metavar="PREFIX", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default="", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.replay:
        return replay_child_main(arguments.replay, arguments.database_url, arguments.processes)
    result = run(arguments)
    summary = result["growth"]
    print(markdown_table(result["rows"], summary))
    largest = summary["ratios"][f"{MULTIPLES[-1]}x"]
    print(f"acceptance: 4x log in {largest['time_ratio']:.2f}x the 1x time for "
          f"{largest['events_ratio']:.2f}x the events (allowed "
          f"{TIME_GROWTH_ALLOWANCE * largest['events_ratio']:.2f}x): "
          f"{'met' if summary['time_acceptable'] else 'MISSED'}; state per voucher drift "
          f"{summary['state_bytes_per_voucher_drift']:.1%} (allowed "
          f"{STATE_DRIFT_ALLOWED:.0%}): {'met' if summary['state_flat'] else 'MISSED'}; "
          f"peak memory added per voucher: {summary['marginal_peak_resident_bytes_per_voucher']}; "
          f"every replay sound: {summary['all_sound']}")
    print(json.dumps(result, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
