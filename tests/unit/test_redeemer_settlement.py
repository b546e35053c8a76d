"""Given closed months and unpaid redemptions, when CloseSettlementMonth, then statements:
the settlement decider, and the replay that rebuilds and checks it from the log."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from passnum.ledger.identity import event_id_for
from passnum.ledger import settlement_month as settlement
from passnum.ledger.settlement_month import (
    FRANCE,
    STATEMENT_MAX_REDEMPTIONS,
    SettlementBook,
    SettlementReplay,
    UnsettledRedemption,
    decide_close_month,
)
from schemas.messages import (
    CloseSettlementMonth,
    RedeemerCommandRejected,
    RedemptionCancelled,
    SettlementMonthClosed,
    SettlementStatementIssued,
    VoucherRedeemed,
)

from . import OTHER_SIRET, SIREN, SIRET, THIRD_SIRET

APRIL_FIRST = datetime(2026, 4, 1, 9, 0, tzinfo=FRANCE)
_numbers = itertools.count(1)


def unpaid(siret: str = SIRET, at: datetime = datetime(2026, 3, 10, 10, 0, tzinfo=timezone.utc),
           face_value_cents: int = 1000) -> UnsettledRedemption:
    number = next(_numbers)
    return UnsettledRedemption(f"redemption-{number:05d}", siret,
                               f"{SIREN}-{number:07d}-01", face_value_cents, at)


def close(month: str = "2026-03", at: datetime = APRIL_FIRST) -> CloseSettlementMonth:
    return CloseSettlementMonth(request_id=f"close-{next(_numbers)}", occurred_at=at,
                                month=month)


def statements(events: list) -> list[SettlementStatementIssued]:
    return [event for event in events if isinstance(event, SettlementStatementIssued)]


def refusal(events: list) -> str:
    assert len(events) == 1 and isinstance(events[0], RedeemerCommandRejected), events
    assert events[0].command_type == "close_settlement_month"
    return events[0].reason


# ------------------------------------------------------------------------------ decide


def test_one_statement_per_venue_then_the_closing_fact() -> None:
    first, second, third = unpaid(SIRET), unpaid(OTHER_SIRET), unpaid(SIRET)
    command = close()

    events = decide_close_month(SettlementBook(), command, [first, second, third])

    assert [type(event) for event in events] == [
        SettlementStatementIssued, SettlementStatementIssued, SettlementMonthClosed]
    by_venue = {statement.siret: statement for statement in statements(events)}
    assert by_venue[SIRET].redemption_event_ids == (first.event_id, third.event_id)
    assert (by_venue[SIRET].voucher_count, by_venue[SIRET].face_value_cents) == (2, 2000)
    assert by_venue[OTHER_SIRET].redemption_event_ids == (second.event_id,)
    assert events[-1] == SettlementMonthClosed(
        event_id=event_id_for("redeemer", command.request_id, 2), request_id=command.request_id,
        occurred_at=command.occurred_at, month="2026-03", statement_count=2, voucher_count=3,
        face_value_cents=3000)
    assert [e.event_id for e in events] == [
        event_id_for("redeemer", command.request_id, index) for index in range(3)]


def test_the_same_inputs_give_the_same_statements_in_any_load_order() -> None:
    redemptions = [unpaid(siret) for siret in (THIRD_SIRET, SIRET, OTHER_SIRET, SIRET)]
    command = close()
    assert decide_close_month(SettlementBook(), command, redemptions) == decide_close_month(
        SettlementBook(), command, list(reversed(redemptions)))


def test_a_month_with_no_redemption_is_closed_with_no_statement() -> None:
    events = decide_close_month(SettlementBook(), close(), [])
    assert len(events) == 1 and isinstance(events[0], SettlementMonthClosed)
    assert (events[0].statement_count, events[0].voucher_count) == (0, 0)


def test_redemptions_after_the_end_of_the_month_in_france_wait_for_their_month() -> None:
    # 31 March 2026, 23:30 in Paris is 21:30 UTC: March. 22:30 UTC is 1 April in Paris.
    last_minute = unpaid(at=datetime(2026, 3, 31, 21, 30, tzinfo=timezone.utc))
    april = unpaid(at=datetime(2026, 3, 31, 22, 30, tzinfo=timezone.utc))

    events = decide_close_month(SettlementBook(), close(), [last_minute, april])

    assert statements(events)[0].redemption_event_ids == (last_minute.event_id,)


def test_a_late_redemption_of_a_closed_month_is_paid_on_the_next_statement() -> None:
    """Dated in March, recorded after March was closed: April's statement pays it."""
    late_march = unpaid(at=datetime(2026, 3, 30, 10, 0, tzinfo=timezone.utc))
    april = unpaid(at=datetime(2026, 4, 2, 10, 0, tzinfo=timezone.utc))
    book = SettlementBook(frozenset({"2026-03"}))

    events = decide_close_month(book, close("2026-04", at=datetime(2026, 5, 1, 9, 0,
                                                                    tzinfo=timezone.utc)),
                                [late_march, april])

    assert statements(events)[0].redemption_event_ids == (late_march.event_id, april.event_id)


def test_a_very_busy_venue_gets_statements_in_bounded_parts() -> None:
    many = [unpaid(at=datetime(2026, 3, 1, tzinfo=timezone.utc) + timedelta(seconds=index))
            for index in range(STATEMENT_MAX_REDEMPTIONS + 3)]

    parts = statements(decide_close_month(SettlementBook(), close(), many))

    assert [part.voucher_count for part in parts] == [STATEMENT_MAX_REDEMPTIONS, 3]
    assert [i for part in parts for i in part.redemption_event_ids] == [r.event_id for r in many]


