"""The chaos run: a mixed workload on both services while random workers are SIGKILLed and
restarted, with a second redeemer worker for part of the run (a rebalance), then the
whole log judged.

The workload goes through the real command topics: orders, payments, distributions and
blocks on the issuer; checks, redemptions (several venues racing for the same codes, each
from its own producer, and requests sent again), cancellations, month closes (two operators
closing the same month, one before the month ended) on the redeemer. At the end:
- every request has exactly one outcome: a request decided for good has its row in
  `request_outcomes`, and the events on the topics under its request id are exactly the
  events of that row; a question (a check, a close refused because the month has not
  ended) is answered by exactly one event; a copy of an event id on a topic is a
  re-publication (same bytes), never a second decision;
- no voucher is redeemed twice: in log order, two `VoucherRedeemed` of one voucher always
  have a `RedemptionCancelled` of the first between them;
- the auditor's replay is SOUND with no finding, and the services' tables agree with it.

Bounded here (`CHAOS_KILLS`, default 10; `CHAOS_KILL_INTERVAL_SECONDS`);
long in `bench/chaos.py`, which runs this test with more kills and a quiet soak at the end
(`CHAOS_SOAK_SECONDS`) and reads the figures from `CHAOS_REPORT`.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import psycopg
import pytest

from passnum.core.codec import DecodeFailure, decode_event, unpack_outcome
from passnum.core.database import connect
from passnum.core.log import read_to_end
from passnum.core.processes import WORKER_APPS, WorkerProcess
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import Partner, Venue, collectivites, venues
from passnum.tools.scenario import FACE_VALUE_CENTS, booklet_codes
from schemas.base import Command
from schemas.messages import (
    BlockBooklet,
    CancelRedemption,
    CheckVoucher,
    CloseSettlementMonth,
    DistributeBooklet,
    FundEnvelope,
    OrderBooklets,
    RecordFundsReceived,
    RedeemVoucher,
)
from services.auditor.live import compare_with_live
from services.auditor.replay import Replayer, ReplayOptions
from tests.conftest import free_port
from tests.integration.helpers import MARCH, onboard, wait_for_rows

pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("CHAOS_KILLS", "10"))
KILL_INTERVAL_SECONDS = float(os.environ.get("CHAOS_KILL_INTERVAL_SECONDS", "1.0"))
SOAK_SECONDS = float(os.environ.get("CHAOS_SOAK_SECONDS", "0"))
SEED = int(os.environ.get("CHAOS_SEED", "2026"))
REPORT = os.environ.get("CHAOS_REPORT")

PARTNERS = 3
VENUES = 5
INITIAL_BOOKLETS = 12  # per collectivité, onboarded before the chaos
CODES_PER_ROUND = 10
ROUND_PAUSE_SECONDS = 0.6  # between two rounds of commands: a steady flow, not a flood
OUTCOME_TIMEOUT_SECONDS = 240.0
MARCH_SCANS = datetime(2026, 3, 3, 9, 0, tzinfo=timezone.utc)
APRIL_SCANS = datetime(2026, 4, 2, 9, 0, tzinfo=timezone.utc)


# ------------------------------------------------------------------------------ workers


def assigned_commands(worker: WorkerProcess, every_start: bool = False) -> bool:
    """Whether the worker's log (of its current start, or of every start) says it was
    assigned a partition of the redeemer's commands: a rebalance, as an operator reads it."""
    commands = topology_for(worker.settings).redeemer_commands.name
    paths = worker.log_directory.glob("*.log") if every_start else [worker.log_path]
    return any("partitions assigned: " in line and f"{commands}[" in line
               for path in paths if path.exists()
               for line in path.read_text(errors="replace").splitlines())


def healthy(worker: WorkerProcess) -> bool:
    _, port_setting = WORKER_APPS[worker.service]
    url = (f"http://{worker.settings.web_host}:{getattr(worker.settings, port_setting)}"
           "/health/")
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200) and worker.running()
    except OSError:
        return False


