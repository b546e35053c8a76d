"""What keeps a long-running worker's database work flat, on the real PostgreSQL: the
recorded-outcome lookup probes the key once per request id even when the table was never
analysed (this machine's server runs with autovacuum off), and the outbox vacuum reclaims
the rows the batches delete."""

from __future__ import annotations

import psycopg
import pytest

from passnum.core.codec import pack_outcome
from passnum.core.database import connect
from passnum.core.processing import SELECT_RECORDED_OUTCOMES, vacuum_outbox
from passnum.core.settings import Settings

pytestmark = pytest.mark.integration

RECORDED = 50_000
LOOKED_UP = 1_000


def _record_outcomes(connection: psycopg.Connection, count: int) -> None:
    packed = pack_outcome([("passnum.redeemer.events", b"key", b"{}" * 200, None)])
    with connection.cursor().copy(
            "COPY request_outcomes (processor, request_id, fingerprint, outcome) FROM STDIN "
            "(FORMAT BINARY)") as copy:
        copy.set_types(["text", "text", "text", "bytea"])
        for index in range(count):
            copy.write_row(("redeemer", f"request-{index}", "v2:fingerprint", packed))
    connection.commit()


def test_the_outcome_lookup_probes_the_key_without_statistics(ledger: Settings) -> None:
    with connect(ledger.database_url) as connection:
        # Just written, never analysed (with autovacuum on, a minute could pass before it
        # is): the planner knows nothing of request_id, which is the point.
        _record_outcomes(connection, RECORDED)
        # Half recorded, half new: what a batch of retries and fresh requests asks.
        wanted = ([f"request-{index}" for index in range(0, RECORDED, RECORDED // 500)]
                  + [f"new-{index}" for index in range(LOOKED_UP - 500)])
        plan = "\n".join(row[0] for row in connection.execute(
            "EXPLAIN (ANALYZE, BUFFERS) " + SELECT_RECORDED_OUTCOMES,
            (wanted, "redeemer")).fetchall())
        rows = connection.execute(SELECT_RECORDED_OUTCOMES, (wanted, "redeemer"),
                                  binary=True).fetchall()
    assert sorted(row[0] for row in rows) == sorted(wanted[:500])
    assert "Seq Scan on request_outcomes" not in plan, plan
    assert "Rows Removed by Filter" not in plan, plan  # every row read was asked for
    # Nor every outcome of the processor read and hashed: the planner, guessing that few
    # rows are the redeemer's, hashed them all (O(table) a batch, spilling to disk).
    assert "Hash" not in plan, plan
    assert f"loops={LOOKED_UP}" in plan, plan  # one probe of the key per request id


def test_the_outbox_vacuum_reclaims_deleted_rows(ledger: Settings) -> None:
    with connect(ledger.database_url) as connection:
        big = b"x" * 200_000
        for _ in range(20):
            connection.execute(
                "INSERT INTO outbox (processor, input_topic, input_partition, events) "
                "VALUES ('redeemer', 'commands', 0, %s)", (big,))
        connection.execute("DELETE FROM outbox")
        connection.commit()
        vacuum_outbox(connection)
        assert connection.autocommit is False  # the batches' connection is left as it was
        vacuumed = connection.execute(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox'").fetchone()
        # The statistics collector may lag a moment; the function's own report does not.
        if vacuumed == (0,):
            connection.execute("SELECT pg_stat_clear_snapshot()")
            vacuumed = connection.execute(
                "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox'"
            ).fetchone()
    assert vacuumed is not None and vacuumed[0] >= 1
