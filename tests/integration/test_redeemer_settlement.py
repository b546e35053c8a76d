"""Settlement on the real broker, worker processes and PostgreSQL: closing a month pays every
redemption once, a redemption dated in a closed month goes to the next statement, closing
twice is refused, the statements are rebuilt from the log alone, and the exports (CSV and
SEPA pain.001) add up. The race between a close and redemptions decided on other
partitions is checked at the transaction level too, with two database connections."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ElementTree
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from passnum.core.codec import decode_event
from passnum.core.log import read_to_end
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites, venues
from passnum.ledger.settlement_month import SettlementReplay
from passnum.tools.scenario import booklet_codes
from schemas.messages import (
    BookletActivated,
    BookletIssued,
    CancelRedemption,
    CloseSettlementMonth,
    RedeemVoucher,
)
from services.redeemer.cli import wait_for_close
from services.redeemer.handler import RedeemerHandler
from services.redeemer.store import ConcurrentSettlement
from tests.integration.helpers import MARCH, onboard, scalar, wait_for_rows

pytestmark = pytest.mark.integration

APRIL_FIRST = datetime(2026, 3, 31, 22, 0, 5, tzinfo=timezone.utc)  # just after midnight in Paris
MAY_FIRST = datetime(2026, 4, 30, 22, 0, 5, tzinfo=timezone.utc)
BOOKLETS = 6


def _redeem(request_id: str, code: str, siret: str, at: datetime) -> RedeemVoucher:
    return RedeemVoucher(request_id=request_id, occurred_at=at, code=code, siret=siret)


def _close(request_id: str, month: str, at: datetime) -> CloseSettlementMonth:
    return CloseSettlementMonth(request_id=request_id, occurred_at=at, month=month)


def _only(client: LedgerClient, command: object) -> list:
    client.send([command])  # type: ignore[list-item]
    request_id = command.request_id  # type: ignore[attr-defined]
    if isinstance(command, CloseSettlementMonth):
        return wait_for_close(client, request_id, timeout_seconds=60)
    return client.wait_for([request_id], timeout_seconds=60)[request_id]


def _log_events(settings) -> list:
    records = read_to_end(settings, [topology_for(settings).redeemer_events.name])
    return [decode_event(record.value) for record in records]


def _export(settings, month: str, directory: Path) -> tuple[list[dict], ElementTree.Element]:
    csv_path, sepa_path = directory / f"{month}.csv", directory / f"{month}.xml"
    # The programme's debtor account is configuration: without it the SEPA export refuses.
    environment = {**os.environ, **settings.as_environment(),
                   "PASSNUM_DEBTOR_NAME": "Opérateur du pass numérique",
                   "PASSNUM_DEBTOR_IBAN": "FR7630006000011234567890189"}
    finished = subprocess.run(
        [str(Path(sys.executable).parent / "passnum"), "redeemer", "export-statements",
         "--month", month, "--csv", str(csv_path), "--sepa", str(sepa_path),
         "--execution-date", "2026-04-10"],
        env=environment, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    with csv_path.open(encoding="utf-8") as lines:
        rows = list(csv.DictReader(lines))
    return rows, ElementTree.parse(sepa_path).getroot()


def test_close_pay_once_late_redemptions_next_month_and_exports(ledger, start_worker,
                                                                tmp_path) -> None:
    start_worker("issuer")
    start_worker("redeemer")
    partner, venue_list = collectivites(1)[0], venues(3)
    client = LedgerClient(ledger)
    onboard(client, [partner], BOOKLETS, venue_list)
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated", BOOKLETS)
    codes = booklet_codes(ledger.voucher_code_key.encode(), partner, range(1, BOOKLETS + 1))
    march_codes, late_codes = codes[:-6], codes[-6:]

    # March: every venue redeems; one redemption is cancelled the same day.
    march = [_redeem(f"m{i}", code, venue_list[i % 3].siret, MARCH + timedelta(minutes=i))
             for i, code in enumerate(march_codes)]
    client.send(march)
    outcomes = client.wait_for([c.request_id for c in march])
    assert all(events[0].type == "voucher_redeemed" for events in outcomes.values())
    cancelled = outcomes["m0"][0]
    assert _only(client, CancelRedemption(
        request_id="cancel-m0", occurred_at=MARCH + timedelta(hours=2),
        voucher_id=cancelled.voucher_id, siret=venue_list[0].siret))[0].type == (
        "redemption_cancelled")

    # Too early, then on time, then twice.
    too_early = _only(client, _close("close-march-early", "2026-03", APRIL_FIRST
                                     - timedelta(seconds=10)))
    assert too_early[0].reason == "month_not_ended"
    closing = _only(client, _close("close-march", "2026-03", APRIL_FIRST))
    statements = [e for e in closing if e.type == "settlement_statement_issued"]
    assert closing[-1].type == "settlement_month_closed"
    assert sorted(s.siret for s in statements) == sorted(v.siret for v in venue_list)
    paid_in_march = len(march) - 1
    assert sum(s.voucher_count for s in statements) == paid_in_march
    assert sum(s.face_value_cents for s in statements) == paid_in_march * 1000
    assert cancelled.event_id not in {i for s in statements for i in s.redemption_event_ids}
    assert _only(client, _close("close-march-again", "2026-03", MAY_FIRST))[0].reason == (
        "month_already_closed")
    assert scalar(ledger, "SELECT count(*) FROM redemptions WHERE settlement_month = "
                          "'2026-03'") == paid_in_march

    # A settled redemption is no longer cancellable, even on its day.
    settled = outcomes["m1"][0]
    assert _only(client, CancelRedemption(
        request_id="cancel-m1", occurred_at=settled.occurred_at + timedelta(minutes=1),
        voucher_id=settled.voucher_id, siret=settled.siret))[0].reason == "already_settled"

    # Offline scans dated in March arrive after the close: April's statement pays them.
    late = [_redeem(f"late{i}", code, venue_list[0].siret, datetime(
        2026, 3, 30, 15, i, tzinfo=timezone.utc)) for i, code in enumerate(late_codes)]
    client.send(late)
    assert all(events[0].type == "voucher_redeemed" for events in
               client.wait_for([c.request_id for c in late]).values())
    april = _only(client, _close("close-april", "2026-04", MAY_FIRST))
    (april_statement,) = [e for e in april if e.type == "settlement_statement_issued"]
    assert april_statement.voucher_count == len(late)
    assert april_statement.siret == venue_list[0].siret
    assert _only(client, _close("close-march-late", "2026-03", MAY_FIRST))[0].reason == (
        "month_already_closed")

    # The log alone rebuilds who was paid in which month, as PostgreSQL recorded it.
    replay = SettlementReplay().apply_all(_log_events(ledger))
    assert replay.findings() == []
    assert replay.unsettled() == []
    with psycopg.connect(ledger.database_url) as connection:
        recorded = dict(connection.execute(
            "SELECT event_id, settlement_month FROM redemptions").fetchall())
    assert replay.settled_month_of() == recorded

    _check_exports(ledger, tmp_path, venue_list, paid_in_march)
    client.close()


def _check_exports(ledger, directory: Path, venue_list: list, paid_in_march: int) -> None:
    rows, document = _export(ledger, "2026-03", directory)
    assert sum(int(row["voucher_count"]) for row in rows) == paid_in_march
    assert sum(int(row["face_value_cents"]) for row in rows) == paid_in_march * 1000
    ibans = {venue.siret: venue.iban for venue in venue_list}
    assert all(row["iban"] == ibans[row["siret"]] for row in rows)
    namespace = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}
    header = document.find("p:CstmrCdtTrfInitn/p:GrpHdr", namespace)
    assert header.findtext("p:NbOfTxs", namespaces=namespace) == "3"
    assert header.findtext("p:CtrlSum", namespaces=namespace) == f"{paid_in_march * 10}.00"
    credited = {node.text for node in document.iterfind(".//p:CdtrAcct/p:Id/p:IBAN", namespace)}
    assert credited == set(ibans.values())


def test_a_burst_of_redemptions_around_a_close_is_paid_exactly_once(ledger, start_worker
                                                                    ) -> None:
    """Redemptions dated in March, on every partition, sent just before, with and just after
    the close: each is on exactly one statement, March's or April's."""
    start_worker("issuer")
    start_worker("redeemer")
    partner, venue_list = collectivites(1)[0], venues(4)
    client = LedgerClient(ledger)
    onboard(client, [partner], 20, venue_list)
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated", 20)
    codes = booklet_codes(ledger.voucher_code_key.encode(), partner, range(1, 21))
    stream = [_redeem(f"b{i}", code, venue_list[i % 4].siret,
                      datetime(2026, 3, 20, tzinfo=timezone.utc) + timedelta(seconds=i))
              for i, code in enumerate(codes)]
    half = len(stream) // 2
    client.send(stream[:half] + [_close("close-march", "2026-03", APRIL_FIRST)]
                + stream[half:])
    client.wait_for([c.request_id for c in stream])
    wait_for_close(client, "close-march")
    _only(client, _close("close-april", "2026-04", MAY_FIRST))

    replay = SettlementReplay().apply_all(_log_events(ledger))
    assert replay.findings() == []
    months = Counter(replay.settled_month_of().values())
    assert sum(months.values()) == len(stream)
    assert set(months) <= {"2026-03", "2026-04"}
    assert scalar(ledger, "SELECT count(*) FROM redemptions WHERE settlement_month IS NULL") == 0
    client.close()


# ------------------------------------------------------------------ the race, in PostgreSQL


def _handler_on(settings) -> RedeemerHandler:
    return RedeemerHandler(topology_for(settings), settings.voucher_code_key.encode())


def _seed_state(settings, handler: RedeemerHandler) -> tuple[str, list[str]]:
    """One activated booklet and one venue, written with the handler's own code paths."""
    from passnum.tools.scenario import accreditations

    partner, venue = collectivites(1)[0], venues(1)[0]
    booklet_id = f"{partner.siren}-0000001"
    facts = [
        BookletIssued(event_id="issued", request_id="seed", occurred_at=MARCH,
                      siren=partner.siren, order_id="o1", booklet_id=booklet_id,
                      voucher_count=partner.vouchers_per_booklet, face_value_cents=1000,
                      target_group="general", perimeter=(), valid_from=MARCH.date(),
                      valid_until=MARCH.date().replace(month=12, day=31),
                      grace_until=MARCH.date().replace(year=2027, month=1, day=31)),
        BookletActivated(event_id="activated", request_id="seed", occurred_at=MARCH,
                         siren=partner.siren, booklet_id=booklet_id, activated_cents=10_000)]
    with psycopg.connect(settings.database_url) as connection, connection.transaction():
        handler.apply_events(connection, facts)
        handler.decide_commands(connection, accreditations([venue], MARCH, tag="race"))
    return venue.siret, booklet_codes(settings.voucher_code_key.encode(), partner, range(1, 2))


