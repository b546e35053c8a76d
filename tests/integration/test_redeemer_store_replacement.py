"""A redemption cancelled and the voucher redeemed again within one batch: the stored row
must be the new redemption (else settlement would pay the cancelled one)."""

from __future__ import annotations

import psycopg
import pytest

from passnum.ledger.voucher import RedeemerView, Redemption
from services.redeemer import store

pytestmark = pytest.mark.integration


def redemption(siret: str, event_id: str, at: str) -> Redemption:
    return Redemption("123456782-0000001-01", "123456782-0000001", "123456782", siret, 1000,
                      at, event_id)


def test_cancel_then_redeem_again_in_one_batch_replaces_the_row(ledger) -> None:
    first = redemption("73282932000074", "event-first", "2026-03-02T10:00:00+00:00")
    second = redemption("44306184100047", "event-second", "2026-03-02T11:00:00+00:00")
    with psycopg.connect(ledger.database_url) as connection:
        store.save_view_changes(connection, RedeemerView({}, {}, {}),
                                {first.voucher_id: first}, [])
        connection.commit()
        before = RedeemerView({}, {first.voucher_id: first}, {})
        store.save_view_changes(connection, before, {second.voucher_id: second}, [])
        connection.commit()
        rows = connection.execute("SELECT siret, event_id FROM redemptions").fetchall()
    assert rows == [(second.siret, second.event_id)]
