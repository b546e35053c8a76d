"""Shared set-up of the redeemer benchmarks: an isolated ledger (fresh topics and database on
the broker at PASSNUM_BOOTSTRAP_SERVERS), the redeemer's booklet state seeded through the
log, venues accredited, the worker started as its own process, and its memory read.

The booklets are seeded as the issuer would publish them (`booklet_issued` then
`booklet_activated` on the issuer's event topic), produced here directly so that the issuer
worker is not what the benchmark measures; the redeemer learns them through its own code.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg

import ledgers
from passnum.core.broker import ManagedBroker
from passnum.core.codec import encode
from passnum.core.log import make_producer
from passnum.core.processes import WorkerProcess
from passnum.core.settings import Settings
from passnum.core.topology import booklet_key, route_command, topology_for
from passnum.ledger.partners import Venue, venues
from passnum.tools.scenario import accreditations
from schemas.messages import BookletActivated, BookletIssued

BENCH_SIREN = "552100554"
VOUCHERS_PER_BOOKLET = 10
BENCH_DAY = datetime(2026, 3, 10, 10, 0, tzinfo=timezone.utc)
SEED_TIMEOUT_SECONDS = 900.0
POLL_SECONDS = 0.5


@dataclass
class Bench:
    settings: Settings
    worker: WorkerProcess
    venues: list[Venue]
    # Every worker process of the redeemer (the first is `worker`): they share the input
    # partitions through their consumer group, as production workers would.
    workers: list[WorkerProcess]

    @property
    def worker_pids(self) -> set[int]:
        return {w.process.pid for w in self.workers if w.process is not None}

    def resident_megabytes(self) -> float:
        """The largest worker's resident memory."""
        return max(resident_megabytes(w.process.pid)  # type: ignore[union-attr]
                   for w in self.workers)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def isolated_settings(base: Settings, run_directory: Path, **overrides: object) -> Settings:
    return ledgers.isolated(base, web_port_redeemer=free_port(),
                            run_directory=str(run_directory), conformance_required=False,
                            **overrides)


def booklet_id(sequence: int) -> str:
    return f"{BENCH_SIREN}-{sequence:07d}"


def validity_window() -> tuple[date, date, date]:
    """Valid on BENCH_DAY (the throughput commands' date) and around today (the HTTP
    latency run, where the server's clock dates each redemption)."""
    today = date.today()
    valid_from = min(BENCH_DAY.date(), today - timedelta(days=30))
    valid_until = max(date(2026, 12, 31), today + timedelta(days=365))
    return valid_from, valid_until, valid_until + timedelta(days=31)


def seed_booklets(settings: Settings, first: int, count: int) -> None:
    """Publish issued + activated facts for booklets first..first+count-1."""
    producer = make_producer(settings)
    topic = topology_for(settings).issuer_events.name
    common = {"request_id": "bench-seed", "occurred_at": BENCH_DAY, "siren": BENCH_SIREN}
    valid_from, valid_until, grace_until = validity_window()
    for sequence in range(first, first + count):
        identifier = booklet_id(sequence)
        issued = BookletIssued(
            **common, event_id=f"seed-issued-{sequence}", order_id="bench-order",
            booklet_id=identifier, voucher_count=VOUCHERS_PER_BOOKLET, face_value_cents=1000,
            target_group="general", perimeter=(), valid_from=valid_from,
            valid_until=valid_until, grace_until=grace_until)
        activated = BookletActivated(**common, event_id=f"seed-activated-{sequence}",
                                     booklet_id=identifier, activated_cents=10_000)
        for event in (issued, activated):
            producer.send(topic, key=booklet_key(identifier), value=encode(event))
    producer.flush()
    producer.close()


def count(settings: Settings, query: str) -> int:
    with psycopg.connect(settings.database_url) as connection:
        return int(connection.execute(query).fetchone()[0])


def wait_for_count(settings: Settings, query: str, expected: int,
                   timeout_seconds: float = SEED_TIMEOUT_SECONDS,
                   worker: WorkerProcess | None = None) -> None:
    deadline = time.monotonic() + timeout_seconds
    while (current := count(settings, query)) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{query}: {current} of {expected} after {timeout_seconds} s")
        if worker is not None and not worker.running():
            raise RuntimeError(f"the worker exited; see {worker.log_path}")
        time.sleep(POLL_SECONDS)


