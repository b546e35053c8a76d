"""Given events, when a command, then events: the redeemer's pure core.

`given(events)` folds issuer facts (issued, activated, blocked) and redeemer facts
(accreditations, status changes, redemptions) into a view with the redeemer's own `evolve`.
Codes are made with `passnum.ledger.voucher_codes.make_code` and a test key, as the printer would.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import Iterable

import pytest

from passnum.ledger.identity import event_id_for
from passnum.ledger.voucher import REDEMPTION_PRECEDENCE, RedeemerView
from passnum.ledger.voucher_codes import VoucherNumber, make_code
from schemas.base import Command, Event
from schemas.messages import (
    AccreditProvider,
    BookletActivated,
    BookletBlocked,
    BookletIssued,
    CancelRedemption,
    ChangeProviderStatus,
    CheckVoucher,
    CloseSettlementMonth,
    ProviderAccredited,
    RedeemerCommandRejected,
    RedeemVoucher,
    RedemptionCancelled,
    RedemptionRejected,
    VoucherChecked,
    VoucherRedeemed,
)
from passnum.ledger import booklet as booklet_rules
from passnum.ledger import voucher as voucher_rules
from services.redeemer import domain

from . import (
    IBAN,
    INVALID_IBAN,
    INVALID_SIRET,
    MORNING,
    OTHER_SIREN,
    OTHER_SIRET,
    SIREN,
    SIRET,
    THIRD_SIRET,
)

KEY = b"unit-test-voucher-code-key-0001"
OTHER_KEY = b"unit-test-voucher-code-key-0002"
PARIS = "75056"
_request_numbers = itertools.count(1)


# ------------------------------------------------------------------------------ helpers


def given(events: Iterable[Event]) -> RedeemerView:
    view = domain.empty_view()
    for event in events:
        voucher_rules.evolve(view, event)
    return view


# The handler's clock when it decides (scans are dated at MORNING unless a test says else).
DECIDED_AT = MORNING + timedelta(hours=6)
TOLERANCE = timedelta(minutes=5)


def when(view: RedeemerView, command: Command, decided_at: datetime | None = None
         ) -> list[Event]:
    """Decided as it happens (the handler's clock at the command's instant), unless told."""
    return domain.decide(view, command, KEY, decided_at or command.occurred_at, TOLERANCE)


def request_id() -> str:
    return f"redeemer-test-{next(_request_numbers)}"


def booklet_id(sequence: int = 1, siren: str = SIREN) -> str:
    return f"{siren}-{sequence:07d}"


def code(sequence: int = 1, position: int = 1, siren: str = SIREN, key: bytes = KEY) -> str:
    return make_code(key, VoucherNumber(siren, sequence, position))


def voucher_id(sequence: int = 1, position: int = 1, siren: str = SIREN) -> str:
    return f"{booklet_id(sequence, siren)}-{position:02d}"


def _fact(event_class: type[Event], **fields: object) -> Event:
    return event_class(event_id=f"fact-{next(_request_numbers)}", request_id="issuer-request",
                       occurred_at=MORNING, **fields)


def issued(sequence: int = 1, siren: str = SIREN, voucher_count: int = 10,
           perimeter: tuple[str, ...] = (), valid_from: date = date(2024, 1, 1),
           valid_until: date = date(2024, 12, 31),
           grace_until: date = date(2025, 1, 31)) -> Event:
    return _fact(BookletIssued, siren=siren, order_id=f"{siren}-order-00001",
                 booklet_id=booklet_id(sequence, siren), voucher_count=voucher_count,
                 face_value_cents=1000, target_group="general", perimeter=perimeter,
                 valid_from=valid_from, valid_until=valid_until, grace_until=grace_until)


def activated(sequence: int = 1, siren: str = SIREN) -> Event:
    return _fact(BookletActivated, siren=siren, booklet_id=booklet_id(sequence, siren),
                 activated_cents=10_000)


def blocked(sequence: int = 1, siren: str = SIREN) -> Event:
    return _fact(BookletBlocked, siren=siren, booklet_id=booklet_id(sequence, siren),
                 reason="stolen")


def accredit(siret: str = SIRET, iban: str = IBAN, address_code: str = PARIS,
             at: datetime = MORNING) -> AccreditProvider:
    return AccreditProvider(request_id=request_id(), occurred_at=at, siret=siret,
                            name=f"Venue {siret}", iban=iban, address_code=address_code)


def accredited(siret: str = SIRET, address_code: str = PARIS) -> Event:
    events = when(domain.empty_view(), accredit(siret, address_code=address_code))
    assert isinstance(events[0], ProviderAccredited), events
    return events[0]


def set_status(status: str, siret: str = SIRET) -> ChangeProviderStatus:
    return ChangeProviderStatus(request_id=request_id(), occurred_at=MORNING, siret=siret,
                                status=status, reason="test")


def redeem(voucher_code: str | None = None, siret: str = SIRET,
           at: datetime = MORNING) -> RedeemVoucher:
    return RedeemVoucher(request_id=request_id(), occurred_at=at,
                         code=voucher_code or code(), siret=siret)


def check(voucher_code: str | None = None, siret: str = SIRET,
          at: datetime = MORNING) -> CheckVoucher:
    return CheckVoucher(request_id=request_id(), occurred_at=at, code=voucher_code or code(),
                        siret=siret)


def cancel(voucher: str | None = None, siret: str = SIRET,
           at: datetime = MORNING) -> CancelRedemption:
    return CancelRedemption(request_id=request_id(), occurred_at=at,
                            voucher_id=voucher or voucher_id(), siret=siret)


def open_for_business(*extra: Event) -> list[Event]:
    """One activated booklet of 10 vouchers valid in 2024, one accredited venue in Paris."""
    return [issued(), activated(), accredited(), *extra]


def redeemed(events: list[Event], command: RedeemVoucher) -> list[Event]:
    """The history plus the redemption the command produces (which must succeed)."""
    outcome = when(given(events), command)
    assert isinstance(outcome[0], VoucherRedeemed), outcome
    return events + outcome


def refusal(events: list[Event]) -> str:
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, (RedemptionRejected, RedeemerCommandRejected)), events
    return event.reason


def snapshot(view: RedeemerView) -> RedeemerView:
    return copy.deepcopy(view)


# ------------------------------------------------------------------------------ redeem


def test_a_valid_voucher_is_redeemed_once_at_face_value() -> None:
    command = redeem()

    events = when(given(open_for_business()), command)

    assert events == [VoucherRedeemed(
        event_id=event_id_for("redeemer", command.request_id, 0), request_id=command.request_id,
        occurred_at=MORNING, siret=SIRET, siren=SIREN, booklet_id=booklet_id(),
        voucher_id=voucher_id(), face_value_cents=1000)]
    redemption = given(open_for_business() + events).redemptions[voucher_id()]
    assert (redemption.siret, redemption.event_id) == (SIRET, events[0].event_id)
    assert redemption.redeemed_at == MORNING.isoformat()


def test_the_other_vouchers_of_the_booklet_stay_redeemable() -> None:
    history = redeemed(open_for_business(), redeem(code(position=1)))
    assert isinstance(when(given(history), redeem(code(position=2)))[0], VoucherRedeemed)
    assert isinstance(when(given(history), redeem(code(position=10)))[0], VoucherRedeemed)


def test_already_redeemed_says_when_but_not_where() -> None:
    history = open_for_business(accredited(OTHER_SIRET))
    first_at = MORNING + timedelta(minutes=5)
    history = redeemed(history, redeem(siret=SIRET, at=first_at))
    second = redeem(siret=OTHER_SIRET, at=MORNING + timedelta(hours=2))

    events = when(given(history), second)

    assert events == [RedemptionRejected(
        event_id=event_id_for("redeemer", second.request_id, 0), request_id=second.request_id,
        occurred_at=second.occurred_at, siret=OTHER_SIRET, voucher_id=voucher_id(),
        reason="already_redeemed", redeemed_at=first_at.isoformat())]
    # The first venue's identity appears nowhere in what the second venue is told.
    assert SIRET not in events[0].model_dump_json()


def test_a_second_scan_at_the_same_venue_is_also_already_redeemed() -> None:
    history = redeemed(open_for_business(), redeem())
    assert refusal(when(given(history), redeem())) == "already_redeemed"


@pytest.mark.parametrize("garbage", ["x", "not a voucher code", code()[:-3], code() + "0"])
def test_codes_that_are_not_codes_are_malformed(garbage: str) -> None:
    events = when(given(open_for_business()), redeem(garbage))
    assert refusal(events) == "malformed_code"
    assert events[0].voucher_id is None  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ precedence


def _mistyped() -> str:
    good = code()
    return good[:-1] + ("0" if good[-1] != "0" else "1")


def _reason_cases() -> list[tuple[str, list[Event], str, str]]:
    """(reason, history, code, siret): one way to reach each reason, in precedence order."""
    later = dict(valid_from=date(2024, 6, 1))
    accredited_late = when(domain.empty_view(), accredit(at=MORNING + timedelta(hours=1)))
    return [
        ("malformed_code", open_for_business(), "ABC", SIRET),
        ("mistyped_code", open_for_business(), _mistyped(), SIRET),
        ("forged_code", open_for_business(), code(key=OTHER_KEY), SIRET),
        ("unknown_voucher", open_for_business(), code(sequence=2), SIRET),
        ("scan_in_the_future", open_for_business(), code(), SIRET),
        ("booklet_not_activated", [issued(), accredited()], code(), SIRET),
        ("booklet_not_activated_at_scan_time", open_for_business(), code(), SIRET),
        ("booklet_blocked", open_for_business(blocked()), code(), SIRET),
        ("outside_validity", [issued(**later), activated(), accredited()], code(), SIRET),
        ("outside_perimeter", [issued(perimeter=("13",)), activated(), accredited()], code(),
         SIRET),
        ("provider_not_accredited", [issued(), activated()], code(), SIRET),
        ("venue_not_accredited_at_scan_time", [issued(), activated(), *accredited_late],
         code(), SIRET),
        ("already_redeemed", redeemed(open_for_business(), redeem()), code(), SIRET),
    ]


# When the scan of each reason case is dated: MORNING, but for the reasons about its date.
SCANNED_AT = {
    "scan_in_the_future": DECIDED_AT + TOLERANCE + timedelta(seconds=1),
    "booklet_not_activated_at_scan_time": MORNING - timedelta(seconds=1),
    "venue_not_accredited_at_scan_time": MORNING + timedelta(minutes=30),
}


@pytest.mark.parametrize("reason, history, voucher_code, siret", _reason_cases(),
                         ids=[case[0] for case in _reason_cases()])
def test_every_redemption_reason_is_reachable(reason: str, history: list[Event],
                                              voucher_code: str, siret: str) -> None:
    at = SCANNED_AT.get(reason, MORNING)
    assert refusal(when(given(history), redeem(voucher_code, siret, at), DECIDED_AT)) == reason
    checked = when(given(history), check(voucher_code, siret, at), DECIDED_AT)
    assert isinstance(checked[0], VoucherChecked)
    assert (checked[0].valid, checked[0].reason) == (False, reason)


def test_the_reason_table_covers_the_whole_precedence() -> None:
    assert [case[0] for case in _reason_cases()] == list(REDEMPTION_PRECEDENCE)


def _precedence_pairs() -> list[tuple[str, str, list[Event], str, str]]:
    """(winner, loser, history, code, siret) where both reasons apply."""
    expired = dict(valid_until=date(2024, 2, 1), grace_until=date(2024, 2, 29))
    suspended = [accredited(), *_status_changed("suspended")]
    return [
        ("malformed_code", "unknown_voucher", [], "ABC", SIRET),
        ("mistyped_code", "forged_code", open_for_business(), _mistyped_forgery(), SIRET),
        ("forged_code", "unknown_voucher", [], code(sequence=9, key=OTHER_KEY), SIRET),
        ("unknown_voucher", "booklet_not_activated", [issued(voucher_count=5)],
         code(position=6), SIRET),
        ("booklet_not_activated", "booklet_blocked", [issued(), blocked(), accredited()],
         code(), SIRET),
        ("booklet_blocked", "outside_validity",
         [issued(**expired), activated(), blocked(), accredited()], code(), SIRET),
        ("outside_validity", "outside_perimeter",
         [issued(perimeter=("13",), **expired), activated(), accredited()], code(), SIRET),
        ("outside_perimeter", "provider_not_accredited",
         [issued(perimeter=("13",)), activated(), *suspended], code(), SIRET),
        ("provider_not_accredited", "already_redeemed",
         redeemed(open_for_business(), redeem()) + _status_changed("suspended"), code(), SIRET),
        ("booklet_blocked", "already_redeemed",
         redeemed(open_for_business(), redeem()) + [blocked()], code(), SIRET),
    ]


def _status_changed(status: str, siret: str = SIRET) -> list[Event]:
    view = given([accredited(siret)])
    return when(view, set_status(status, siret))


def _mistyped_forgery() -> str:
    forged = code(key=OTHER_KEY)
    return forged[:-1] + ("0" if forged[-1] != "0" else "1")


@pytest.mark.parametrize("winner, loser, history, voucher_code, siret", _precedence_pairs(),
                         ids=[f"{case[0]}-over-{case[1]}" for case in _precedence_pairs()])
def test_the_first_failing_reason_in_precedence_wins(winner: str, loser: str,
                                                     history: list[Event], voucher_code: str,
                                                     siret: str) -> None:
    assert REDEMPTION_PRECEDENCE.index(winner) < REDEMPTION_PRECEDENCE.index(loser)
    assert refusal(when(given(history), redeem(voucher_code, siret))) == winner


def test_a_blocked_and_expired_voucher_says_booklet_blocked() -> None:
    history = [issued(valid_until=date(2024, 2, 1), grace_until=date(2024, 2, 29)),
               activated(), blocked(), accredited()]
    after_grace = datetime(2024, 3, 1, 10, tzinfo=timezone.utc)
    assert refusal(when(given(history), redeem(at=after_grace))) == "booklet_blocked"


# ------------------------------------------------------------------------------ validity


@pytest.mark.parametrize("day, expected", [
    (date(2024, 5, 31), "outside_validity"),
    (date(2024, 6, 1), None),  # valid_from, inclusive
    (date(2024, 12, 31), None),  # valid_until
    (date(2025, 1, 31), None),  # last day of the January grace
    (date(2025, 2, 1), "outside_validity"),
])
def test_validity_runs_from_valid_from_through_the_grace(day: date, expected: str | None) -> None:
    history = [issued(valid_from=date(2024, 6, 1)), activated(), accredited()]
    at = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc)
    events = when(given(history), redeem(at=at))
    if expected is None:
        assert isinstance(events[0], VoucherRedeemed)
    else:
        assert refusal(events) == expected


def test_a_position_beyond_the_booklet_size_is_unknown() -> None:
    history = [issued(voucher_count=5), activated(), accredited()]
    assert isinstance(when(given(history), redeem(code(position=5)))[0], VoucherRedeemed)
    assert refusal(when(given(history), redeem(code(position=6)))) == "unknown_voucher"


# ------------------------------------------------------------------------------ perimeter


@pytest.mark.parametrize("perimeter, address_code, inside", [
    ((), "13055", True),  # no perimeter: everywhere
    (("75",), "75056", True),  # by department
    (("75056",), "75056", True),  # by commune
    (("75056",), "75101", False),  # another commune of no listed department
    (("13", "75"), "75056", True),
    (("92",), "75056", False),
    (("2A",), "2A004", True),  # Corsica
    (("2B",), "2A004", False),
    (("974",), "97411", True),  # La Réunion: overseas departments have 3 characters
    (("971",), "97411", False),
    (("97",), "97411", False),  # "97" is not a department
    (("97411",), "97411", True),
    (("976",), "97611", True),  # Mayotte
    (("974",), "74010", False),
    (("974",), "974", True),  # a venue registered by its department only
])
def test_perimeter_by_department_and_commune(perimeter: tuple[str, ...], address_code: str,
                                             inside: bool) -> None:
    assert booklet_rules.in_perimeter(perimeter, address_code) is inside
    history = [issued(perimeter=perimeter), activated(), accredited(address_code=address_code)]
    events = when(given(history), redeem())
    if inside:
        assert isinstance(events[0], VoucherRedeemed)
    else:
        assert refusal(events) == "outside_perimeter"


# ------------------------------------------------------------------------------ check


def test_check_says_valid_and_changes_nothing() -> None:
    view = given(open_for_business())
    before = snapshot(view)
    command = check()

    events = when(view, command)

    assert events == [VoucherChecked(
        event_id=event_id_for("redeemer", command.request_id, 0), request_id=command.request_id,
        occurred_at=MORNING, siret=SIRET, voucher_id=voucher_id(), valid=True, reason=None)]
    voucher_rules.evolve(view, events[0])
    assert view == before
    assert isinstance(when(view, redeem())[0], VoucherRedeemed), "a check consumes nothing"


def test_check_of_a_redeemed_voucher_says_already_redeemed_without_when_or_where() -> None:
    history = redeemed(open_for_business(accredited(OTHER_SIRET)), redeem())
    events = when(given(history), check(siret=OTHER_SIRET))
    assert isinstance(events[0], VoucherChecked)
    assert (events[0].valid, events[0].reason) == (False, "already_redeemed")
    assert SIRET not in events[0].model_dump_json()


def test_checking_many_times_never_changes_the_outcome_of_a_redemption() -> None:
    view = given(open_for_business())
    for _ in range(3):
        for event in when(view, check()):
            voucher_rules.evolve(view, event)
    assert view.redemptions == {}
    assert isinstance(when(view, redeem())[0], VoucherRedeemed)


# ------------------------------------------------------------------------------ cancel


def test_the_same_venue_may_cancel_its_redemption_the_same_day() -> None:
    original = redeem(at=MORNING)
    history = redeemed(open_for_business(), original)
    redemption_event = history[-1]
    command = cancel(at=MORNING + timedelta(hours=8))

    events = when(given(history), command)

    assert events == [RedemptionCancelled(
        event_id=event_id_for("redeemer", command.request_id, 0), request_id=command.request_id,
        occurred_at=command.occurred_at, siret=SIRET, siren=SIREN, booklet_id=booklet_id(),
        voucher_id=voucher_id(), face_value_cents=1000,
        redemption_event_id=redemption_event.event_id)]
    after = given(history + events)
    assert voucher_id() not in after.redemptions
    assert isinstance(when(after, redeem())[0], VoucherRedeemed), "redeemable again"


def test_another_venue_cannot_cancel() -> None:
    history = redeemed(open_for_business(accredited(OTHER_SIRET)), redeem())
    events = when(given(history), cancel(siret=OTHER_SIRET))
    assert refusal(events) == "not_redeemed_here"
    assert events[0].command_type == "cancel_redemption"  # type: ignore[attr-defined]


def test_a_voucher_that_was_never_redeemed_cannot_be_cancelled() -> None:
    assert refusal(when(given(open_for_business()), cancel())) == "not_redeemed_here"


def test_cancelling_the_next_day_in_france_is_too_late() -> None:
    # 23:59 and 00:01 in Paris (UTC+1 in March): one UTC date, two days at the venue.
    redeemed_at = datetime(2024, 3, 1, 22, 59, tzinfo=timezone.utc)
    cancelled_at = datetime(2024, 3, 1, 23, 1, tzinfo=timezone.utc)
    history = redeemed(open_for_business(), redeem(at=redeemed_at))
    assert refusal(when(given(history), cancel(at=cancelled_at))) == "cancellation_too_late"


def test_the_day_in_france_follows_summer_time() -> None:
    # 1 July: Paris is UTC+2, so 21:30 UTC is already 23:30 and 22:30 UTC the next day.
    history = redeemed([issued(), activated(), accredited()],
                       redeem(at=datetime(2024, 7, 1, 21, 30, tzinfo=timezone.utc)))
    same_evening = datetime(2024, 7, 1, 21, 55, tzinfo=timezone.utc)
    after_midnight = datetime(2024, 7, 1, 22, 5, tzinfo=timezone.utc)
    assert isinstance(when(given(history), cancel(at=same_evening))[0], RedemptionCancelled)
    assert refusal(when(given(history), cancel(at=after_midnight))) == "cancellation_too_late"


def test_not_redeemed_here_is_reported_before_too_late() -> None:
    history = redeemed(open_for_business(accredited(OTHER_SIRET)), redeem())
    next_week = MORNING + timedelta(days=7)
    assert refusal(when(given(history), cancel(siret=OTHER_SIRET, at=next_week))) == (
        "not_redeemed_here")


def test_same_day_is_judged_on_the_instant_not_on_the_written_offset() -> None:
    # 23:30 UTC on 10 March is 00:30 in Paris on 11 March; the cancel is 15 minutes later.
    redeemed_at = datetime(2024, 3, 10, 23, 30, tzinfo=timezone.utc)
    cancelled_at = datetime(2024, 3, 11, 0, 45, tzinfo=timezone(timedelta(hours=1)))
    assert cancelled_at - redeemed_at == timedelta(minutes=15)
    assert cancelled_at.astimezone(timezone.utc).date() == redeemed_at.date()
    history = redeemed([issued(), activated(), accredited()], redeem(at=redeemed_at))
    assert isinstance(when(given(history), cancel(at=cancelled_at))[0], RedemptionCancelled)


def _settled(history: list[Event], month: str = "2024-03") -> RedeemerView:
    """The view as the store loads it once a statement paid the redemption: the settlement
    month comes from the database (the settlement aggregate), not from `evolve`."""
    view = given(history)
    for voucher, redemption in view.redemptions.items():
        view.redemptions[voucher] = replace(redemption, settlement_month=month)
    return view


def test_a_redemption_on_a_statement_cannot_be_cancelled() -> None:
    history = redeemed(open_for_business(), redeem())
    events = when(_settled(history), cancel(at=MORNING + timedelta(hours=1)))
    assert refusal(events) == "already_settled"


def test_cancel_precedence_here_then_settled_then_too_late() -> None:
    history = redeemed(open_for_business(accredited(OTHER_SIRET)), redeem())
    next_week = MORNING + timedelta(days=7)
    assert refusal(when(_settled(history), cancel(siret=OTHER_SIRET, at=next_week))) == (
        "not_redeemed_here")
    assert refusal(when(_settled(history), cancel(at=next_week))) == "already_settled"


# ------------------------------------------------------------------------------ providers


def test_accredit_a_provider_with_a_valid_siret_and_iban() -> None:
    command = accredit(address_code="97411")

    events = when(domain.empty_view(), command)

    assert events == [ProviderAccredited(
        event_id=event_id_for("redeemer", command.request_id, 0), request_id=command.request_id,
        occurred_at=MORNING, siret=SIRET, name=command.name, iban=IBAN, address_code="97411",
        services=())]
    provider = given(events).providers[SIRET]
    assert (provider.status, provider.address_code) == ("accredited", "97411")


@pytest.mark.parametrize("siret, iban, history, reason", [
    (INVALID_SIRET, IBAN, [], "invalid_siret"),
    (SIRET, INVALID_IBAN, [], "invalid_iban"),
    (SIRET, "FR76300060000112345678901", [], "invalid_iban"),  # too short for France
    (SIRET, IBAN, "accredited", "already_accredited"),
    (INVALID_SIRET, INVALID_IBAN, [], "invalid_siret"),  # precedence
    (SIRET, INVALID_IBAN, "accredited", "invalid_iban"),  # precedence
])
def test_accreditation_refusals(siret: str, iban: str, history: object, reason: str) -> None:
    events = [accredited()] if history == "accredited" else []
    outcome = when(given(events), accredit(siret, iban))
    assert refusal(outcome) == reason
    assert outcome[0].command_type == "accredit_provider"  # type: ignore[attr-defined]


def test_a_revoked_provider_cannot_be_accredited_again() -> None:
    history = [accredited(), *_status_changed("revoked")]
    assert refusal(when(given(history), accredit())) == "already_accredited"


@pytest.mark.parametrize("status", ["suspended", "revoked"])
def test_a_suspended_or_revoked_venue_cannot_redeem(status: str) -> None:
    history = open_for_business(*_status_changed(status))
    assert given(history).providers[SIRET].status == status
    assert refusal(when(given(history), redeem())) == "provider_not_accredited"


def test_a_reinstated_venue_can_redeem_again() -> None:
    suspended = open_for_business(*_status_changed("suspended"))
    events = when(given(suspended), set_status("accredited"))
    assert events[0].type == "provider_status_changed"
    assert isinstance(when(given(suspended + events), redeem())[0], VoucherRedeemed)


def test_revocation_is_final() -> None:
    revoked = open_for_business(*_status_changed("revoked"))
    assert refusal(when(given(revoked), set_status("accredited"))) == "provider_revoked"
    # Even a status change that reached the log some other way does not undo it.
    late = _status_changed("accredited")
    assert given(revoked + late).providers[SIRET].status == "revoked"


def test_status_change_of_an_unknown_provider_is_refused() -> None:
    assert refusal(when(domain.empty_view(), set_status("suspended"))) == "unknown_provider"


def test_an_unknown_venue_cannot_redeem() -> None:
    assert refusal(when(given(open_for_business()), redeem(siret=THIRD_SIRET))) == (
        "provider_not_accredited")


# ------------------------------------------------------------------------------ one event each


def _every_command() -> list[Command]:
    return [redeem(), check(), cancel(), accredit(OTHER_SIRET), set_status("suspended"),
            CloseSettlementMonth(request_id=request_id(), occurred_at=MORNING, month="2024-03")]


@pytest.mark.parametrize("command", _every_command(), ids=lambda command: command.type)
def test_every_command_yields_exactly_one_event_with_a_deterministic_id(command: Command) -> None:
    history = open_for_business()
    first = when(given(history), command)
    again = when(given(history), command)
    assert len(first) == 1 and first == again
    assert first[0].event_id == event_id_for("redeemer", command.request_id, 0)
    assert first[0].request_id == command.request_id


def test_a_command_this_decider_does_not_handle_is_not_supported() -> None:
    # Closing a month is the settlement aggregate's decision (passnum.ledger.settlement_month).
    command = CloseSettlementMonth(request_id=request_id(), occurred_at=MORNING, month="2024-03")
    events = when(domain.empty_view(), command)
    assert refusal(events) == "not_supported"
    assert events[0].command_type == "close_settlement_month"  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ evolve


def test_issuer_facts_are_monotonic_against_duplicates_and_late_copies() -> None:
    first_issue = issued(perimeter=("75",))
    view = given([first_issue, activated(), blocked(), issued(perimeter=("13",))])
    facts = view.booklets[booklet_id()]
    assert (facts.activated, facts.blocked, facts.perimeter) == (True, True, ("75",))
    assert booklet_rules.evolve_booklet_facts(None, activated()) is None


def test_a_redemption_folded_twice_keeps_the_first() -> None:
    history = redeemed(open_for_business(), redeem())
    copy_of_first = history[-1]
    other = VoucherRedeemed(**{**copy_of_first.model_dump(), "event_id": "another",
                               "siret": OTHER_SIRET})
    view = given(history + [copy_of_first, other])
    assert view.redemptions[voucher_id()].event_id == copy_of_first.event_id


def test_touched_by_names_the_booklets_and_vouchers_a_batch_touches() -> None:
    commands = [redeem(code(sequence=1)), check(code(sequence=2, siren=OTHER_SIREN)),
                cancel(voucher_id(sequence=3)), redeem("garbage"), accredit()]
    assert domain.touched_by(commands, KEY) == (
        {booklet_id(1), booklet_id(2, OTHER_SIREN), booklet_id(3)},
        {voucher_id(sequence=1), voucher_id(sequence=2, siren=OTHER_SIREN),
         voucher_id(sequence=3)})


# ------------------------------------------------------------------------------ races


def test_a_suspension_never_takes_effect_before_a_scan_the_venue_had_accepted() -> None:
    """Scans of a venue are decided on many partitions, its suspension on one: a scan
    dated after the suspension's date may have been accepted first. The suspension then
    takes effect at that scan's instant, so that the dates say what was decided."""
    scan_at = MORNING + timedelta(seconds=3)
    history = redeemed(open_for_business(), redeem(at=scan_at))
    view = domain.empty_view()
    view.latest_scans[SIRET] = None  # loaded for the venue whose status changes (none yet)
    for event in history:  # the batch's redemptions are folded into it as decided
        voucher_rules.evolve(view, event)
    assert view.latest_scans[SIRET] == scan_at
    suspension = when(view, set_status("suspended"))[0]
    assert suspension.type == "provider_status_changed"
    assert suspension.occurred_at == scan_at  # dated MORNING, moved to the scan
    # Without an accepted scan after its date, it keeps its own date.
    untouched = when(given(open_for_business()), set_status("suspended"))[0]
    assert untouched.occurred_at == MORNING


