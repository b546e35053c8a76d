"""The redeemer API's OpenAPI document, built (by passnum/edge/openapi.py) from `api.ROUTES` and
what this module adds: each status in a venue's words, the path and query parameters.

Rewrite docs/openapi-redeemer.json with `python -m services.redeemer.openapi`; a stale file
fails tests/unit/test_redeemer_api.py.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from passnum.edge.openapi import (
    ApiDescription,
    build_document,
    limit_parameter,
    reasons_with,
    write_document,
)
from schemas.base import LEDGER_MONTH_PATTERN
from services.redeemer.api import LIMITS, REJECTION_STATUS, ROUTES, ErrorResponse
from services.redeemer.operator_api import REJECTION_STATUS as OPERATOR_REJECTION_STATUS
from services.redeemer.operator_api import ROUTES as OPERATOR_ROUTES

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi-redeemer.json"
_reasons = partial(reasons_with, REJECTION_STATUS)
_operator_reasons = partial(reasons_with, OPERATOR_REJECTION_STATUS)

_STATUS_TEXT = {
    400: "Missing or malformed Idempotency-Key header (idempotency_key_required, "
         "invalid_idempotency_key), or a body that is not UTF-8 (not_utf8)",
    401: "Missing, unknown or revoked bearer token (unauthenticated)",
    403: "The token is not a venue's (not_a_venue), or the venue may not take this voucher: "
         + _reasons(403) + "; on /v1/operator routes, the token is not an operator's "
         "(not_an_operator)",
    404: "No such voucher, or no such redemption by this venue: " + _reasons(404)
         + "; on /v1/operator routes, no such venue: " + _operator_reasons(404)
         + ", unknown_venue",
    409: "The voucher's state forbids it: " + _reasons(409) + " (already_redeemed carries "
         "redeemed_at); on /v1/operator routes: " + _operator_reasons(409)
         + ", token_already_issued (a token was issued for this key and shown once); or "
         "request_id_reused (the Idempotency-Key was used for another body)",
    413: "Body too large (body_too_large)",
    422: "Invalid body or query (invalid_body, invalid_query), or a code that is not a "
         "voucher's: " + _reasons(422) + "; on /v1/operator routes: "
         + _operator_reasons(422),
    503: "The worker is starting (starting)",
    504: "The command is in the log but its outcome is not recorded yet (outcome_pending): "
         "retry with the same Idempotency-Key",
}

_PARAMETERS: dict[str, dict[str, Any]] = {
    "month": {"name": "month", "in": "query", "required": False,
              "description": "a calendar month in France, from 2000-01 to 2100-12",
              "schema": {"type": "string", "pattern": LEDGER_MONTH_PATTERN}},
    "after": {"name": "after", "in": "query", "required": False,
              "description": "the next_after of the previous page",
              "schema": {"type": "string"}},
    "limit": limit_parameter(LIMITS),
    "voucher_id": {"name": "voucher_id", "in": "path", "required": True,
                   "schema": {"type": "string", "pattern": r"^\d{9}-\d{7}-\d{2}$"}},
    "siret": {"name": "siret", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": r"^[0-9]{14}$"}},
    "after_siret": {"name": "after_siret", "in": "query", "required": False,
                    "description": "the next_after of the previous page",
                    "schema": {"type": "string", "pattern": r"^[0-9]{0,14}$"}},
}

DESCRIPTION = ApiDescription(
    title="passnum redeemer API",
    description="For accredited venues: check and redeem vouchers, cancel a redemption of "
                "the day, list redemptions and settlement statements. For the operator "
                "(/v1/operator/...): accredit, suspend, reinstate and revoke venues, list "
                "them, issue, rotate and revoke their tokens. Every write is a command "
                "decided through the ledger's log; see docs/redeemer.md and "
                "docs/operator.md.",
    token_description="a venue's API token (`passnum token issue venue SIRET`), or an "
                      "operator's on /v1/operator routes (`passnum token issue operator "
                      "NAME`)",
    idempotency_description="the request's identity, per venue: the same key gives the same "
                            "recorded outcome; the same key with another body is refused "
                            "(409)",
    idempotency_key_max_characters=LIMITS.idempotency_key_max_characters,
    routes=ROUTES + OPERATOR_ROUTES, error_model=ErrorResponse, status_text=_STATUS_TEXT, parameters=_PARAMETERS)


def openapi_document() -> dict[str, Any]:
    return build_document(DESCRIPTION)


if __name__ == "__main__":
    print(write_document(openapi_document(), DOCUMENT_PATH))
