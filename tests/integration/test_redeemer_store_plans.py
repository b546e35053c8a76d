"""A batch's loads stay one key probe per key on tables the planner knows nothing about
(this machine's server runs with autovacuum off: nothing is ever analysed, and the
connections plan each execution with its parameters). A whole-table scan or a hash of
every row costs a batch time that grows with the ledger."""

from __future__ import annotations

from datetime import date, datetime, timezone

import psycopg
import pytest

from passnum.core.database import connect
from passnum.core.settings import Settings
from services.redeemer.store import SELECT_BOOKLETS, SELECT_REDEMPTIONS

pytestmark = pytest.mark.integration

BOOKLETS = 20_000
VOUCHERS_PER_BOOKLET = 5  # 100,000 redemptions: every voucher of every booklet
LOOKED_UP = 1_000


def _booklet_id(sequence: int) -> str:
    return f"552100554-{sequence:07d}"


def _seed(connection: psycopg.Connection) -> None:
    at = datetime(2026, 3, 10, tzinfo=timezone.utc)
    with connection.cursor().copy(
            "COPY redeemer_booklets (booklet_id, siren, voucher_count, face_value_cents, "
            "perimeter, valid_from, valid_until, grace_until, activated, activated_at) "
            "FROM STDIN") as copy:
        for sequence in range(BOOKLETS):
            copy.write_row((_booklet_id(sequence), "552100554", VOUCHERS_PER_BOOKLET, 1000, [],
                            date(2026, 1, 1), date(2026, 12, 31), date(2027, 1, 31), True, at))
    with connection.cursor().copy(
            "COPY redemptions (voucher_id, booklet_id, siren, siret, face_value_cents, "
            "redeemed_at, event_id) FROM STDIN") as copy:
        for sequence in range(BOOKLETS):
            for position in range(1, VOUCHERS_PER_BOOKLET + 1):
                copy.write_row((f"{_booklet_id(sequence)}-{position:02d}", _booklet_id(sequence),
                                "552100554", "12345678900012", 1000, at,
                                f"event-{sequence}-{position}"))
    connection.commit()


def _plan(connection: psycopg.Connection, query: str, keys: list[str]) -> str:
    return "\n".join(row[0] for row in connection.execute(
        "EXPLAIN (ANALYZE) " + query, (keys,), binary=True).fetchall())


def _assert_probes(plan: str, table: str) -> None:
    assert f"Seq Scan on {table}" not in plan, plan
    assert "Hash" not in plan, plan
    assert "Rows Removed by Filter" not in plan, plan  # every row read was asked for
    assert f"loops={LOOKED_UP})" in plan, plan  # one probe of the key per key


def test_a_batch_loads_its_booklets_and_redemptions_by_key_probes(ledger: Settings) -> None:
    with connect(ledger.database_url) as connection:
        _seed(connection)  # just written, never analysed: the point
        # Half known, half not: what a batch of fresh scans asks.
        known_booklets = [_booklet_id(sequence) for sequence in range(0, BOOKLETS, 40)]
        booklets = sorted(known_booklets + [_booklet_id(BOOKLETS + index) for index in range(500)])
        known_vouchers = [f"{_booklet_id(sequence)}-01" for sequence in range(0, BOOKLETS, 40)]
        vouchers = sorted(known_vouchers
                          + [f"{_booklet_id(sequence)}-09" for sequence in range(500)])
        booklet_plan = _plan(connection, SELECT_BOOKLETS, booklets)
        redemption_plan = _plan(connection, SELECT_REDEMPTIONS, vouchers)
        found_booklets = connection.execute(SELECT_BOOKLETS, (booklets,), binary=True).fetchall()
        found_redemptions = connection.execute(SELECT_REDEMPTIONS, (vouchers,),
                                               binary=True).fetchall()
    _assert_probes(booklet_plan, "redeemer_booklets")
    _assert_probes(redemption_plan, "redemptions")
    assert sorted(row[0] for row in found_booklets) == known_booklets
    assert sorted(row[0] for row in found_redemptions) == known_vouchers


def test_a_close_marks_what_it_pays_by_key_probes(ledger: Settings) -> None:
    """The redemptions marked paid since the last VACUUM keep their entries in the partial
    index of unpaid ones (autovacuum is off here): a plan by that index would read every
    redemption of the year at each call of a close. The marking probes the key instead."""
    from services.redeemer.store import MARK_PAID

    with connect(ledger.database_url) as connection:
        _seed(connection)
        listed = [f"{_booklet_id(sequence)}-01" for sequence in range(LOOKED_UP)]
        # The rest was paid by an earlier month: dead entries in the partial index.
        connection.execute("UPDATE redemptions SET settlement_month = '2026-02' "
                           "WHERE NOT voucher_id = ANY(%b)", (listed,), binary=True)
        connection.commit()
        events = [f"event-{sequence}-1" for sequence in range(LOOKED_UP)]
        plan = "\n".join(row[0] for row in connection.execute(
            "EXPLAIN (ANALYZE) " + MARK_PAID, ("2026-03", listed, events),
            binary=True).fetchall())
        paid = connection.execute("SELECT count(*) FROM redemptions "
                                  "WHERE settlement_month = '2026-03'").fetchone()
    _assert_probes(plan, "redemptions")
    assert "redemptions_unsettled" not in plan, plan
    assert paid == (LOOKED_UP,)
