"""Settlement exports (CSV, SEPA pain.001 validated against its XSD) and offline scan files,
without broker or database. Also: a paid redemption cannot be cancelled."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ElementTree
from datetime import date, datetime, timedelta, timezone

import pytest

from passnum.ledger.time import FRANCE
from schemas.messages import CancelRedemption
from passnum.ledger import voucher as domain
from services.redeemer.offline_scans import parse_scans, scan_commands, scan_request_id
from services.redeemer.statements import (
    Debtor,
    StatementLine,
    euros,
    render_csv,
    render_pain001,
    transfers,
)

from . import IBAN, MORNING, OTHER_SIRET, SIRET, VOUCHER_ID

OTHER_IBAN = "FR1420041010050500013M02606"
PAIN = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}
LINES = [
    StatementLine("2026-03", SIRET, "Fabrique numérique", IBAN, 1, 5000, 5_000_000,
                  "0b4a6f5e-1f7e-5a43-9d2e-0d3c2f5b7a11"),
    StatementLine("2026-03", SIRET, "Fabrique numérique", IBAN, 2, 3, 3000,
                  "1b4a6f5e-1f7e-5a43-9d2e-0d3c2f5b7a11"),
    StatementLine("2026-03", OTHER_SIRET, "Espace public", OTHER_IBAN, 1, 2, 2500,
                  "2b4a6f5e-1f7e-5a43-9d2e-0d3c2f5b7a11"),
]


def test_euros_never_go_through_a_float() -> None:
    assert [euros(c) for c in (0, 5, 100, 123_456_789_01)] == [
        "0.00", "0.05", "1.00", "123456789.01"]


def test_the_csv_has_one_row_per_statement_part() -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(LINES))))
    assert [(row["siret"], row["part"], row["amount_eur"]) for row in rows] == [
        (SIRET, "1", "50000.00"), (SIRET, "2", "30.00"), (OTHER_SIRET, "1", "25.00")]


def test_one_transfer_per_venue_traced_to_its_first_statement() -> None:
    result = transfers(LINES)
    assert [(t.siret, t.amount_cents, t.voucher_count) for t in result] == [
        (SIRET, 5_003_000, 5003), (OTHER_SIRET, 2500, 2)]
    assert result[0].end_to_end_id == "0b4a6f5e1f7e5a439d2e0d3c2f5b7a11"


def test_the_pain001_document_validates_and_adds_up() -> None:
    document = ElementTree.fromstring(render_pain001(
        LINES, Debtor("Opérateur", "FR7630006000011234567890189"), date(2026, 4, 10)))
    header = document.find("p:CstmrCdtTrfInitn/p:GrpHdr", PAIN)
    assert header.findtext("p:NbOfTxs", namespaces=PAIN) == "2"
    assert header.findtext("p:CtrlSum", namespaces=PAIN) == "50055.00"
    amounts = {node.findtext("p:CdtrAcct/p:Id/p:IBAN", namespaces=PAIN):
               node.findtext("p:Amt/p:InstdAmt", namespaces=PAIN)
               for node in document.iterfind(".//p:CdtTrfTxInf", PAIN)}
    assert amounts == {IBAN: "50030.00", OTHER_IBAN: "25.00"}
    assert document.findtext(".//p:ReqdExctnDt", namespaces=PAIN) == "2026-04-10"


def test_a_venue_without_iban_cannot_be_paid() -> None:
    line = StatementLine("2026-03", SIRET, "", "", 1, 1, 1000,
                         "0b4a6f5e-1f7e-5a43-9d2e-0d3c2f5b7a11")
    with pytest.raises(AssertionError):
        transfers([line])


# ------------------------------------------------------------------------------ scans


def test_scan_lines_with_and_without_instants() -> None:
    scans, errors = parse_scans([
        "# header", "", "CODE-ONE", "CODE-TWO,2026-03-03T10:15:00",
        "CODE-THREE\t2026-03-03T10:15:00+00:00", "CODE-FOUR;2026-03-03 10:15",
        "CODE-FIVE, not a time", "CODE-SIX,9999-12-31T23:59:00", "CODE\x00SEVEN"])
    assert [(s.line_number, s.code) for s in scans] == [
        (3, "CODE-ONE"), (4, "CODE-TWO"), (5, "CODE-THREE"), (6, "CODE-FOUR")]
    assert scans[0].scanned_at is None
    # Written without offset: the venue's clock, in France (UTC+1 in early March).
    assert scans[1].scanned_at == datetime(2026, 3, 3, 9, 15, tzinfo=timezone.utc)
    assert scans[1].scanned_at.tzinfo == FRANCE
    # Outside the years a command may name, or with a control character: a line error,
    # never a command that cannot be built.
    assert [(e.line_number, e.reason) for e in errors] == [
        (7, "unreadable_timestamp"), (8, "unreadable_timestamp"), (9, "unreadable_code")]


def test_the_same_scan_is_the_same_request_and_a_rescan_is_another() -> None:
    scans, _ = parse_scans(["ABCD-EFGH,2026-03-03T10:15:00", "abcdefgh,2026-03-03T10:15:00",
                            "ABCD-EFGH,2026-03-03T11:00:00"])
    # The code is compared as the redeemer reads it (case and dashes do not matter).
    assert scan_request_id(SIRET, scans[0]) == scan_request_id(SIRET, scans[1])
    assert scan_request_id(SIRET, scans[0]) != scan_request_id(SIRET, scans[2])
    now = datetime(2026, 3, 9, tzinfo=timezone.utc)
    commands = scan_commands(SIRET, [scans[0], scans[2]], now)
    assert len({c.request_id for c in commands.values()}) == 2
    assert scan_request_id(SIRET, scans[0]) != scan_request_id(OTHER_SIRET, scans[0])
    undated, _ = parse_scans(["ABCD"])
    assert scan_commands(SIRET, undated, now)[1].occurred_at == now
    assert scan_commands(SIRET, undated, now)[1].request_id == scan_commands(
        SIRET, undated, now + timedelta(days=1))[1].request_id


# ------------------------------------------------------------------------------ cancel


def test_a_paid_redemption_cannot_be_cancelled_even_on_its_day() -> None:
    paid = domain.Redemption(VOUCHER_ID, VOUCHER_ID[:17], VOUCHER_ID[:9], SIRET, 1000,
                             MORNING.isoformat(), "redemption-1", settlement_month="2024-03")
    view = domain.RedeemerView({}, {VOUCHER_ID: paid}, {})
    cancel = CancelRedemption(request_id="c", occurred_at=MORNING + timedelta(minutes=5),
                              voucher_id=VOUCHER_ID, siret=SIRET)
    assert domain.decide_cancel(view, cancel)[0].reason == "already_settled"
    unpaid = domain.RedeemerView({}, {VOUCHER_ID: domain.Redemption(
        *list(paid.__dict__.values())[:7])}, {})
    assert domain.decide_cancel(unpaid, cancel)[0].type == "redemption_cancelled"
    other = CancelRedemption(request_id="d", occurred_at=cancel.occurred_at,
                             voucher_id=VOUCHER_ID, siret=OTHER_SIRET)
    assert domain.decide_cancel(view, other)[0].reason == "not_redeemed_here"


@pytest.mark.parametrize("month", ["9999-12", "0000-01", "2026-13"])
def test_close_month_refuses_a_month_outside_the_ledgers_years_in_one_line(month: str) -> None:
    from typer.testing import CliRunner

    from services.redeemer.cli import redeemer_app

    # Refused before any connection: no broker or database is needed to see it.
    result = CliRunner().invoke(redeemer_app, ["close-month", month])

    assert result.exit_code == 2, result.output
    assert f"close-month: {month!r} is not a month from 2000-01 to 2100-12" in result.output
    assert len(result.output.strip().splitlines()) == 1
