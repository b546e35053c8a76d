"""Chain heads signed with the processors' key (passnum/core/head_signatures.py), judged by the
replay on in-memory records: a signed ledger is sound; a new well-chained stream, events
appended after the last signed head and a head signed with another key are each named by
their event. Without keys the heads are not judged (logs written without workers)."""

from __future__ import annotations

import json
from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from passnum.core.codec import CHAIN_HEADER, SIGNATURE_HEADER, encode, signed_head_message

from passnum.ledger.identity import event_id_for
from passnum.core.head_signatures import sign_batch_heads, split_link
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from schemas.messages import FundsReceived
from services.auditor.replay import Replayer, ReplayOptions
from tests.support.chained_log import ChainedRecord, in_read_order, sample_ledger

SETTINGS = Settings()
TOPOLOGY = topology_for(SETTINGS)
KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def signer(header: bytes) -> bytes:
    return KEY.sign(signed_head_message(header)).hex().encode()


def signed(records: list[ChainedRecord]) -> list[ChainedRecord]:
    """As a batch of the processors would publish them: the last event per stream signed."""
    stream_of = {i: r.headers[0][1].split(b"|")[0] for i, r in enumerate(records)}
    outbox = [(stream_of[i].decode(), 0, r.topic, r.key, r.value, r.headers[0][1])
              for i, r in enumerate(records)]
    sign_batch_heads(outbox, signer)
    return [replace(r, headers=tuple(split_link(entry[5])))
            for r, entry in zip(records, outbox)]


def findings(records: list[ChainedRecord], keys: tuple[bytes, ...] = (PUBLIC,)) -> dict:
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False, head_keys=keys))
    replayer.ingest(in_read_order(records, replayer.topics_in_order()))
    return {f.code: f for f in replayer.judge().findings}


def funds(ledger, n: int) -> FundsReceived:  # type: ignore[no-untyped-def]
    siren = json.loads(ledger.records[0].value)["siren"]
    return FundsReceived(event_id=event_id_for("issuer", f"forged-{n}", 0),
                         request_id=f"forged-{n}", occurred_at="2026-03-02T12:00:00Z",
                         siren=siren, face_value_cents=500_000, fees_cents=0,
                         payment_reference="x", total_received_cents=500_000)


def test_a_signed_ledger_is_sound_and_forgeries_are_named() -> None:
    ledger = sample_ledger(TOPOLOGY)
    clean = signed(ledger.records)
    assert sum(len(r.headers) == 2 for r in clean) == len(ledger.writer.heads)
    assert findings(clean) == {}
    assert "unsigned_chain_tail" in findings(ledger.records)  # nothing signed
    assert findings(ledger.records, keys=()) == {}  # no keys: heads not judged

    siren = json.loads(ledger.records[0].value)["siren"]
    appended = ledger.writer.issuer(siren, [funds(ledger, 1)])
    assert findings(clean + appended)["unsigned_chain_tail"].event_ids == (
        "position:" + appended[0].headers[0][1].decode().rsplit("|", 2)[0].replace("|", "#"),)

    other = Ed25519PrivateKey.generate()
    forged = ledger.writer.issuer(siren, [funds(ledger, 2)])[0]
    link = forged.headers[0][1]
    forged = replace(forged, headers=((CHAIN_HEADER, link), (
        SIGNATURE_HEADER, other.sign(signed_head_message(link)).hex().encode())))
    found = findings(clean + appended + [forged])
    assert found["head_signature_invalid"].event_ids == (funds(ledger, 2).event_id,)

    value = encode(funds(ledger, 3))
    shadow = f"issuer/{TOPOLOGY.issuer_commands.name}/{TOPOLOGY.issuer_commands.partitions}"
    new_stream = ChainedRecord(appended[0].topic, 0, b"k", value,
                               ((CHAIN_HEADER, ledger.writer.chain(shadow, value)),))
    assert findings(clean + [new_stream])["unknown_stream"].event_ids == (
        f"position:{shadow}#1",)
