"""The venues' HTTP API against a real redeemer worker and its API process (gateway, broker,
PostgreSQL): authentication, a venue acting only as itself, idempotency, every refusal's
status, the reads, the OpenAPI document against the routes served, and a crash of the API
process.

Dates are relative to the real clock: the server sets `occurred_at`, so the booklets are
ordered valid around today."""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from passnum.edge.client import LedgerClient
from passnum.edge.http import issue_token
from passnum.ledger.partners import collectivites, venues
from passnum.ledger.voucher_codes import VoucherNumber, make_code, with_recomputed_check
from passnum.tools.scenario import accreditations, booklet_codes
from schemas.messages import (
    BlockBooklet,
    ChangeProviderStatus,
    CloseSettlementMonth,
    FundEnvelope,
    OrderBooklets,
    RecordFundsReceived,
    RegisterCollectivite,
)
from services.redeemer.cli import wait_for_close
from tests.integration.helpers import scalar, wait_for_rows, wait_until

pytestmark = pytest.mark.integration

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi-redeemer.json"
BOOKLET_VALUE_CENTS = 10 * 1000


class Api:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, token: str | None = None, body: Any = None,
             key: str | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if key is not None:
            headers["Idempotency-Key"] = key
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw.startswith(b"{") else {}


def _ledger_around_today(client: LedgerClient, siren: str, name: str) -> None:
    """Booklets 1-2 general, 3 only in Corse-du-Sud (2A), 4 valid from next month, all
    funded; 5 unfunded; 2 blocked."""
    now = datetime.now(timezone.utc)
    today = now.date()
    window = {"valid_from": today - timedelta(days=10), "valid_until": today + timedelta(days=60)}
    later = {"valid_from": today + timedelta(days=30), "valid_until": today + timedelta(days=90)}
    commands = [
        RegisterCollectivite(request_id="h-register", occurred_at=now, siren=siren, name=name),
        FundEnvelope(request_id="h-envelope", occurred_at=now, siren=siren,
                     committed_cents=5 * BOOKLET_VALUE_CENTS),
        OrderBooklets(request_id="h-order-1", occurred_at=now, siren=siren, booklet_count=2,
                      **window),
        OrderBooklets(request_id="h-order-2", occurred_at=now, siren=siren, booklet_count=1,
                      perimeter=("2A",), **window),
        OrderBooklets(request_id="h-order-3", occurred_at=now, siren=siren, booklet_count=1,
                      **later),
        OrderBooklets(request_id="h-order-4", occurred_at=now, siren=siren, booklet_count=1,
                      **window),
        RecordFundsReceived(request_id="h-paid", occurred_at=now, siren=siren,
                            face_value_cents=4 * BOOKLET_VALUE_CENTS, payment_reference="OP-1"),
        BlockBooklet(request_id="h-block", occurred_at=now, siren=siren,
                     booklet_id=f"{siren}-0000002", reason="stolen"),
    ]
    client.send(commands)
    outcomes = client.wait_for([c.request_id for c in commands], timeout_seconds=90)
    assert not [e for events in outcomes.values() for e in events if "rejected" in e.type]


@pytest.fixture
def world(ledger, start_worker):
    start_worker("issuer")
    redeemer = start_worker("redeemer")
    partner = next(p for p in collectivites(8) if p.vouchers_per_booklet == 10)
    venue_a, venue_b, venue_c = venues(3)
    client = LedgerClient(ledger)
    _ledger_around_today(client, partner.siren, partner.name)
    now = datetime.now(timezone.utc)
    setup = accreditations([venue_a, venue_b, venue_c], now, tag="h") + [
        ChangeProviderStatus(request_id="h-suspend", occurred_at=now, siret=venue_c.siret,
                             status="suspended", reason="audit")]
    client.send(setup)
    client.wait_for([c.request_id for c in setup])
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated", 4)
    with psycopg.connect(ledger.database_url) as connection:
        tokens = {name: issue_token(connection, "venue", venue.siret)
                  for name, venue in (("a", venue_a), ("b", venue_b), ("c", venue_c))}
        tokens["collectivite"] = issue_token(connection, "collectivite", partner.siren)
    key = ledger.voucher_code_key.encode()
    codes = {sequence: booklet_codes(key, partner, range(sequence, sequence + 1))
             for sequence in range(1, 6)}
    yield {"api": Api(ledger.web_port_redeemer), "tokens": tokens, "codes": codes,
           "venues": (venue_a, venue_b, venue_c), "partner": partner, "client": client,
           "key": key, "redeemer": redeemer}
    client.close()


