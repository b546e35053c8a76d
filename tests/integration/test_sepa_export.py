"""`passnum redeemer export-statements` on a month closed by the real workers: the SEPA file
validates against the pain.001 XSD and is paid from the configured debtor account and agent;
without a debtor account the export refuses in one line, exits non-zero and writes nothing."""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sepaxml
import xmlschema
from click.testing import Result
from typer.testing import CliRunner

from passnum.core.settings import Settings
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites, venues
from passnum.tools.cli import app as cli_app
from passnum.tools.scenario import booklet_codes
from schemas.messages import CloseSettlementMonth, RedeemVoucher
from services.redeemer.cli import wait_for_close
from tests.integration.helpers import MARCH, onboard, wait_for_rows

pytestmark = pytest.mark.integration

APRIL_FIRST = datetime(2026, 3, 31, 22, 0, 5, tzinfo=timezone.utc)  # just after midnight in Paris
DEBTOR = {"PASSNUM_DEBTOR_NAME": "Opérateur du pass numérique",
          "PASSNUM_DEBTOR_IBAN": "FR14 2004 1010 0505 0001 3M02 606",
          "PASSNUM_DEBTOR_BIC": "CMCIFR2A"}
COMPACT_DEBTOR_IBAN = "FR1420041010050500013M02606"


@functools.lru_cache(maxsize=None)
def _schema(schema: str) -> xmlschema.XMLSchema:
    """The XSD sepaxml ships, compiled here, not taken from the code under test."""
    return xmlschema.XMLSchema(str(Path(sepaxml.__file__).parent / "schemas" / f"{schema}.xsd"))


def _close_march(ledger: Settings, start_worker) -> int:
    """Two venues redeem the vouchers of one booklet in March; March is closed. Returns how
    many redemptions the month pays."""
    start_worker("issuer")
    start_worker("redeemer")
    partner, venue_list = collectivites(1)[0], venues(2)
    client = LedgerClient(ledger)
    try:
        onboard(client, [partner], 1, venue_list, tag="sepa")
        wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated", 1)
        codes = booklet_codes(ledger.voucher_code_key.encode(), partner, range(1, 2))
        redemptions = [RedeemVoucher(request_id=f"sepa-r{i}", code=code,
                                     siret=venue_list[i % 2].siret,
                                     occurred_at=MARCH + timedelta(minutes=i))
                       for i, code in enumerate(codes)]
        client.send(redemptions)
        outcomes = client.wait_for([c.request_id for c in redemptions], timeout_seconds=60)
        assert all(events[0].type == "voucher_redeemed" for events in outcomes.values())
        client.send([CloseSettlementMonth(request_id="sepa-close", occurred_at=APRIL_FIRST,
                                          month="2026-03")])
        assert wait_for_close(client, "sepa-close", 60)[-1].type == "settlement_month_closed"
    finally:
        client.close()
    return len(codes)


def _export(ledger: Settings, directory: Path, debtor: dict[str, str], *options: str
            ) -> Result:
    """`passnum redeemer export-statements` through the real `passnum` application, in this
    process (a new interpreter per call costs seconds on a busy machine)."""
    return CliRunner().invoke(cli_app, [
        "redeemer", "export-statements", "--month", "2026-03",
        "--csv", str(directory / "march.csv"), "--sepa", str(directory / "march.xml"),
        "--execution-date", "2026-04-10", *options],
        env={**ledger.as_environment(), **debtor})


def test_the_sepa_file_of_a_closed_month_is_paid_from_the_configured_account(
        ledger, start_worker, tmp_path) -> None:
    paid = _close_march(ledger, start_worker)

    refused = tmp_path / "refused"
    refused.mkdir()
    no_debtor = {"PASSNUM_DEBTOR_NAME": "", "PASSNUM_DEBTOR_IBAN": "", "PASSNUM_DEBTOR_BIC": ""}
    for debtor in (no_debtor, {**DEBTOR, "PASSNUM_DEBTOR_IBAN": "FR1420041010050500013M02607"}):
        finished = _export(ledger, refused, debtor)
        assert finished.exit_code == 2, finished.output
        assert len(finished.stderr.strip().splitlines()) == 1, finished.stderr
        assert "PASSNUM_DEBTOR_IBAN" in finished.stderr and "nothing written" in finished.stderr
        assert list(refused.iterdir()) == []

    for schema, debtor, agent in (
            ("pain.001.001.03", DEBTOR, ["FinInstnId", "BIC"]),
            ("pain.001.001.09", DEBTOR, ["FinInstnId", "BICFI"]),
            ("pain.001.001.09", {**DEBTOR, "PASSNUM_DEBTOR_BIC": ""},
             ["FinInstnId", "Othr", "Id"])):
        finished = _export(ledger, tmp_path, debtor, "--schema", schema)
        assert finished.exit_code == 0, finished.output
        document = (tmp_path / "march.xml").read_bytes()
        _schema(schema).validate(document.decode())
        namespace = {"p": f"urn:iso:std:iso:20022:tech:xsd:{schema}"}
        root = ElementTree.fromstring(document)
        assert root.findtext(".//p:GrpHdr/p:CtrlSum", namespaces=namespace) == (
            f"{paid * 10}.00")
        assert root.findtext(".//p:DbtrAcct/p:Id/p:IBAN", namespaces=namespace) == (
            COMPACT_DEBTOR_IBAN)
        assert root.findtext(".//p:Dbtr/p:Nm", namespaces=namespace) == (
            "Operateur du pass numerique")
        (institution,) = root.findall(".//p:DbtrAgt/p:FinInstnId", namespace)
        assert [node.tag.rsplit("}", 1)[1] for node in institution.iter()] == agent
        identifier = institution[0] if debtor["PASSNUM_DEBTOR_BIC"] else institution[0][0]
        assert identifier.text == (debtor["PASSNUM_DEBTOR_BIC"] or "NOTPROVIDED")
