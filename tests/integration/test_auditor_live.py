"""The auditor against the real workers: a clean ledger decided by the faust workers is
sound, its digests agree with the services' tables, the read models load once per replay,
and a database that no longer matches the log is a finding."""

from __future__ import annotations

import pytest

from passnum.client import LedgerClient
from passnum.database import connect
from passnum.scenario import booklet_codes
from passnum.seed import collectivites, venues
from schemas.messages import RedeemVoucher
from services.auditor.cli import _with_database
from services.auditor.replay import Replayer, ReplayOptions
from tests.integration.helpers import MARCH, onboard, scalar, wait_for_rows

pytestmark = pytest.mark.integration


def test_live_state_agrees_with_the_replayed_log(ledger, start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker("issuer")
    start_worker("redeemer")
    partners, venue = collectivites(2), venues(1)[0]
    client = LedgerClient(ledger)
    onboard(client, partners, booklets=2, venues=[venue])
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated", 4)
    codes = booklet_codes(ledger.voucher_code_key.encode(), partners[0], range(1, 2))[:3]
    scans = [RedeemVoucher(request_id=f"live-{n}", occurred_at=MARCH, code=code,
                           siret=venue.siret) for n, code in enumerate(codes)]
    client.send(scans)
    client.wait_for([scan.request_id for scan in scans])
    client.close()

    replayer = Replayer(ledger, ReplayOptions())
    replayer.read()
    report = _with_database(ledger, replayer, replayer.judge())
    assert report.sound, report.findings
    assert report.extra["live_agreement"] == "agrees"
    assert scalar(ledger, "SELECT sum(redeemed_vouchers) FROM audit_collectivites") == 3
    assert scalar(ledger, "SELECT count(*) FROM audit_booklets") == 4
    report = _with_database(ledger, replayer, replayer.judge())  # rerun: replaced, not added
    assert scalar(ledger, "SELECT count(*) FROM audit_booklets") == 4

    with connect(ledger.database_url) as connection:
        connection.execute("DELETE FROM redemptions WHERE voucher_id = "
                           "(SELECT min(voucher_id) FROM redemptions)")
        connection.execute("UPDATE processor_positions SET chain_sequence = chain_sequence + 1 "
                           "WHERE processor = 'issuer' AND chain_sequence > 0")
        connection.commit()
    report = _with_database(ledger, replayer, replayer.judge())
    codes_found = {finding.code for finding in report.findings}
    assert {"live_state_disagrees", "chain_head_disagrees"} <= codes_found
    assert report.extra["live_agreement"] == "DISAGREES"
