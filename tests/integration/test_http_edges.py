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

from passnum.client import LedgerClient
from passnum.http import issue_token
from passnum.log import read_to_end
from passnum.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_PREFIX
from passnum.scenario import accreditations, onboarding
from passnum.seed import collectivites, venues
from passnum.settings import Settings
from passnum.topology import topology_for

pytestmark = pytest.mark.integration

HTTP_TIMEOUT_SECONDS = 30
DOCUMENTS = Path(__file__).resolve().parents[2] / "docs"


class Edge:
    """Raw HTTP calls: status, media type and decoded body."""

    def __init__(self, port: int, token: str) -> None:
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


@pytest.fixture
def edges(ledger: Settings, start_worker: Any) -> dict[str, Any]:
    start_worker("issuer")
    start_worker("redeemer")
    partner, venue = collectivites(1)[0], venues(1)[0]
    now = datetime.now(timezone.utc)
    commands = [*onboarding(partner, 2, now, funded_booklets=1, tag="edge"),
                *accreditations([venue], now, tag="edge")]
    client = LedgerClient(ledger)
    try:
        client.send(commands)
        outcomes = client.wait_for([c.request_id for c in commands], timeout_seconds=90)
    finally:
        client.close()
    assert not [e for events in outcomes.values() for e in events if "rejected" in e.type]
    with psycopg.connect(ledger.database_url) as connection:
        issuer_token = issue_token(connection, "collectivite", partner.siren)
        venue_token = issue_token(connection, "venue", venue.siret)
    return {"issuer": Edge(ledger.web_port_issuer, issuer_token),
            "redeemer": Edge(ledger.web_port_redeemer, venue_token),
            "siren": partner.siren}


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


def test_an_order_valid_until_9999_is_refused_at_the_edge_and_never_reaches_the_log(
        ledger: Settings, edges: dict[str, Any]) -> None:
    issuer = edges["issuer"]
    for number, dates in enumerate(({"valid_until": "9999-12-31"},
                                    {"valid_from": "0001-01-01"},
                                    {"valid_from": "2026-01-01", "valid_until": "2101-01-01"})):
        answer = issuer.call("POST", "/v1/orders", key=f"far-{number}",
                             body={"booklet_count": 1, **dates})
        assert_problem(answer, 422, "invalid_body")
        assert "2100-12-31" in answer[2]["detail"] or "2000-01-01" in answer[2]["detail"]

    sent = command_request_ids(ledger)
    assert not {f"http:{edges['siren']}:far-{number}" for number in range(3)} & sent
    # The worker still decides: an order within the years is taken.
    status, _, order = issuer.call("POST", "/v1/orders", key="near",
                                   body={"booklet_count": 1, "valid_until": "2100-12-31"})
    assert status in (201, 409), order  # 409: over_envelope, a decision all the same


def test_a_running_total_the_ledger_cannot_hold_is_refused_and_the_worker_goes_on(
        edges: dict[str, Any]) -> None:
    issuer = edges["issuer"]
    payment = {"face_value_cents": 6_000_000_000, "payment_reference": "OP-BIG"}
    first = issuer.call("POST", "/v1/funds-received", key="big-1", body=payment)
    assert first[0] == 201, first

    second = issuer.call("POST", "/v1/funds-received", key="big-2", body=payment)

    assert_problem(second, 409, "total_exceeds_limit")
    after = issuer.call("POST", "/v1/funds-received", key="small",
                        body={"face_value_cents": 1000, "payment_reference": "OP-SMALL"})
    assert after[0] == 201 and after[2]["events"][0]["total_received_cents"] == \
        first[2]["events"][0]["total_received_cents"] + 1000, after


def test_months_outside_the_ledgers_years_are_a_4xx(edges: dict[str, Any]) -> None:
    redeemer = edges["redeemer"]
    for month in ("9999-12", "0000-01", "1999-12", "2101-01"):
        for path in ("/v1/redemptions", "/v1/statements"):
            assert_problem(redeemer.call("GET", f"{path}?month={month}"), 422, "invalid_query")
    assert redeemer.call("GET", "/v1/redemptions?month=2100-12")[0] == 200


def test_values_are_taken_with_the_types_the_documents_say(edges: dict[str, Any]) -> None:
    issuer = edges["issuer"]
    coerced = [("/v1/orders", {"booklet_count": "3"}),
               ("/v1/orders", {"booklet_count": True}),
               ("/v1/orders", {"booklet_count": 1.0}),
               ("/v1/funds-received", {"face_value_cents": 1000, "fees_cents": False,
                                       "payment_reference": "OP"}),
               ("/v1/funds-received", {"face_value_cents": "1000", "payment_reference": "OP"})]
    for number, (path, body) in enumerate(coerced):
        assert_problem(issuer.call("POST", path, key=f"typed-{number}", body=body), 422,
                       "invalid_body")
    assert_problem(edges["redeemer"].call("POST", "/v1/checks", body={"code": 12345}), 422,
                   "invalid_body")


def test_a_body_that_is_not_utf8_is_refused_with_its_reason(edges: dict[str, Any]) -> None:
    body = json.dumps({"booklet_count": 1})
    for number, raw in enumerate((body.encode("utf-16"), body.encode("utf-16-le"),
                                  b"\xef\xbb\xbf" + body.encode())):
        assert_problem(edges["issuer"].call("POST", "/v1/orders", key=f"enc-{number}",
                                            raw=raw), 400, "not_utf8")
    assert_problem(edges["redeemer"].call("POST", "/v1/checks",
                                          raw=json.dumps({"code": "X"}).encode("utf-16")),
                   400, "not_utf8")


def test_a_check_under_a_key_already_decided_for_another_request_is_the_documented_409(
        edges: dict[str, Any]) -> None:
    redeemer = edges["redeemer"]
    # A check is a question and records no outcome; a redemption's refusal is recorded
    # under its key, which a check with the same key then cannot reuse.
    redeemed = redeemer.call("POST", "/v1/redemptions", key="shared", body={"code": "AAAA"})
    assert_problem(redeemed, 422, "malformed_code")

    assert_problem(redeemer.call("POST", "/v1/checks", key="shared", body={"code": "AAAA"}),
                   409, "request_id_reused")
    document = json.loads((DOCUMENTS / "openapi-redeemer.json").read_text(encoding="utf-8"))
    assert "409" in document["paths"]["/v1/checks"]["post"]["responses"]
