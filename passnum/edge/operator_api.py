"""What the operator routes of both workers share: operator tokens, request ids, the answer
of a recorded outcome, and the token routes.

The operator administers the programme: it registers and funds collectivités on the issuer
(services/issuer/operator_api.py) and accredits venues on the redeemer
(services/redeemer/operator_api.py). Every such action is a command on the log, decided by
the same processor as any other command: the `Idempotency-Key` header is the command's
request id (namespaced `operator:NAME`, so that it never meets a collectivité's or a venue's
key), a retry answers the recorded outcome, and a refusal is a recorded fact before it is a
4xx. Tokens are access control, not ledger facts: they change in PostgreSQL
(passnum/edge/tokens.py), and a token issued over HTTP carries its request id so that a retry
never issues a second one.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import psycopg
from pydantic import BaseModel

from passnum.core.database import SESSION_OPTIONS
from passnum.core.settings import Settings
from passnum.edge.http import Outcome, Tenant, TokenCache, error_body
from passnum.edge.tokens import Action, TokenRefused, change_tokens
from passnum.edge.web_api import (
    IDEMPOTENCY_HEADER,
    Answer,
    ApiError,
    ApiLimits,
    RequestBody,
    Route,
    TenantApi,
    key_reused_answer,
    limit_query,
    namespaced_request_id,
    parse_body,
    read_body,
)

LIMITS = ApiLimits(page_size_max=1000, body_max_bytes=8 * 1024, outcome_timeout_seconds=15.0)
WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 422, 503, 504)
READ_ERRORS = (401, 403, 422, 503)

# How a refused token change reads over HTTP.
TOKEN_REFUSAL_STATUS: dict[str, int] = {
    "invalid_siren": 422,
    "invalid_siret": 422,
    "unknown_collectivite": 404,
    "unknown_venue": 404,
    "token_already_issued": 409,
}


class TokenRequest(RequestBody):
    """No field: the tenant is in the path. The new token is in the answer, shown once."""


class OperatorCommandResponse(BaseModel):
    """The recorded outcome of the operator's command: its events, as in the log."""

    request_id: str
    events: list[dict[str, Any]]


class TokenResponse(BaseModel):
    kind: str
    identifier: str
    token: str | None
    revoked_count: int


def token_routes(prefix: str, noun: str) -> tuple[Route, ...]:
    """Issue, rotate and revoke the tokens of the tenant at `prefix` (a path with its
    identifier parameter)."""
    return (
        Route("post", f"{prefix}/tokens", f"issue{noun}Token", f"Issue a {noun.lower()}'s API "
              "token (shown once)", 201, TokenResponse, TokenRequest, WRITE_ERRORS,
              idempotency="required"),
        Route("post", f"{prefix}/tokens/rotation", f"rotate{noun}Token",
              f"Issue a new {noun.lower()} token and revoke the old ones, at once", 201,
              TokenResponse, TokenRequest, WRITE_ERRORS, idempotency="required"),
        Route("delete", f"{prefix}/tokens", f"revoke{noun}Tokens",
              f"Revoke every token of the {noun.lower()}", 200, TokenResponse, None,
              (401, 403, 422, 503)),
    )


def answer_for_outcome(outcome: Outcome, request_id: str, success_status: int,
                       rejection_types: tuple[type, ...], rejection_status: Mapping[str, int]
                       ) -> Answer:
    """In precedence order: a key reused for another body, the recorded refusal, success."""
    if not outcome.fingerprint_matches:
        return key_reused_answer()
    assert outcome.events, "every decided command records at least one event"
    for event in outcome.events:
        if isinstance(event, rejection_types):
            reason: str = event.reason  # type: ignore[attr-defined]
            return Answer(rejection_status.get(reason, 409),
                          error_body(reason, getattr(event, "detail", "")))
    return Answer(success_status, {"request_id": request_id, "events": [
        event.model_dump(mode="json") for event in outcome.events]})


@dataclass(frozen=True)
class TokenTarget:
    kind: str
    identifier: str
    action: Action


class OperatorApi(TenantApi):
    """The base of both services' operator APIs. A subclass names its processor, routes,
    handlers, the refusal events of its service and how each reads over HTTP."""

    tenant_kind = "operator"
    wrong_tenant_reason = "not_an_operator"
    wrong_tenant_detail = "these routes are for operators' tokens"
    rejection_types: tuple[type, ...]
    rejection_status: Mapping[str, int]

    def __init__(self, settings: Settings, limits: ApiLimits = LIMITS,
                 tenant_caches: Iterable[TokenCache] = ()) -> None:
        super().__init__(settings, limits)
        # The caches of this process's tenant APIs: a rotated or revoked token stops
        # working here at once.
        self.tenant_caches = tuple(tenant_caches)

    def request_id(self, tenant: Tenant, idempotency_key: str | None, route: Route) -> str:
        if idempotency_key is None:
            raise ApiError(400, "idempotency_key_required",
                           f"every operator POST needs an {IDEMPOTENCY_HEADER} header")
        return namespaced_request_id(f"operator:{tenant.identifier}", idempotency_key,
                                     self.limits.idempotency_key_max_characters)

    def answer(self, outcome: Outcome, request_id: str, route: Route) -> Answer:
        return answer_for_outcome(outcome, request_id, route.success_status,
                                  self.rejection_types, self.rejection_status)

    async def change_tokens(self, request: Any, tenant: Tenant, target: TokenTarget,
                            operation_id: str) -> Answer:
        request_id = None
        if target.action != "revoke":
            request_id = self.request_id(tenant, request.headers.get(IDEMPOTENCY_HEADER),
                                         self.route(operation_id))
            parse_body(TokenRequest, await read_body(request, self.limits.body_max_bytes))
        try:
            change = await asyncio.to_thread(self._change_tokens, target, request_id)
        except TokenRefused as refused:
            raise ApiError(TOKEN_REFUSAL_STATUS.get(refused.reason, 422), refused.reason,
                           refused.detail) from None
        for cache in (*self.tenant_caches, self.tokens):
            cache.forget(Tenant(target.kind, target.identifier))
        status = 200 if target.action == "revoke" else 201
        return Answer(status, {"kind": change.kind, "identifier": change.identifier,
                               "token": change.token, "revoked_count": change.revoked_count})

    async def page(self, query: str, after: str, limit: int) -> list[tuple[Any, ...]]:
        """One page of a listing: `query` takes the key to start after and the page size."""
        async with self.pool.connection() as connection:
            async with connection.cursor() as cursor:
                await cursor.execute(query, (after, limit))
                return await cursor.fetchall()

    def _change_tokens(self, target: TokenTarget, request_id: str | None) -> Any:
        """Synchronous (in a thread): the same code as the command line's."""
        with psycopg.connect(self.settings.database_url, options=SESSION_OPTIONS) as connection:
            return change_tokens(connection, target.kind, target.identifier, target.action,
                                 request_id)


def keyset_query(query: Any, name: str, limits: ApiLimits) -> tuple[str, int]:
    """(after, limit) of a listing ordered by identifier: `after` is the last identifier of
    the previous page ('' for the first)."""
    after = query.get(name, "")
    # fullmatch, ASCII digits: `$` would also match before a final newline ("%0A" passed).
    digits = 9 if name == "after_siren" else 14
    if not re.fullmatch(r"[0-9]{0,%d}" % digits, after, flags=re.ASCII):
        raise ApiError(422, "invalid_query", f"{name} must be an identifier of the listing")
    return after, limit_query(query, limits)