def resident_kilobytes(worker: WorkerProcess) -> int | None:
    """VmRSS of the worker's process, from /proc (None: not running)."""
    if not worker.running() or worker.process is None:
        return None
    try:
        status = Path(f"/proc/{worker.process.pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


@dataclass(eq=False)  # a thread must stay hashable
class Killer(threading.Thread):
    """SIGKILLs a random healthy worker every `interval` seconds (jittered) and starts it
    again at once, `target` times. A third of the way in, a second redeemer joins the group
    (a rebalance); two thirds of the way in, once it has taken partitions, it leaves with
    SIGTERM."""

    workers: dict[str, WorkerProcess]
    second_redeemer: WorkerProcess
    target: int
    interval: float
    undecided: Callable[[], int]
    random_source: random.Random
    kills: list[tuple[str, int]] = field(default_factory=list)  # (worker, undecided then)
    stopping: threading.Event = field(default_factory=threading.Event)
    failure: BaseException | None = None
    second_assigned_at_start: int = 0  # the second redeemer's start that took partitions

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, name="chaos-killer", daemon=True)

    def run(self) -> None:
        try:
            while len(self.kills) < self.target and not self.stopping.is_set():
                self.stopping.wait(self.interval * self.random_source.uniform(0.5, 1.5))
                self._rebalance()
                candidates = sorted(name for name, worker in self.workers.items()
                                    if healthy(worker) and self._may_be_killed(name))
                if not candidates:
                    continue
                name = self.random_source.choice(candidates)
                undecided = self.undecided()
                self.workers[name].kill()
                self.workers[name].start()
                self.kills.append((name, undecided))
        except BaseException as error:  # reported by the test, never swallowed
            self.failure = error

    def _may_be_killed(self, name: str) -> bool:
        """Not the second redeemer before it took partitions: its health answers while it
        joins the group, and killed then, it would leave without any rebalance."""
        return name != "redeemer-b" or self._second_took_partitions()

    def _second_took_partitions(self) -> bool:
        """Whether the second redeemer's current start was assigned command partitions."""
        second = self.second_redeemer
        if self.second_assigned_at_start != second.starts and assigned_commands(second):
            self.second_assigned_at_start = second.starts
        return self.second_assigned_at_start == second.starts

    def _rebalance(self) -> None:
        joined = "redeemer-b" in self.workers
        if not joined and len(self.kills) >= self.target // 3 and self.second_redeemer.starts == 0:
            self.second_redeemer.start()
            self.workers["redeemer-b"] = self.second_redeemer
        elif (joined and len(self.kills) >= 2 * self.target // 3
              and self._second_took_partitions()):
            del self.workers["redeemer-b"]
            threading.Thread(target=self.second_redeemer.stop, daemon=True).start()


# ------------------------------------------------------------------------------ workload


