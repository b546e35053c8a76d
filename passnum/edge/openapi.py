"""OpenAPI 3.1 documents of the workers' HTTP APIs, generated from a service's route table
(`passnum.edge.web_api.Route`) and its pydantic models, so that a document cannot drift from the
code. Each service states only what is its own (`ApiDescription`): its routes, its words for
each status, its parameters, its title.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from passnum.edge.problems import PROBLEM_MEDIA_TYPE
from passnum.edge.web_api import IDEMPOTENCY_HEADER, ApiLimits, Route, idempotency_key_pattern

OPENAPI_PATH = "/openapi.json"
_REFERENCE_TEMPLATE = "#/components/schemas/{model}"
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class ApiDescription:
    title: str
    description: str
    token_description: str  # how a client gets a bearer token
    idempotency_description: str  # what the Idempotency-Key header means
    idempotency_key_max_characters: int
    routes: tuple[Route, ...]
    error_model: type[BaseModel]
    status_text: Mapping[int, str]  # the description of each error status
    parameters: Mapping[str, dict[str, Any]]  # path and query parameters, by name


def build_document(api: ApiDescription) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in api.routes:
        paths.setdefault(route.path, {})[route.method] = _operation(api, route)
    paths[OPENAPI_PATH] = {"get": {
        "operationId": "openapi", "summary": "This document",
        "responses": {"200": {"description": "The OpenAPI document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": api.title, "version": "1", "description": api.description},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _component_schemas(api),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": api.token_description}},
        },
    }


def reasons_with(rejection_status: Mapping[str, int], status: int) -> str:
    """The recorded reasons that read as `status`, for the words of that status."""
    return ", ".join(sorted(reason for reason, code in rejection_status.items()
                            if code == status))


def limit_parameter(limits: ApiLimits) -> dict[str, Any]:
    """The `limit` query parameter of a listing, as `passnum.edge.web_api.limit_query` reads it."""
    return {"name": "limit", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": limits.page_size_max,
                       "default": limits.page_size_default}}


def render(document: dict[str, Any]) -> str:
    """Stable text: a diff of the file is a change of the API and nothing else."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_document(document: dict[str, Any], path: Path) -> Path:
    """Where a service's committed copy lives (docs/openapi-*.json), rewritten."""
    path.write_text(render(document), encoding="utf-8")
    return path


def _operation(api: ApiDescription, route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary,
                                 "security": [{"bearer": []}]}
    names = [*_PATH_PARAMETER.findall(route.path), *route.query_parameters]
    parameters = [api.parameters[name] for name in names]
    if route.idempotency != "none":
        parameters.append(_idempotency_parameter(api, route))
    if parameters:
        operation["parameters"] = parameters
    if route.request_model is not None:
        operation["requestBody"] = {"required": True,
                                    "content": _json_content(route.request_model)}
    responses: dict[str, Any] = {str(route.success_status): {
        "description": "Success", "content": _json_content(route.response_model)}}
    for status in sorted(route.error_statuses):
        responses[str(status)] = {"description": api.status_text[status],
                                  "content": _json_content(api.error_model, PROBLEM_MEDIA_TYPE)}
    operation["responses"] = responses
    return operation


def _idempotency_parameter(api: ApiDescription, route: Route) -> dict[str, Any]:
    return {"name": IDEMPOTENCY_HEADER, "in": "header",
            "required": route.idempotency == "required",
            "description": api.idempotency_description,
            "schema": {"type": "string",
                       "pattern": idempotency_key_pattern(api.idempotency_key_max_characters)}}


def _component_schemas(api: ApiDescription) -> dict[str, Any]:
    requests = {route.request_model for route in api.routes}
    pairs = [(model, "validation" if model in requests else "serialization")
             for model in _models(api)]
    _, top = models_json_schema(pairs, ref_template=_REFERENCE_TEMPLATE)  # type: ignore[arg-type]
    return dict(sorted(top.get("$defs", {}).items()))


def _models(api: ApiDescription) -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = [api.error_model]
    for route in api.routes:
        for model in (route.request_model, route.response_model):
            if model is not None and model not in models:
                models.append(model)
    return models


def _json_content(model: type[BaseModel], media_type: str = "application/json"
                  ) -> dict[str, Any]:
    return {media_type: {"schema": {"$ref": _REFERENCE_TEMPLATE.format(
        model=model.__name__)}}}