def test_redeem_check_cancel_and_every_refusal(world, ledger) -> None:
    api, tokens, codes = world["api"], world["tokens"], world["codes"]
    a, b = tokens["a"], tokens["b"]
    code = codes[1][0]

    status, body = api.call("POST", "/v1/checks", a, {"code": code})
    assert (status, body["valid"], body["reason"]) == (200, True, None)
    status, body = api.call("POST", "/v1/redemptions", a, {"code": code}, key="scan-1")
    assert status == 201, body
    assert body["voucher_id"].endswith("-0000001-01") and body["face_value_cents"] == 1000
    first = body

    status, body = api.call("POST", "/v1/redemptions", b, {"code": code}, key="scan-1")
    assert status == 409 and body["code"] == "already_redeemed"
    assert body["redeemed_at"] == first["redeemed_at"]
    assert world["venues"][0].siret not in json.dumps(body), "never where"
    status, body = api.call("POST", "/v1/checks", b, {"code": code})
    assert (status, body["valid"], body["reason"]) == (200, False, "already_redeemed")

    forged = make_code(b"not-the-key", VoucherNumber(world["partner"].siren, 1, 3))
    mistyped = code[:-1] + ("0" if code[-1] != "0" else "1")
    expectations = [
        ("A" * 5, 422, "malformed_code"),
        (mistyped, 422, "mistyped_code"),
        (with_recomputed_check(forged), 422, "forged_code"),
        (make_code(world["key"], VoucherNumber(world["partner"].siren, 9, 1)), 404,
         "unknown_voucher"),
        (codes[5][0], 409, "booklet_not_activated"),
        (codes[2][0], 409, "booklet_blocked"),
        (codes[4][0], 409, "outside_validity"),
        (codes[3][0], 403, "outside_perimeter"),
    ]
    for index, (attempt, expected_status, reason) in enumerate(expectations):
        status, body = api.call("POST", "/v1/redemptions", a, {"code": attempt},
                                key=f"bad-{index}")
        assert (status, body["code"]) == (expected_status, reason), attempt
    status, body = api.call("POST", "/v1/redemptions", tokens["c"], {"code": codes[1][4]},
                            key="suspended")
    assert (status, body["code"]) == (403, "provider_not_accredited")

    # Cancellation: only by the venue that redeemed, then the voucher is free again.
    voucher_id = first["voucher_id"]
    status, body = api.call("POST", f"/v1/redemptions/{voucher_id}/cancellation", b, {},
                            key="c-1")
    assert (status, body["code"]) == (404, "not_redeemed_here")
    status, body = api.call("POST", f"/v1/redemptions/{voucher_id}/cancellation", a, {},
                            key="c-1")
    assert status == 200 and body["cancelled_redemption_event_id"] == first["event_id"]
    status, body = api.call("POST", "/v1/redemptions", b, {"code": code}, key="scan-2")
    assert status == 201, body
    assert scalar(ledger, "SELECT siret FROM redemptions") == world["venues"][1].siret


def test_authentication_and_a_venue_acts_only_as_itself(world, ledger) -> None:
    api, tokens, codes = world["api"], world["tokens"], world["codes"]
    body = {"code": codes[1][1]}
    assert api.call("POST", "/v1/redemptions", None, body, key="k")[0] == 401
    assert api.call("POST", "/v1/redemptions", "pn_ven_forged", body, key="k")[0] == 401
    status, answer = api.call("POST", "/v1/redemptions", tokens["collectivite"], body, key="k")
    assert (status, answer["code"]) == (403, "not_a_venue")

    # The venue comes from the token: a body naming another venue is refused outright.
    other = world["venues"][1].siret
    status, answer = api.call("POST", "/v1/redemptions", tokens["a"],
                              {**body, "siret": other}, key="k")
    assert (status, answer["code"]) == (422, "invalid_body")
    assert scalar(ledger, "SELECT count(*) FROM request_outcomes WHERE request_id LIKE "
                          "'http:%'") == 0

    status, answer = api.call("POST", "/v1/redemptions", tokens["a"], body, key="mine")
    assert status == 201
    assert scalar(ledger, "SELECT siret FROM redemptions") == world["venues"][0].siret
    status, page = api.call("GET", "/v1/redemptions", tokens["a"])
    assert [r["voucher_id"] for r in page["redemptions"]] == [answer["voucher_id"]]
    status, page = api.call("GET", "/v1/redemptions", tokens["b"])
    assert (status, page["redemptions"]) == (200, [])


def test_idempotency_keys(world, ledger) -> None:
    api, tokens, codes = world["api"], world["tokens"], world["codes"]
    body = {"code": codes[1][2]}
    assert api.call("POST", "/v1/redemptions", tokens["a"], body)[1]["code"] == (
        "idempotency_key_required")
    assert api.call("POST", "/v1/redemptions", tokens["a"], body, key="bad key!")[0] == 400

    first = api.call("POST", "/v1/redemptions", tokens["a"], body, key="retry-me")
    again = api.call("POST", "/v1/redemptions", tokens["a"], body, key="retry-me")
    assert first == again and first[0] == 201
    assert scalar(ledger, "SELECT count(*) FROM redemptions") == 1
    status, answer = api.call("POST", "/v1/redemptions", tokens["a"], {"code": codes[1][3]},
                              key="retry-me")
    assert (status, answer["code"]) == (409, "request_id_reused")
    # Another venue's identical key is another request: it gets its own outcome.
    status, answer = api.call("POST", "/v1/redemptions", tokens["b"], body, key="retry-me")
    assert (status, answer["code"]) == (409, "already_redeemed")


