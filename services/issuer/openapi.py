"""The OpenAPI 3.1 document of the issuer's HTTP API, generated from `api.ROUTES` and the
pydantic models of `api`, so that the document cannot drift from the code.

`python -m services.issuer.openapi` rewrites docs/openapi-issuer.json; a unit test fails
when the file is stale, and an integration test compares it with the routes the running
worker serves. The worker serves the same document at GET /openapi.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.issuer.api import (
    IDEMPOTENCY_HEADER,
    LIMITS,
    REJECTION_STATUS,
    ROUTES,
    ErrorResponse,
    Route,
)

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi-issuer.json"
OPENAPI_PATH = "/openapi.json"
_REFERENCE_TEMPLATE = "#/components/schemas/{model}"

_STATUS_TEXT = {
    400: "Missing or malformed Idempotency-Key header",
    401: "Missing, unknown or revoked bearer token",
    403: "The token is not a collectivité's",
    404: "No such booklet among the collectivité's own (another tenant's booklet looks the "
         "same as one that does not exist)",
    409: "Conflict: " + ", ".join(sorted(r for r, s in REJECTION_STATUS.items() if s == 409))
         + ", or request_id_reused (the Idempotency-Key was used for another body)",
    413: "Body too large",
    422: "Invalid body or query (invalid_body, invalid_query) or recorded rejection: "
         + ", ".join(sorted(r for r, s in REJECTION_STATUS.items() if s == 422)),
    503: "The worker is starting",
    504: "The command is in the log but its outcome is not recorded yet: retry with the "
         "same Idempotency-Key",
}

_QUERY_PARAMETERS: dict[str, dict[str, Any]] = {
    "status": {"name": "status", "in": "query", "required": False,
               "schema": {"enum": ["issued", "distributed", "handed_out", "blocked"]}},
    "after": {"name": "after", "in": "query", "required": False,
              "description": "booklet id of the last item of the previous page",
              "schema": {"type": "string", "pattern": r"^[0-9]{9}-[0-9]{7}$"}},
    "limit": {"name": "limit", "in": "query", "required": False,
              "schema": {"type": "integer", "minimum": 1, "maximum": LIMITS.page_size_max,
                         "default": LIMITS.page_size_default}},
}


def _models() -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = [ErrorResponse]
    for route in ROUTES:
        for model in (route.request_model, route.response_model):
            if model is not None and model not in models:
                models.append(model)
    return models


def _component_schemas() -> dict[str, Any]:
    pairs = [(model, "validation" if _is_request(model) else "serialization")
             for model in _models()]
    _, top = models_json_schema(pairs, ref_template=_REFERENCE_TEMPLATE)  # type: ignore[arg-type]
    return dict(sorted(top.get("$defs", {}).items()))


def _is_request(model: type[BaseModel]) -> bool:
    return any(route.request_model is model for route in ROUTES)


def _reference(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REFERENCE_TEMPLATE.format(model=model.__name__)}


def _json_content(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _reference(model)}}


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary}
    parameters = [_QUERY_PARAMETERS[name] for name in route.query_parameters]
    if "{booklet_id}" in route.path:
        parameters.insert(0, {"name": "booklet_id", "in": "path", "required": True,
                              "schema": {"type": "string", "pattern": r"^[0-9]{9}-[0-9]{7}$"}})
    if route.method == "post":
        parameters.append({
            "name": IDEMPOTENCY_HEADER, "in": "header", "required": True,
            "description": "the request's identity: the same key gives the same recorded "
                           "outcome; the same key with another body is refused (409)",
            "schema": {"type": "string", "pattern":
                       rf"^[A-Za-z0-9._:~-]{{1,{LIMITS.idempotency_key_max_characters}}}$"}})
    if parameters:
        operation["parameters"] = parameters
    if route.request_model is not None:
        operation["requestBody"] = {"required": True,
                                    "content": _json_content(route.request_model)}
    responses: dict[str, Any] = {str(route.success_status): {
        "description": "Success", "content": _json_content(route.response_model)}}
    for status in sorted(route.error_statuses):
        responses[str(status)] = {"description": _STATUS_TEXT[status],
                                  "content": _json_content(ErrorResponse)}
    operation["responses"] = responses
    if route.authenticated:
        operation["security"] = [{"bearer": []}]
    return operation


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method] = _operation(route)
    paths[OPENAPI_PATH] = {"get": {
        "operationId": "openapi", "summary": "This document",
        "responses": {"200": {"description": "The OpenAPI document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "passnum issuer API",
            "version": "1",
            "description": "For collectivités: order booklets, record funds received, "
                           "distribute and block booklets, list booklets and their voucher "
                           "codes. Every write is a command decided through the ledger's "
                           "log; see docs/issuer.md.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _component_schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a collectivité's API token "
                                                          "(`passnum token collectivite SIREN`)"}},
        },
    }


def render(document: dict[str, Any]) -> str:
    """Stable text: a diff of the file is a change of the API and nothing else."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    DOCUMENT_PATH.write_text(render(openapi_document()), encoding="utf-8")
    print(DOCUMENT_PATH)
