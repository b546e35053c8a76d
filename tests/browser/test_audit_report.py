"""The audit report as a finance officer gets it: a ledger decided by the services' own
deciders is written to the real broker (as tests/integration/test_auditor_tamper.py does),
`passnum audit --json --html --pdf` runs as a command, and the HTML page is opened in
headless chromium (Debian's, driven by playwright). What the browser shows is checked
against the auditor's JSON: every figure, formatted in French by babel; the balance
equation's two sides; the venues by name and month; each finding with its explanation and
evidence; the charts' sums. Once on a sound ledger, once on a tampered one. The PDF is read
back with pdftotext.

Screenshots are saved in the test's temporary directory; with WRITE_DOCS_SCREENSHOTS=1
the sound page is also written to docs/audit-report.png (the README's picture).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from passnum.ledger.identity import event_id_for
from passnum.core.log import make_producer
from passnum.core.topology import topology_for
from schemas.messages import BookletBlocked, VoucherRedeemed
from services.auditor.findings_fr import FRENCH
from services.auditor.html_report import STATES, Formatter
from tests.support.chained_log import ChainedRecord, sample_ledger, send_with_kafka_python

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGUMENTS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update",
                      "--disable-sync"]
DOCS = Path(__file__).resolve().parents[2] / "docs"
FRENCH_FORMAT = Formatter("fr")
# What babel's fr_FR gives: narrow no-break spaces between thousands, a decimal comma, a
# no-break space before the euro sign (checked on the page, not only via the formatter).
FRENCH_EUROS = re.compile(r"-?\d{1,3}(\u202f\d{3})*,\d{2}\u00a0€")
FRENCH_COUNT = re.compile(r"-?\d{1,3}(\u202f\d{3})*")
# (every data-field cell of the collectivités' tables, by row) read in one call
READ_CELLS = """() => {
  const rows = {};
  for (const cell of document.querySelectorAll('tr[data-siren] td[data-field]')) {
    const siren = cell.parentElement.dataset.siren;
    rows[siren] = rows[siren] || {};
    rows[siren][cell.dataset.field] = cell.innerText;
  }
  return rows;
}"""
READ_CHARTS = """() => {
  const sums = {};
  for (const bar of document.querySelectorAll('figure[data-chart] rect[data-series]')) {
    const key = bar.closest('figure').dataset.chart + '/' + bar.dataset.series;
    sums[key] = (sums[key] || 0) + Number(bar.dataset.cents);
  }
  return sums;
}"""


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (scripts/bootstrap installs Debian's chromium)")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGUMENTS)
        yield chromium
        chromium.close()


def write(settings, records: list[ChainedRecord]) -> None:  # type: ignore[no-untyped-def]
    producer = make_producer(settings)
    try:
        send_with_kafka_python(producer, records)
    finally:
        producer.close()


def first_of(records: list[ChainedRecord], event_type: str) -> int:
    return next(i for i, r in enumerate(records) if json.loads(r.value)["type"] == event_type)


def audit(settings, directory: Path, *options: str) -> tuple[int, dict, Path, Path]:  # type: ignore[no-untyped-def]
    html, pdf = directory / "audit.html", directory / "audit.pdf"
    environment = {**os.environ, **settings.as_environment()}
    result = subprocess.run([sys.executable, "-m", "passnum.tools.cli", "audit", "--json",
                             "--no-database", "--html", str(html), "--pdf", str(pdf), *options],
                            capture_output=True, text=True, env=environment, timeout=180)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout), html, pdf


def expected_figure(field: str, value: int) -> str:
    return FRENCH_FORMAT.euros(value) if field.endswith("cents") else FRENCH_FORMAT.count(value)


def check_page_against_json(page, document: dict) -> None:  # type: ignore[no-untyped-def]
    """Every figure of the JSON in the page, formatted in French, and the sums that tie the
    tables, the equation and the charts together."""
    collectivites = document["collectivites"]
    shown = page.evaluate(READ_CELLS)
    national: dict[str, int] = {}
    for siren, books in collectivites.items():
        figures = {k: v for k, v in books.items() if k not in ("siren", "name")}
        assert shown[siren] == {k: expected_figure(k, v) for k, v in figures.items()}, siren
        for field, text in shown[siren].items():
            pattern = FRENCH_EUROS if field.endswith("cents") else FRENCH_COUNT
            assert pattern.fullmatch(text), (siren, field, text)
        assert books["name"] and books["name"] in page.locator(
            f'#books tr[data-siren="{siren}"]').inner_text()
        for field, value in figures.items():
            national[field] = national.get(field, 0) + value
    assert shown[""] == {k: expected_figure(k, v) for k, v in national.items()}
    right = {unit: sum(national[f"{state}_{unit}"] for state in STATES)
             for unit in ("vouchers", "cents")}
    for unit, name in (("vouchers", "vouchers"), ("euros", "cents")):
        row = page.locator(f'#balance tr[data-unit="{unit}"]')
        left_text = row.locator('[data-side="left"]').inner_text()
        right_text = row.locator('[data-side="right"]').inner_text()
        assert left_text == expected_figure(name, national[f"issued_{name}"])
        assert right_text == expected_figure(name, right[name])
        equal = national[f"issued_{name}"] == right[name]
        assert ("égalité vérifiée" in row.inner_text()) == equal
    check_venues(page, document)
    charts = page.evaluate(READ_CHARTS)
    for state in STATES:
        assert charts.get(f"states/{state}", 0) == national[f"{state}_cents"]
    assert charts["funds/received"] == national["received_cents"]
    assert charts["months/activated"] == national["activated_cents"]
    assert charts["venues/due"] == sum(t["cents"] for t in document["venues"].values())


def check_venues(page, document: dict) -> None:  # type: ignore[no-untyped-def]
    assert document["venue_months"]
    for siret, months in document["venue_months"].items():
        for month, tally in months.items():
            text = page.locator(f'#venues tr[data-siret="{siret}"][data-month="{month}"]'
                                ).inner_text()
            assert document["venue_names"][siret] in text and siret in text
            assert FRENCH_FORMAT.month(month) in text
            assert FRENCH_FORMAT.count(tally["vouchers"]) in text
            assert FRENCH_FORMAT.euros(tally["cents"]) in text
        total = page.locator(f'#venues tr.total[data-siret="{siret}"]').inner_text()
        assert FRENCH_FORMAT.euros(document["venues"][siret]["cents"]) in total


def check_findings(page, document: dict) -> None:  # type: ignore[no-untyped-def]
    section = page.locator("#findings")
    if not document["findings"]:
        assert "Aucune anomalie" in section.inner_text()
        return
    assert "Aucune anomalie" not in section.inner_text()
    for code, count in document["findings_by_code"].items():
        block = section.locator(f'div.finding[data-code="{code}"]').inner_text()
        assert FRENCH[code].title in block and FRENCH[code].text in block
        assert f"({count})" in block
    for finding in document["findings"]:
        block = section.locator(f'div.finding[data-code="{finding["code"]}"]').inner_text()
        assert all(event_id in block for event_id in finding["event_ids"]), finding


def pdf_text(pdf: Path) -> str:
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF")
    assert shutil.which("pdftotext"), "pdftotext is missing (poppler-utils)"
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def open_report(browser, html: Path):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(html.as_uri())
    assert page.locator("html").get_attribute("lang") == "fr"
    return page


def test_the_report_of_a_sound_ledger_reconciles_with_the_auditor(ledger, browser,  # type: ignore[no-untyped-def]
                                                                 tmp_path) -> None:
    sample = sample_ledger(topology_for(ledger))
    records = list(sample.records)
    idle = json.loads(records[first_of(records, "collectivite_registered")].value)["siren"]
    at = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
    lost = BookletBlocked(event_id=event_id_for("issuer", "lost", 0), request_id="lost",
                          occurred_at=at + timedelta(hours=1), siren=idle,
                          booklet_id=f"{idle}-0000001", reason="lost")
    write(ledger, records + sample.writer.issuer(idle, [lost]))
    status, document, html, pdf = audit(ledger, tmp_path)
    assert status == 0 and document["sound"], document["findings"]
    page = open_report(browser, html)
    assert page.locator("#verdict").inner_text().startswith("SAIN")
    check_page_against_json(page, document)
    check_findings(page, document)
    assert sum(c["blocked_vouchers"] for c in document["collectivites"].values()) > 0
    page.screenshot(path=str(tmp_path / "audit-report.png"), full_page=True)
    if os.environ.get("WRITE_DOCS_SCREENSHOTS") == "1":
        page.screenshot(path=str(DOCS / "audit-report.png"), full_page=True)
    text = pdf_text(pdf)
    assert "SAIN" in text and "NON SAIN" not in text and "Aucune anomalie" in text


def test_the_report_of_a_tampered_ledger_names_each_fault_with_its_evidence(  # type: ignore[no-untyped-def]
        ledger, browser, tmp_path) -> None:
    sample = sample_ledger(topology_for(ledger))
    records = list(sample.records)
    redeemed = [i for i, r in enumerate(records) if b'"voucher_redeemed"' in r.value]
    first = json.loads(records[redeemed[0]].value)
    # a payload altered after the fact (its chain link kept), and a voucher redeemed
    # twice by a "buggy" redeemer, properly chained
    altered = records[redeemed[1]]
    records[redeemed[1]] = replace(altered, value=altered.value.replace(
        b'"face_value_cents":1000', b'"face_value_cents":10'))
    again = VoucherRedeemed(**{**first, "request_id": "buggy", "occurred_at":
                               first["occurred_at"].replace("T11", "T15"),
                               "event_id": event_id_for("redeemer", "buggy", 0)})
    records += sample.writer.redeemer(first["booklet_id"].encode(), [again])
    write(ledger, records)
    # a year later: the unused activated vouchers have expired
    status, document, html, pdf = audit(ledger, tmp_path, "--until", "2027-06-01")
    assert status == 1
    assert {"altered_event", "voucher_redeemed_twice"} <= set(document["findings_by_code"])
    page = open_report(browser, html)
    assert page.locator("#verdict").inner_text().startswith("NON SAIN")
    check_page_against_json(page, document)
    check_findings(page, document)
    twice = page.locator('div.finding[data-code="voucher_redeemed_twice"]').inner_text()
    assert first["event_id"] in twice and again.event_id in twice
    assert sum(c["expired_vouchers"] for c in document["collectivites"].values()) > 0
    assert "1 juin 2027" in page.locator("#as-of").inner_text()
    page.screenshot(path=str(tmp_path / "audit-report-tampered.png"), full_page=True)
    text = pdf_text(pdf)
    assert "NON SAIN" in text and FRENCH["voucher_redeemed_twice"].title in text
