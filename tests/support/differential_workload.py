"""The differential audit: a random legitimate workload drawn from a seed, driven through the
real issuer and redeemer workers, then judged by the auditor, which must agree with every
decision the services made; then one planted fault at a time, which the auditor must name.

`tests/integration/test_differential_audit.py` runs a few seeds; `bench/differential_audit.py
--seeds N` runs many. Both call `run_differential`.

The workload follows a simulated calendar from March 2026 onwards (instants the client puts
in `occurred_at`, as an offline scan file or a venue's device does) and mixes what raised false
alarms once: a redemption, its cancellation and a new redemption of the same voucher within
one second (in any order of their sub-second instants: two devices' clocks differ), offline
scans back-dated before the venue's accreditation or reinstatement or before the booklet's
activation, scans dated in the future, orders and payments by unknown or invalid SIRENs;
venue suspensions and reinstatements, booklets funded late, a booklet blocked, checks (some
re-sent with the same request id), cancellations refused, and month closes, including a
close of a month not ended (refused) re-sent with the same request id once it has ended.

Every command carries the outcome expected from a small model written here, apart from the
ledger's rules on purpose (an oracle that reused them would accept whatever they accept): a
redeemer that took a scan dated in the future, or a back-dated one, fails the run even when
the audit agrees with it. Commands whose outcomes could depend on each other's order are
never sent together: a step's commands touch distinct vouchers, and whatever changes a
venue, a booklet or a month goes alone, after which the redeemer is waited for, except in
the races: a suspension, or a booklet's block, sent together with scans of that venue or
booklet dated after it. Whether the redeemer decides each scan before or after the
restriction is the race's, so the model accepts either outcome for those scans (and uses
their vouchers for nothing else); the audit must agree with whichever it was.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence
from zoneinfo import ZoneInfo

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from stdnum import luhn

from passnum.core.codec import CHAIN_HEADER, encode
from passnum.core.head_signatures import trusted_head_keys
from passnum.core.log import make_producer
from passnum.core.processes import WorkerProcess
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.ledger.identity import event_id_for
from passnum.ledger.partners import Partner, Venue, collectivites, venues
from passnum.ledger.voucher_codes import VoucherNumber, make_code
from passnum.tools.scenario import FACE_VALUE_CENTS, accreditations, onboarding
from schemas.base import Command, Event
from schemas.messages import (
    BlockBooklet,
    CancelRedemption,
    ChangeProviderStatus,
    CheckVoucher,
    CloseSettlementMonth,
    FundEnvelope,
    FundsReceived,
    OrderBooklets,
    RecordFundsReceived,
    RedeemVoucher,
    RegisterCollectivite,
)
from services.auditor import checkpoint
from services.auditor.live import (
    agree_with_database,
    digest_lines,
    replayed_envelope_lines,
    replayed_redemption_lines,
)
from services.auditor.publish import publish_auditor_events
from services.auditor.replay import Replayer, ReplayOptions
from services.auditor.report import AuditReport
from tests.integration.helpers import MARCH, wait_for_rows
from tests.support.chained_log import (
    ChainedLogWriter,
    ChainedRecord,
    ChainHead,
    partition_of,
    send_with_kafka_python,
)

PARIS = ZoneInfo("Europe/Paris")
START = MARCH  # onboarding, the first venue's accreditation, the first booklets' activation
LAST_DAY = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)  # the calendar's end
PARTNER_COUNT = 2
BOOKLETS_PER_PARTNER = 3
VENUE_COUNT = 3
OUTCOME_TIMEOUT_SECONDS = 60.0
# Events that follow the decisive one of a decision (an order's booklets, a payment's
# activations, a close's statements): each command has exactly one event not listed here.
FOLLOW_UPS = frozenset({"booklet_issued", "booklet_activated", "settlement_statement_issued"})
# Outcomes whose `reason` says why a command was refused (elsewhere it is a block's or a
# suspension's own reason).
ANSWERS_WITH_REASONS = frozenset({"redemption_rejected", "issuer_command_rejected",
                                  "redeemer_command_rejected", "voucher_checked"})
LOG_FAULTS = ("new_stream", "appended_event", "forged_checkpoint")
ROW_FAULTS = ("redemption_row", "envelope_row")


# ------------------------------------------------------------------ the workload


@dataclass(frozen=True)
class Expected:
    type: str
    reason: str | None = None
    # in a race the model cannot order, the other legitimate outcome
    or_else: "Expected | None" = None

    def allows(self, got: "Expected | None") -> bool:
        return got is not None and ((got.type, got.reason) == (self.type, self.reason) or (
            self.or_else is not None and self.or_else.allows(got)))

    def __str__(self) -> str:
        text = f"{self.type}/{self.reason}" if self.reason else self.type
        return f"{text} or {self.or_else}" if self.or_else else text


@dataclass(frozen=True)
class Step:
    """Commands sent together, each with its expected decisive outcome; after it, the
    redeemer's booklet rows must count (issued, activated, blocked) when `booklets` is set."""

    label: str
    commands: tuple[Command, ...]
    expected: tuple[Expected, ...]
    booklets: tuple[int, int, int] | None = None


@dataclass
class Workload:
    seed: int
    partners: list[Partner]
    venues: list[Venue]
    steps: list[Step] = field(default_factory=list)
    refused_sirens: set[str] = field(default_factory=set)  # must leave no envelope row
    situations: Counter[str] = field(default_factory=Counter)

    @property
    def command_count(self) -> int:
        return sum(len(step.commands) for step in self.steps)

    def outcomes(self) -> Counter[str]:
        return Counter(str(e) for step in self.steps for e in step.expected)