def test_a_redemption_committed_after_a_concurrent_close_waits_for_the_next(ledger) -> None:
    handler = _handler_on(ledger)
    siret, codes = _seed_state(ledger, handler)
    with psycopg.connect(ledger.database_url) as redeeming, \
            psycopg.connect(ledger.database_url) as closing:
        with redeeming.transaction():
            handler.decide_commands(redeeming, [_redeem("r1", codes[0], siret, MARCH)])
            with closing.transaction():  # decided while r1 is not committed
                events = handler.decide_commands(
                    closing, [_close("close", "2026-03", APRIL_FIRST)])[0].events
        assert [event.type for _, _, event in events] == ["settlement_month_closed"]
        with closing.transaction():
            april = handler.decide_commands(closing, [_close("c2", "2026-04", MAY_FIRST)])
        statement = april[0].events[0][2]
        assert statement.type == "settlement_statement_issued"
        assert statement.voucher_count == 1
    assert scalar(ledger, "SELECT settlement_month FROM redemptions") == "2026-04"


def test_a_cancellation_racing_a_close_fails_and_is_decided_again(ledger) -> None:
    handler = _handler_on(ledger)
    siret, codes = _seed_state(ledger, handler)
    with psycopg.connect(ledger.database_url) as connection, connection.transaction():
        handler.decide_commands(connection, [_redeem("r1", codes[0], siret, MARCH)])
    voucher_id = scalar(ledger, "SELECT voucher_id FROM redemptions")
    cancel = CancelRedemption(request_id="cancel", occurred_at=MARCH + timedelta(minutes=5),
                              voucher_id=voucher_id, siret=siret)
    closed = threading.Event()

    def close_when_the_view_is_loaded() -> None:
        with psycopg.connect(ledger.database_url) as closing, closing.transaction():
            handler.decide_commands(closing, [_close("close", "2026-03", APRIL_FIRST)])
        closed.set()

    from services.redeemer import store

    original_load_view = store.load_view

    def load_then_let_the_close_commit(*arguments, **keywords):
        view = original_load_view(*arguments, **keywords)
        worker = threading.Thread(target=close_when_the_view_is_loaded)
        worker.start()
        worker.join(timeout=30)
        assert closed.is_set(), "the close must commit while the cancellation is deciding"
        return view

    store.load_view = load_then_let_the_close_commit
    try:
        with pytest.raises(ConcurrentSettlement):
            with psycopg.connect(ledger.database_url) as connection, connection.transaction():
                handler.decide_commands(connection, [cancel])
    finally:
        store.load_view = original_load_view
    # Decided again (what the worker's retry does): the redemption is paid, not cancelled.
    with psycopg.connect(ledger.database_url) as connection, connection.transaction():
        decision = handler.decide_commands(connection, [cancel])[0]
    assert decision.events[0][2].reason == "already_settled"
    assert scalar(ledger, "SELECT settlement_month FROM redemptions") == "2026-03"