def test_a_venue_change_never_takes_effect_before_the_previous_one() -> None:
    later = MORNING + timedelta(hours=2)
    suspended = open_for_business(*when(given(open_for_business()), ChangeProviderStatus(
        request_id=request_id(), occurred_at=later, siret=SIRET, status="suspended",
        reason="test")))
    reinstated = when(given(suspended), set_status("accredited"))[0]  # dated MORNING
    assert reinstated.occurred_at == later
    assert given(suspended + [reinstated]).providers[SIRET].accredited_since == later


def test_a_reported_block_is_applied_before_the_first_redemption_after_it() -> None:
    """The block reaches the redeemer on the issuer's topic; `BookletBlockApplied`, in the
    booklet's stream, says from which scan on the redeemer knew it."""
    view = given(open_for_business(blocked()))
    command = redeem()
    (applied,) = domain.preface(view, command, KEY, DECIDED_AT)
    assert (applied.type, applied.booklet_id, applied.occurred_at) == (
        "booklet_block_applied", booklet_id(), DECIDED_AT)
    voucher_rules.evolve(view, applied)
    assert refusal(when(view, command)) == "booklet_blocked"
    assert domain.preface(view, redeem(code(position=2)), KEY, DECIDED_AT) == []  # once
    # No block reported, or a check (it changes nothing): nothing to apply.
    assert domain.preface(given(open_for_business()), redeem(), KEY, DECIDED_AT) == []
    assert domain.preface(given(open_for_business(blocked())), check(), KEY, DECIDED_AT) == []