# The situations every workload holds at least once (a seed that missed one would test less
# than it says).
REQUIRED_SITUATIONS = (
    "fast redeem, cancel, redeem", "refused: venue_not_accredited_at_scan_time",
    "refused: booklet_not_activated_at_scan_time", "refused: scan_in_the_future",
    "refused issuer command", "suspension", "reinstatement", "month not ended",
    "month not ended, then closed with the same request id", "late funding", "check",
    "race: suspension and scans", "race: block and scans",
)


def coverage_gaps(workload: Workload) -> list[str]:
    return [name for name in REQUIRED_SITUATIONS if not workload.situations[name]]


@dataclass
class BookletState:
    siren: str
    sequence: int
    voucher_count: int
    valid_from: date
    grace_until: date
    activated_at: datetime | None = None
    blocked: bool = False


@dataclass
class VenueState:
    accredited: bool
    since: datetime  # accredited without a break since


@dataclass
class RedemptionState:
    siret: str
    at: datetime
    settled: bool = False


def month_of(instant: datetime) -> str:
    return instant.astimezone(PARIS).strftime("%Y-%m")


def month_end(month: str) -> datetime:
    year, number = int(month[:4]), int(month[5:])
    year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return datetime(year, number, 1, tzinfo=PARIS)


def next_month(month: str) -> str:
    return month_of(month_end(month))


