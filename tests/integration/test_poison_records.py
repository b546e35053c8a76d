"""A record that fails the same way every time it is decided is answered, not retried: it
goes to the dead-letter topic (or becomes a rejection) with its reason, in the transaction
that moves the position past it, and every other record of its batch is decided. The
worker never exits for it (issue: one request from any collectivité stopped the issuer)."""

from __future__ import annotations

import json
import time
from datetime import date

import pytest

from passnum.core.log import read_to_end
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites
from schemas.messages import (
    CloseSettlementMonth,
    FundEnvelope,
    OrderBooklets,
    RecordFundsReceived,
    RedeemVoucher,
    RegisterCollectivite,
)
from tests.integration.helpers import MARCH, scalar

pytestmark = pytest.mark.integration


def _dead_letters(settings, expected: int, client: LedgerClient) -> list[dict]:
    topic = topology_for(settings).dead_letters.name
    letters: list[dict] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        letters = [json.loads(record.value) for record in read_to_end(settings, [topic])]
        if len(letters) >= expected:
            break
        client.poll(0.1)
    return letters


def _register(siren: str, name: str, tag: str) -> RegisterCollectivite:
    return RegisterCollectivite(request_id=f"{tag}-{siren}", occurred_at=MARCH, siren=siren,
                                name=name)


def test_a_record_that_fails_alone_is_found_and_dead_lettered(ledger, start_worker) -> None:
    """Fault injection makes any batch holding the marked record fail with ValueError, as
    a value no column can hold would: the runner splits the batch down to that record."""
    worker = start_worker("issuer", fault_poison_marker="POISON-MARK")
    client = LedgerClient(ledger)
    partners = collectivites(9)
    commands = [_register(partner.siren, partner.name, "ok") for partner in partners[:8]]
    poison = _register(partners[8].siren, "POISON-MARK commune", "poison")
    commands.insert(5, poison)
    client.send(commands)  # one burst: the poison record shares a batch with the others
    decided = client.wait_for([c.request_id for c in commands if c is not poison])
    assert all(events[0].type == "collectivite_registered" for events in decided.values())
    letters = _dead_letters(ledger, 1, client)
    assert [letter["reason"] for letter in letters] == ["processing_failed"]
    assert "ValueError: fault injection" in letters[0]["detail"]
    assert bytes.fromhex(letters[0]["value_hex"]).startswith(b"{")
    # The poison record changed nothing and has no outcome; the worker did not exit.
    assert scalar(ledger, "SELECT count(*) FROM issuer_envelopes") == 8
    assert scalar(ledger, "SELECT count(*) FROM request_outcomes WHERE request_id LIKE "
                          "'poison-%'") == 0
    assert worker.running()
    # And the partition goes on: a command after it is decided.
    late = _register(partners[8].siren, "Commune sans souci", "late")
    client.send([late])
    assert client.wait_for([late.request_id])[late.request_id][0].type == (
        "collectivite_registered")


def _raw(command, **changes) -> bytes:
    document = command.model_dump(mode="json")
    document.update(changes)
    return json.dumps(document).encode()


def test_the_reported_poison_records_stop_nothing(ledger, start_worker) -> None:
    """The records of the issue, written straight onto the topics, each followed by a valid
    command: every one is refused with a reason; the valid ones are all decided."""
    issuer = start_worker("issuer")
    redeemer = start_worker("redeemer")
    topology = topology_for(ledger)
    client = LedgerClient(ledger)
    partner = collectivites(1)[0]
    siren = partner.siren
    setup = [_register(siren, partner.name, "setup"),
             FundEnvelope(request_id="setup-fund", occurred_at=MARCH, siren=siren,
                          committed_cents=10_000_000)]
    client.send(setup)
    client.wait_for([c.request_id for c in setup])
    issuer_topic, redeemer_topic = topology.issuer_commands.name, topology.redeemer_commands.name
    order = OrderBooklets(request_id="far-order", occurred_at=MARCH, siren=siren,
                          booklet_count=1)
    funds = RecordFundsReceived(request_id="funds-1", occurred_at=MARCH, siren=siren,
                                face_value_cents=6_000_000_000, payment_reference="p1")
    poison: list[tuple[str, bytes, bytes]] = [
        (issuer_topic, siren.encode(), _raw(order, valid_until=date(9999, 12, 31).isoformat())),
        (issuer_topic, siren.encode(), _raw(funds)),
        (issuer_topic, siren.encode(), _raw(funds, request_id="funds-2",
                                            payment_reference="p2")),
        (issuer_topic, siren.encode(), b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        (issuer_topic, siren.encode(), _raw(RedeemVoucher(
            request_id="wrong-topic", occurred_at=MARCH, code="ABCD-EFGH-IJKL",
            siret="73282932000074"))),
        (redeemer_topic, b"settlement", _raw(CloseSettlementMonth(
            request_id="close-far", occurred_at=MARCH, month="2026-01"), month="9999-12")),
    ]
    valid: list[str] = []
    for index, (topic, key, value) in enumerate(poison):
        client.send_raw(topic, key, value)
        follower = FundEnvelope(request_id=f"valid-{index}", occurred_at=MARCH, siren=siren,
                                committed_cents=100)
        client.send([follower])
        valid.append(follower.request_id)
    decided = client.wait_for(valid, timeout_seconds=60)
    assert all(events[0].type == "envelope_funded" for events in decided.values())
    refused = _outcomes_of(client, ["far-order", "funds-1", "funds-2", "close-far"])
    letters = _dead_letters(ledger, 0, client)
    lettered_offsets = {(letter["source_topic"], letter["source_offset"]) for letter in letters}
    # Every poison record is answered: a rejection event, or a dead letter with a reason.
    assert all(letter["reason"] and letter["detail"] for letter in letters)
    for request_id in ("far-order", "funds-2", "close-far"):
        events = refused.get(request_id)
        assert events is None or all("rejected" in event.type for event in events), events
    answered = sum(1 for events in refused.values() if events) + len(lettered_offsets)
    assert answered >= len(poison) - 1  # funds-1 alone is a valid payment
    assert issuer.running() and redeemer.running()


def _outcomes_of(client: LedgerClient, request_ids: list[str]) -> dict[str, list]:
    """The outcomes that came for these requests (a dead-lettered one has none)."""
    client.poll(1.0)
    return {request_id: client.events_by_request[request_id] for request_id in request_ids
            if request_id in client.events_by_request}
