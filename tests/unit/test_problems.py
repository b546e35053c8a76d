"""Error answers are RFC 9457 problem details: every reason code the two tenant APIs can
answer has its own French title, every answer carries its own status, and the OpenAPI
documents give that shape and media type for every error status."""

from __future__ import annotations

import pytest

from passnum.edge import operator_api, problems
from passnum.edge.web_api import Answer, ApiError, key_reused_answer
from services.issuer import api as issuer_api
from services.issuer.openapi import openapi_document as issuer_document
from services.redeemer import api as redeemer_api
from services.redeemer import operator_api as redeemer_operator_api
from services.redeemer.openapi import openapi_document as redeemer_document

EDGE_CODES = ("unauthenticated", "not_a_collectivite", "not_a_venue",
              "idempotency_key_required", "invalid_idempotency_key", "request_id_reused",
              "body_too_large", "not_utf8", "invalid_body", "invalid_query", "starting",
              "outcome_pending", "internal_error", "log_unavailable", "database_unavailable",
              "not_an_operator", "invalid_siret", "invalid_iban")


@pytest.mark.parametrize("code", sorted({*EDGE_CODES, *issuer_api.REJECTION_STATUS,
                                         *redeemer_api.REJECTION_STATUS,
                                         *operator_api.TOKEN_REFUSAL_STATUS,
                                         *redeemer_operator_api.REJECTION_STATUS}))
def test_every_code_the_apis_answer_has_its_own_french_title(code: str) -> None:
    assert code in problems.TITLES
    assert problems.title_of(code, 409) == problems.TITLES[code]


def test_an_error_answer_is_a_problem_with_its_status_type_and_code() -> None:
    answer = ApiError(422, "invalid_body", "booklet_count: too big").answer
    assert answer.body == {"type": "urn:passnum:probleme:invalid_body",
                           "title": "Corps de requête invalide", "status": 422,
                           "detail": "booklet_count: too big", "code": "invalid_body"}
    # Made without its status (a recorded refusal), it gets the answer's.
    assert key_reused_answer().body["status"] == 409
    assert Answer(404, problems.problem("some_new_code", "x")).body["title"] == \
        problems.STATUS_TITLES[404]
    problems.ProblemDetails.model_validate(answer.body)


def test_a_success_is_left_as_it_is() -> None:
    body = {"request_id": "r", "events": []}
    assert Answer(201, body).body is body and not problems.is_problem(body)


@pytest.mark.parametrize("document", [issuer_document(), redeemer_document()],
                         ids=["issuer", "redeemer"])
def test_the_documents_give_problem_details_for_every_error_status(document: dict) -> None:
    errors = [(path, method, status, response) for path, item in document["paths"].items()
              for method, operation in item.items()
              for status, response in operation["responses"].items() if int(status) >= 400]
    assert errors
    for path, method, status, response in errors:
        assert list(response["content"]) == [problems.PROBLEM_MEDIA_TYPE], (path, method, status)
        reference = response["content"][problems.PROBLEM_MEDIA_TYPE]["schema"]["$ref"]
        schema = document["components"]["schemas"][reference.rsplit("/", 1)[1]]
        assert {"type", "title", "status", "detail", "code"} <= set(schema["required"])
    checks = document["paths"].get("/v1/checks")
    if checks is not None:
        assert "409" in checks["post"]["responses"]  # request_id_reused, documented
