"""Undecodable bytes and schema-invalid JSON on every command topic land in the dead-letter
topic with a reason; the worker keeps processing what follows, and nothing else changes."""

from __future__ import annotations

import json

import pytest

from passnum.core.log import read_to_end
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites
from schemas.messages import RegisterCollectivite
from tests.integration.helpers import MARCH, scalar

pytestmark = pytest.mark.integration

BAD_VALUES = [
    (b"\xff\xfe not json at all", "not_utf8"),
    (b"{not json", "undecodable_bytes"),
    (b"[1, 2, 3]", "not_a_json_object"),
    (json.dumps({"type": "redeem_voucher", "request_id": "x"}).encode(), "schema_invalid"),
    (json.dumps({"type": "no_such_command", "request_id": "y",
                 "occurred_at": MARCH.isoformat()}).encode(), "schema_invalid"),
    (json.dumps({"type": "register_collectivite", "request_id": "z", "siren": "123",
                 "name": "x", "occurred_at": MARCH.isoformat()}).encode(), "schema_invalid"),
]


def test_bad_input_goes_to_dead_letters_and_work_goes_on(ledger, start_worker) -> None:
    start_worker("issuer")
    start_worker("redeemer")
    topology = topology_for(ledger)
    client = LedgerClient(ledger)
    command_topics = [topology.issuer_commands.name, topology.redeemer_commands.name]
    for topic in command_topics:
        for value, _ in BAD_VALUES:
            client.send_raw(topic, b"some-key", value)
    # A good command after the bad ones must still be decided.
    partner = collectivites(1)[0]
    good = RegisterCollectivite(request_id="good", occurred_at=MARCH, siren=partner.siren,
                                name=partner.name)
    client.send([good])
    assert client.wait_for(["good"])["good"][0].type == "collectivite_registered"

    expected = len(command_topics) * len(BAD_VALUES)
    letters = []
    for _ in range(100):
        letters = [json.loads(r.value) for r in read_to_end(ledger, [topology.dead_letters.name])]
        if len(letters) >= expected:
            break
        client.poll(0.1)
    assert len(letters) == expected
    for topic in command_topics:
        reasons = [letter["reason"] for letter in letters if letter["source_topic"] == topic]
        assert sorted(reasons) == sorted(reason for _, reason in BAD_VALUES)
    assert all(letter["detail"] and "source_offset" in letter for letter in letters)
    # Nothing but the good command changed state.
    assert scalar(ledger, "SELECT count(*) FROM issuer_envelopes") == 1
    assert scalar(ledger, "SELECT count(*) FROM request_outcomes") == 1