def grow_state(bench: Bench, vouchers: int) -> None:
    """Seed booklets until the redeemer knows `vouchers` activated vouchers."""
    have = count(bench.settings, "SELECT count(*) FROM redeemer_booklets WHERE activated")
    wanted = vouchers // VOUCHERS_PER_BOOKLET
    step = 50_000
    for first in range(have + 1, wanted + 1, step):
        seed_booklets(bench.settings, first, min(step, wanted + 1 - first))
    wait_for_count(bench.settings, "SELECT count(*) FROM redeemer_booklets WHERE activated",
                   wanted, worker=bench.worker)
    print(f"state: {wanted * VOUCHERS_PER_BOOKLET} vouchers", file=sys.stderr, flush=True)


def accredit(settings: Settings, venue_count: int) -> list[Venue]:
    venue_list = venues(venue_count)
    producer = make_producer(settings)
    topology = topology_for(settings)
    for command in accreditations(venue_list, BENCH_DAY, tag="bench"):
        topic, key = route_command(topology, command)
        producer.send(topic, key=key, value=encode(command))
    producer.flush()
    producer.close()
    wait_for_count(settings, "SELECT count(*) FROM providers", venue_count, 120)
    return venue_list


# "api": the workers' HTTP API processes (their children, services/redeemer/web.py), which
# each worker feeds with its outcomes whether or not requests wait for them.
ROLES = ("worker", "api", "database", "broker", "load generator", "other")


def serves_another_database(command: str, database_name: str | None) -> bool:
    """Whether a PostgreSQL process is a backend connected to a database other than
    `database_name` (its title: `postgres: 15/main: USER DATABASE HOST(PORT) STATE`). The
    server's own processes (checkpointer, WAL writer...) serve every database: not this."""
    if database_name is None or not command.startswith("postgres:"):
        return False
    words = command.split(":", 2)[-1].split()
    is_backend = len(words) >= 3 and ("(" in words[2] or words[2] == "[local]")
    return is_backend and words[1] != database_name


def cpu_seconds_by_process(worker_pids: set[int], database_name: str | None = None
                           ) -> dict[int, tuple[str, float]]:
    """CPU time (user + system) used so far by every process, with its role: a redeemer
    worker, a worker's HTTP API process, PostgreSQL, the broker (Tansu), this process (the
    load generator), or anything else on the machine. Differences between two readings say where a run's CPU went, per
    redemption: a figure that, unlike a rate, moves little when another job shares the
    cores. With `database_name`, a PostgreSQL backend of another database (another job's
    tests on the shared server) is "other", not the database's."""
    ticks = os.sysconf("SC_CLK_TCK")
    reading: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue  # the process ended meanwhile
        pid = int(entry.name)
        if pid in worker_pids:
            role = "worker"
        elif int(fields[1]) in worker_pids:  # the parent's pid
            role = "api"
        elif pid == os.getpid():
            role = "load generator"
        elif command.startswith("postgres") or "/postgres" in command:
            role = "other" if serves_another_database(command, database_name) else "database"
        elif "tansu" in command:
            role = "broker"
        else:
            role = "other"
        reading[pid] = (role, (int(fields[11]) + int(fields[12])) / ticks)  # utime, stime
    return reading


def cpu_microseconds_per(before: dict[int, tuple[str, float]],
                         after: dict[int, tuple[str, float]], count: int) -> dict[str, float]:
    """Per role, the CPU the processes alive at the second reading used since the first
    (a process started in between counts whole; one that ended in between is not seen)."""
    totals = dict.fromkeys(ROLES, 0.0)
    for pid, (role, seconds) in after.items():
        earlier = before.get(pid)
        totals[role] += seconds - (earlier[1] if earlier and earlier[0] == role else 0.0)
    return {role: round(seconds / count * 1e6, 1) for role, seconds in totals.items()}


def resident_megabytes(pid: int) -> float:
    """VmRSS of the worker process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line")


@contextmanager
def bench_ledger(base: Settings, run_directory: Path, venue_count: int, keep: bool = False,
                 worker_count: int = 1, **overrides: object) -> Iterator[Bench]:
    """Broker (reused or started), fresh topics and database, running redeemer workers."""
    with ManagedBroker(base.with_overrides(run_directory=str(run_directory))):
        settings = isolated_settings(base, run_directory, **overrides)
        workers = [WorkerProcess("redeemer", settings if index == 0 else settings.with_overrides(
            web_port_redeemer=free_port()), run_directory / "logs" / f"worker-{index}").start()
            for index in range(worker_count)]
        try:
            for worker in workers:
                worker.wait_until_healthy(120)
            yield Bench(settings, workers[0], accredit(settings, venue_count), workers)
        finally:
            for worker in workers:
                worker.stop()
            if not keep:
                ledgers.discard(settings)
