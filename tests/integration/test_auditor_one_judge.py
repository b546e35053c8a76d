"""One judge: legitimate traffic decided by the real workers audits SOUND with no finding
and the live state agrees, including what once raised false alarms (redeem, cancel and
redeem again within one second; a back-dated scan before the venue's accreditation or the
booklet's activation; a scan dated in the future; an order by an unknown SIREN); a check
and a month not ended are answered again from the present state; the read models load once
per judgement; a database row the log does not explain is named with its key and the events
behind it, a moved chain head too; and forgeries planted in the log (a new well-chained
stream, an appended well-linked event, a head signed with another key, a forged checkpoint)
are each named by their event."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from passnum.core.codec import CHAIN_HEADER, SIGNATURE_HEADER, encode, signed_head_message

from passnum.ledger.identity import event_id_for
from passnum.core.database import connect
from passnum.core.head_signatures import trusted_head_keys
from passnum.core.log import make_producer
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites, venues
from passnum.tools.scenario import accreditations, booklet_codes
from schemas.messages import (
    CancelRedemption,
    CheckVoucher,
    CloseSettlementMonth,
    FundsReceived,
    OrderBooklets,
    RedeemVoucher,
)
from services.auditor import checkpoint
from services.auditor.live import agree_with_database
from services.auditor.publish import publish_auditor_events
from services.auditor.replay import Replayer, ReplayOptions
from tests.integration.helpers import MARCH, onboard, scalar, wait_for_rows
from tests.support.chained_log import (
    ChainedLogWriter,
    ChainedRecord,
    ChainHead,
    send_with_kafka_python,
)

pytestmark = pytest.mark.integration


def decided(client: LedgerClient, command: object) -> object:
    client.send([command])  # type: ignore[list-item]
    events = client.wait_for([command.request_id])[command.request_id]  # type: ignore[attr-defined]
    return events[0]


def test_legitimate_traffic_audits_sound_and_a_stray_row_is_named(ledger, start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker("issuer")
    start_worker("redeemer")
    partner, venue = collectivites(1)[0], venues(1)[0]
    client = LedgerClient(ledger)
    onboard(client, [partner], booklets=1, venues=[])  # activated at MARCH
    accredited_at = MARCH + timedelta(days=5)
    client.send(accreditations([venue], accredited_at, tag="late"))
    wait_for_rows(ledger, "SELECT count(*) FROM providers", 1)
    codes = booklet_codes(ledger.voucher_code_key.encode(), partner, range(1, 2))

    def scan(number: int, at: datetime, tag: str) -> object:
        return decided(client, RedeemVoucher(request_id=f"scan-{tag}", occurred_at=at,
                                             code=codes[number], siret=venue.siret))

    at = MARCH + timedelta(days=6, microseconds=100_000)
    first = scan(0, at, "first")
    assert first.type == "voucher_redeemed", first  # type: ignore[attr-defined]
    cancelled = decided(client, CancelRedemption(
        request_id="cancel-fast", occurred_at=at + timedelta(milliseconds=300),
        voucher_id=first.voucher_id, siret=venue.siret))  # type: ignore[attr-defined]
    assert cancelled.type == "redemption_cancelled", cancelled  # type: ignore[attr-defined]
    again = scan(0, at + timedelta(milliseconds=600), "again")
    assert again.type == "voucher_redeemed", again  # type: ignore[attr-defined]
    refusals = {
        "venue_not_accredited_at_scan_time": scan(1, accredited_at - timedelta(days=3), "old"),
        "booklet_not_activated_at_scan_time": scan(2, MARCH - timedelta(days=1), "older"),
        "scan_in_the_future": scan(3, datetime.now(timezone.utc) + timedelta(days=90), "next"),
    }
    for reason, outcome in refusals.items():
        assert (outcome.type, outcome.reason) == ("redemption_rejected", reason)  # type: ignore[attr-defined]
    assert scan(4, accredited_at + timedelta(days=2), "offline").type == "voucher_redeemed"  # type: ignore[attr-defined]
    refused = decided(client, OrderBooklets(request_id="order-unknown", occurred_at=at,
                                            siren="000000000", booklet_count=1))
    assert refused.reason == "unknown_collectivite", refused  # type: ignore[attr-defined]
    # a question is answered from the present state, and a refusal that time lifts does
    # not bind its request id: neither is recorded as the request's outcome
    question = CheckVoucher(request_id="check-same-key", occurred_at=at, code=codes[5],
                            siret=venue.siret)
    assert decided(client, question).valid  # type: ignore[attr-defined]
    assert scan(5, at + timedelta(seconds=1), "checked").type == "voucher_redeemed"  # type: ignore[attr-defined]
    now = datetime.now(timezone.utc)
    close = CloseSettlementMonth(request_id="close-this-month", occurred_at=now,
                                 month=now.strftime("%Y-%m"))
    assert decided(client, close).reason == "month_not_ended"  # type: ignore[attr-defined]
    client.send([question, close])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (len(client.events_by_request[question.request_id]) < 2
                                           or len(client.events_by_request[close.request_id]) < 2):
        client.poll()
    answer = client.events_by_request[question.request_id][1]
    assert (answer.valid, answer.reason) == (False, "already_redeemed")  # type: ignore[attr-defined]
    assert client.events_by_request[close.request_id][1].reason == "month_not_ended"  # type: ignore[attr-defined]
    assert scalar(ledger, "SELECT count(*) FROM request_outcomes WHERE request_id IN "
                  "('check-same-key', 'close-this-month')") == 0
    client.close()
    assert scalar(ledger, "SELECT count(*) FROM issuer_envelopes WHERE siren = '000000000'") == 0

    keys = trusted_head_keys(ledger)  # the key the workers generated at first start
    assert len(keys) == 1
    replayer = Replayer(ledger, ReplayOptions(head_keys=keys))
    replayer.read()
    report = agree_with_database(ledger, replayer, replayer.judge())
    assert report.sound and not report.findings, report.findings
    assert report.extra["live_agreement"] == "agrees"
    assert report.as_of == datetime.now(timezone.utc).date().isoformat()
    # the read models: loaded by each judgement, replaced and not added to
    assert scalar(ledger, "SELECT sum(redeemed_vouchers) FROM audit_collectivites") == 3
    agree_with_database(ledger, replayer, replayer.judge())
    assert scalar(ledger, "SELECT count(*) FROM audit_booklets") == 1
    # (loaded without its indexes, which are built again in the same transaction)
    assert scalar(ledger, "SELECT string_agg(indexname || ' ' || split_part(indexdef, ' USING ', "
                  "2), '; ' ORDER BY indexname) FROM pg_indexes WHERE tablename = "
                  "'audit_booklets'") == ("audit_booklets_by_siren btree (siren); "
                                          "audit_booklets_pkey btree (booklet_id)")
    assert scalar(ledger, "SELECT count(*) FROM pg_constraint WHERE conrelid = "
                  "'audit_booklets'::regclass AND contype = 'p'") == 1

    with connect(ledger.database_url) as connection:
        connection.execute("INSERT INTO issuer_envelopes (siren, state) VALUES ('000000000', "
                           "'{\"received_cents\": 0, \"activated_cents\": 0}'::jsonb)")
        connection.execute("DELETE FROM redemptions WHERE voucher_id = %s",
                           (first.voucher_id,))  # type: ignore[attr-defined]
        connection.execute("UPDATE processor_positions SET chain_sequence = chain_sequence + 1 "
                           "WHERE processor = 'issuer' AND chain_sequence > 0")
        connection.commit()
    report = agree_with_database(ledger, replayer, replayer.judge())
    assert report.extra["live_agreement"] == "DISAGREES"
    assert "chain_head_disagrees" in {finding.code for finding in report.findings}
    stray = [f for f in report.findings if f.code == "live_state_disagrees"]
    assert len(stray) == 2, report.findings
    envelope = next(f for f in stray if "issuer_envelopes" in f.detail)
    assert envelope.detail.startswith("issuer_envelopes 000000000: row in the database")
    redemption = next(f for f in stray if f.detail.startswith("redemptions"))
    assert first.voucher_id in redemption.detail  # type: ignore[attr-defined]
    assert "no row in the database" in redemption.detail
    assert redemption.event_ids == (f"fingerprint:{_fingerprint(again.event_id)}",)  # type: ignore[attr-defined]

    # planted: a new, consistently chained stream, and a well-linked event appended to a
    # real stream's tail; neither is signed with the processors' key
    heads = replayer.chains.heads()
    writer = ChainedLogWriter(topology_for(ledger))
    stream = writer.stream_for("issuer", partner.siren.encode())
    writer.heads[stream] = ChainHead(*heads[stream])
    funds = [FundsReceived(event_id=event_id_for("issuer", f"forged-{n}", 0),
                           request_id=f"forged-{n}", occurred_at=at, siren=partner.siren,
                           face_value_cents=500_000, fees_cents=0, payment_reference="x",
                           total_received_cents=500_000 * n) for n in (1, 2, 3)]
    appended = writer.issuer(partner.siren, [funds[0], funds[2]])
    # the last one signed, but with a key of the forger's own
    forger = Ed25519PrivateKey.generate()
    link = appended[1].headers[0][1]
    appended[1] = replace(appended[1], headers=(*appended[1].headers, (
        SIGNATURE_HEADER, forger.sign(signed_head_message(link)).hex().encode())))
    value = encode(funds[1])
    forged_stream = f"issuer/{topology_for(ledger).issuer_commands.name}-shadow/0"
    new_stream = [ChainedRecord(appended[0].topic, appended[0].partition, appended[0].key, value,
                                ((CHAIN_HEADER, writer.chain(forged_stream, value)),))]
    producer = make_producer(ledger)
    try:
        send_with_kafka_python(producer, appended + new_stream)
    finally:
        producer.close()
    # and a checkpoint of March signed with a key of the forger's own, over another root
    fake_root = checkpoint.MonthRoot("2026-03", "f" * 64, 3, (), ())
    fake = checkpoint.sign(forger, fake_root, at)
    publish_auditor_events(ledger, [fake])
    forged = Replayer(ledger, ReplayOptions(head_keys=keys))
    forged.read()
    report = forged.judge()
    named = {f.code: f.event_ids for f in report.findings}
    assert named["unsigned_chain_tail"] == (funds[0].event_id,), report.findings
    assert named["unknown_stream"] == (funds[1].event_id,), report.findings
    assert named["head_signature_invalid"] == (funds[2].event_id,), report.findings
    assert named["checkpoint_mismatch"] == (fake.event_id,), report.findings


def _fingerprint(event_id: str) -> str:
    from services.auditor import wire

    return f"{wire.event_fingerprint(event_id):016x}"
