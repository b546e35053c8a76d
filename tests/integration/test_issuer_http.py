"""The collectivités' HTTP API against a real issuer worker, the real broker and PostgreSQL:
tokens, tenant isolation, idempotency, the mapping of every refusal to a status, voucher
codes, pagination, pseudonymous beneficiaries and the served OpenAPI document."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from passnum.core.codec import decode_event
from passnum.core.database import connect
from passnum.core.log import read_to_end
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.edge.http import issue_token
from passnum.edge.problems import problem
from passnum.ledger.partners import Partner, collectivites
from passnum.ledger.voucher_codes import parse_code
from passnum.tools.scenario import onboarding
from schemas.messages import FundEnvelope
from services.issuer.beneficiaries import beneficiary_reference
from tests.integration.helpers import MARCH

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[2]
HTTP_TIMEOUT_SECONDS = 30


@dataclass
class World:
    settings: Settings
    partner: Partner  # "A"
    other: Partner  # "B"
    token: str
    other_token: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port_issuer}"

    def call(self, method: str, path: str, *, token: str | None = None, key: str | None = None,
             body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        if key is not None:
            request.add_header("Idempotency-Key", key)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def booklet(self, partner: Partner, sequence: int) -> str:
        return f"{partner.siren}-{sequence:07d}"


def make_world(ledger: Settings, start_worker) -> World:
    """Two collectivités with 3 booklets each (2 paid for), a token for each."""
    start_worker("issuer")
    partner, other = collectivites(2)
    client = LedgerClient(ledger)
    commands = [c for p in (partner, other)
                for c in onboarding(p, 3, MARCH, funded_booklets=2, tag="http")]
    # Room in A's envelope for 10 more booklets, to order some over HTTP.
    commands.append(FundEnvelope(request_id="http-more-envelope", occurred_at=MARCH,
                                 siren=partner.siren, committed_cents=10 * 10 * 1000))
    client.send(commands)
    outcomes = client.wait_for([c.request_id for c in commands], timeout_seconds=60)
    assert not [e for events in outcomes.values() for e in events if "rejected" in e.type]
    client.close()
    with connect(ledger.database_url) as connection:
        token = issue_token(connection, "collectivite", partner.siren)
        other_token = issue_token(connection, "collectivite", other.siren)
    return World(ledger, partner, other, token, other_token)


def issuer_events(settings: Settings) -> list:
    records = read_to_end(settings, [topology_for(settings).issuer_events.name])
    return [decode_event(record.value) for record in records]


def test_tokens_and_tenant_isolation(ledger, start_worker) -> None:
    world = make_world(ledger, start_worker)
    a_booklet, b_booklet = world.booklet(world.partner, 1), world.booklet(world.other, 1)
    routes = [("GET", "/v1/booklets", None), ("GET", f"/v1/booklets/{a_booklet}", None),
              ("POST", "/v1/orders", {"booklet_count": 1}),
              ("POST", f"/v1/booklets/{a_booklet}/distribution", {"distributor": "Mairie"}),
              ("POST", f"/v1/booklets/{a_booklet}/block", {"reason": "lost"})]
    with connect(ledger.database_url) as connection:
        venue_token = issue_token(connection, "venue", "55210055400104")
    for method, path, body in routes:
        for token in (None, "not-a-token", world.token + "x"):
            status, answer = world.call(method, path, token=token, key="k", body=body)
            assert (status, answer["code"]) == (401, "unauthenticated"), path
        status, answer = world.call(method, path, token=venue_token, key="k", body=body)
        assert (status, answer["code"]) == (403, "not_a_collectivite")

    status, page = world.call("GET", "/v1/booklets", token=world.token)
    assert status == 200
    assert [b["booklet_id"] for b in page["booklets"]] == [
        world.booklet(world.partner, n) for n in (1, 2, 3)]
    assert [b["activated"] for b in page["booklets"]] == [True, True, False]

    # Another tenant's booklet answers exactly like one that does not exist.
    missing = world.booklet(world.partner, 999)
    assert world.call("GET", f"/v1/booklets/{b_booklet}", token=world.token) == \
        world.call("GET", f"/v1/booklets/{missing}", token=world.token)
    assert world.call("GET", f"/v1/booklets/{b_booklet}", token=world.token)[0] == 404
    for action, body in (("distribution", {"distributor": "Mairie"}),
                         ("block", {"reason": "stolen"})):
        status, answer = world.call("POST", f"/v1/booklets/{b_booklet}/{action}",
                                    token=world.token, key=f"probe-{action}", body=body)
        assert (status, answer) == (404, problem("unknown_booklet", "", 404))
    status, theirs = world.call("GET", f"/v1/booklets/{b_booklet}", token=world.other_token)
    assert (status, theirs["status"], theirs["distributor"]) == (200, "issued", None)

    # The same Idempotency-Key chosen by two tenants names two different requests.
    for token, partner in ((world.token, world.partner), (world.other_token, world.other)):
        status, answer = world.call(
            "POST", f"/v1/booklets/{world.booklet(partner, 3)}/distribution", token=token,
            key="same", body={"distributor": "Mairie"})
        assert status == 200 and answer["events"][0]["type"] == "booklet_distributed"


def test_a_collectivite_cannot_record_its_own_payment(ledger, start_worker) -> None:
    """Funds received activate booklets: only the operator, who sees the bank account,
    records them. The collectivité's API has no such route, and nothing reaches the log."""
    world = make_world(ledger, start_worker)
    before = issuer_events(ledger)
    request = urllib.request.Request(
        world.base_url + "/v1/funds-received", method="POST",
        data=json.dumps({"face_value_cents": 1_000_000, "payment_reference": "x"}).encode(),
        headers={"Authorization": f"Bearer {world.token}", "Idempotency-Key": "self-paid",
                 "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS)
    assert refused.value.code == 404
    status, page = world.call("GET", "/v1/booklets", token=world.token)
    assert [b["activated"] for b in page["booklets"]] == [True, True, False]
    assert issuer_events(ledger) == before


def test_idempotency_and_error_mapping(ledger, start_worker) -> None:
    world = make_world(ledger, start_worker)
    third = f"/v1/booklets/{world.booklet(world.partner, 3)}/distribution"
    handing = {"distributor": "Mairie de Lille"}
    first = world.call("POST", third, token=world.token, key="hand-3", body=handing)
    again = world.call("POST", third, token=world.token, key="hand-3", body=handing)
    assert first[0] == 200 and first == again  # same events, same event ids
    assert [e["type"] for e in first[1]["events"]] == ["booklet_distributed"]
    changed = world.call("POST", third, token=world.token, key="hand-3",
                         body={"distributor": "CAF du Nord"})
    assert changed == (409, problem("request_id_reused", "this Idempotency-Key was already "
                                    "used for a different request", 409))
    distributed = [e for e in issuer_events(ledger) if e.type == "booklet_distributed"
                   and e.request_id == f"http:{world.partner.siren}:hand-3"]
    assert len({e.event_id for e in distributed}) == 1

    assert world.call("POST", third, token=world.token, body=handing)[1] == \
        problem("idempotency_key_required", "every POST needs an Idempotency-Key header", 400)
    assert world.call("POST", third, token=world.token, key="bad key!",
                      body=handing)[0] == 400
    expectations = [
        ("/v1/orders", {"booklet_count": 0}, 422, "invalid_body"),
        ("/v1/orders", {"booklet_count": 1, "colour": "red"}, 422, "invalid_body"),
        ("/v1/orders", None, 422, "invalid_body"),
        ("/v1/orders", {"booklet_count": 1, "valid_from": "2026-06-01",
                        "valid_until": "2026-05-01"}, 422, "invalid_framing"),
        ("/v1/orders", {"booklet_count": 50}, 409, "over_envelope"),
        (f"/v1/booklets/{world.booklet(world.partner, 404)}/distribution",
         {"distributor": "CAF"}, 404, "unknown_booklet"),
        ("/v1/booklets/not-a-booklet/block", {"reason": "lost"}, 404, "unknown_booklet"),
    ]
    for number, (path, body, status, reason) in enumerate(expectations):
        raw = b"{not json" if body is None else None
        answer = world.call("POST", path, token=world.token, key=f"e{number}", body=body,
                            raw=raw)
        assert (answer[0], answer[1]["code"]) == (status, reason), (path, answer)

    booklet = world.booklet(world.partner, 1)
    handed = world.call("POST", f"/v1/booklets/{booklet}/distribution", token=world.token,
                        key="hand-1", body={"distributor": "CAF",
                                            "beneficiary_identifier": "1 85 05 78 006 084 36"})
    assert handed[0] == 200
    assert world.call("POST", f"/v1/booklets/{booklet}/distribution", token=world.token,
                      key="hand-2", body={"distributor": "CAF"})[1]["code"] == \
        "already_handed_out"
    second = world.booklet(world.partner, 2)
    assert world.call("POST", f"/v1/booklets/{second}/block", token=world.token, key="b1",
                      body={"reason": "lost"})[0] == 200
    for key, action, body in (("b2", "block", {"reason": "lost"}),
                              ("b3", "distribution", {"distributor": "CAF"})):
        answer = world.call("POST", f"/v1/booklets/{second}/{action}", token=world.token,
                            key=key, body=body)
        assert (answer[0], answer[1]["code"]) == (409, "booklet_blocked")

    with connect(ledger.database_url) as connection:
        stranger = issue_token(connection, "collectivite", "552100554")  # never registered
    answer = world.call("POST", "/v1/orders", token=stranger, key="o", body={"booklet_count": 1})
    assert (answer[0], answer[1]["code"]) == (409, "unknown_collectivite")
    padding = {"distributor": "CAF", "beneficiary_identifier": "x" * 200, "pad": "y" * 70_000}
    answer = world.call("POST", f"/v1/booklets/{booklet}/distribution", token=world.token,
                        key="big", body=padding)
    assert (answer[0], answer[1]["code"]) == (413, "body_too_large")
    for query in ("status=lost", "limit=0", "limit=100000", "after=12"):
        answer = world.call("GET", f"/v1/booklets?{query}", token=world.token)
        assert (answer[0], answer[1]["code"]) == (422, "invalid_query"), query


def test_reads_codes_beneficiaries_and_openapi(ledger, start_worker) -> None:
    world = make_world(ledger, start_worker)
    status, order = world.call("POST", "/v1/orders", token=world.token, key="order-2",
                               body={"booklet_count": 2, "vouchers_per_booklet": 5,
                                     "target_group": "pic", "perimeter": ["59", "2A004"]})
    assert status == 201 and order["order_id"] == f"{world.partner.siren}-order-00002"
    assert [e["type"] for e in order["events"]] == ["booklets_ordered"] + ["booklet_issued"] * 2
    assert order["events"][1]["perimeter"] == ["59", "2A004"]

    listed, after = [], ""
    for _ in range(4):  # 5 booklets, 2 a page: 3 pages, the last one short
        page = world.call("GET", f"/v1/booklets?limit=2{after}", token=world.token)[1]
        listed += [(b["booklet_id"], b["voucher_count"]) for b in page["booklets"]]
        if page["next_after"] is None:
            break
        after = f"&after={page['next_after']}"
    size = world.partner.vouchers_per_booklet
    assert listed == [(world.booklet(world.partner, n), size) for n in (1, 2, 3)] + [
        (world.booklet(world.partner, n), 5) for n in (4, 5)]

    booklet_id = world.booklet(world.partner, 3)
    status, detail = world.call("GET", f"/v1/booklets/{booklet_id}", token=world.token)
    key = ledger.voucher_code_key.encode()
    assert status == 200 and len(detail["vouchers"]) == world.partner.vouchers_per_booklet
    for voucher in detail["vouchers"]:
        parsed = parse_code(key, voucher["code"])
        assert parsed.outcome == "valid" and parsed.number.voucher_id == voucher["voucher_id"]

    identifier = "1 85 05 78 006 084 36"
    status, answer = world.call("POST", f"/v1/booklets/{booklet_id}/distribution",
                                token=world.token, key="give-3",
                                body={"distributor": "CCAS", "beneficiary_identifier": identifier})
    assert status == 200
    with psycopg.connect(ledger.database_url) as connection:
        secret = connection.execute(
            "SELECT secret FROM issuer_beneficiary_secrets WHERE siren = %s",
            (world.partner.siren,)).fetchone()[0]
    reference = beneficiary_reference(secret, identifier)
    assert answer["events"][0]["beneficiary_reference"] == reference
    handed = world.call("GET", "/v1/booklets?status=handed_out", token=world.token)[1]
    assert [(b["booklet_id"], b["beneficiary_reference"]) for b in handed["booklets"]] == [
        (booklet_id, reference)]
    every_byte = b"".join((r.value or b"") + (r.key or b"") for r in read_to_end(
        ledger, [t.name for t in topology_for(ledger).all_topics()
                 if t.name != topology_for(ledger).conformance.name]))
    assert identifier.encode() not in every_byte
    assert identifier.replace(" ", "").encode() not in every_byte

    status, served = world.call("GET", "/openapi.json")
    assert status == 200
    assert served == json.loads((REPOSITORY / "docs" / "openapi-issuer.json").read_text())