def test_inside_one_batch_the_log_order_decides_what_a_close_pays(ledger) -> None:
    """A redemption before the close in the batch is on the statement; a cancellation after
    it sees the payment (not a crash, not a cancelled paid redemption); a redemption after
    it waits for the next month."""
    handler = _handler_on(ledger)
    siret, codes = _seed_state(ledger, handler)
    first, second = codes[0], codes[1]
    voucher_id = f"{collectivites(1)[0].siren}-0000001-01"
    batch = [_redeem("before", first, siret, MARCH),
             _close("close", "2026-03", APRIL_FIRST),
             CancelRedemption(request_id="cancel-after", occurred_at=MARCH + timedelta(
                 minutes=5), voucher_id=voucher_id, siret=siret),
             _redeem("after", second, siret, MARCH + timedelta(minutes=6))]
    with psycopg.connect(ledger.database_url) as connection, connection.transaction():
        decisions = handler.decide_commands(connection, batch)
    types = [[event.type for _, _, event in decision.events] for decision in decisions]
    assert types == [["voucher_redeemed"],
                     ["settlement_statement_issued", "settlement_month_closed"],
                     ["redeemer_command_rejected"], ["voucher_redeemed"]]
    statement = decisions[1].events[0][2]
    assert statement.redemption_event_ids == (decisions[0].events[0][2].event_id,)
    assert decisions[2].events[0][2].reason == "already_settled"
    assert scalar(ledger, "SELECT count(*) FROM redemptions WHERE settlement_month IS NULL") == 1



def test_a_close_reading_and_marking_a_few_rows_per_call_pays_every_redemption(ledger) -> None:
    """A month's redemptions go to and from PostgreSQL `close_rows_per_call` at a time (so
    that the worker's event loop runs in between): with 2 a call, a close of 7 redemptions
    takes four calls each way, and still pays all 7, once."""
    from dataclasses import replace

    handler = replace(_handler_on(ledger), close_rows_per_call=2)
    siret, codes = _seed_state(ledger, handler)
    redemptions = [_redeem(f"r{index}", code, siret, MARCH + timedelta(minutes=index))
                   for index, code in enumerate(codes[:7])]
    with psycopg.connect(ledger.database_url) as connection, connection.transaction():
        redeemed = handler.decide_commands(connection, redemptions)
        closed = handler.decide_commands(connection, [_close("close", "2026-03", APRIL_FIRST)])
    statement = closed[0].events[0][2]
    assert statement.type == "settlement_statement_issued"
    assert sorted(statement.redemption_event_ids) == sorted(
        decision.events[0][2].event_id for decision in redeemed)
    assert statement.voucher_count == 7
    assert scalar(ledger, "SELECT count(*) FROM redemptions WHERE settlement_month = '2026-03'") == 7
