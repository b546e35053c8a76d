"""The settlement aggregate, pure: which redemptions each venue is paid for, once.

`decide_close_month` answers `CloseSettlementMonth(month)` with one
`SettlementStatementIssued` per venue (several parts for a very busy venue) followed by one
`SettlementMonthClosed`, or with a `RedeemerCommandRejected` whose reason is the first that
applies in `CLOSE_PRECEDENCE`.

The rule (docs/redeemer.md, "Settlement"):
- a month is closed only once it has ended in France (Europe/Paris), judged on the
  command's `occurred_at`; never twice; never after a later month was closed;
- the statement of month M holds every redemption dated before the end of M that is not on
  an earlier statement. A redemption dated in an already closed month (an offline scan
  sent late, or one decided in another partition while the close was being decided) is
  therefore paid on the next statement, never lost and never paid twice;
- a redemption on a statement can no longer be cancelled (`already_settled`).

Closing is decided on one partition (keyed by month) while redemptions are decided on all
of them: which late redemptions fall on which statement depends on the commit order in
PostgreSQL, not on the log order. What the log does fix is the outcome: every statement
names its redemptions by event id, so `SettlementReplay` rebuilds from the log alone which
redemption was paid in which month, and checks that none was paid twice.

No Kafka, no database, no clock.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Sequence

from passnum.ledger.identity import event_id_for
from passnum.ledger.time import FRANCE
from schemas.base import Event
from schemas.messages import (
    CloseSettlementMonth,
    RedeemerCommandRejected,
    RedemptionCancelled,
    SettlementMonthClosed,
    SettlementStatementIssued,
    VoucherRedeemed,
)

ORIGIN = "redeemer"
# Months begin and end at midnight in France (`FRANCE`), where the venues are (overseas
# venues are paid on the same calendar as the programme's operator).
# A bound on one statement event: a venue with more redemptions in a month gets several
# parts (each about 40 bytes per redemption id, so a part stays far below the broker's
# 1 MiB message limit).
STATEMENT_MAX_REDEMPTIONS = 5_000

CLOSE_PRECEDENCE = ("month_already_closed", "later_month_closed", "month_not_ended")
# Refusals that time alone lifts: not recorded as the request's final outcome.
REFUSALS_TIME_LIFTS = frozenset({"month_not_ended"})


@dataclass(frozen=True)
class UnsettledRedemption:
    """A recorded redemption not yet on any statement, as the adapter loads it."""

    event_id: str
    siret: str
    voucher_id: str
    face_value_cents: int
    redeemed_at: datetime


@dataclass(frozen=True)
class SettlementBook:
    """The closed months: all a close decision needs besides the unsettled redemptions."""

    closed_months: frozenset[str] = frozenset()

    @property
    def latest_closed_month(self) -> str | None:
        return max(self.closed_months, default=None)


# ------------------------------------------------------------------------------ calendar


def month_start(month: str) -> datetime:
    year, number = (int(part) for part in month.split("-"))
    return datetime(year, number, 1, tzinfo=FRANCE)


def month_end(month: str) -> datetime:
    """The first instant after the month (exclusive bound), in France."""
    year, number = (int(part) for part in month.split("-"))
    year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return datetime(year, number, 1, tzinfo=FRANCE)


def month_of(instant: datetime) -> str:
    assert instant.tzinfo is not None, "a redemption instant carries its offset"
    return instant.astimezone(FRANCE).strftime("%Y-%m")


# ------------------------------------------------------------------------------ evolve


def evolve_book(book: SettlementBook, event: Event) -> SettlementBook:
    if isinstance(event, SettlementMonthClosed):
        return SettlementBook(book.closed_months | {event.month})
    return book


# ------------------------------------------------------------------------------ decide


def close_refusal(book: SettlementBook, command: CloseSettlementMonth) -> str | None:
    """The first reason in `CLOSE_PRECEDENCE` that applies, or None."""
    if command.month in book.closed_months:
        return "month_already_closed"
    latest = book.latest_closed_month
    if latest is not None and latest > command.month:
        # That later statement already took every redemption dated in this month.
        return "later_month_closed"
    if command.occurred_at < month_end(command.month):
        return "month_not_ended"
    return None


def _event(command: CloseSettlementMonth, event_class: type[Event], index: int,
           **fields: Any) -> Event:
    return event_class(event_id=event_id_for(ORIGIN, command.request_id, index),
                       request_id=command.request_id, occurred_at=command.occurred_at,
                       **fields)


def statement_parts(redemptions: Sequence[UnsettledRedemption]
                    ) -> list[tuple[str, list[UnsettledRedemption]]]:
    """(siret, redemptions) per statement: venues in SIRET order, each venue's redemptions
    in (redeemed_at, event_id) order, cut into parts of at most STATEMENT_MAX_REDEMPTIONS."""
    by_venue: dict[str, list[UnsettledRedemption]] = defaultdict(list)
    for redemption in redemptions:
        by_venue[redemption.siret].append(redemption)
    parts = []
    for siret in sorted(by_venue):
        ordered = sorted(by_venue[siret], key=lambda r: (r.redeemed_at, r.event_id))
        for start in range(0, len(ordered), STATEMENT_MAX_REDEMPTIONS):
            parts.append((siret, ordered[start:start + STATEMENT_MAX_REDEMPTIONS]))
    return parts


def decide_close_month(book: SettlementBook, command: CloseSettlementMonth,
                       unsettled: Sequence[UnsettledRedemption]) -> list[Event]:
    """Statements for every unsettled redemption dated before the end of the month, then
    the closing fact. `unsettled` may hold later redemptions too: they are left for the
    month they belong to."""
    reason = close_refusal(book, command)
    if reason is not None:
        return [_event(command, RedeemerCommandRejected, 0, command_type=command.type,
                       reason=reason)]
    end = month_end(command.month)
    due = [redemption for redemption in unsettled if redemption.redeemed_at < end]
    assert len({r.event_id for r in due}) == len(due), "a redemption listed twice"
    events: list[Event] = []
    for siret, part in statement_parts(due):
        events.append(_event(
            command, SettlementStatementIssued, len(events), siret=siret, month=command.month,
            voucher_count=len(part), face_value_cents=sum(r.face_value_cents for r in part),
            redemption_event_ids=tuple(r.event_id for r in part)))
    events.append(_event(
        command, SettlementMonthClosed, len(events), month=command.month,
        statement_count=len(events), voucher_count=len(due),
        face_value_cents=sum(r.face_value_cents for r in due)))
    return events


# ------------------------------------------------------------------------------ replay


@dataclass(frozen=True)
class SettlementFinding:
    code: str
    detail: str
    event_ids: tuple[str, ...] = ()


@dataclass
class SettlementReplay:
    """Rebuilds the settlement from the log, in any order of topics and partitions (the
    checks run at the end), and says what does not add up. Duplicated deliveries of one
    event are counted once."""

    redemptions: dict[str, VoucherRedeemed] = field(default_factory=dict)
    cancelled: dict[str, RedemptionCancelled] = field(default_factory=dict)
    statements: dict[str, SettlementStatementIssued] = field(default_factory=dict)
    closings: dict[str, SettlementMonthClosed] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        if isinstance(event, VoucherRedeemed):
            self.redemptions.setdefault(event.event_id, event)
        elif isinstance(event, RedemptionCancelled):
            self.cancelled.setdefault(event.redemption_event_id, event)
        elif isinstance(event, SettlementStatementIssued):
            self.statements.setdefault(event.event_id, event)
        elif isinstance(event, SettlementMonthClosed):
            self.closings.setdefault(event.event_id, event)

    def apply_all(self, events: Iterable[Event]) -> "SettlementReplay":
        for event in events:
            self.apply(event)
        return self

    def settled_month_of(self) -> dict[str, str]:
        """Redemption event id -> month of the statement that paid it (first one seen)."""
        paid: dict[str, str] = {}
        for statement in sorted(self.statements.values(), key=lambda s: (s.month, s.event_id)):
            for redemption_id in statement.redemption_event_ids:
                paid.setdefault(redemption_id, statement.month)
        return paid

    def unsettled(self) -> list[VoucherRedeemed]:
        paid = self.settled_month_of()
        return [r for event_id, r in self.redemptions.items()
                if event_id not in paid and event_id not in self.cancelled]

    def findings(self) -> list[SettlementFinding]:
        findings: list[SettlementFinding] = []
        for statement in self.statements.values():
            findings.extend(self._statement_findings(statement))
        findings.extend(self._paid_twice())
        findings.extend(self._closing_findings())
        return findings

    def _statement_findings(self, statement: SettlementStatementIssued
                            ) -> list[SettlementFinding]:
        findings = []
        listed = [self.redemptions.get(event_id) for event_id in statement.redemption_event_ids]
        known = [redemption for redemption in listed if redemption is not None]
        if len(known) != len(listed):
            findings.append(SettlementFinding("statement_lists_unknown_redemption",
                                              statement.month, (statement.event_id,)))
        if len(listed) != statement.voucher_count or (
                sum(r.face_value_cents for r in known) != statement.face_value_cents):
            findings.append(SettlementFinding("statement_totals_wrong", statement.month,
                                              (statement.event_id,)))
        end = month_end(statement.month)
        for redemption in known:
            if redemption.siret != statement.siret:
                findings.append(SettlementFinding("statement_pays_another_venue",
                                                  redemption.voucher_id, (statement.event_id,)))
            if redemption.occurred_at >= end:
                findings.append(SettlementFinding("statement_pays_a_later_redemption",
                                                  redemption.voucher_id, (statement.event_id,)))
            if redemption.event_id in self.cancelled:
                findings.append(SettlementFinding("settled_redemption_cancelled",
                                                  redemption.voucher_id, (statement.event_id,)))
        return findings

    def _paid_twice(self) -> list[SettlementFinding]:
        payers: dict[str, list[str]] = defaultdict(list)
        for statement in self.statements.values():
            for redemption_id in statement.redemption_event_ids:
                payers[redemption_id].append(statement.event_id)
        return [SettlementFinding("redemption_paid_twice", redemption_id, tuple(statements))
                for redemption_id, statements in payers.items() if len(statements) > 1]

    def _closing_findings(self) -> list[SettlementFinding]:
        findings = []
        by_month: dict[str, list[SettlementMonthClosed]] = defaultdict(list)
        for closing in self.closings.values():
            by_month[closing.month].append(closing)
        for month, closings in by_month.items():
            if len(closings) > 1:
                findings.append(SettlementFinding("month_closed_twice", month,
                                                  tuple(c.event_id for c in closings)))
            statements = [s for s in self.statements.values() if s.month == month]
            closing = closings[0]
            if (closing.statement_count, closing.voucher_count, closing.face_value_cents) != (
                    len(statements), sum(s.voucher_count for s in statements),
                    sum(s.face_value_cents for s in statements)):
                findings.append(SettlementFinding("closing_totals_wrong", month,
                                                  (closing.event_id,)))
        orphan_months = {s.month for s in self.statements.values()} - set(by_month)
        findings.extend(SettlementFinding("statement_without_closing", month)
                        for month in sorted(orphan_months))
        return findings