@dataclass
class Workload:
    """Builds rounds of commands and remembers what was sent (retries resend the very same
    command: same request id, same fields)."""

    settings: Settings
    partners: list[Partner]
    venue_list: list[Venue]
    random_source: random.Random
    commands: dict[str, Command] = field(default_factory=dict)
    questions: set[str] = field(default_factory=set)  # answered, not recorded as outcomes
    records_sent: int = 0
    rounds: int = 0
    next_sequence: dict[str, int] = field(default_factory=dict)
    fresh_codes: list[str] = field(default_factory=list)
    spent_codes: list[str] = field(default_factory=list)
    scannable: set[str] = field(default_factory=set)  # booklet ids
    payments: dict[str, str] = field(default_factory=dict)  # request id -> siren
    blockable: list[tuple[str, str]] = field(default_factory=list)  # (siren, booklet id)
    cancelled: set[str] = field(default_factory=set)  # voucher ids
    april: bool = False

    def remember(self, command: Command, question: bool = False) -> Command:
        self.commands[command.request_id] = command
        if question:
            self.questions.add(command.request_id)
        return command

    def learn(self, client: LedgerClient) -> None:
        """Booklets become scannable once their activation is seen on the log."""
        for request_id, siren in list(self.payments.items()):
            events = client.events_by_request.get(request_id)
            if not events:
                continue
            del self.payments[request_id]
            partner = next(p for p in self.partners if p.siren == siren)
            activated = [e.booklet_id for e in events if e.type == "booklet_activated"]
            for booklet_id in activated:
                if booklet_id in self.scannable or (siren, booklet_id) in self.blockable:
                    continue
                sequence = int(booklet_id.rsplit("-", 1)[1])
                if sequence % 2 == 0:  # every other new booklet is reported lost later
                    self.blockable.append((siren, booklet_id))
                    continue
                self.scannable.add(booklet_id)
                self.fresh_codes += booklet_codes(self.settings.voucher_code_key.encode(),
                                                  partner, range(sequence, sequence + 1))
        self.random_source.shuffle(self.fresh_codes)

    def issuer_round(self) -> list[Command]:
        """One collectivité in turn: more money committed, an order of two booklets, their
        payment (which activates them), a distribution and a block."""
        number = self.rounds
        partner = self.partners[number % len(self.partners)]
        booklet_value = partner.vouchers_per_booklet * FACE_VALUE_CENTS
        at = MARCH + timedelta(minutes=1 + number)
        tag = f"chaos-{number}-{partner.siren}"
        commands: list[Command] = [
            FundEnvelope(request_id=f"{tag}-envelope", occurred_at=at, siren=partner.siren,
                         committed_cents=2 * booklet_value),
            OrderBooklets(request_id=f"{tag}-order", occurred_at=at, siren=partner.siren,
                          booklet_count=2),
            RecordFundsReceived(request_id=f"{tag}-payment", occurred_at=at,
                                siren=partner.siren, face_value_cents=2 * booklet_value,
                                payment_reference=f"CH-{number}"),
        ]
        self.payments[f"{tag}-payment"] = partner.siren
        if self.scannable:
            booklet_id = self.random_source.choice(sorted(self.scannable))
            commands.append(DistributeBooklet(
                request_id=f"{tag}-distribute", occurred_at=at, siren=booklet_id.split("-")[0],
                booklet_id=booklet_id, distributor="Médiathèque"))
        if self.blockable:
            siren, booklet_id = self.blockable.pop(0)
            commands.append(BlockBooklet(request_id=f"{tag}-block", occurred_at=at,
                                         siren=siren, booklet_id=booklet_id, reason="lost"))
        return [self.remember(command) for command in commands]

    def scan_day(self) -> datetime:
        start = APRIL_SCANS if self.april else MARCH_SCANS
        return start + timedelta(days=self.rounds % 26)

    def redemption_round(self) -> tuple[list[Command], list[Command]]:
        """Codes scanned by one to three venues each (a race); then the first venue checks
        each code again. The checks go last, so that a worker killed between rounds has a
        check as the last record it decided on a partition: the one record read again at
        restart, which only the position keeps from being answered twice."""
        day, scans, checks = self.scan_day(), [], []
        for index in range(CODES_PER_ROUND):
            if self.fresh_codes:
                code = self.fresh_codes.pop()
                self.spent_codes.append(code)
            elif self.spent_codes:
                code = self.random_source.choice(self.spent_codes)
            else:
                break
            at = day + timedelta(seconds=index)
            racers = self.random_source.sample(self.venue_list, self.random_source.randint(1, 3))
            for racer_number, venue in enumerate(racers):
                scans.append(self.remember(RedeemVoucher(
                    request_id=f"chaos-{self.rounds}-scan-{index}-{racer_number}",
                    occurred_at=at, code=code, siret=venue.siret)))
            checks.append(self.remember(CheckVoucher(
                request_id=f"chaos-{self.rounds}-check-{index}", occurred_at=at, code=code,
                siret=racers[0].siret), question=True))
        return scans, checks

    def cancellation_round(self, client: LedgerClient) -> list[Command]:
        """A winner undoes its scan the same day (then another venue scans the voucher);
        another venue tries to undo a scan it did not make."""
        won = [event for request_id, command in list(self.commands.items())
               if isinstance(command, RedeemVoucher)
               for event in client.events_by_request.get(request_id, ())
               if event.type == "voucher_redeemed" and event.voucher_id not in self.cancelled]
        commands: list[Command] = []
        for event in self.random_source.sample(won, min(2, len(won))):
            self.cancelled.add(event.voucher_id)
            evening = event.occurred_at.replace(hour=18, minute=0, second=0)
            other = next(v for v in self.venue_list if v.siret != event.siret)
            code = self.commands[event.request_id].code  # type: ignore[attr-defined]
            tag = f"chaos-{self.rounds}-{event.voucher_id}"
            commands += [
                CancelRedemption(request_id=f"{tag}-cancel-wrong-venue", occurred_at=evening,
                                 voucher_id=event.voucher_id, siret=other.siret),
                CancelRedemption(request_id=f"{tag}-cancel", occurred_at=evening,
                                 voucher_id=event.voucher_id, siret=event.siret),
                RedeemVoucher(request_id=f"{tag}-rescan", occurred_at=evening + timedelta(
                    hours=1), code=code, siret=other.siret)]
        return [self.remember(command) for command in commands]

    def retries(self, count: int) -> list[Command]:
        """Requests sent again, exactly as before (questions are asked once)."""
        decided_for_good = [c for request_id, c in self.commands.items()
                            if request_id not in self.questions]
        return self.random_source.sample(decided_for_good, min(count, len(decided_for_good)))

    def closes(self, month: str, at: datetime) -> list[Command]:
        """Two operators close the month; one more asks for the next month, too early."""
        following = f"{month[:5]}{int(month[5:]) + 1:02d}"
        commands = [CloseSettlementMonth(request_id=f"chaos-close-{month}-{who}",
                                         occurred_at=at, month=month)
                    for who in ("alice", "bruno")]
        for command in commands:
            self.remember(command)
        early = CloseSettlementMonth(request_id=f"chaos-close-{following}-early",
                                     occurred_at=at + timedelta(days=9), month=following)
        return [*commands, self.remember(early, question=True)]


