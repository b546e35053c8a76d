"""End to end on the real broker and PostgreSQL, each worker its own faust process:
collectivités fund and issue, a venue redeems, a second redemption is rejected, the auditor
replays the log from offset 0 and finds the books sound."""

from __future__ import annotations

import pytest

from passnum.core.database import connect
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites, venues
from passnum.tools.scenario import booklet_codes
from schemas.messages import RedeemVoucher
from services.auditor.replay import replay, write_projection
from tests.integration.helpers import MARCH, onboard, scalar, wait_for_rows

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("consumer", ["batch", "stream"])
def test_issue_redeem_once_and_audit(ledger, start_worker, consumer: str) -> None:
    """Both input paths of passnum.core.worker: the default batch consumer and the faust stream
    kept to measure against."""
    start_worker("issuer", consumer=consumer)
    start_worker("redeemer", consumer=consumer)
    partners, venue = collectivites(3), venues(1)[0]
    client = LedgerClient(ledger)
    onboard(client, partners, booklets=2, venues=[venue])
    booklet_total = sum(2 for _ in partners)
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated",
                  booklet_total)

    code = booklet_codes(ledger.voucher_code_key.encode(), partners[0], range(1, 2))[0]
    first = RedeemVoucher(request_id="first", occurred_at=MARCH, code=code, siret=venue.siret)
    second = RedeemVoucher(request_id="second", occurred_at=MARCH, code=code,
                           siret=venue.siret)
    client.send([first])
    client.wait_for(["first"])
    client.send([second, first])  # a new attempt, and a retry of the first request
    outcomes = client.wait_for(["first", "second"])
    assert [e.type for e in outcomes["first"]] == ["voucher_redeemed"]
    assert outcomes["second"][0].reason == "already_redeemed"
    assert outcomes["second"][0].redeemed_at is not None
    assert scalar(ledger, "SELECT count(*) FROM redemptions") == 1

    report = replay(ledger)
    assert report.sound, report.findings
    totals = report.totals[partners[0].siren]
    vouchers = 2 * partners[0].vouchers_per_booklet
    assert (totals.redeemed_vouchers, totals.outstanding_vouchers) == (1, vouchers - 1)
    assert totals.received_cents == totals.activated_cents == vouchers * 1000
    with connect(ledger.database_url) as connection:
        write_projection(connection, report)
        write_projection(connection, report)  # rerunning replaces, never adds
    assert scalar(ledger, "SELECT count(*) FROM audit_collectivites") == len(partners)
    assert scalar(ledger, "SELECT sum(redeemed_vouchers) FROM audit_collectivites") == 1