@pytest.mark.parametrize("book, month, at, reason", [
    (SettlementBook(frozenset({"2026-03"})), "2026-03", APRIL_FIRST, "month_already_closed"),
    (SettlementBook(frozenset({"2026-04"})), "2026-03", APRIL_FIRST + timedelta(days=40),
     "later_month_closed"),
    (SettlementBook(), "2026-03", datetime(2026, 3, 31, 21, 59, tzinfo=timezone.utc),
     "month_not_ended"),
    # Precedence: already closed before not ended, even for a close sent too early.
    (SettlementBook(frozenset({"2026-03"})), "2026-03", datetime(2026, 3, 5, tzinfo=timezone.utc),
     "month_already_closed"),
    (SettlementBook(frozenset({"2026-05"})), "2026-03", datetime(2026, 3, 5, tzinfo=timezone.utc),
     "later_month_closed"),
])
def test_close_refusals_in_precedence(book: SettlementBook, month: str, at: datetime,
                                      reason: str) -> None:
    assert refusal(decide_close_month(book, close(month, at), [unpaid()])) == reason


def test_the_close_is_accepted_at_the_first_instant_after_the_month() -> None:
    at = datetime(2026, 3, 31, 22, 0, tzinfo=timezone.utc)  # midnight in Paris (CEST)
    assert isinstance(decide_close_month(SettlementBook(), close(at=at), [])[0],
                      SettlementMonthClosed)


def test_closing_a_month_enters_the_book() -> None:
    closed = decide_close_month(SettlementBook(), close(), [])[-1]
    book = settlement.evolve_book(SettlementBook(), closed)
    assert book.closed_months == {"2026-03"}
    assert refusal(decide_close_month(book, close(), [])) == "month_already_closed"


def test_calendar_in_france() -> None:
    assert settlement.month_end("2026-12") == datetime(2027, 1, 1, tzinfo=FRANCE)
    assert settlement.month_start("2026-03").utcoffset() == timedelta(hours=1)
    assert settlement.month_end("2026-03").utcoffset() == timedelta(hours=2)
    assert settlement.month_of(datetime(2026, 3, 31, 22, 30, tzinfo=timezone.utc)) == "2026-04"


# ------------------------------------------------------------------------------ replay


def redeemed_event(redemption: UnsettledRedemption) -> VoucherRedeemed:
    return VoucherRedeemed(event_id=redemption.event_id, request_id=f"r-{redemption.event_id}",
                           occurred_at=redemption.redeemed_at, siret=redemption.siret,
                           siren=SIREN, booklet_id=redemption.voucher_id[:17],
                           voucher_id=redemption.voucher_id,
                           face_value_cents=redemption.face_value_cents)


def test_the_replay_of_an_honest_log_finds_nothing_and_knows_who_was_paid() -> None:
    paid, late = unpaid(), unpaid(at=datetime(2026, 4, 3, tzinfo=timezone.utc))
    closing = decide_close_month(SettlementBook(), close(), [paid, late])
    log = [redeemed_event(paid), redeemed_event(late), *closing, *closing]  # a re-delivery

    replay = SettlementReplay().apply_all(reversed(log))  # order does not matter

    assert replay.findings() == []
    assert replay.settled_month_of() == {paid.event_id: "2026-03"}
    assert [r.event_id for r in replay.unsettled()] == [late.event_id]


def _tampered(statement: SettlementStatementIssued, **changes: object
              ) -> SettlementStatementIssued:
    return statement.model_copy(update=changes)


def test_the_replay_finds_a_redemption_paid_twice_and_wrong_totals() -> None:
    paid = unpaid()
    closing = decide_close_month(SettlementBook(), close(), [paid])
    april = decide_close_month(SettlementBook(frozenset({"2026-03"})), close("2026-04", at=(
        datetime(2026, 5, 2, tzinfo=timezone.utc))), [paid])  # a decider that forgot
    log = [redeemed_event(paid), *closing, *april]

    codes = {finding.code for finding in SettlementReplay().apply_all(log).findings()}

    assert codes == {"redemption_paid_twice"}
    forged = _tampered(statements(closing)[0], face_value_cents=99_999)
    codes = {f.code for f in SettlementReplay().apply_all(
        [redeemed_event(paid), forged, closing[-1]]).findings()}
    assert codes == {"statement_totals_wrong", "closing_totals_wrong"}


def test_the_replay_finds_a_settled_redemption_cancelled_and_foreign_or_unknown_ones() -> None:
    paid = unpaid()
    closing = decide_close_month(SettlementBook(), close(), [paid])
    redemption = redeemed_event(paid)
    cancelled = RedemptionCancelled(
        event_id="cancel-1", request_id="cancel-1", occurred_at=paid.redeemed_at,
        siret=paid.siret, siren=SIREN, booklet_id=redemption.booklet_id,
        voucher_id=paid.voucher_id, face_value_cents=1000, redemption_event_id=paid.event_id)
    codes = {f.code for f in SettlementReplay().apply_all(
        [redemption, cancelled, *closing]).findings()}
    assert codes == {"settled_redemption_cancelled"}

    foreign = _tampered(statements(closing)[0], siret=OTHER_SIRET)
    unknown = _tampered(statements(closing)[0], event_id="other",
                        redemption_event_ids=("nobody",))
    codes = {f.code for f in SettlementReplay().apply_all(
        [redemption, foreign, unknown]).findings()}
    assert {"statement_pays_another_venue", "statement_lists_unknown_redemption",
            "statement_totals_wrong", "statement_without_closing"} <= codes