def send_by_venue(clients: dict[str, LedgerClient], main: LedgerClient,
                  commands: list[Command]) -> None:
    """Each venue's commands from its own producer, all at once: the races are real."""
    by_sender: dict[str, list[Command]] = defaultdict(list)
    for command in commands:
        by_sender[getattr(command, "siret", "") if isinstance(
            command, (RedeemVoucher, CheckVoucher, CancelRedemption)) else ""].append(command)
    threads = [threading.Thread(target=(clients[siret] if siret else main).send,
                                args=(batch,)) for siret, batch in by_sender.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)


@dataclass
class Run:
    """The driver: rounds of commands while the killer works, then the final waits."""

    settings: Settings
    workload: Workload
    client: LedgerClient
    venue_clients: dict[str, LedgerClient]
    pending: int = 0  # requests sent and not yet answered, as of the last poll

    def round(self) -> None:
        workload = self.workload
        workload.learn(self.client)
        scans, checks = workload.redemption_round()
        commands = workload.issuer_round() + scans + workload.cancellation_round(self.client)
        commands += workload.retries(len(commands) // 5)
        self.send(commands)
        self.send(checks)
        workload.rounds += 1
        self.poll(ROUND_PAUSE_SECONDS)

    def send(self, commands: list[Command]) -> None:
        send_by_venue(self.venue_clients, self.client, commands)
        self.workload.records_sent += len(commands)

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.client.poll(0.1)
        self.pending = len(self.missing())

    def missing(self) -> set[str]:
        return set(self.workload.commands) - self.client.events_by_request.keys()

    def wait_for_every_outcome(self, timeout_seconds: float) -> set[str]:
        deadline = time.monotonic() + timeout_seconds
        while self.missing() and time.monotonic() < deadline:
            self.client.poll(0.5)
        return self.missing()


def wait_until_quiet(settings: Settings, timeout_seconds: float = 120) -> None:
    """Every decided event published: the outbox is empty (the live comparison reads the
    processors' chain heads, which must be the log's)."""
    wait_for_rows(settings, "SELECT count(*) FROM outbox", 0, timeout_seconds)


# ------------------------------------------------------------------------------ judging


@dataclass
class LogFacts:
    event_ids_by_request: dict[str, set[str]]
    payloads: dict[str, set[bytes]]
    copies: int  # re-publications: an event id seen again with the same bytes
    dead_letters: int
    undecodable: int
    redeemed_twice: list[str]
    cancelled_without_redemption: list[str]
    types: dict[str, int]


def read_log(settings: Settings) -> LogFacts:
    topology = topology_for(settings)
    names = [topic.name for topic in topology.event_topics()] + [topology.dead_letters.name]
    records = sorted(read_to_end(settings, names), key=lambda r: (r.topic, r.partition,
                                                                  r.offset))
    facts = LogFacts(defaultdict(set), defaultdict(set), 0, 0, 0, [], [], defaultdict(int))
    holders: dict[str, str | None] = {}  # voucher id -> the redemption standing, in log order
    for record in records:
        if record.topic == topology.dead_letters.name:
            facts.dead_letters += 1
            continue
        event = decode_event(record.value)
        if isinstance(event, DecodeFailure):
            facts.undecodable += 1
            continue
        seen = event.event_id in facts.payloads
        facts.copies += seen
        facts.payloads[event.event_id].add(record.value or b"")
        facts.event_ids_by_request[event.request_id].add(event.event_id)
        if seen:
            continue
        facts.types[event.type] += 1
        if event.type == "voucher_redeemed":
            if holders.get(event.voucher_id) is not None:
                facts.redeemed_twice.append(event.voucher_id)
            holders[event.voucher_id] = event.event_id
        elif event.type == "redemption_cancelled":
            if holders.get(event.voucher_id) != event.redemption_event_id:
                facts.cancelled_without_redemption.append(event.voucher_id)
            holders[event.voucher_id] = None
    return facts


def recorded_outcomes(settings: Settings) -> dict[str, set[str]]:
    """The event ids of each request's recorded outcome (`request_outcomes`)."""
    with psycopg.connect(settings.database_url) as connection:
        rows = connection.execute("SELECT request_id, outcome FROM request_outcomes").fetchall()
    outcomes: dict[str, set[str]] = {}
    for request_id, outcome in rows:
        events = [decode_event(payload) for _, _, payload, _ in unpack_outcome(bytes(outcome))]
        outcomes[request_id] = {e.event_id for e in events if not isinstance(e, DecodeFailure)}
    return outcomes


def outcome_problems(workload: Workload, facts: LogFacts, recorded: dict[str, set[str]]
                     ) -> tuple[list[str], list[str]]:
    """(lost request ids, requests with more than one outcome or a wrong one)."""
    lost, doubled = [], []
    for request_id in sorted(workload.commands):
        on_log = facts.event_ids_by_request.get(request_id, set())
        if not on_log:
            lost.append(request_id)
        elif request_id in workload.questions:
            if len(on_log) != 1:  # a question is answered by one event, once
                doubled.append(f"{request_id}: {len(on_log)} answers")
        elif recorded.get(request_id) != on_log:
            doubled.append(f"{request_id}: log {sorted(on_log)} != recorded "
                           f"{sorted(recorded.get(request_id, ()))}")
    return lost, doubled


def audit(settings: Settings) -> dict[str, object]:
    """The auditor's replay of the whole log, then the services' tables against it."""
    replayer = Replayer(settings, ReplayOptions())
    replayer.read()
    report = replayer.judge()
    with connect(settings.database_url) as connection:
        report = compare_with_live(connection, replayer, report)
    return {"verdict": "SOUND" if report.sound else "UNSOUND",
            "findings": [f"{f.code}: {f.detail}"[:300] for f in report.findings],
            "live_agreement": report.extra.get("live_agreement")}


# ------------------------------------------------------------------------------ the run


def onboarding_commands(workload: Workload, partners: list[Partner],
                        venue_list: list[Venue]) -> list[Command]:
    from passnum.tools.scenario import accreditations, onboarding

    commands = [c for partner in partners
                for c in onboarding(partner, INITIAL_BOOKLETS, MARCH, tag="chaos")]
    commands += accreditations(venue_list, MARCH, tag="chaos")
    return [workload.remember(command) for command in commands]


def memory(workers: dict[str, WorkerProcess]) -> dict[str, int | None]:
    return {name: resident_kilobytes(worker) for name, worker in sorted(workers.items())}


def chaos_phase(run: Run, killer: Killer) -> None:
    """Rounds while the killer works; the March close half-way (the scans move to April)."""
    killer.start()
    while killer.is_alive():
        run.round()
        if not run.workload.april and len(killer.kills) >= killer.target // 2:
            run.send(run.workload.closes("2026-03", datetime(2026, 4, 1, 6, 0,
                                                             tzinfo=timezone.utc)))
            run.workload.april = True
    killer.join()
    if killer.failure is not None:
        raise killer.failure


def soak_phase(run: Run, seconds: float) -> None:
    """The same workload with no kill (the long run's memory is read before and after)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.round()


def prepare(ledger: Settings, start_worker: Callable[..., WorkerProcess]
            ) -> tuple[dict[str, WorkerProcess], Run]:
    """Both workers started at once, three collectivités and five venues onboarded, every
    first booklet known to the redeemer."""
    with ThreadPoolExecutor(2) as pool:
        issuer, redeemer = pool.map(start_worker, ("issuer", "redeemer"))
    partners, venue_list = collectivites(PARTNERS), venues(VENUES)
    random_source = random.Random(SEED)
    client = LedgerClient(ledger)
    workload = Workload(ledger, partners, venue_list, random_source)
    onboard(client, partners, INITIAL_BOOKLETS, venue_list, tag="chaos")
    onboarding_commands(workload, partners, venue_list)
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated",
                  PARTNERS * INITIAL_BOOKLETS)
    for partner in partners:
        workload.scannable |= {f"{partner.siren}-{n:07d}" for n in range(1, INITIAL_BOOKLETS + 1)}
        workload.fresh_codes += booklet_codes(ledger.voucher_code_key.encode(), partner,
                                              range(1, INITIAL_BOOKLETS + 1))
    random_source.shuffle(workload.fresh_codes)
    venue_clients = {venue.siret: LedgerClient(ledger) for venue in venue_list}
    return {"issuer": issuer, "redeemer-a": redeemer}, Run(ledger, workload, client,
                                                          venue_clients)


def drive(run: Run, killer: Killer, workers: dict[str, WorkerProcess]) -> dict:
    """The chaos, the soak, the April close, then every outcome and an empty outbox."""
    clock, memory_at = time.monotonic(), {"start": memory(workers)}
    try:
        chaos_phase(run, killer)
        chaos_seconds = time.monotonic() - clock
        for worker in workers.values():
            worker.wait_until_healthy(timeout_seconds=120)
        memory_at["soak_start"] = memory(workers)
        soak_phase(run, SOAK_SECONDS)
        run.send(run.workload.closes("2026-04", datetime(2026, 5, 1, 6, 0,
                                                         tzinfo=timezone.utc)))
        clock = time.monotonic()
        missing = run.wait_for_every_outcome(OUTCOME_TIMEOUT_SECONDS)
        wait_until_quiet(run.settings)
        memory_at["end"] = memory(workers)
    finally:
        killer.stopping.set()
        killer.second_redeemer.stop()
        for sender in run.venue_clients.values():
            sender.close()
    return {"chaos_seconds": round(chaos_seconds, 1), "soak_seconds": SOAK_SECONDS,
            "final_wait_seconds": round(time.monotonic() - clock, 1),
            "not_answered_to_client": len(missing), "resident_kilobytes": memory_at}


def judge(ledger: Settings, workload: Workload, killer: Killer) -> tuple[dict, LogFacts]:
    facts = read_log(ledger)
    lost, doubled = outcome_problems(workload, facts, recorded_outcomes(ledger))
    two_payloads = sorted(e for e, values in facts.payloads.items() if len(values) > 1)
    return {
        "kills": len(killer.kills), "kills_by_worker": _count(name for name, _ in killer.kills),
        "kills_with_requests_pending": sum(1 for _, pending in killer.kills if pending),
        "kill_interval_seconds": KILL_INTERVAL_SECONDS, "seed": SEED,
        "second_redeemer_starts": killer.second_redeemer.starts,
        "second_redeemer_assigned_commands": assigned_commands(killer.second_redeemer,
                                                               every_start=True),
        "rounds": workload.rounds,
        "requests": len(workload.commands), "records_sent": workload.records_sent,
        "decided": len(workload.commands) - len(lost), "lost": len(lost),
        "doubled": len(doubled) + len(two_payloads) + len(facts.redeemed_twice),
        "redeemed_twice": facts.redeemed_twice, "event_ids_with_two_payloads": two_payloads,
        "requests_with_two_outcomes": doubled[:20], "lost_requests": lost[:20],
        "republished_copies": facts.copies, "dead_letters": facts.dead_letters,
        "events_by_type": dict(sorted(facts.types.items())),
        "audit": audit(ledger),
    }, facts


def test_chaos_run(ledger, start_worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    started_at, load_at_start, clock = datetime.now(timezone.utc), os.getloadavg(), time.monotonic()
    workers, run = prepare(ledger, start_worker)
    setup_seconds = time.monotonic() - clock
    second = WorkerProcess("redeemer", ledger.with_overrides(web_port_redeemer=free_port()),
                           tmp_path / "logs-second-redeemer")
    killer = Killer(workers, second, KILLS, KILL_INTERVAL_SECONDS, lambda: run.pending,
                    random.Random(SEED + 1))
    timings = drive(run, killer, workers)
    clock = time.monotonic()
    figures, facts = judge(ledger, run.workload, killer)
    figures = {"date": started_at.isoformat(timespec="seconds"), **figures, **timings,
               "setup_seconds": round(setup_seconds, 1),
               "judge_seconds": round(time.monotonic() - clock, 1),
               "load_average_start": load_at_start, "load_average_end": os.getloadavg()}
    for worker in workers.values():
        worker.kill()  # judged already: no need for a graceful stop
    if REPORT:
        Path(REPORT).write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    _check(figures, facts)


def _count(names: object) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for name in names:  # type: ignore[attr-defined]
        counts[name] += 1
    return dict(counts)


def _check(figures: dict, facts: LogFacts) -> None:
    assert figures["kills"] == KILLS
    assert figures["kills_with_requests_pending"] > 0, "no kill landed mid-stream"
    assert set(figures["kills_by_worker"]) & {"redeemer-a", "redeemer-b"}, figures
    assert "issuer" in figures["kills_by_worker"], figures
    assert figures["second_redeemer_starts"] >= 1, "the rebalance never happened"
    assert figures["second_redeemer_assigned_commands"], "no rebalance in the workers' logs"
    assert figures["lost"] == 0, figures["lost_requests"]
    assert figures["doubled"] == 0, (figures["redeemed_twice"],
                                     figures["event_ids_with_two_payloads"],
                                     figures["requests_with_two_outcomes"])
    assert facts.dead_letters == 0 and facts.undecodable == 0
    assert not facts.cancelled_without_redemption, facts.cancelled_without_redemption
    assert figures["audit"] == {"verdict": "SOUND", "findings": [],
                                "live_agreement": "agrees"}, figures["audit"]
    # The workload did what it says: races lost, scans undone, a month closed, a block.
    types = facts.types
    for kind in ("voucher_redeemed", "redemption_rejected", "redemption_cancelled",
                 "voucher_checked", "settlement_month_closed", "booklet_blocked",
                 "booklet_distributed", "booklet_activated"):
        assert types.get(kind, 0) > 0, (kind, dict(types))
