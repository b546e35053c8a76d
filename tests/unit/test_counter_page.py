"""The counter page's pure parts (services/redeemer/counter/): what a recorded outcome shows,
request ids, CSRF comparison, French formatting, escaping. The page itself is driven in
Chromium by tests/browser/test_counter_page.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from passnum.edge.http import Outcome
from schemas.messages import (
    RedeemerCommandRejected,
    RedemptionCancelled,
    RedemptionRejected,
    VoucherChecked,
    VoucherRedeemed,
)
from services.redeemer.counter import outcomes, pages, sessions, texts
from services.redeemer.queries import RedemptionRow, StatementRow

SIRET = "68430779610458"
VOUCHER = "992777565-0000001-01"
AT = datetime(2026, 12, 7, 9, 30, tzinfo=timezone.utc)
KEY = "0123456789abcdef0123456789abcdef"
COMMON = {"event_id": "e1", "request_id": "r1", "occurred_at": AT}


def outcome(event: object, matches: bool = True) -> Outcome:
    return Outcome([event], matches)  # type: ignore[list-item]


def test_each_recorded_event_reads_as_a_result() -> None:
    checked = VoucherChecked(**COMMON, siret=SIRET, voucher_id=VOUCHER, valid=False,
                             reason="booklet_blocked")
    assert outcomes.result_of("check", outcome(checked)) == outcomes.Result(
        "check", False, "booklet_blocked", VOUCHER)
    redeemed = VoucherRedeemed(**COMMON, siret=SIRET, siren=VOUCHER[:9],
                               booklet_id=VOUCHER[:17], voucher_id=VOUCHER,
                               face_value_cents=1000)
    assert outcomes.result_of("redeem", outcome(redeemed)) == outcomes.Result(
        "redeem", True, None, VOUCHER, 1000, AT)
    earlier = (AT - timedelta(days=1)).isoformat()
    rejected = RedemptionRejected(**COMMON, siret=SIRET, voucher_id=VOUCHER,
                                  reason="already_redeemed", redeemed_at=earlier)
    assert outcomes.result_of("redeem", outcome(rejected)).redeemed_at == AT - timedelta(days=1)
    cancelled = RedemptionCancelled(**COMMON, siret=SIRET, siren=VOUCHER[:9],
                                    booklet_id=VOUCHER[:17], voucher_id=VOUCHER,
                                    face_value_cents=1000, redemption_event_id="e0")
    assert outcomes.result_of("cancel", outcome(cancelled)).accepted
    too_late = RedeemerCommandRejected(**COMMON, command_type="cancel_redemption",
                                       reason="cancellation_too_late")
    assert outcomes.result_of("cancel", outcome(too_late)).reason == "cancellation_too_late"
    # A key recorded for another body comes first, whatever the event.
    assert outcomes.result_of("redeem", outcome(redeemed, matches=False)).reason == (
        "request_id_reused")


def test_a_form_key_makes_a_double_submit_one_request_and_a_check_always_new() -> None:
    assert outcomes.request_id("redeem", SIRET, KEY) == outcomes.request_id("redeem", SIRET, KEY)
    assert outcomes.request_id("check", SIRET, KEY) != outcomes.request_id("check", SIRET, KEY)
    cancel = outcomes.request_id("cancel", SIRET, KEY, VOUCHER)
    assert VOUCHER in cancel and cancel != outcomes.request_id("cancel", SIRET, KEY,
                                                               VOUCHER[:-1] + "2")
    assert cancel.startswith(f"counter:{SIRET}:") and len(cancel) <= 128
    with pytest.raises(AssertionError):
        outcomes.request_id("redeem", SIRET, "not a key")


def test_csrf_tokens_are_compared_whole() -> None:
    token = sessions.new_secret()
    assert sessions.csrf_matches(token, token)
    assert not sessions.csrf_matches(token, token[:-1])
    assert not sessions.csrf_matches(token, None)
    assert not sessions.csrf_matches(None, None) and not sessions.csrf_matches("", "")


def test_french_amounts_counts_and_dates_come_from_the_locale() -> None:
    assert texts.amount_text(123456, "fr") == "1\u202f234,56\xa0€"
    assert texts.amount_text(123456, "en") == "€1,234.56"
    assert [texts.count_text(n, "fr") for n in (0, 1, 2)] == ["0 chèque", "1 chèque",
                                                              "2 chèques"]
    assert texts.count_text(0, "en") == "0 vouchers"
    # 09:30 UTC is 10:30 in Paris in December.
    assert texts.when_text(AT, "fr") == "7 déc. 2026 à 10:30"
    assert texts.month_text("2026-12", "fr") == "décembre 2026"


def test_a_refusal_says_why_in_plain_words_and_when_it_was_redeemed() -> None:
    refused = outcomes.Result("redeem", False, "already_redeemed", VOUCHER, redeemed_at=AT)
    shown = pages.shown_result(refused, "fr")
    assert shown.heading == "Encaissement refusé"
    assert shown.lines[0].startswith("Ce chèque a déjà été encaissé")
    assert "7 déc. 2026 à 10:30" in shown.lines[1] and VOUCHER in shown.lines[2]
    assert pages.shown_result(refused, "en").heading == "Redemption refused"
    assert pages.shown_result(outcomes.Result("check", True, None, VOUCHER), "fr").heading == (
        "valide")


def test_only_todays_unsettled_redemptions_can_be_cancelled() -> None:
    rows = [RedemptionRow("992777565-0000001-01", "e1", 1000, AT, None),
            RedemptionRow("992777565-0000001-02", "e2", 1000, AT - timedelta(days=1), None),
            RedemptionRow("992777565-0000001-03", "e3", 1000, AT, "2026-12")]
    shown = pages.redemption_rows(rows, AT + timedelta(hours=2), "fr")
    assert [row["cancellable"] for row in shown] == [True, False, False]
    assert shown[2]["statement"] == "payé sur le relevé de décembre 2026"


def test_every_value_on_a_page_is_escaped() -> None:
    hostile = "<script>alert('x')</script>"
    env = pages.environment()
    session = sessions.CounterSession("digest", SIRET, "csrf-token", "fr", AT)
    context = pages.counter_context(
        pages.VenueFacts(hostile, "suspended"),
        [RedemptionRow(VOUCHER, "e1", 1000, AT, None)], pages.MonthTotals(1, 1000),
        [StatementRow("2026-11", 1, "e9", 1, 1000, AT, ["e1"])], "2026-12", AT, "fr", 500)
    html = pages.render(env, "counter.html", "fr", session, result=None, code=hostile,
                        form_key=KEY, **context)
    assert hostile not in html and "&lt;script&gt;" in html
    assert "suspendue" in html and "novembre 2026 (partie 1)" in html
    for language in ("fr", "en"):
        page = pages.render(env, "sign_in.html", language, None, error="", notice="",
                            sign_in_csrf="x", token_max=200)
        assert f'<html lang="{language}">' in page


def test_a_statement_pdf_needs_its_fonts(tmp_path) -> None:
    from services.redeemer.counter.statement_pdf import FontMissing, render_statement_pdf
    from services.redeemer.counter.statements import VenueStatement
    from services.redeemer.statements import StatementLine

    statement = VenueStatement(StatementLine("2026-11", SIRET, "Lieu", "FR76", 1, 0, 0, "e"),
                               AT, ())
    with pytest.raises(FontMissing, match="fonts-dejavu-core"):
        render_statement_pdf(statement, "fr", tmp_path)
