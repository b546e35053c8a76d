"""The HTTP edges of issue 10, each against real issuer and redeemer workers, the real broker
and PostgreSQL: what the log cannot hold is refused at the edge (and never reaches the log),
a running total the ledger cannot hold is a recorded refusal after which the worker goes on
deciding, types are taken as the documents say, bodies are UTF-8, and every error answer is
RFC 9457 problem details."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from passnum.core.log import read_to_end
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.edge.http import issue_token
from passnum.edge.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_PREFIX
from passnum.ledger.partners import collectivites, venues
from passnum.tools.scenario import onboarding

pytestmark = pytest.mark.integration

HTTP_TIMEOUT_SECONDS = 30
DOCUMENTS = Path(__file__).resolve().parents[2] / "docs"


class Edge:
    """Raw HTTP calls: status, media type and decoded body."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def call(self, method: str, path: str, *, key: str | None = None, body: Any = None,
             raw: bytes | None = None) -> tuple[int, str, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if key is not None:
            request.add_header("Idempotency-Key", key)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
                return (response.status, response.headers.get_content_type(),
                        json.loads(response.read()))
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get_content_type(), json.loads(error.read())


def issuer_edge(ledger: Settings, start_worker: Any) -> tuple[Edge, str]:
    """The issuer worker and a registered collectivité with an envelope and booklets; its
    token. (`operator_edge` gives the same server with an operator's token.)"""
    start_worker("issuer")
    partner = collectivites(1)[0]
    commands = onboarding(partner, 2, datetime.now(timezone.utc), funded_booklets=1, tag="edge")
    client = LedgerClient(ledger)
    try:
        client.send(commands)
        outcomes = client.wait_for([c.request_id for c in commands], timeout_seconds=90)
    finally:
        client.close()
    assert not [e for events in outcomes.values() for e in events if "rejected" in e.type]
    with psycopg.connect(ledger.database_url) as connection:
        token = issue_token(connection, "collectivite", partner.siren)
    return Edge(ledger.web_port_issuer, token), partner.siren


def operator_edge(ledger: Settings) -> Edge:
    with psycopg.connect(ledger.database_url) as connection:
        return Edge(ledger.web_port_issuer, issue_token(connection, "operator", "edges"))


def redeemer_edge(ledger: Settings, start_worker: Any) -> Edge:
    """The redeemer worker and a venue's token (the edges below need no voucher)."""
    start_worker("redeemer")
    with psycopg.connect(ledger.database_url) as connection:
        token = issue_token(connection, "venue", venues(1)[0].siret)
    return Edge(ledger.web_port_redeemer, token)


def assert_problem(answer: tuple[int, str, Any], status: int, code: str) -> None:
    """The answer is `status` with RFC 9457 problem details naming `code`."""
    got_status, media_type, body = answer
    assert (got_status, body.get("code")) == (status, code), answer
    assert media_type == PROBLEM_MEDIA_TYPE, answer
    assert body["type"] == PROBLEM_TYPE_PREFIX + code and body["status"] == status, body
    assert body["title"] and isinstance(body["detail"], str), body


def command_request_ids(settings: Settings) -> set[str]:
    records = read_to_end(settings, [topology_for(settings).issuer_commands.name])
    return {json.loads(record.value).get("request_id") for record in records}


def test_the_issuer_edge_refuses_what_the_log_cannot_hold_and_goes_on_deciding(
        ledger: Settings, start_worker: Any) -> None:
    issuer, siren = issuer_edge(ledger, start_worker)
    refused_before_the_log = order_dates_outside_the_years(issuer)
    operator = operator_edge(ledger)
    funds_received = f"/v1/operator/collectivites/{siren}/funds-received"
    refused_before_the_log += coerced_types(issuer, operator, funds_received)
    refused_before_the_log += bodies_not_in_utf8(issuer)

    # Two payments of 60 M€ recorded by the operator: the second would take the running
    # total past 10^10 cents.
    payment = {"face_value_cents": 6_000_000_000, "payment_reference": "OP-BIG"}
    first = operator.call("POST", funds_received, key="big-1", body=payment)
    assert first[0] == 201, first
    assert_problem(operator.call("POST", funds_received, key="big-2", body=payment), 409,
                   "total_exceeds_limit")
    # ... and the issuer goes on deciding.
    after = operator.call("POST", funds_received, key="small",
                          body={"face_value_cents": 1000, "payment_reference": "OP-SMALL"})
    assert after[0] == 201 and after[2]["events"][0]["total_received_cents"] == \
        first[2]["events"][0]["total_received_cents"] + 1000, after
    # An order valid until the last day of the years is decided (the envelope holds only
    # the two booklets ordered at onboarding: a refusal, recorded all the same).
    assert_problem(issuer.call("POST", "/v1/orders", key="near",
                               body={"booklet_count": 1, "valid_until": "2100-12-31"}),
                   409, "over_envelope")

    sent = command_request_ids(ledger)
    # decided through the log
    assert {"http:operator:edges:big-2", f"http:{siren}:near"} <= sent
    assert not {f"http:{tenant}:{key}" for key in refused_before_the_log
                for tenant in (siren, "operator:edges")} & sent


def order_dates_outside_the_years(issuer: Edge) -> list[str]:
    """An order valid until 9999-12-31 once stopped the issuer (its grace date overflowed)."""
    keys = []
    for number, dates in enumerate(({"valid_until": "9999-12-31"},
                                    {"valid_from": "0001-01-01"},
                                    {"valid_from": "2026-01-01", "valid_until": "2101-01-01"})):
        keys.append(f"far-{number}")
        answer = issuer.call("POST", "/v1/orders", key=keys[-1],
                             body={"booklet_count": 1, **dates})
        assert_problem(answer, 422, "invalid_body")
        assert "2100-12-31" in answer[2]["detail"] or "2000-01-01" in answer[2]["detail"]
    return keys


def coerced_types(issuer: Edge, operator: Edge, funds_received: str) -> list[str]:
    """What the document calls an integer is taken as a JSON integer only."""
    coerced = [(issuer, "/v1/orders", {"booklet_count": "3"}),
               (issuer, "/v1/orders", {"booklet_count": True}),
               (issuer, "/v1/orders", {"booklet_count": 1.0}),
               (operator, funds_received, {"face_value_cents": 1000, "fees_cents": False,
                                           "payment_reference": "OP"}),
               (operator, funds_received, {"face_value_cents": "1000",
                                           "payment_reference": "OP"})]
    keys = []
    for number, (edge, path, body) in enumerate(coerced):
        keys.append(f"typed-{number}")
        assert_problem(edge.call("POST", path, key=keys[-1], body=body), 422, "invalid_body")
    return keys


def bodies_not_in_utf8(issuer: Edge) -> list[str]:
    body = json.dumps({"booklet_count": 1})
    keys = []
    for number, raw in enumerate((body.encode("utf-16"), body.encode("utf-16-le"),
                                  b"\xef\xbb\xbf" + body.encode())):
        keys.append(f"encoding-{number}")
        assert_problem(issuer.call("POST", "/v1/orders", key=keys[-1], raw=raw), 400,
                       "not_utf8")
    return keys


def test_the_redeemer_edge_months_types_encodings_and_its_documented_409(
        ledger: Settings, start_worker: Any) -> None:
    redeemer = redeemer_edge(ledger, start_worker)
    for month in ("9999-12", "0000-01", "1999-12", "2101-01"):
        for path in ("/v1/redemptions", "/v1/statements"):
            assert_problem(redeemer.call("GET", f"{path}?month={month}"), 422, "invalid_query")
    assert redeemer.call("GET", "/v1/redemptions?month=2100-12")[0] == 200
    # Queries that once reached int() or PostgreSQL as they were (a 500 each).
    for query in ("limit=%C2%B2", "after=2026-03-01T00:00:00%2B00:00%7C%00",
                  "after=0001-01-01T00:00:00%2B05:00%7C123456789-0000001-01"):
        assert_problem(redeemer.call("GET", f"/v1/redemptions?{query}"), 422, "invalid_query")
    # A token whose bytes are not UTF-8 names nobody.
    assert_problem(Edge(redeemer.port, "\xff").call("GET", "/v1/statements"), 401,
                   "unauthenticated")
    assert_problem(redeemer.call("POST", "/v1/checks", body={"code": 12345}), 422,
                   "invalid_body")
    assert_problem(redeemer.call("POST", "/v1/checks",
                                 raw=json.dumps({"code": "X"}).encode("utf-16")),
                   400, "not_utf8")

    # A check is a question and records no outcome; a redemption's refusal is recorded
    # under its key, which a check with the same key then cannot reuse: 409, documented.
    redeemed = redeemer.call("POST", "/v1/redemptions", key="shared", body={"code": "AAAA"})
    assert_problem(redeemed, 422, "malformed_code")
    assert_problem(redeemer.call("POST", "/v1/checks", key="shared", body={"code": "AAAA"}),
                   409, "request_id_reused")
    document = json.loads((DOCUMENTS / "openapi-redeemer.json").read_text(encoding="utf-8"))
    assert "409" in document["paths"]["/v1/checks"]["post"]["responses"]
