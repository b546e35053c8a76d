"""A restriction racing a scan, in PostgreSQL: what the redeemer decides is what the log
dates say, so that the auditor, judging by the log, reaches the same verdict.

- A venue's suspension is decided on the venue's partition while scans of that venue are
  decided on others: the suspension waits for the scan batches in flight
  (`store.lock_venue_statuses`) and takes effect no earlier than the latest scan they
  accepted (`passnum.ledger.venue.effective_instant`).
- A block reaches the redeemer on the issuer's topic: the first redemption of the booklet
  decided after it records `BookletBlockApplied` in the booklet's stream, once.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest

from schemas.messages import BookletBlocked, ChangeProviderStatus
from tests.integration.helpers import MARCH, scalar, wait_for_rows
from tests.integration.test_redeemer_settlement import _handler_on, _redeem, _seed_state

pytestmark = pytest.mark.integration


def test_a_suspension_waits_for_scans_in_flight_and_takes_effect_after_them(ledger) -> None:  # type: ignore[no-untyped-def]
    handler = _handler_on(ledger)
    siret, codes = _seed_state(ledger, handler)
    scan_at = MARCH + timedelta(seconds=3)
    suspension = ChangeProviderStatus(request_id="suspend", occurred_at=MARCH, siret=siret,
                                      status="suspended", reason="contrôle")
    decided: dict[str, object] = {}

    def suspend_on_another_partition() -> None:
        with psycopg.connect(ledger.database_url) as connection, connection.transaction():
            decided["events"] = handler.decide_commands(connection, [suspension])[0].events

    with psycopg.connect(ledger.database_url) as redeeming:
        with redeeming.transaction():
            (scan,) = handler.decide_commands(redeeming, [_redeem("r1", codes[0], siret,
                                                                  scan_at)])
            assert scan.events[0][2].type == "voucher_redeemed"
            deciding = threading.Thread(target=suspend_on_another_partition)
            deciding.start()
            # The suspension waits for the venue lock while the scan's batch is not
            # committed (seen in PostgreSQL's lock table), and has decided nothing...
            wait_for_rows(ledger, "SELECT count(*) FROM pg_locks WHERE locktype = "
                          "'advisory' AND NOT granted", 1, timeout_seconds=30)
            assert deciding.is_alive() and "events" not in decided
        deciding.join(30)
    (_, _, event), = decided["events"]  # type: ignore[misc]
    assert event.type == "provider_status_changed"
    # ...then takes effect at the scan it could not have refused, not at its own date.
    assert event.occurred_at == scan_at
    assert scalar(ledger, "SELECT changed_at FROM providers") == scan_at
    # A scan decided after the suspension is refused, whatever its date.
    with psycopg.connect(ledger.database_url) as connection, connection.transaction():
        (late,) = handler.decide_commands(connection, [_redeem("r2", codes[1], siret, MARCH)])
    assert (late.events[0][2].type, late.events[0][2].reason) == (
        "redemption_rejected", "provider_not_accredited")


def test_a_reported_block_is_applied_once_in_the_booklets_stream(ledger) -> None:  # type: ignore[no-untyped-def]
    handler = _handler_on(ledger)
    siret, codes = _seed_state(ledger, handler)
    booklet_id = scalar(ledger, "SELECT booklet_id FROM redeemer_booklets")
    siren = booklet_id.split("-")[0]
    with psycopg.connect(ledger.database_url) as connection, connection.transaction():
        handler.apply_events(connection, [BookletBlocked(
            event_id="blocked", request_id="lost", occurred_at=MARCH, siren=siren,
            booklet_id=booklet_id, reason="lost")])
    with psycopg.connect(ledger.database_url) as connection, connection.transaction():
        first, second = handler.decide_commands(connection, [
            _redeem("r1", codes[0], siret, MARCH + timedelta(hours=1)),
            _redeem("r2", codes[1], siret, MARCH + timedelta(hours=1))])
    # The block is recorded before the first redemption it refuses, never as its answer.
    assert [event.type for _, _, event in first.preface] == ["booklet_block_applied"]
    assert [event.reason for _, _, event in first.events] == ["booklet_blocked"]
    assert (second.preface, second.events[0][2].reason) == ([], "booklet_blocked")
    assert first.preface[0][0] == first.events[0][0]  # the booklet's partition, too
    assert first.preface[0][1] == first.events[0][1]
    # Applied for good: a later batch loads it applied and records it no more.
    with psycopg.connect(ledger.database_url) as connection, connection.transaction():
        (later,) = handler.decide_commands(connection, [
            _redeem("r3", codes[2], siret, MARCH + timedelta(hours=2))])
    assert later.preface == [] and later.events[0][2].reason == "booklet_blocked"
    assert scalar(ledger, "SELECT count(*) FROM redeemer_applied_blocks") == 1
