"""What is the issuer's own in its OpenAPI document: the words for each status, the
parameters, the title. passnum/edge/openapi.py builds the document from these and `api.ROUTES`.

`python -m services.issuer.openapi` rewrites docs/openapi-issuer.json, which unit and
integration tests compare with the code and with the routes the worker serves.
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
from passnum.edge.web_api import ErrorResponse
from services.issuer.api import LIMITS, REJECTION_STATUS, ROUTES
from services.issuer.operator_api import ROUTES as OPERATOR_ROUTES
from services.issuer.print_api import print_operations

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi-issuer.json"


_reasons = partial(reasons_with, REJECTION_STATUS)

_STATUS_TEXT = {
    400: "Missing or malformed Idempotency-Key header (idempotency_key_required, "
         "invalid_idempotency_key), or a body that is not UTF-8 (not_utf8)",
    401: "Missing, unknown or revoked bearer token",
    403: "The token is not a collectivité's (not_a_collectivite), or, on /v1/operator "
         "routes, not an operator's (not_an_operator)",
    404: "No such booklet among the collectivité's own (another tenant's booklet looks the "
         "same as one that does not exist); on token routes, a SIREN no collectivité is "
         "registered under (unknown_collectivite)",
    409: "Conflict: " + _reasons(409)
         + ", or request_id_reused (the Idempotency-Key was used for another body), or "
         "token_already_issued (a token was issued for this key and shown once)",
    413: "Body too large",
    422: "Invalid body or query (invalid_body, invalid_query), a SIREN whose check digit is "
         "wrong (invalid_siren, refused before any command), or recorded rejection: "
         + _reasons(422),
    503: "The worker is starting",
    504: "The command is in the log but its outcome is not recorded yet: retry with the "
         "same Idempotency-Key",
}

_PARAMETERS: dict[str, dict[str, Any]] = {
    "booklet_id": {"name": "booklet_id", "in": "path", "required": True,
                   "schema": {"type": "string", "pattern": r"^[0-9]{9}-[0-9]{7}$"}},
    "status": {"name": "status", "in": "query", "required": False,
               "schema": {"enum": ["issued", "distributed", "handed_out", "blocked"]}},
    "after": {"name": "after", "in": "query", "required": False,
              "description": "booklet id of the last item of the previous page",
              "schema": {"type": "string", "pattern": r"^[0-9]{9}-[0-9]{7}$"}},
    "limit": limit_parameter(LIMITS),
    "siren": {"name": "siren", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": r"^[0-9]{9}$"}},
    "after_siren": {"name": "after_siren", "in": "query", "required": False,
                    "description": "the next_after of the previous page",
                    "schema": {"type": "string", "pattern": r"^[0-9]{0,9}$"}},
}

DESCRIPTION = ApiDescription(
    title="passnum issuer API",
    description="For collectivités: order booklets, record funds received, distribute and "
                "block booklets, list booklets and their voucher codes. For the operator "
                "(/v1/operator/...): register collectivités, commit and raise envelopes, "
                "record funds received, list collectivités, issue, rotate and revoke their "
                "tokens. Every write is a command decided through the ledger's log; see "
                "docs/issuer.md and docs/operator.md.",
    token_description="a collectivité's API token (`passnum token issue collectivite "
                      "SIREN`), or an operator's on /v1/operator routes (`passnum token "
                      "issue operator NAME`)",
    idempotency_description="the request's identity: the same key gives the same recorded "
                            "outcome; the same key with another body is refused (409)",
    idempotency_key_max_characters=LIMITS.idempotency_key_max_characters,
    routes=ROUTES + OPERATOR_ROUTES, error_model=ErrorResponse, status_text=_STATUS_TEXT, parameters=_PARAMETERS)


def openapi_document() -> dict[str, Any]:
    document = build_document(DESCRIPTION)
    # The print routes answer a PDF, not a model: services/issuer/print_api.py says how.
    paths = {**document["paths"], **print_operations(DESCRIPTION)}
    return {**document, "paths": dict(sorted(paths.items()))}


if __name__ == "__main__":
    print(write_document(openapi_document(), DOCUMENT_PATH))
