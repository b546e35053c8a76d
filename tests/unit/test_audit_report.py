"""The HTML audit report, pure: a report replayed in memory from a ledger the services'
deciders wrote (tests/unit/test_auditor_replay.py's way, no broker), rendered and read
back. The browser test (tests/browser/test_audit_report.py) checks the page as chromium
shows it, on the real broker."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from html import unescape

import pytest
from babel.dates import format_date

from passnum.ledger.identity import event_id_for
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from schemas.messages import BookletBlocked, VoucherRedeemed
from services.auditor.books import Finding
from services.auditor.findings_fr import FRENCH
from services.auditor.html_report import STATES, Formatter, national_totals, render
from services.auditor.replay import Replayer, ReplayOptions
from services.auditor.summary import print_summary
from tests.support.chained_log import ChainedRecord, in_read_order, sample_ledger

SETTINGS = Settings()
AT = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def replay(records: list[ChainedRecord], **options: object):  # type: ignore[no-untyped-def]
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False, **options))  # type: ignore[arg-type]
    replayer.ingest(in_read_order(records, replayer.topics_in_order()))
    return replayer.judge()


def sound_records() -> list[ChainedRecord]:
    """The sample ledger plus a booklet reported lost: every category but expired."""
    ledger = sample_ledger(topology_for(SETTINGS))
    report = replay(ledger.records)
    idle = next(t.siren for t in report.totals.values() if not t.redeemed_vouchers)
    block = BookletBlocked(event_id=event_id_for("issuer", "lost", 0), request_id="lost",
                           occurred_at=AT + timedelta(hours=3), siren=idle,
                           booklet_id=f"{idle}-0000001", reason="lost")
    return ledger.records + ledger.writer.issuer(idle, [block])


@pytest.fixture(scope="module")
def sound():  # type: ignore[no-untyped-def]
    report = replay(sound_records())
    assert report.sound, report.findings
    return report


def cells(page: str, attribute: str, value: str) -> dict[str, str]:
    """field -> text of the `data-field` cells of the row carrying attribute="value"."""
    row = re.search(rf'<tr[^>]*{attribute}="{value}"[^>]*>(.*?)</tr>', page)
    assert row, (attribute, value)
    return {name: unescape(text) for name, text in
            re.findall(r'data-field="(\w+)">([^<]*)<', row.group(1))}


def chart_cents(page: str, chart: str) -> dict[tuple[str, str], int]:
    """(label, series) -> cents drawn in one chart."""
    figure = re.search(rf'<figure data-chart="{chart}">(.*?)</figure>', page, re.S)
    assert figure, chart
    drawn: dict[tuple[str, str], int] = {}
    for series, cents, label in re.findall(
            r'data-series="(\w+)" data-cents="(-?\d+)" data-label="([^"]*)"', figure.group(1)):
        drawn[(unescape(label), series)] = drawn.get((unescape(label), series), 0) + int(cents)
    return drawn


def test_every_figure_of_every_collectivite_is_in_its_row_formatted_in_french(sound) -> None:  # type: ignore[no-untyped-def]
    page, french = render(sound), Formatter("fr")
    assert sound.totals and all(t.blocked_vouchers or t.redeemed_vouchers
                                for t in sound.totals.values())
    for siren, totals in list(sound.totals.items()) + [("", national_totals(sound))]:
        shown: dict[str, str] = {}
        for table in ("funds", "books", "booklets"):
            section = page.split(f'<section id="{table}">')[1].split("</section>")[0]
            shown.update(cells(section, "data-siren", siren))
        figures = {name: value for name, value in vars(totals).items()
                   if name not in ("siren", "name")}
        assert set(shown) == set(figures)
        for name, value in figures.items():
            expected = french.euros(value) if name.endswith("cents") else french.count(value)
            assert shown[name] == expected, (siren, name)
        assert totals.name in page


def test_the_balance_equation_holds_in_vouchers_and_in_euros(sound) -> None:  # type: ignore[no-untyped-def]
    page = render(sound)
    national = national_totals(sound)
    french = Formatter("fr")
    for unit, show, left in (("vouchers", french.count, national.issued_vouchers),
                             ("euros", french.euros, national.issued_cents)):
        row = re.search(rf'<tr data-unit="{unit}">(.*?)</tr>', page).group(1)  # type: ignore[union-attr]
        sides = dict(re.findall(r'data-side="(\w+)">([^<]*)<', row))
        assert sides == {"left": show(left), "right": show(left)}
        assert "égalité vérifiée" in row


def test_an_unbalanced_report_shows_the_gap_not_an_equality(sound) -> None:  # type: ignore[no-untyped-def]
    siren, totals = next(iter(sound.totals.items()))
    lopsided = replace(sound, totals={**sound.totals, siren: replace(
        totals, outstanding_vouchers=totals.outstanding_vouchers - 1,
        outstanding_cents=totals.outstanding_cents - 1000)})
    page = render(lopsided)
    row = re.search(r'<tr data-unit="euros">(.*?)</tr>', page).group(1)  # type: ignore[union-attr]
    assert "écart de 10,00\xa0€\xa0: les émis dépassent la somme" in row
    assert "égalité vérifiée" not in row


def test_the_charts_add_up_to_the_tables(sound) -> None:  # type: ignore[no-untyped-def]
    page = render(sound)
    states = chart_cents(page, "states")
    for totals in sound.totals.values():
        drawn = sum(states[(totals.name, state)] for state in STATES)
        assert drawn == totals.issued_cents
        assert states[(totals.name, "blocked")] == totals.blocked_cents
    months = chart_cents(page, "months")
    national = national_totals(sound)
    assert sum(c for (_, s), c in months.items() if s == "activated") == national.activated_cents
    assert sum(c for (_, s), c in months.items() if s == "redeemed") == national.redeemed_cents
    venues = chart_cents(page, "venues")
    assert {label: cents for (label, _), cents in venues.items()} == {
        sound.venue_names[siret]: tally["cents"] for siret, tally in sound.venues.items()}
    assert "not-activated" not in page and "mars 2026" in page


def test_venues_are_named_with_their_months(sound) -> None:  # type: ignore[no-untyped-def]
    page = render(sound)
    for siret, months in sound.venue_months.items():
        assert sound.venue_names[siret] in page
        for month, tally in months.items():
            row = re.search(rf'<tr data-siret="{siret}" data-month="{month}">(.*?)</tr>', page)
            assert row and Formatter("fr").euros(tally["cents"]) in row.group(1)


def test_a_sound_report_says_so_in_french_and_the_english_one_in_english(sound) -> None:  # type: ignore[no-untyped-def]
    french, english = render(sound), render(sound, "en")
    assert '<html lang="fr">' in french and '<html lang="en">' in english
    assert '<strong>SAIN</strong>' in french and "Aucune anomalie." in french
    as_of = date.fromisoformat(sound.as_of)  # the audit's own day
    assert f"Situation au {format_date(as_of, 'long', locale='fr_FR')}" in french
    assert f"Books as of {format_date(as_of, 'long', locale='en_GB')}" in english
    assert '<strong>SOUND</strong>' in english and "€40.00" in english
    assert "40,00\xa0€" in french and "€40.00" not in french
    assert "http" not in french.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "@media print" in french and french == render(sound)
    with pytest.raises(ValueError):
        render(sound, "de")


def test_findings_are_explained_with_their_evidence() -> None:
    ledger = sample_ledger(topology_for(SETTINGS))
    first = next(r for r in ledger.records if b'"voucher_redeemed"' in r.value)
    document = __import__("json").loads(first.value)
    again = VoucherRedeemed(**{**document, "request_id": "buggy", "event_id": event_id_for(
        "redeemer", "buggy", 0), "occurred_at": document["occurred_at"].replace("T11", "T15")})
    report = replay(ledger.records + ledger.writer.redeemer(first.key, [again]))
    report = replace(report, findings=report.findings + (Finding(
        "books_do_not_balance", "a <b>detail</b>", (), ""),), findings_by_code={
        **report.findings_by_code, "books_do_not_balance": 1})
    page = render(report)
    assert "<strong>NON SAIN</strong>" in page and "Aucune anomalie" not in page
    assert "voucher_redeemed_twice" in report.findings_by_code
    for finding in report.findings:
        block = re.search(rf'<div class="finding" data-code="{finding.code}">(.*?)</div>',
                          page, re.S).group(1)  # type: ignore[union-attr]
        assert FRENCH[finding.code].title in unescape(block)
        assert FRENCH[finding.code].text in unescape(block)
        assert all(event_id in block for event_id in finding.event_ids)
    assert "a &lt;b&gt;detail&lt;/b&gt;" in page  # escaped, never markup
    # (in memory the first redemption is named by its fingerprint: names are resolved by
    # a second read of the broker, which the browser test does)
    assert again.event_id in set(re.findall(r"<code>([^<]+)</code>", page))


def test_a_language_the_report_does_not_speak_is_a_usage_error() -> None:
    from typer.testing import CliRunner

    from passnum.tools.cli import app

    result = CliRunner().invoke(app, ["audit", "--lang", "de", "--no-database"])
    assert result.exit_code == 2 and "--lang must be one of fr, en" in result.output


def test_no_chromium_is_a_clear_error_and_leaves_no_pdf(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.auditor.pdf import PdfError, print_html_to_pdf

    target = tmp_path / "audit.pdf"
    target.write_bytes(b"%PDF stale")
    with pytest.raises(PdfError, match="no chromium"):
        print_html_to_pdf("<p>x</p>", target, SETTINGS.with_overrides(
            chromium_binary=str(tmp_path / "absent")))
    assert not target.exists()  # the earlier print is not left to be taken for this one


def test_many_venues_share_one_bar_beyond_the_first_ones_and_still_add_up(sound) -> None:  # type: ignore[no-untyped-def]
    from services.auditor.html_report import CHART_VENUES_SHOWN

    venues = {f"{number:014d}": {"vouchers": number, "cents": number * 1000}
              for number in range(1, CHART_VENUES_SHOWN + 11)}
    crowded = replace(sound, venues=venues, venue_names={})
    drawn = chart_cents(render(crowded), "venues")
    assert len(drawn) == CHART_VENUES_SHOWN + 1
    assert drawn[("Autres structures (10)", "due")] == sum(number * 1000 for number in
                                                           range(1, 11))
    assert sum(drawn.values()) == sum(tally["cents"] for tally in venues.values())


def test_the_live_agreement_is_said_in_a_sentence(sound) -> None:  # type: ignore[no-untyped-def]
    digests = {"live_digests": {"redemptions": "0f" * 8}}
    agrees = render(replace(sound, extra={"live_agreement": "agrees", **digests}))
    disagrees = render(replace(sound, extra={"live_agreement": "DISAGREES", **digests}))
    assert "concorde avec le journal rejoué." in agrees and "0f0f" in agrees
    assert "ne concorde pas avec le journal" in disagrees
    assert 'id="extra"' not in render(sound)


def test_a_report_scoped_to_one_collectivite_says_whose_vouchers_the_venues_count() -> None:
    records = sound_records()
    siren = next(iter(replay(records).totals))
    scoped = replay(records, collectivite=siren)
    page = render(scoped)
    assert list(scoped.totals) == [siren]
    assert f"Périmètre\xa0: la collectivité {scoped.totals[siren].name} ({siren})" in unescape(page)
    assert f"ne comptent que les chèques de la collectivité {siren}" in unescape(page)


def test_the_terminal_summary_speaks_french_with_the_same_figures(sound) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console

    console = Console(record=True, width=400)
    print_summary(sound, console)
    printed = console.export_text()
    formatter = Formatter("fr")
    assert "SAIN — Chaque règle vérifiée est respectée." in printed
    assert "En circulation" in printed and "Utilisés" in printed
    for siren, totals in sound.totals.items():
        row = next(line for line in printed.splitlines() if siren in line)
        assert formatter.euros(totals.received_cents) in row  # e.g. "200,00 €", French
        assert (f"{totals.redeemed_vouchers} / {formatter.euros(totals.redeemed_cents)}"
                in row)
    english = Console(record=True, width=400)
    print_summary(sound, english, language="en")
    assert "SOUND — Every rule checked holds." in english.export_text()


def test_a_narrow_terminal_still_shows_every_siren_whole(sound) -> None:  # type: ignore[no-untyped-def]
    """In an 80-column terminal (or a log, where rich assumes 80), the nine columns do not
    fit: the figures wrap, but an identifier cut to `336392…` would name no one."""
    from rich.console import Console

    console = Console(record=True, width=80)
    print_summary(sound, console)
    printed = console.export_text()
    for siren in sound.totals:
        assert siren in printed, siren
