"""The HTTP edge of the issuer without a network: how recorded outcomes read as statuses,
how idempotency keys become request ids, what a validation error may say, and whether the
OpenAPI document matches the code and the routes the faust app serves."""

from __future__ import annotations

import json

import pytest

from passnum.core.health import OPERATIONS_PATHS
from passnum.core.settings import Settings
from passnum.core.worker import build_app
from passnum.edge import problems
from passnum.edge.http import Outcome
from passnum.edge.openapi import OPENAPI_PATH, render
from passnum.edge.web_api import parse_body
from passnum.ledger.envelope import REJECTION_PRECEDENCE
from schemas.messages import BookletDistributed, BookletsOrdered, IssuerCommandRejected
from services.issuer import api
from services.issuer.openapi import DOCUMENT_PATH, openapi_document
from services.issuer.web import attach_api

from . import BOOKLET_ID, MORNING, SIREN

COMMON = {"request_id": "http:552100554:k", "occurred_at": MORNING}


def rejection(reason: str) -> IssuerCommandRejected:
    return IssuerCommandRejected(**COMMON, event_id="e0", siren=SIREN,
                                 command_type="distribute_booklet", reason=reason, detail="d")


def distributed() -> BookletDistributed:
    return BookletDistributed(**COMMON, event_id="e0", siren=SIREN, booklet_id=BOOKLET_ID,
                              distributor="CAF", beneficiary_reference=None)


@pytest.mark.parametrize("reason, status", [
    ("unknown_booklet", 404), ("already_registered", 409), ("booklet_blocked", 409),
    ("already_handed_out", 409), ("invalid_framing", 422), ("over_envelope", 409),
    ("over_cap", 409), ("unknown_collectivite", 409), ("invalid_siren", 422),
    ("booklet_numbering_exhausted", 409),
])
def test_each_recorded_rejection_has_its_status(reason: str, status: int) -> None:
    answer = api.answer_for_outcome(Outcome([rejection(reason)], True), "r", 200)
    assert (answer.status, answer.body) == (status, {
        "type": f"urn:passnum:probleme:{reason}", "title": problems.TITLES[reason],
        "status": status, "detail": "d", "code": reason})


def test_every_rejection_reason_of_the_domain_is_mapped() -> None:
    assert set(api.REJECTION_STATUS) == set(REJECTION_PRECEDENCE)


def test_a_key_reused_for_another_body_is_a_conflict_whatever_was_recorded() -> None:
    answer = api.answer_for_outcome(Outcome([distributed()], False), "r", 200)
    assert (answer.status, answer.body["code"]) == (409, "request_id_reused")


def test_success_carries_the_recorded_events_and_the_order_id() -> None:
    ordered = BookletsOrdered(**COMMON, event_id="e0", siren=SIREN,
                              order_id=f"{SIREN}-order-00001", booklet_count=1,
                              vouchers_per_booklet=10, face_value_cents=1000,
                              target_group="general", perimeter=(),
                              valid_from=MORNING.date(), valid_until=MORNING.date(),
                              grace_until=MORNING.date())
    answer = api.answer_for_outcome(Outcome([ordered], True), "r", 201)
    assert answer.status == 201 and answer.body["order_id"] == f"{SIREN}-order-00001"
    assert answer.body["events"] == [json.loads(ordered.model_dump_json())]
    api.CommandResponse.model_validate(answer.body)


def test_request_ids_are_namespaced_by_tenant() -> None:
    assert api.request_id_for(SIREN, "abc") != api.request_id_for("732829320", "abc")
    assert api.request_id_for(SIREN, "abc") == api.request_id_for(SIREN, "abc")


@pytest.mark.parametrize("key, reason", [
    (None, "idempotency_key_required"), ("", "invalid_idempotency_key"),
    ("has space", "invalid_idempotency_key"), ("x" * 101, "invalid_idempotency_key"),
])
def test_missing_or_malformed_keys_are_refused(key: str | None, reason: str) -> None:
    with pytest.raises(api.ApiError) as raised:
        api.request_id_for(SIREN, key)
    assert (raised.value.answer.status, raised.value.answer.body["code"]) == \
        (400, reason)


def test_a_validation_error_does_not_echo_the_beneficiary_identifier() -> None:
    identifier = "185057800608436" * 20  # too long: refused
    with pytest.raises(api.ApiError) as raised:
        parse_body(api.DistributeRequest, json.dumps(
            {"distributor": "CAF", "beneficiary_identifier": identifier}).encode())
    answer = raised.value.answer
    assert answer.status == 422 and "beneficiary_identifier" in answer.body["detail"]
    assert "185057800608436" not in json.dumps(answer.body)


@pytest.mark.parametrize("query", [{"status": "lost"}, {"limit": "0"}, {"limit": "501"},
                                   {"limit": "ten"}, {"after": "12"}])
def test_bad_listing_queries_are_refused(query: dict[str, str]) -> None:
    with pytest.raises(api.ApiError) as raised:
        api.page_request(query, api.LIMITS)
    assert raised.value.answer.status == 422


def test_listing_query_defaults_and_cursor() -> None:
    assert api.page_request({}, api.LIMITS) == (None, 0, api.LIMITS.page_size_default)
    assert api.page_request({"after": f"{SIREN}-0000042", "status": "blocked", "limit": "7"},
                            api.LIMITS) == ("blocked", 42, 7)


def test_voucher_codes_are_the_printed_codes_of_the_booklet() -> None:
    from passnum.ledger.voucher_codes import parse_code

    codes = api.voucher_codes(b"key", SIREN, 3, 5)
    assert [c["voucher_id"] for c in codes] == [f"{SIREN}-0000003-0{n}" for n in range(1, 6)]
    assert all(parse_code(b"key", c["code"]).outcome == "valid" for c in codes)
    assert all(parse_code(b"other", c["code"]).outcome == "forged_code" for c in codes)


def test_the_openapi_file_is_the_generated_document() -> None:
    assert DOCUMENT_PATH.read_text(encoding="utf-8") == render(openapi_document()), \
        "stale: run `python -m services.issuer.openapi`"


def test_the_document_describes_exactly_the_routes_the_worker_serves() -> None:
    app = build_app("unit-issuer-api", Settings(), 65000)  # nothing listens: never started
    attach_api(app, Settings())
    served = {(path, method.lower()) for path, view in app.web.views.items()
              for method in view.get_methods()
              if method != "HEAD" and path not in OPERATIONS_PATHS}
    document = openapi_document()
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served == documented
    assert OPENAPI_PATH in document["paths"]
    assert document["openapi"].startswith("3.1")


def test_every_post_documents_its_idempotency_key_and_conflicts() -> None:
    for path, item in openapi_document()["paths"].items():
        if "post" in item:
            operation = item["post"]
            headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
            assert headers == ["Idempotency-Key"], path
            assert {"401", "409", "422"} <= set(operation["responses"]), path


def test_a_reason_the_table_does_not_know_yet_reads_as_a_conflict() -> None:
    answer = api.answer_for_outcome(Outcome([rejection("some_future_reason")], True), "r", 200)
    assert answer.status == api.UNMAPPED_REJECTION_STATUS == 409
