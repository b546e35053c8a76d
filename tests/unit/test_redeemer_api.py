"""The redeemer's HTTP edge without a server: how recorded outcomes read over HTTP, request
ids per venue, body validation, and the committed OpenAPI document."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from passnum.ledger.identity import event_id_for
from passnum.edge.http import Outcome
from passnum.edge.openapi import render
from passnum.edge.web_api import parse_body
from passnum.ledger.voucher import REDEMPTION_PRECEDENCE
from schemas.messages import (
    RedeemerCommandRejected,
    RedemptionCancelled,
    RedemptionRejected,
    VoucherChecked,
    VoucherRedeemed,
)
from services.redeemer import api, openapi

from . import BOOKLET_ID, MORNING, SIREN, SIRET, VOUCHER_ID

COMMON = {"request_id": "http:x:k", "occurred_at": MORNING,
          "event_id": event_id_for("redeemer", "http:x:k", 0)}


def rejected(reason: str, redeemed_at: str | None = None) -> RedemptionRejected:
    return RedemptionRejected(**COMMON, siret=SIRET, voucher_id=VOUCHER_ID, reason=reason,
                              redeemed_at=redeemed_at)


@pytest.mark.parametrize("reason, status", [
    ("malformed_code", 422), ("mistyped_code", 422), ("forged_code", 422),
    ("unknown_voucher", 404), ("booklet_not_activated", 409), ("booklet_blocked", 409),
    ("outside_validity", 409), ("outside_perimeter", 403), ("provider_not_accredited", 403),
    ("already_redeemed", 409)])
def test_every_redemption_refusal_has_its_status_and_reason(reason: str, status: int) -> None:
    answer = api.answer_for_outcome(Outcome([rejected(reason)], True), "http:x:k", 201)
    assert (answer.status, answer.body["code"]) == (status, reason)


def test_the_status_table_covers_every_reason_the_deciders_give() -> None:
    assert set(REDEMPTION_PRECEDENCE) | set(api.CANCELLATION_REFUSALS) == set(
        api.REJECTION_STATUS)


def test_already_redeemed_says_when_in_utc() -> None:
    paris = datetime(2024, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    answer = api.answer_for_outcome(
        Outcome([rejected("already_redeemed", paris.isoformat())], True), "http:x:k", 201)
    assert answer.body["redeemed_at"] == "2024-03-01T09:00:00+00:00"


@pytest.mark.parametrize("reason, status", [
    ("not_redeemed_here", 404), ("already_settled", 409), ("cancellation_too_late", 409)])
def test_cancellation_refusals(reason: str, status: int) -> None:
    event = RedeemerCommandRejected(**COMMON, command_type="cancel_redemption", reason=reason)
    assert api.answer_for_outcome(Outcome([event], True), "http:x:k", 200).status == status


def test_successes_and_a_reused_key() -> None:
    redeemed = VoucherRedeemed(**COMMON, siret=SIRET, siren=SIREN, booklet_id=BOOKLET_ID,
                               voucher_id=VOUCHER_ID, face_value_cents=1000)
    answer = api.answer_for_outcome(Outcome([redeemed], True), "http:x:k", 201)
    assert answer.status == 201
    assert answer.body == {"request_id": "http:x:k", "event_id": redeemed.event_id,
                           "voucher_id": VOUCHER_ID, "booklet_id": BOOKLET_ID,
                           "face_value_cents": 1000,
                           "redeemed_at": "2024-03-01T09:00:00+00:00"}
    assert api.answer_for_outcome(Outcome([redeemed], False), "http:x:k", 201).body[
        "code"] == "request_id_reused"
    checked = VoucherChecked(**COMMON, siret=SIRET, voucher_id=VOUCHER_ID, valid=False,
                             reason="booklet_blocked")
    answer = api.answer_for_outcome(Outcome([checked], True), "http:x:k", 200)
    assert (answer.status, answer.body["valid"], answer.body["reason"]) == (
        200, False, "booklet_blocked")
    cancelled = RedemptionCancelled(**COMMON, siret=SIRET, siren=SIREN, booklet_id=BOOKLET_ID,
                                    voucher_id=VOUCHER_ID, face_value_cents=1000,
                                    redemption_event_id="earlier")
    answer = api.answer_for_outcome(Outcome([cancelled], True), "http:x:k", 200)
    assert answer.body["cancelled_redemption_event_id"] == "earlier"


def test_request_ids_are_namespaced_by_venue_and_keys_are_checked() -> None:
    assert api.request_id_for(SIRET, "scan-1", True) == f"http:{SIRET}:scan-1"
    assert api.request_id_for(SIRET, "scan-1", True) != api.request_id_for(
        "73282932000207", "scan-1", True)
    assert api.request_id_for(SIRET, None, False).startswith(f"http:{SIRET}:auto-")
    for key, required in ((None, True), ("with space", True), ("x" * 101, False)):
        with pytest.raises(api.ApiError) as refused:
            api.request_id_for(SIRET, key, required)
        assert refused.value.answer.status == 400


def test_a_body_cannot_name_a_venue() -> None:
    with pytest.raises(api.ApiError) as refused:
        parse_body(api.CodeRequest, json.dumps({"code": "X", "siret": SIRET}).encode())
    assert (refused.value.answer.status, refused.value.answer.body["code"]) == (
        422, "invalid_body")
    assert parse_body(api.CodeRequest, b'{"code": "ABCD"}').code == "ABCD"


def test_the_committed_openapi_document_is_the_generated_one() -> None:
    committed = openapi.DOCUMENT_PATH.read_text(encoding="utf-8")
    assert committed == render(openapi.openapi_document()), (
        "docs/openapi-redeemer.json is stale: run `python -m services.redeemer.openapi`")


def test_the_document_lists_every_route_and_its_errors() -> None:
    document = openapi.openapi_document()
    assert document["openapi"].startswith("3.1")
    for route in api.ROUTES:
        operation = document["paths"][route.path][route.method]
        assert operation["operationId"] == route.operation_id
        assert set(operation["responses"]) == {str(route.success_status)} | {
            str(status) for status in route.error_statuses}
    described = json.dumps(document)
    assert all(reason in described for reason in api.REJECTION_STATUS)
