"""The counter's pages: Jinja2 templates (package data, autoescaped: every value a venue or
the ledger supplies is escaped) and the pure functions that turn what the ledger recorded
into what a page shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Sequence

import jinja2

from passnum.ledger.time import same_local_day
from services.redeemer.counter import texts
from services.redeemer.counter.outcomes import Result
from services.redeemer.counter.sessions import CounterSession
from services.redeemer.queries import RedemptionRow, StatementRow


@dataclass(frozen=True)
class Shown:
    """A result as the page shows it: a verdict and sentences."""

    accepted: bool
    heading: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class VenueFacts:
    """What the ledger knows of the signed-in venue, for the page."""

    name: str
    status: str  # accredited | suspended | revoked | unknown


@dataclass(frozen=True)
class MonthTotals:
    count: int
    face_value_cents: int


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("services.redeemer.counter", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)


def render(env: jinja2.Environment, template: str, language: str,
           session: CounterSession | None, **context: Any) -> str:
    other = "en" if language == "fr" else "fr"
    return env.get_template(template).render(
        lang=language, other_lang=other, language_link=f"/guichet/?lang={other}",
        t=partial(texts.text, language=language), session=session, **context)


# ---------------------------------------------------------------------- results (pure)


def shown_result(result: Result, language: str) -> Shown:
    """What the page says after a click, in `language`."""
    say = partial(texts.text, language=language)
    voucher = result.voucher_id or ""
    if result.accepted:
        if result.action == "check":
            return Shown(True, say("valid"), (say("valid_detail", voucher=voucher),))
        if result.action == "redeem":
            assert result.face_value_cents is not None and result.redeemed_at is not None
            return Shown(True, say("redeemed"), (say(
                "redeemed_detail", voucher=voucher,
                amount=texts.amount_text(result.face_value_cents, language),
                when=texts.when_text(result.redeemed_at, language)),))
        return Shown(True, say("cancelled"), (say("cancelled_detail", voucher=voucher),))
    assert result.reason is not None
    heading = {"check": say("not_valid"), "redeem": say("refused"),
               "cancel": say("cancel_refused")}[result.action]
    lines = [texts.reason_text(result.reason, language)]
    if result.redeemed_at is not None:
        lines.append(say("earlier_redemption",
                         when=texts.when_text(result.redeemed_at, language)))
    if voucher:
        lines.append(say("voucher_of", voucher=voucher))
    return Shown(False, heading, tuple(lines))


# ---------------------------------------------------------------------- the counter (pure)


def redemption_rows(rows: Sequence[RedemptionRow], now: datetime, language: str
                    ) -> list[dict[str, Any]]:
    """This month's redemptions; a cancel button where the redeemer would accept one (the
    same day in France, not on a statement: the domain's own rule decides "same day")."""
    shown = []
    for row in rows:
        cancellable = (row.settlement_month is None
                       and same_local_day(row.redeemed_at, now))
        statement = (texts.text("on_statement", language,
                                month=texts.month_text(row.settlement_month, language))
                     if row.settlement_month else "")
        shown.append({"voucher_id": row.voucher_id,
                      "when": texts.when_text(row.redeemed_at, language),
                      "amount": texts.amount_text(row.face_value_cents, language),
                      "cancellable": cancellable, "statement": statement})
    return shown


def statement_items(rows: Sequence[StatementRow], language: str) -> list[dict[str, str]]:
    return [{"line": texts.text(
                "statement_line", language, month=texts.month_text(row.month, language),
                part=row.part, vouchers=texts.count_text(row.voucher_count, language),
                amount=texts.amount_text(row.face_value_cents, language),
                when=texts.when_text(row.issued_at, language)),
             "link": f"/guichet/releves/{row.month}/{row.part}"}
            for row in rows]


def venue_warning(venue: VenueFacts, language: str) -> str:
    if venue.status == "accredited":
        return ""
    status = texts.text(f"status_{venue.status}", language)
    return texts.text("venue_status_warning", language, status=status)


def counter_context(venue: VenueFacts, rows: Sequence[RedemptionRow], totals: MonthTotals,
                    statements: Sequence[StatementRow], month: str, now: datetime,
                    language: str, shown_max: int) -> dict[str, Any]:
    """Everything counter.html shows besides the result of a click and the form."""
    more = ""
    if totals.count > len(rows):
        more = texts.text("more_redemptions", language, shown=min(len(rows), shown_max),
                          total=totals.count)
    return {
        "venue_name": venue.name, "venue_warning": venue_warning(venue, language),
        "month_label": texts.month_text(month, language),
        "redemptions": redemption_rows(rows[:shown_max], now, language),
        "redemption_count": texts.count_text(totals.count, language),
        "redemption_total": texts.amount_text(totals.face_value_cents, language),
        "more_redemptions": more,
        "statements": statement_items(statements, language),
    }
