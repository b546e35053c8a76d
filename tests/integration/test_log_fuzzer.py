"""A log fuzzer: property-based records for every command type, written straight onto the
command topics of running workers, each followed by a valid command on the same partition.

Records are drawn from one valid command of each type, then kept valid, pushed to a
boundary, made invalid (a field replaced by any JSON value, removed, or added), sent to the
other service's topic, nested deep, made large, encoded in UTF-16 or behind a BOM,
truncated, or replaced by a JSON value that is not an object. Whatever is drawn: every
record is answered (its request gets events, or it lands in the dead-letter topic with a
reason), every valid command after it is decided, and no worker exits.

`LOG_FUZZ_EXAMPLES` sets how many examples Hypothesis draws (each a batch of records);
`bench/log_fuzz.py` runs it long."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from passnum.core.codec import decode_command
from passnum.core.log import make_producer, read_to_end
from passnum.core.topology import route_command, topology_for
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites, venues
from passnum.tools.scenario import booklet_codes
from schemas.base import Command
from schemas.messages import (
    ISSUER_COMMANDS,
    REDEEMER_COMMANDS,
    AccreditProvider,
    BlockBooklet,
    CancelRedemption,
    ChangeProviderStatus,
    CheckVoucher,
    CloseSettlementMonth,
    DistributeBooklet,
    FundEnvelope,
    OrderBooklets,
    RecordFundsReceived,
    RedeemVoucher,
    RegisterCollectivite,
)
from tests.integration.helpers import MARCH, onboard

pytestmark = pytest.mark.integration
EXAMPLES = int(os.environ.get("LOG_FUZZ_EXAMPLES", "3"))
RECORDS_PER_EXAMPLE = 24
LARGEST_PADDING = 1_100_000  # the longest padding of a "large" record: past 1 MiB
# The fuzzer's own producer must let every drawn record through to the broker: the service
# clients refuse a request over 1 MiB on the client side, and that refusal is not what is
# under test.
FUZZER_MAX_REQUEST_BYTES = 4 * 1_048_576

ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8)
BOUNDARIES = st.sampled_from([
    0, -1, 1, 10**10, 10**10 + 1, 2**31, 2**63, 2**64, "", " ", "0001-01-01", "9999-12-31",
    "2000-01-01", "2100-12-31", "9999-12", "0000-01", "2026-13", "x" * 5000, "\u0000",
    "\ud800", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", [], {}, True, 1.5])


def _corpus(siren: str, booklet_id: str, code: str, siret: str) -> list[Command]:
    """One valid command of every type, about a real collectivité, booklet and venue."""
    at = MARCH
    commands: list[Command] = [
        RegisterCollectivite(request_id="c", occurred_at=at, siren=siren, name="Ville"),
        FundEnvelope(request_id="c", occurred_at=at, siren=siren, committed_cents=10_000),
        RecordFundsReceived(request_id="c", occurred_at=at, siren=siren,
                            face_value_cents=10_000, payment_reference="ref"),
        OrderBooklets(request_id="c", occurred_at=at, siren=siren, booklet_count=1),
        DistributeBooklet(request_id="c", occurred_at=at, siren=siren, booklet_id=booklet_id,
                          distributor="Mairie"),
        BlockBooklet(request_id="c", occurred_at=at, siren=siren, booklet_id=booklet_id,
                     reason="lost"),
        AccreditProvider(request_id="c", occurred_at=at, siret=siret, name="Espace",
                         iban="FR7630006000011234567890189", address_code="75056"),
        ChangeProviderStatus(request_id="c", occurred_at=at, siret=siret, status="accredited"),
        CheckVoucher(request_id="c", occurred_at=at, code=code, siret=siret),
        RedeemVoucher(request_id="c", occurred_at=at, code=code, siret=siret),
        CancelRedemption(request_id="c", occurred_at=at, voucher_id=f"{booklet_id}-01",
                         siret=siret),
        CloseSettlementMonth(request_id="c", occurred_at=at, month="2026-02"),
    ]
    assert {type(c) for c in commands} == set(ISSUER_COMMANDS + REDEEMER_COMMANDS)
    return commands


@st.composite
def fuzz_record(draw: Any, corpus: list[Command]) -> tuple[str, bytes]:
    """(service the record is sent to, value)."""
    base = draw(st.sampled_from(corpus))
    document = base.model_dump(mode="json")
    service = "issuer" if isinstance(base, ISSUER_COMMANDS) else "redeemer"
    kind = draw(st.sampled_from([
        "valid", "boundary", "any_value", "drop_field", "extra_field", "wrong_topic",
        "other_type", "nesting", "large", "utf16", "bom", "truncated", "not_an_object"]))
    fields = sorted(key for key in document if key != "type")
    if kind in ("boundary", "any_value"):
        value = draw(BOUNDARIES if kind == "boundary" else ANY_JSON)
        document[draw(st.sampled_from(fields))] = value
    elif kind == "drop_field":
        del document[draw(st.sampled_from(fields))]
    elif kind == "extra_field":
        document[draw(st.text(min_size=1, max_size=10))] = draw(ANY_JSON)
    elif kind == "wrong_topic":
        service = "redeemer" if service == "issuer" else "issuer"
    elif kind == "other_type":
        document["type"] = draw(st.sampled_from(corpus)).type
    raw = json.dumps(document, ensure_ascii=draw(st.booleans()))
    if kind == "nesting":
        depth = draw(st.integers(min_value=100, max_value=200_000))
        raw = '{"type": "fund_envelope", "x": ' + "[" * depth + "]" * depth + "}"
    elif kind == "large":
        raw = raw[:-1] + ', "padding": "' + "x" * draw(st.integers(1, LARGEST_PADDING)) + '"}'
    elif kind == "truncated":
        raw = raw[:draw(st.integers(0, max(0, len(raw) - 1)))]
    elif kind == "not_an_object":
        raw = json.dumps(draw(ANY_JSON.filter(lambda v: not isinstance(v, dict))))
    if kind == "utf16":
        return service, raw.encode("utf-16")
    if kind == "bom":
        return service, "\ufeff".encode() + raw.encode("utf-8", "surrogatepass")
    return service, raw.encode("utf-8", "surrogatepass")


def _expects_events(topic_classes: tuple[type, ...], value: bytes) -> str | None:
    """The request id of a record the service decides (it gets events), else None (it is
    a dead letter)."""
    command = decode_command(value)
    if isinstance(command, Command) and isinstance(command, topic_classes):
        return command.request_id
    return None


def test_every_fuzzed_record_is_answered_and_nothing_stops(ledger, start_worker) -> None:
    issuer = start_worker("issuer")
    redeemer = start_worker("redeemer")
    topology = topology_for(ledger)
    client = LedgerClient(ledger)
    partner, venue = collectivites(1)[0], venues(1)[0]
    onboard(client, [partner], 2, [venue])
    code = booklet_codes(ledger.voucher_code_key.encode(), partner, range(1, 2))[0]
    corpus = _corpus(partner.siren, f"{partner.siren}-0000001", code, venue.siret)
    topics = {"issuer": (topology.issuer_commands.name, ISSUER_COMMANDS),
              "redeemer": (topology.redeemer_commands.name, REDEEMER_COMMANDS)}
    counter = iter(range(1_000_000))
    producer = make_producer(ledger, max_request_size=FUZZER_MAX_REQUEST_BYTES)
    over_one_mebibyte = (b'{"type": "fund_envelope", "request_id": "c", "padding": "'
                         + b"x" * LARGEST_PADDING + b'"}')

    # No shrinking: each example runs against live workers (a failing one is reported as
    # drawn, with the records that were sent).
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
              phases=[Phase.explicit, Phase.reuse, Phase.generate],
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(st.lists(fuzz_record(corpus), min_size=1, max_size=RECORDS_PER_EXAMPLE))
    @example([("issuer", over_one_mebibyte), ("redeemer", over_one_mebibyte)])
    def examples(records: list[tuple[str, bytes]]) -> None:
        expected: list[tuple[str, int, int, str | None]] = []  # topic, partition, offset, id
        followers: list[str] = []
        for service, value in records:
            number = next(counter)
            value = value.replace(b'"request_id": "c"', f'"request_id": "fz{number}"'.encode())
            value = value.replace(b'"request_id":"c"', f'"request_id":"fz{number}"'.encode())
            topic, classes = topics[service]
            follower = (FundEnvelope(request_id=f"ok{number}", occurred_at=MARCH,
                                     siren=partner.siren, committed_cents=1)
                        if service == "issuer" else
                        CheckVoucher(request_id=f"ok{number}", occurred_at=MARCH, code=code,
                                     siret=venue.siret))
            _, key = route_command(topology, follower)
            sent = producer.send(topic, key=key, value=value).get(timeout=30)
            expected.append((topic, sent.partition, sent.offset, _expects_events(classes, value)))
            client.send([follower])
            followers.append(follower.request_id)
        client.wait_for(followers, timeout_seconds=60)
        _assert_answered(ledger, client, topology.dead_letters.name, expected)
        assert issuer.running() and redeemer.running()

    try:
        examples()
    finally:
        producer.close()


def _assert_answered(settings_: Any, client: LedgerClient, dead_letter_topic: str,
                     expected: list[tuple[str, int, int, str | None]]) -> None:
    deadline = time.monotonic() + 30
    while True:
        client.poll(0.2)
        lettered = {(letter["source_topic"], letter["source_partition"],
                     letter["source_offset"]): letter["reason"]
                    for letter in (json.loads(r.value)
                                   for r in read_to_end(settings_, [dead_letter_topic]))}
        missing = [(topic, partition, offset, request_id)
                   for topic, partition, offset, request_id in expected
                   if (topic, partition, offset) not in lettered
                   and (request_id is None or request_id not in client.events_by_request)]
        if not missing or time.monotonic() > deadline:
            break
    assert not missing, f"records neither decided nor dead-lettered: {missing[:5]}"
    assert all(lettered.values())  # every dead letter says why