def test_statements_and_queries(world, ledger) -> None:
    api, tokens, codes = world["api"], world["tokens"], world["codes"]
    redeemed = [api.call("POST", "/v1/redemptions", tokens["a"], {"code": code},
                         key=f"s{i}")[1] for i, code in enumerate(codes[1][:5])]
    status, page = api.call("GET", "/v1/redemptions?limit=2", tokens["a"])
    assert status == 200 and len(page["redemptions"]) == 2 and page["next_after"]
    seen = [r["voucher_id"] for r in page["redemptions"]]
    while page["next_after"]:
        after = urllib.request.quote(page["next_after"])
        page = api.call("GET", f"/v1/redemptions?limit=2&after={after}", tokens["a"])[1]
        seen += [r["voucher_id"] for r in page["redemptions"]]
    assert seen == [r["voucher_id"] for r in redeemed]
    assert api.call("GET", "/v1/redemptions?month=2026-13", tokens["a"])[0] == 422
    assert api.call("GET", "/v1/redemptions?limit=0", tokens["a"])[0] == 422

    month = datetime.now(timezone.utc).strftime("%Y-%m")
    close = CloseSettlementMonth(request_id="h-close", month=month,
                                 occurred_at=datetime.now(timezone.utc) + timedelta(days=40))
    world["client"].send([close])
    assert wait_for_close(world["client"], "h-close")[-1].type == "settlement_month_closed"
    status, answer = api.call("GET", "/v1/statements", tokens["a"])
    (statement,) = answer["statements"]
    assert (statement["month"], statement["voucher_count"]) == (month, 5)
    assert sorted(statement["redemption_event_ids"]) == sorted(r["event_id"] for r in redeemed)
    assert api.call("GET", "/v1/statements", tokens["b"])[1] == {"statements": []}
    page = api.call("GET", "/v1/redemptions", tokens["a"])[1]
    assert {r["settlement_month"] for r in page["redemptions"]} == {month}


def test_the_openapi_document_is_served_and_matches_the_routes(world) -> None:
    api = world["api"]
    status, served = api.call("GET", "/openapi.json")
    assert status == 200
    assert served == json.loads(DOCUMENT.read_text(encoding="utf-8"))
    operations = [(method, path) for path, item in served["paths"].items()
                  for method in item if path != "/openapi.json"]
    # the venues' five, and the operator's (tests/integration/test_operator_admin.py)
    assert len([path for _, path in operations if not path.startswith("/v1/operator/")]) == 5
    for method, path in operations:
        concrete = path.replace("{voucher_id}", "992777565-0000001-01").replace(
            "{siret}", "55210055400104")
        status, body = api.call(method.upper(), concrete, None,
                                {} if method == "post" else None, key="k")
        # Served, and behind authentication: a missing route would be 404 or 405.
        assert (status, body["code"]) == (401, "unauthenticated"), (method, path)
    assert api.call("DELETE", "/v1/redemptions")[0] == 405
    assert api.call("GET", "/v1/nothing-here")[0] == 404


def _children(pid: int) -> set[int]:
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    children.add(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return children


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"




def test_the_api_process_crashes_alone_and_loses_nothing(world, ledger) -> None:
    """The API is a process of the worker's own (services/redeemer/web.py). Killed with
    SIGKILL while redemptions are in flight, it is started again by the worker; every
    request sent again with its key is answered with one redemption per voucher, decided
    once. A worker killed with SIGKILL takes its API process down with it, and a worker
    started again serves the port."""
    api, token, redeemer = world["api"], world["tokens"]["a"], world["redeemer"]
    codes = booklet_codes(world["key"], world["partner"], range(1, 2))
    first = _children(redeemer.process.pid)
    assert len(first) == 1, first
    answers: dict[int, Any] = {}

    def redeem(index: int) -> None:
        try:
            answers[index] = api.call("POST", "/v1/redemptions", token,
                                      {"code": codes[index]}, key=f"crash-{index}")
        except OSError as error:  # the connection the kill cut
            answers[index] = error

    threads = [threading.Thread(target=redeem, args=(index,)) for index in range(len(codes))]
    for thread in threads:
        thread.start()
    os.kill(next(iter(first)), signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=60)
    second = wait_until(lambda: _children(redeemer.process.pid) - first,
                        "the API process started again")
    wait_until(lambda: _ready(ledger.web_port_redeemer), "the API answering again")
    event_ids = set()
    for index, code in enumerate(codes):
        status, body = api.call("POST", "/v1/redemptions", token, {"code": code},
                                key=f"crash-{index}")
        assert status == 201, body
        earlier = answers[index]
        if isinstance(earlier, tuple) and earlier[0] == 201:
            assert earlier[1]["event_id"] == body["event_id"]
        event_ids.add(body["event_id"])
    assert len(event_ids) == len(codes)
    assert scalar(ledger, "SELECT count(*) FROM redemptions") == len(codes)

    redeemer.kill()
    wait_until(lambda: not any(_alive(pid) for pid in second), "the API process gone", 10)
    redeemer.start()
    redeemer.wait_until_healthy(120)
    status, body = api.call("POST", "/v1/checks", token, {"code": codes[0]})
    assert (status, body["valid"], body["reason"]) == (200, False, "already_redeemed")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False