class WorkloadGenerator:
    """Draws a workload and, command by command, the outcome the services must give."""

    def __init__(self, seed: int, code_key: bytes, rounds: int, now: datetime,
                 scan_tolerance: timedelta) -> None:
        self.random = random.Random(seed)
        self.code_key = code_key
        self.rounds = rounds
        self.now = now
        self.scan_tolerance = scan_tolerance
        self.end = min(LAST_DAY, now - timedelta(days=3))
        self.workload = Workload(seed, collectivites(PARTNER_COUNT, seed=seed),
                                 venues(VENUE_COUNT, seed=seed))
        self.clock = START + timedelta(hours=1)
        self.booklets: dict[str, BookletState] = {}
        self.codes: dict[str, str] = {}  # voucher id -> printed code
        self.redemptions: dict[str, RedemptionState] = {}
        self.venue_states: dict[str, VenueState] = {}
        self.closed: set[str] = set()
        self.pending_closes: dict[str, CloseSettlementMonth] = {}  # month -> refused close
        self.checks: list[CheckVoucher] = []
        self.reinstate_at: dict[str, datetime] = {}  # suspended venue -> when
        self.unfunded: dict[str, list[str]] = {}  # siren -> booklets funded later
        self.raced: set[str] = set()  # vouchers scanned in a race: their state is unknown
        # a venue suspended in a race -> its latest racing scan: the suspension takes effect
        # no earlier than the scans it lets stand, so a reinstatement is dated after it
        self.raced_until: dict[str, datetime] = {}
        self.fund_at: dict[str, datetime] = {}
        self.counter = 0

    # -------------------------------------------------------------- model of the rules

    def scan_refusal(self, voucher_id: str, siret: str, at: datetime) -> str | None:
        booklet = self.booklets[voucher_id.rsplit("-", 1)[0]]
        venue = self.venue_states[siret]
        if at > self.now + self.scan_tolerance:
            return "scan_in_the_future"
        if booklet.activated_at is None:
            return "booklet_not_activated"
        if at < booklet.activated_at:
            return "booklet_not_activated_at_scan_time"
        if booklet.blocked:
            return "booklet_blocked"
        if not booklet.valid_from <= at.date() <= booklet.grace_until:
            return "outside_validity"
        if not venue.accredited:
            return "provider_not_accredited"
        if at < venue.since:
            return "venue_not_accredited_at_scan_time"
        if voucher_id in self.redemptions:
            return "already_redeemed"
        return None

    def cancel_refusal(self, voucher_id: str, siret: str, at: datetime) -> str | None:
        redemption = self.redemptions.get(voucher_id)
        if redemption is None or redemption.siret != siret:
            return "not_redeemed_here"
        if redemption.settled:
            return "already_settled"
        if redemption.at.astimezone(PARIS).date() != at.astimezone(PARIS).date():
            return "cancellation_too_late"
        return None

    def close_refusal(self, month: str, at: datetime) -> str | None:
        if month in self.closed:
            return "month_already_closed"
        if self.closed and max(self.closed) > month:
            return "later_month_closed"
        if at < month_end(month):
            return "month_not_ended"
        return None

    def open_venues(self, at: datetime) -> list[str]:
        """The venues accredited at `at` and now (in the model)."""
        return [siret for siret, venue in sorted(self.venue_states.items())
                if venue.accredited and venue.since <= at]

    # -------------------------------------------------------------- commands and outcomes

    def request_id(self, kind: str) -> str:
        self.counter += 1
        return f"d{self.workload.seed}-{self.counter:04d}-{kind}"

    def redeem(self, voucher_id: str, siret: str, at: datetime) -> tuple[Command, Expected]:
        command = RedeemVoucher(request_id=self.request_id("scan"), occurred_at=at,
                                code=self.codes[voucher_id], siret=siret)
        reason = self.scan_refusal(voucher_id, siret, at)
        if reason is not None:
            self.workload.situations[f"refused: {reason}"] += 1
            return command, Expected("redemption_rejected", reason)
        self.redemptions[voucher_id] = RedemptionState(siret, at)
        return command, Expected("voucher_redeemed")

    def cancel(self, voucher_id: str, siret: str, at: datetime) -> tuple[Command, Expected]:
        command = CancelRedemption(request_id=self.request_id("cancel"), occurred_at=at,
                                   voucher_id=voucher_id, siret=siret)
        reason = self.cancel_refusal(voucher_id, siret, at)
        if reason is not None:
            return command, Expected("redeemer_command_rejected", reason)
        del self.redemptions[voucher_id]
        return command, Expected("redemption_cancelled")

    def check(self, command: CheckVoucher) -> Expected:
        voucher_id = next(v for v, code in self.codes.items() if code == command.code)
        return Expected("voucher_checked",
                        self.scan_refusal(voucher_id, command.siret, command.occurred_at))

    def close(self, month: str, at: datetime) -> tuple[Command, Expected]:
        """A close at `at`; a close refused earlier because the month had not ended is
        sent again with its request id (a refusal time lifts binds no request id)."""
        pending = self.pending_closes.pop(month, None)
        request_id = pending.request_id if pending else self.request_id("close")
        command = CloseSettlementMonth(request_id=request_id, occurred_at=at, month=month)
        reason = self.close_refusal(month, at)
        if reason == "month_not_ended":
            self.pending_closes[month] = command
        if reason is not None:
            return command, Expected("redeemer_command_rejected", reason)
        if pending is not None:
            self.workload.situations["month not ended, then closed with the same request id"] += 1
        self.closed.add(month)
        end = month_end(month)
        for redemption in self.redemptions.values():
            if redemption.at < end:
                redemption.settled = True
        return command, Expected("settlement_month_closed")

    def add_step(self, label: str, pairs: Sequence[tuple[Command, Expected]],
                 booklets: tuple[int, int, int] | None = None) -> None:
        self.workload.steps.append(Step(label, tuple(c for c, _ in pairs),
                                        tuple(e for _, e in pairs), booklets))

    def booklet_counts(self) -> tuple[int, int, int]:
        states = self.booklets.values()
        return (len(self.booklets), sum(b.activated_at is not None for b in states),
                sum(b.blocked for b in states))

    # -------------------------------------------------------------- the calendar

    def draw(self) -> Workload:
        self.onboard()
        # the rounds' days, drawn at once so that the calendar ends by `self.end`
        available = range(1, (self.end - self.clock).days)
        if self.rounds > len(available):
            raise ValueError(f"{self.rounds} rounds: the calendar has {len(available)} days")
        days = sorted(self.random.sample(available, self.rounds))
        suspension_round = self.random.randrange(self.rounds)
        block_round = self.random.randrange(self.rounds)
        # late enough that the venues accredited later are (they race too)
        race_rounds = {self.random.randrange(self.rounds // 2, self.rounds)
                       for _ in range(2)}
        # in the first half, so that the month ends while the calendar runs
        early_close_round = self.random.randrange(max(1, self.rounds // 2))
        first_day = self.clock.date()
        for round_number, day in enumerate(days):
            self.advance(first_day + timedelta(days=day))
            self.scheduled()
            if round_number == suspension_round or self.random.random() < 0.2:
                self.suspend()
            if round_number == block_round:
                self.block()
            if round_number in race_rounds or self.random.random() < 0.15:
                self.race_suspension()
                self.race_block()
            else:  # each race as soon as it can, before long workloads use the vouchers up
                if not self.workload.situations["race: suspension and scans"]:
                    self.race_suspension()
                if not self.workload.situations["race: block and scans"]:
                    self.race_block()
            if round_number == early_close_round or self.random.random() < 0.2:
                self.add_step("month not ended", [self.close(month_of(self.clock), self.clock)])
                self.workload.situations["month not ended"] += 1
            self.round(round_number)
        self.finish()
        return self.workload

    def onboard(self) -> None:
        pairs: list[tuple[Command, Expected]] = []
        tag = f"d{self.workload.seed}"
        for partner in self.workload.partners:
            funded = self.random.randint(1, BOOKLETS_PER_PARTNER - 1)
            commands = onboarding(partner, BOOKLETS_PER_PARTNER, START, funded_booklets=funded,
                                  tag=tag)
            types = ("collectivite_registered", "envelope_funded", "booklets_ordered",
                     "funds_received")
            pairs += [(command, Expected(kind)) for command, kind in zip(commands, types)]
            for sequence in range(1, BOOKLETS_PER_PARTNER + 1):
                booklet_id = VoucherNumber(partner.siren, sequence, 1).booklet_id
                self.booklets[booklet_id] = BookletState(
                    partner.siren, sequence, partner.vouchers_per_booklet, START.date(),
                    date(START.year + 1, 1, 31),
                    START if sequence <= funded else None)
                for position in range(1, partner.vouchers_per_booklet + 1):
                    number = VoucherNumber(partner.siren, sequence, position)
                    self.codes[number.voucher_id] = make_code(self.code_key, number)
            self.unfunded[partner.siren] = [
                VoucherNumber(partner.siren, sequence, 1).booklet_id
                for sequence in range(funded + 1, BOOKLETS_PER_PARTNER + 1)]
            self.fund_at[partner.siren] = START + timedelta(days=self.random.randint(10, 120))
        self.add_step("onboarding", pairs, self.booklet_counts())
        # the first venue from the start, the others accredited later: scans back-dated
        # before their accreditation are refused
        accredited: list[tuple[Command, Expected]] = []
        for index, venue in enumerate(self.workload.venues):
            at = START if index == 0 else START + timedelta(
                days=self.random.randint(3, 60), seconds=self.random.randrange(36_000))
            self.venue_states[venue.siret] = VenueState(True, at)
            accredited += [(command, Expected("provider_accredited"))
                           for command in accreditations([venue], at, tag=tag)]
        self.add_step("accreditations", accredited)

    def advance(self, day: date) -> None:
        """To a later day (at an hour of the French working day), closing each month passed
        (most of the time: a month left open is closed by no one, and a later close is then
        refused for it)."""
        before = self.clock
        self.clock = datetime(day.year, day.month, day.day, self.random.randint(7, 15),
                              self.random.randrange(60), self.random.randrange(60),
                              tzinfo=timezone.utc)
        month = month_of(before)
        while month < month_of(self.clock):
            if self.random.random() < 0.85 or month in self.pending_closes:
                self.add_step("month close", [self.close(month, self.clock)])
            month = next_month(month)
        if self.closed and self.random.random() < 0.15:  # closed again: refused
            self.add_step("month closed again", [
                self.close(self.random.choice(sorted(self.closed)), self.clock)])

    def scheduled(self) -> None:
        for siret, at in sorted(self.reinstate_at.items()):
            if at <= self.clock:
                self.reinstate(siret)
        for siren, at in sorted(self.fund_at.items()):
            if at <= self.clock:
                self.fund_late(siren)

    def finish(self) -> None:
        """What the calendar left due: the late payments, a race the rounds could not
        draw (no venue or booklet fit then), the reinstatements, and the month refused as
        not ended, closed once it has (the calendar goes on to its end for it)."""
        self.clock += timedelta(seconds=1)
        for siren in sorted(self.fund_at):
            self.fund_late(siren)
        for siret in sorted(self.reinstate_at):
            self.reinstate(siret)
        if not self.workload.situations["race: suspension and scans"]:
            self.race_suspension()
        if not self.workload.situations["race: block and scans"]:
            self.race_block()
        for siret in sorted(self.reinstate_at):  # a venue the race suspended
            self.reinstate(siret)
        for month in sorted(self.pending_closes):
            after = month_end(month) + timedelta(days=1)
            if month_of(self.clock) <= month and after <= self.end:
                self.advance(after.date())  # closes the pending month with its request id
        for month in sorted(self.pending_closes):
            if month < month_of(self.clock) and not self.close_refusal(month, self.clock):
                self.add_step("month close", [self.close(month, self.clock)])
        self.round(self.rounds)
        # A back-dated scan the rounds could not draw (no venue or booklet fit then).
        for target in ("venue", "booklet"):
            situation = f"refused: {('venue', 'booklet')[target == 'booklet']}_not_" + (
                "accredited_at_scan_time" if target == "venue" else "activated_at_scan_time")
            for _ in range(5):  # each draw picks a venue, a voucher and an instant
                if self.workload.situations[situation]:
                    break
                pairs = self.back_dated_scan(set(), target)
                if pairs:
                    self.add_step(f"back-dated ({target})", pairs)

    # -------------------------------------------------------------- changes, one at a time

    def fund_late(self, siren: str) -> None:
        partner = next(p for p in self.workload.partners if p.siren == siren)
        booklet_ids = self.unfunded.pop(siren)
        del self.fund_at[siren]
        value = len(booklet_ids) * partner.vouchers_per_booklet * FACE_VALUE_CENTS
        command = RecordFundsReceived(
            request_id=self.request_id("payment"), occurred_at=self.clock, siren=siren,
            face_value_cents=value, fees_cents=value * 4 // 100,
            payment_reference=f"LATE-{siren}")
        for booklet_id in booklet_ids:
            self.booklets[booklet_id].activated_at = self.clock
        self.add_step("late funding", [(command, Expected("funds_received"))],
                      self.booklet_counts())
        self.workload.situations["late funding"] += 1

    def suspend(self) -> None:
        candidates = self.open_venues(self.clock)
        if not candidates:
            return
        siret = self.random.choice(candidates)
        command = ChangeProviderStatus(request_id=self.request_id("suspend"),
                                       occurred_at=self.clock, siret=siret, status="suspended",
                                       reason="contrôle")
        self.venue_states[siret].accredited = False
        self.reinstate_at[siret] = self.clock + timedelta(days=self.random.randint(2, 50))
        self.add_step("suspension", [(command, Expected("provider_status_changed"))])
        self.workload.situations["suspension"] += 1

    def reinstate(self, siret: str) -> None:
        del self.reinstate_at[siret]
        at = max(self.clock, self.raced_until.pop(siret, self.clock))
        command = ChangeProviderStatus(request_id=self.request_id("reinstate"),
                                       occurred_at=at, siret=siret, status="accredited")
        self.venue_states[siret] = VenueState(True, at)
        self.add_step("reinstatement", [(command, Expected("provider_status_changed"))])
        self.workload.situations["reinstatement"] += 1

    def block(self) -> None:
        candidates = [booklet_id for booklet_id, b in sorted(self.booklets.items())
                      if b.activated_at is not None and not b.blocked]
        if not candidates:
            return
        booklet_id = self.random.choice(candidates)
        booklet = self.booklets[booklet_id]
        command = BlockBooklet(request_id=self.request_id("block"), occurred_at=self.clock,
                               siren=booklet.siren, booklet_id=booklet_id, reason="lost")
        booklet.blocked = True
        self.add_step("booklet blocked", [(command, Expected("booklet_blocked"))],
                      self.booklet_counts())
        self.workload.situations["booklet blocked"] += 1

    # -------------------------------------------------------------- races

    RACE_SCANS = 4

    def racing_scans(self, vouchers: Sequence[str], siret: str, after: datetime,
                     refusal: str) -> list[tuple[Command, Expected]]:
        """Scans dated a moment after a restriction sent with them: accepted if decided
        before the redeemer knew it, else refused for it."""
        pairs = []
        for voucher_id in vouchers:
            at = after + timedelta(milliseconds=self.random.randrange(1, 3000))
            command = RedeemVoucher(request_id=self.request_id("race"), occurred_at=at,
                                    code=self.codes[voucher_id], siret=siret)
            pairs.append((command, Expected("voucher_redeemed", or_else=Expected(
                "redemption_rejected", refusal))))
            self.raced.add(voucher_id)
        return pairs

    def race_suspension(self) -> None:
        """A venue suspended while scans of it, dated after the suspension, are decided on
        other partitions."""
        candidates = self.open_venues(self.clock)
        if not candidates:
            return
        siret = self.random.choice(candidates)
        used: set[str] = set()
        vouchers = [v for v in (self.pick_voucher(used, unredeemed=True,
                                                  eligible_at=(siret, self.clock))
                                for _ in range(self.RACE_SCANS)) if v is not None]
        if not vouchers:
            return
        command = ChangeProviderStatus(request_id=self.request_id("suspend"),
                                       occurred_at=self.clock, siret=siret, status="suspended",
                                       reason="contrôle")
        self.venue_states[siret].accredited = False
        self.reinstate_at[siret] = self.clock + timedelta(days=self.random.randint(2, 50))
        scans = self.racing_scans(vouchers, siret, self.clock, "provider_not_accredited")
        self.raced_until[siret] = max(scan.occurred_at for scan, _ in scans)
        self.add_step("race: suspension and scans", [
            (command, Expected("provider_status_changed")), *scans])
        self.workload.situations["race: suspension and scans"] += 1
        self.workload.situations["suspension"] += 1

    def race_block(self) -> None:
        """A booklet blocked at the issuer while scans of it, dated after the block, reach
        the redeemer, which learns of the block from the issuer's topic."""
        venues = self.open_venues(self.clock)
        self.random.shuffle(venues)
        candidates: dict[str, list[str]] = {}
        for siret in venues:  # the first venue where some booklet has vouchers to race
            for booklet_id in sorted(self.booklets):
                free = [v for v in sorted(self.codes) if v.startswith(booklet_id + "-")
                        and v not in self.raced and v not in self.redemptions
                        and self.scan_refusal(v, siret, self.clock) is None]
                if len(free) >= 2:
                    candidates[booklet_id] = free
            if candidates:
                break
        if not candidates:
            return
        booklet_id = self.random.choice(sorted(candidates))
        booklet = self.booklets[booklet_id]
        vouchers = self.random.sample(candidates[booklet_id],
                                      min(self.RACE_SCANS, len(candidates[booklet_id])))
        command = BlockBooklet(request_id=self.request_id("block"), occurred_at=self.clock,
                               siren=booklet.siren, booklet_id=booklet_id, reason="lost")
        booklet.blocked = True
        self.add_step("race: block and scans", [
            (command, Expected("booklet_blocked")),
            *self.racing_scans(vouchers, siret, self.clock, "booklet_blocked")],
            self.booklet_counts())
        self.workload.situations["race: block and scans"] += 1
        self.workload.situations["booklet blocked"] += 1

    # -------------------------------------------------------------- a round of situations

    def round(self, number: int) -> None:
        """A fast redeem/cancel/redeem, a scan back-dated before a venue's accreditation
        (even rounds) or a booklet's activation (odd ones), a scan in the future and a check
        every round, a refused issuer command in the first, then a few drawn situations;
        each touches its own voucher."""
        used: set[str] = set()
        pairs: list[tuple[Command, Expected]] = []
        labels: list[str] = []
        target = ("venue", "booklet")[number % 2]
        Draw = Callable[[set[str]], list[tuple[Command, Expected]]]
        draws: list[tuple[str, Draw]] = [
            ("fast cycle", lambda used: self.fast_cycle(used, again=True)),
            (f"back-dated ({target})", lambda used: self.back_dated_scan(used, target)),
            ("future scan", self.future_scan), ("check", self.new_check)]
        if number == 0:
            draws.append(("refused issuer command", self.refused_issuer))
        draws += self.random.choices(
            [("fast cycle", self.fast_cycle), ("online scan", self.online_scan),
             ("back-dated", self.back_dated_scan), ("future scan", self.future_scan),
             ("check", self.new_check), ("check again", self.check_again),
             ("refused cancel", self.refused_cancel),
             ("refused issuer command", self.refused_issuer)],
            weights=[3, 3, 3, 1, 2, 1, 1, 1], k=self.random.randint(2, 5))
        for label, draw in draws:
            drawn = draw(used)
            if drawn:
                pairs += drawn
                labels.append(label)
        if pairs:
            self.add_step("round: " + ", ".join(labels), pairs)

    def pick_voucher(self, used: set[str], unredeemed: bool = False,
                     eligible_at: tuple[str, datetime] | None = None,
                     activated_before: datetime | None = None) -> str | None:
        def activated(voucher_id: str) -> bool:
            """Activated before that instant and not blocked (when it is asked)."""
            booklet = self.booklets[voucher_id.rsplit("-", 1)[0]]
            return activated_before is None or (
                booklet.activated_at is not None and booklet.activated_at < activated_before
                and not booklet.blocked)

        candidates = [v for v in sorted(self.codes) if v not in used and v not in self.raced
                      and (not unredeemed or v not in self.redemptions) and activated(v)
                      and (eligible_at is None or self.scan_refusal(v, *eligible_at) is None)]
        if not candidates:
            return None
        voucher_id = self.random.choice(candidates)
        used.add(voucher_id)
        return voucher_id

    def venue(self) -> str:
        return self.random.choice(self.workload.venues).siret

    def fast_cycle(self, used: set[str], again: bool | None = None
                   ) -> list[tuple[Command, Expected]]:
        """Redeem, cancel, redeem again (`again`; None: most of the time) within one second:
        the instants' sub-second parts in any order (the redeemer decides in log order, and
        so must the audit)."""
        second = self.clock.replace(microsecond=0) + timedelta(
            seconds=self.random.randrange(3600))
        open_venues = self.open_venues(second)
        if not open_venues:
            return []
        siret = self.random.choice(open_venues)
        voucher_id = self.pick_voucher(used, unredeemed=True, eligible_at=(siret, second))
        if voucher_id is None:
            return []
        offsets = [timedelta(microseconds=self.random.randrange(1_000_000)) for _ in range(3)]
        pairs = [self.redeem(voucher_id, siret, second + offsets[0]),
                 self.cancel(voucher_id, siret, second + offsets[1])]
        if again or (again is None and self.random.random() < 0.8):
            pairs.append(self.redeem(voucher_id, self.random.choice(open_venues),
                                     second + offsets[2]))
            self.workload.situations["fast redeem, cancel, redeem"] += 1
        return pairs

    def online_scan(self, used: set[str]) -> list[tuple[Command, Expected]]:
        voucher_id = self.pick_voucher(used, unredeemed=self.random.random() < 0.7)
        if voucher_id is None:
            return []
        at = self.clock + timedelta(seconds=self.random.randrange(3600),
                                    microseconds=self.random.randrange(1_000_000))
        return [self.redeem(voucher_id, self.venue(), at)]

    def back_dated_scan(self, used: set[str], target: str = "any"
                        ) -> list[tuple[Command, Expected]]:
        """An offline scan sent late: before a venue's accreditation or reinstatement (and
        after the booklet's activation, so that the venue is the reason), before a booklet's
        activation, or at any earlier instant."""
        siret = self.venue()
        venue = self.venue_states[siret]
        if target == "venue":
            accredited_later = [s for s, v in sorted(self.venue_states.items())
                                if v.accredited and START < v.since <= self.clock]
            if accredited_later:
                siret = self.random.choice(accredited_later)
                venue = self.venue_states[siret]
            else:
                target = "any"
        voucher_id = self.pick_voucher(used, unredeemed=self.random.random() < 0.8,
                                       activated_before=venue.since if target == "venue"
                                       else None)
        if voucher_id is None:
            return []
        booklet = self.booklets[voucher_id.rsplit("-", 1)[0]]
        floor = START - timedelta(days=10)
        if target == "venue" and booklet.activated_at is not None:
            at = self.instant_between(max(booklet.activated_at, venue.since - timedelta(days=20)),
                                      venue.since)
        elif target == "booklet" and booklet.activated_at and booklet.activated_at <= self.clock:
            at = self.instant_between(booklet.activated_at - timedelta(days=20),
                                      booklet.activated_at)
        else:
            at = self.instant_between(floor, self.clock)
        return [self.redeem(voucher_id, siret, at)]

    def instant_between(self, earliest: datetime, latest: datetime) -> datetime:
        """An instant in [earliest, latest), to the microsecond."""
        micros = int((latest - earliest) / timedelta(microseconds=1))
        return earliest + timedelta(microseconds=self.random.randrange(max(micros, 1)))

    def future_scan(self, used: set[str]) -> list[tuple[Command, Expected]]:
        voucher_id = self.pick_voucher(used)
        if voucher_id is None:
            return []
        at = self.now + timedelta(hours=1) + timedelta(
            seconds=self.random.randrange(120 * 86_400))
        self.workload.situations["scan dated in the future"] += 1
        return [self.redeem(voucher_id, self.venue(), at)]

    def new_check(self, used: set[str]) -> list[tuple[Command, Expected]]:
        voucher_id = self.pick_voucher(used)
        if voucher_id is None:
            return []
        command = CheckVoucher(request_id=self.request_id("check"), occurred_at=self.clock,
                               code=self.codes[voucher_id], siret=self.venue())
        self.checks.append(command)
        self.workload.situations["check"] += 1
        return [(command, self.check(command))]

    def check_again(self, used: set[str]) -> list[tuple[Command, Expected]]:
        """A check sent again with its request id: answered from the present state."""
        free = [c for c in self.checks
                if next(v for v, code in self.codes.items() if code == c.code)
                not in used | self.raced]
        if not free:
            return []
        command = self.random.choice(free)
        used.add(next(v for v, code in self.codes.items() if code == command.code))
        self.workload.situations["check sent again"] += 1
        return [(command, self.check(command))]

    def refused_cancel(self, used: set[str]) -> list[tuple[Command, Expected]]:
        """A cancellation on a later day, of a settled redemption, or by another venue."""
        standing = [v for v in sorted(self.redemptions) if v not in used]
        voucher_id = self.random.choice(standing) if standing else self.pick_voucher(used)
        if voucher_id is None:
            return []
        used.add(voucher_id)
        redemption = self.redemptions.get(voucher_id)
        siret = redemption.siret if redemption and self.random.random() < 0.7 else self.venue()
        return [self.cancel(voucher_id, siret, self.clock)]

    def refused_issuer(self, used: set[str]) -> list[tuple[Command, Expected]]:
        """An order, a payment or a commitment for a SIREN never registered (valid or not),
        or a registration with an invalid SIREN: refused, and no envelope row is left."""
        body = f"{self.random.randrange(10**8):08d}"
        valid = body + luhn.calc_check_digit(body)
        invalid = body + str((int(luhn.calc_check_digit(body)) + 1) % 10)
        siren = self.random.choice((valid, invalid))
        if siren in {p.siren for p in self.workload.partners}:
            return []
        request_id, at = self.request_id("refused"), self.clock
        kind = self.random.randrange(4)
        command: Command
        reason = "unknown_collectivite"
        if kind == 0:
            command = OrderBooklets(request_id=request_id, occurred_at=at, siren=siren,
                                    booklet_count=self.random.randint(1, 50))
        elif kind == 1:
            command = RecordFundsReceived(request_id=request_id, occurred_at=at, siren=siren,
                                          face_value_cents=10_000, fees_cents=400,
                                          payment_reference="OP-UNKNOWN")
        elif kind == 2:
            command = FundEnvelope(request_id=request_id, occurred_at=at, siren=siren,
                                   committed_cents=100_000)
        else:
            siren, reason = invalid, "invalid_siren"
            command = RegisterCollectivite(request_id=request_id, occurred_at=at, siren=siren,
                                           name="Commune inconnue")
        self.workload.refused_sirens.add(siren)
        self.workload.situations["refused issuer command"] += 1
        return [(command, Expected("issuer_command_rejected", reason))]


def draw_workload(seed: int, code_key: bytes, rounds: int, now: datetime | None = None,
                  scan_tolerance: timedelta = timedelta(seconds=300)) -> Workload:
    return WorkloadGenerator(seed, code_key, rounds, now or datetime.now(timezone.utc),
                             scan_tolerance).draw()


# ------------------------------------------------------------------ driving the workers


@contextmanager
def workers_running(settings: Settings, log_directory: Path) -> Iterator[list[WorkerProcess]]:
    """The issuer and the redeemer, started together and stopped together (each start and
    stop is mostly waiting: a group to join, a group to leave)."""
    workers = [WorkerProcess(service, settings, log_directory).start()
               for service in ("issuer", "redeemer")]
    try:
        for worker in workers:
            worker.wait_until_healthy()
        yield workers
    finally:
        with ThreadPoolExecutor(len(workers)) as pool:
            list(pool.map(WorkerProcess.stop, workers))


def decisive(events: Sequence[Event]) -> Event | None:
    """The event that says how a command was decided (see FOLLOW_UPS)."""
    for event in events:
        if event.type not in FOLLOW_UPS:
            return event
    return None


def drive(settings: Settings, client: LedgerClient, workload: Workload) -> list[str]:
    """Send each step and wait for its outcomes; the outcomes that differ from the model's."""
    problems = []
    for step in workload.steps:
        seen = {c.request_id: len(client.events_by_request[c.request_id])
                for c in step.commands}
        client.send(step.commands)
        deadline = time.monotonic() + OUTCOME_TIMEOUT_SECONDS
        answers: dict[str, Event | None] = {}
        while True:
            answers = {c.request_id: decisive(client.events_by_request[c.request_id][
                seen[c.request_id]:]) for c in step.commands}
            if all(answers.values()) or time.monotonic() > deadline:
                break
            client.poll(0.2)
        for command, expected in zip(step.commands, step.expected):
            event = answers[command.request_id]
            got = Expected(event.type, getattr(event, "reason", None)
                           if event.type in ANSWERS_WITH_REASONS else None) if event else None
            if not expected.allows(got):
                problems.append(f"{step.label}: {command.type} {command.request_id} dated "
                                f"{command.occurred_at.isoformat()}: expected {expected}, "
                                f"got {got or 'no outcome'}")
        if not all(answers.values()):
            # A worker that stopped answering: every later step would wait as long again.
            problems.append(f"{step.label}: no outcome within {OUTCOME_TIMEOUT_SECONDS} s; "
                            f"{len(workload.steps) - workload.steps.index(step) - 1} steps "
                            "not driven")
            break
        if step.booklets is not None:
            wait_for_booklet_rows(settings, step.booklets)
    return problems


def wait_for_booklet_rows(settings: Settings, counts: tuple[int, int, int]) -> None:
    """Until the redeemer's booklet rows count (issued, activated, blocked) as the model
    does: one query a look."""
    wait_for_rows(settings, "SELECT count(*) = %s AND count(*) FILTER (WHERE activated) = %s "
                  "AND count(*) FILTER (WHERE blocked) = %s FROM redeemer_booklets" % counts,
                  True)


# ------------------------------------------------------------------ the audit


def audit(settings: Settings) -> tuple[AuditReport, Replayer]:
    """The log replayed from offset 0 with the processors' head key, judged now, and
    compared with the services' database."""
    replayer = Replayer(settings, ReplayOptions(head_keys=trusted_head_keys(settings)))
    replayer.read()
    return agree_with_database(settings, replayer, replayer.judge()), replayer


def disagreements(report: AuditReport, replayer: Replayer) -> list[str]:
    """Why this audit of a legitimate history is not clean (empty: SOUND, no finding, live
    digests equal to the replayed ones, judged as of today)."""
    problems = [f"finding {f.code}: {f.detail} {f.event_ids}" for f in report.findings]
    if not report.sound:
        problems.append("the audit says UNSOUND")
    if report.extra.get("live_agreement") != "agrees":
        problems.append(f"live agreement: {report.extra.get('live_agreement')}")
    replayed = {"redemptions": digest_lines(replayed_redemption_lines(replayer.books)),
                "envelopes": digest_lines(replayed_envelope_lines(report))}
    if report.extra.get("live_digests") != replayed:
        problems.append(f"live digests {report.extra.get('live_digests')} != replayed {replayed}")
    today = datetime.now(timezone.utc).date().isoformat()
    if report.as_of != today:
        problems.append(f"the audit is as of {report.as_of}, not today ({today})")
    return problems


# ------------------------------------------------------------------ planted faults


@dataclass(frozen=True)
class Planted:
    """A fault and the evidence the finding `code` must name: the event id among its
    events (else some event), the row's key in its text (a changed row)."""

    kind: str
    code: str
    event_id: str | None = None
    row_key: str | None = None
    revert: Callable[[], object] | None = None

    def named_by(self, report: AuditReport) -> bool:
        return any(f.code == self.code
                   and (self.event_id in f.event_ids if self.event_id else bool(f.event_ids))
                   and (self.row_key is None or self.row_key in f.detail)
                   for f in report.findings)


def execute(settings: Settings, statement: str, parameters: Iterable[object] = ()) -> list:
    with psycopg.connect(settings.database_url) as connection:
        cursor = connection.execute(statement, tuple(parameters))
        rows = cursor.fetchall() if cursor.description else []
        connection.commit()
        return rows


def plant_row_fault(settings: Settings, workload: Workload, kind: str,
                    source: random.Random) -> Planted:
    """A database row changed under the services: a redemption moved to another venue, or a
    collectivité's received funds raised."""
    if kind == "redemption_row":
        voucher_id, siret, event_id = source.choice(execute(
            settings, "SELECT voucher_id, siret, event_id FROM redemptions ORDER BY voucher_id"))
        other = next(v.siret for v in workload.venues if v.siret != siret)
        change = "UPDATE redemptions SET siret = %s WHERE voucher_id = %s"
        execute(settings, change, (other, voucher_id))
        return Planted(kind, "live_state_disagrees", event_id, f"redemptions {voucher_id}",
                       lambda: execute(settings, change, (siret, voucher_id)))
    siren = source.choice(workload.partners).siren
    change = ("UPDATE issuer_envelopes SET state = jsonb_set(state, '{received_cents}', "
              "to_jsonb((state->>'received_cents')::bigint + %s)) WHERE siren = %s")
    execute(settings, change, (100, siren))
    return Planted(kind, "live_state_disagrees", None, f"issuer_envelopes {siren}",
                   lambda: execute(settings, change, (-100, siren)))


def forged_funds(siren: str, received_cents: int, name: str) -> FundsReceived:
    """A payment no one made, with a running total consistent with the books."""
    return FundsReceived(event_id=event_id_for("issuer", name, 0), request_id=name,
                         occurred_at=START + timedelta(days=30), siren=siren,
                         face_value_cents=500_000, fees_cents=0, payment_reference="FORGED",
                         total_received_cents=received_cents + 500_000)


def plant_log_fault(settings: Settings, workload: Workload, kind: str, replayer: Replayer,
                    report: AuditReport, source: random.Random) -> Planted:
    """One forgery written to the topics by someone with write access and no key."""
    topology = topology_for(settings)
    siren = source.choice(workload.partners).siren
    funds = forged_funds(siren, report.totals[siren].received_cents,
                         f"forged-{workload.seed}-{kind}")
    writer = ChainedLogWriter(topology)
    if kind == "forged_checkpoint":
        # the real root of a month, one digit changed, signed with a key of the forger's own
        month = source.choice(sorted({m for chain in replayer.chains.streams.values()
                                      for m in chain.month_firsts}))
        root = checkpoint.month_root(replayer.chains.streams, month)
        digit = "0" if root.root_hash[0] != "0" else "1"
        forged = checkpoint.MonthRoot(month, digit + root.root_hash[1:], root.event_count,
                                      (), ())
        signed = checkpoint.sign(Ed25519PrivateKey.generate(), forged, START)
        publish_auditor_events(settings, [signed])
        return Planted(kind, "checkpoint_mismatch", signed.event_id)
    if kind == "appended_event":
        # linked to the real tail of the collectivité's issuer stream, unsigned
        stream = writer.stream_for("issuer", siren.encode())
        writer.heads[stream] = ChainHead(*replayer.chains.heads()[stream])
        records = writer.issuer(siren, [funds])
        code = "unsigned_chain_tail"
    else:
        # a stream no processor has, consistently chained from its genesis
        value = encode(funds)
        stream = f"issuer/{topology.issuer_commands.name}-shadow/0"
        records = [ChainedRecord(topology.issuer_events.name,
                                 partition_of(siren.encode(), topology.issuer_events.partitions),
                                 siren.encode(), value,
                                 ((CHAIN_HEADER, writer.chain(stream, value)),))]
        code = "unknown_stream"
    producer = make_producer(settings)
    try:
        send_with_kafka_python(producer, records)
    finally:
        producer.close()
    return Planted(kind, code, funds.event_id)


# ------------------------------------------------------------------ one seed, end to end


@dataclass
class DifferentialRun:
    seed: int
    workload: Workload
    problems: list[str] = field(default_factory=list)
    planted: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def run_differential(settings: Settings, seed: int, rounds: int) -> DifferentialRun:
    """Draw, drive and audit the workload of `seed` on a ledger whose issuer and redeemer run;
    then a changed row (undone after its audit), then a forgery in the log (consecutive seeds
    rotate through ROW_FAULTS and LOG_FAULTS): each audit sees one fault. Returns every way in which the
    outcome differs from what it must be."""
    source = random.Random(seed)
    log_fault = LOG_FAULTS[seed % len(LOG_FAULTS)]
    workload = draw_workload(seed, settings.voucher_code_key.encode(), rounds,
                             scan_tolerance=timedelta(
                                 seconds=settings.scan_clock_tolerance_seconds))
    run = DifferentialRun(seed, workload)
    run.problems += [f"the workload holds no {gap}" for gap in coverage_gaps(workload)]
    if run.problems:
        return run  # it would test less than it says: not driven
    started = time.monotonic()
    client = LedgerClient(settings)
    try:
        run.problems += drive(settings, client, workload)
    finally:
        client.close()
    if workload.refused_sirens and execute(
            settings, "SELECT siren FROM issuer_envelopes WHERE siren = ANY(%s)",
            (sorted(workload.refused_sirens),)):
        run.problems.append("a refused command left an envelope row")
    run.seconds["drive"] = time.monotonic() - started

    started = time.monotonic()
    report, replayer = audit(settings)
    run.problems += [f"clean audit: {problem}" for problem in disagreements(report, replayer)]
    run.seconds["audit"] = time.monotonic() - started

    started = time.monotonic()
    row = plant_row_fault(settings, workload, ROW_FAULTS[seed % len(ROW_FAULTS)], source)
    faulty = agree_with_database(settings, replayer, replayer.judge())
    run.problems += unnamed(row, faulty)
    assert row.revert is not None
    row.revert()
    again = agree_with_database(settings, replayer, replayer.judge())
    run.problems += [f"after the row was restored: {problem}"
                     for problem in disagreements(again, replayer)]

    planted = plant_log_fault(settings, workload, log_fault, replayer, report, source)
    faulty, _ = audit(settings)
    run.problems += unnamed(planted, faulty)
    run.planted = [f"{row.kind} ({row.row_key})", f"{planted.kind} ({planted.event_id})"]
    run.seconds["faults"] = time.monotonic() - started
    return run


def unnamed(planted: Planted, report: AuditReport) -> list[str]:
    if planted.named_by(report) and not report.sound:
        return []
    return [f"planted {planted.kind}: expected {planted.code} naming "
            f"{planted.event_id or ''} {planted.row_key or ''}, the audit says "
            f"{'SOUND' if report.sound else 'UNSOUND'} with "
            f"{[(f.code, f.detail, f.event_ids) for f in report.findings]}"]
