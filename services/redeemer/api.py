"""The redeemer's HTTP API for venues, served by the redeemer worker's faust web server.

One path to every decision: a POST becomes a command on the redeemer's command topic,
decided by the same processor as a scan sent by any other client, and the answer is the
outcome the processor recorded (`passnum.http.CommandGateway`). The `Idempotency-Key`
header is the command's `request_id`, namespaced by venue; the server's clock sets
`occurred_at` (it is not part of the request fingerprint, so a retry is the same request).

Tenancy: a bearer token names one venue (`api_tokens`, kind `venue`); the SIRET of every
command and query comes from the token, never from the body (a body naming a `siret` is
refused as an unknown field). A venue sees only its own redemptions and statements; a
voucher another venue redeemed says when (409, `redeemed_at`), never where.

Statuses: `REJECTION_STATUS` below, documented in docs/redeemer.md and in the OpenAPI
document generated from `ROUTES` (services/redeemer/openapi.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any, Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from passnum.http import Outcome, Tenant, TokenCache, authenticate, error_body
from passnum.settings import Settings
from schemas.base import Command, Event
from schemas.messages import (
    CancelRedemption,
    CheckVoucher,
    RedeemerCommandRejected,
    RedeemVoucher,
    RedemptionRejected,
)
from services.redeemer import queries
from services.redeemer.domain import REDEMPTION_PRECEDENCE
from passnum.http import BatchedCommandGateway

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiLimits:
    """Every bound of the HTTP edge in one place."""

    page_size_default: int = 100
    page_size_max: int = 1000
    body_max_bytes: int = 4 * 1024
    idempotency_key_max_characters: int = 100
    outcome_timeout_seconds: float = 10.0
    startup_timeout_seconds: float = 15.0
    pool_max_connections: int = 4
    pool_open_timeout_seconds: float = 10.0


LIMITS = ApiLimits()
PROCESSOR = "redeemer"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(
    rf"^[A-Za-z0-9._:~-]{{1,{LIMITS.idempotency_key_max_characters}}}$")
_VOUCHER_ID = re.compile(r"^\d{9}-\d{7}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

CANCELLATION_REFUSALS = ("not_redeemed_here", "already_settled", "cancellation_too_late")
# How each recorded refusal reads over HTTP (docs/redeemer.md has the reasons for each).
# 422: the code itself is wrong; 404: no such voucher (and another venue's redemption
# looks the same to a venue that would cancel it); 403: this venue may not take it;
# 409: the voucher's state forbids it now.
REJECTION_STATUS: dict[str, int] = {
    "malformed_code": 422,
    "mistyped_code": 422,
    "forged_code": 422,
    "unknown_voucher": 404,
    "booklet_not_activated": 409,
    "booklet_blocked": 409,
    "outside_validity": 409,
    "outside_perimeter": 403,
    "provider_not_accredited": 403,
    "already_redeemed": 409,
    "not_redeemed_here": 404,
    "already_settled": 409,
    "cancellation_too_late": 409,
}
assert set(REJECTION_STATUS) == set(REDEMPTION_PRECEDENCE) | set(CANCELLATION_REFUSALS)


# ---------------------------------------------------------------------- bodies


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CodeRequest(_Body):
    """A printed voucher code, as scanned or typed (dashes and spaces are ignored)."""

    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class EmptyRequest(_Body):
    """No field: the voucher is in the path and the venue in the token."""


class ErrorDetail(BaseModel):
    reason: str
    detail: str
    redeemed_at: str | None = Field(None, description="with already_redeemed only")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class CheckResponse(BaseModel):
    """A check is a question: its answer, yes or no, is a 200."""

    request_id: str
    event_id: str
    voucher_id: str | None
    valid: bool
    reason: str | None = Field(description="the first failing reason when not valid")


class RedemptionResponse(BaseModel):
    request_id: str
    event_id: str
    voucher_id: str
    booklet_id: str
    face_value_cents: int
    redeemed_at: str


class CancellationResponse(BaseModel):
    request_id: str
    event_id: str
    voucher_id: str
    cancelled_redemption_event_id: str


class RedemptionItem(BaseModel):
    voucher_id: str
    event_id: str
    face_value_cents: int
    redeemed_at: str
    settlement_month: str | None


class RedemptionPageResponse(BaseModel):
    redemptions: list[RedemptionItem]
    next_after: str | None = Field(
        description="pass as `after` for the next page; null on the last page")


class StatementItem(BaseModel):
    month: str
    part: int
    event_id: str
    voucher_count: int
    face_value_cents: int
    issued_at: str
    redemption_event_ids: list[str]


class StatementListResponse(BaseModel):
    statements: list[StatementItem]


# ---------------------------------------------------------------------- the route table


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation_id: str
    summary: str
    success_status: int
    response_model: type[BaseModel]
    request_model: type[BaseModel] | None = None
    error_statuses: tuple[int, ...] = ()
    query_parameters: tuple[str, ...] = ()
    idempotency: str = "none"  # "required" | "optional" | "none"


_EDGE_ERRORS = (400, 401, 403, 413, 422, 503, 504)
ROUTES: tuple[Route, ...] = (
    Route("post", "/v1/checks", "checkVoucher", "Check a voucher without consuming it", 200,
          CheckResponse, CodeRequest, _EDGE_ERRORS, idempotency="optional"),
    Route("post", "/v1/redemptions", "redeemVoucher", "Redeem a voucher, once", 201,
          RedemptionResponse, CodeRequest, (*_EDGE_ERRORS, 404, 409), idempotency="required"),
    Route("post", "/v1/redemptions/{voucher_id}/cancellation", "cancelRedemption",
          "Cancel my redemption of today (not once it is on a statement)", 200,
          CancellationResponse, EmptyRequest, (*_EDGE_ERRORS, 404, 409),
          idempotency="required"),
    Route("get", "/v1/redemptions", "listRedemptions", "My redemptions, oldest first", 200,
          RedemptionPageResponse, None, (401, 403, 422, 503),
          query_parameters=("month", "after", "limit")),
    Route("get", "/v1/statements", "listStatements", "My settlement statements", 200,
          StatementListResponse, None, (401, 403, 422, 503), query_parameters=("month",)),
)
ROUTE_BY_OPERATION = {route.operation_id: route for route in ROUTES}


# ---------------------------------------------------------------------- answers (pure)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An early answer of the edge (authentication, validation, ...), not a domain fact."""

    def __init__(self, status: int, reason: str, detail: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.answer = Answer(status, error_body(reason, detail), headers or {})


def utc_text(instant: datetime) -> str:
    """Every instant the API returns, in one spelling: ISO 8601 in UTC."""
    return instant.astimezone(timezone.utc).isoformat()


def refusal_answer(event: Event) -> Answer | None:
    """The HTTP answer of a recorded refusal, or None for a success."""
    if isinstance(event, RedemptionRejected):
        body = error_body(event.reason, f"voucher {event.voucher_id or '(unreadable code)'}")
        if event.redeemed_at is not None:
            body["error"]["redeemed_at"] = utc_text(datetime.fromisoformat(event.redeemed_at))
        return Answer(REJECTION_STATUS[event.reason], body)
    if isinstance(event, RedeemerCommandRejected):
        return Answer(REJECTION_STATUS.get(event.reason, 409),
                      error_body(event.reason, event.detail))
    return None


def answer_for_outcome(outcome: Outcome, request_id: str, success_status: int) -> Answer:
    """In precedence order: a key reused for another body, a recorded refusal, success."""
    if not outcome.fingerprint_matches:
        return Answer(409, error_body(
            "request_id_reused",
            f"this {IDEMPOTENCY_HEADER} was already used for a different request"))
    assert len(outcome.events) == 1, "every venue command records exactly one event"
    event = outcome.events[0]
    refused = refusal_answer(event)
    if refused is not None:
        return refused
    fields = event.model_dump(mode="json")
    body: dict[str, Any] = {"request_id": request_id, "event_id": event.event_id}
    if event.type == "voucher_redeemed":
        body.update(voucher_id=fields["voucher_id"], booklet_id=fields["booklet_id"],
                    face_value_cents=fields["face_value_cents"],
                    redeemed_at=utc_text(event.occurred_at))
    elif event.type == "voucher_checked":
        body.update(voucher_id=fields["voucher_id"], valid=fields["valid"],
                    reason=fields["reason"])
    else:
        body.update(voucher_id=fields["voucher_id"],
                    cancelled_redemption_event_id=fields["redemption_event_id"])
    return Answer(success_status, body)


def request_id_for(siret: str, idempotency_key: str | None, required: bool) -> str:
    """The client's key namespaced by venue: two venues choosing the same key never share
    (or see) an outcome."""
    if idempotency_key is None:
        if required:
            raise ApiError(400, "idempotency_key_required",
                           f"this POST needs an {IDEMPOTENCY_HEADER} header")
        idempotency_key = f"auto-{uuid.uuid4().hex}"
    if not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise ApiError(400, "invalid_idempotency_key",
                       f"1 to {LIMITS.idempotency_key_max_characters} characters among "
                       "letters, digits and . _ : ~ -")
    return f"http:{siret}:{idempotency_key}"


def parse_body(model: type[_Body], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as error:
        problems = error.errors(include_input=False, include_url=False, include_context=False)
        detail = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}"
                           for p in problems)
        raise ApiError(422, "invalid_body", detail[:1000]) from None


def month_query(query: Any) -> str | None:
    month = query.get("month")
    if month is not None and not _MONTH.match(month):
        raise ApiError(422, "invalid_query", "month must be YYYY-MM")
    return month  # type: ignore[no-any-return]


def limit_query(query: Any, limits: ApiLimits) -> int:
    raw = query.get("limit", str(limits.page_size_default))
    if not raw.isdigit() or not 1 <= int(raw) <= limits.page_size_max:
        raise ApiError(422, "invalid_query", f"limit must be 1 to {limits.page_size_max}")
    return int(raw)


# ---------------------------------------------------------------------- the API service

RequestHandler = Callable[[Any, Tenant], Awaitable[Answer]]
CommandBuilder = Callable[[str, datetime, Any], Command]


class RedeemerApi:
    """What the handlers share (the gateway, a small connection pool). `start` and `stop`
    run in the worker's startup and shutdown, never at import."""

    def __init__(self, settings: Settings, limits: ApiLimits = LIMITS) -> None:
        self.settings = settings
        self.limits = limits
        self.gateway: BatchedCommandGateway | None = None
        self.pool: Any = None  # psycopg_pool.AsyncConnectionPool once started
        self.tokens = TokenCache(settings.token_cache_seconds)
        self.ready = asyncio.Event()

    async def start(self) -> None:
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(self.settings.database_url, min_size=1,
                                   max_size=self.limits.pool_max_connections,
                                   kwargs={"autocommit": True}, open=False,
                                   name="redeemer-api")
        await pool.open(wait=True, timeout=self.limits.pool_open_timeout_seconds)
        gateway = BatchedCommandGateway(self.settings, PROCESSOR)
        await gateway.start()
        self.pool, self.gateway = pool, gateway
        self.ready.set()

    async def stop(self) -> None:
        self.ready.clear()
        if self.gateway is not None:
            await self.gateway.stop()
        if self.pool is not None:
            await self.pool.close()

    async def respond(self, request: Any, handler: RequestHandler) -> Answer:
        """Authenticate, run the handler, and turn every way it can end into an answer."""
        try:
            tenant = await self._tenant(request)
            return await handler(request, tenant)
        except ApiError as error:
            return error.answer
        except TimeoutError:
            return Answer(504, error_body(
                "outcome_pending", "the command is in the log but its outcome is not "
                f"recorded yet; retry with the same {IDEMPOTENCY_HEADER}"))
        except Exception:
            logger.exception("redeemer API: unexpected failure")
            return Answer(500, error_body("internal_error", "see the redeemer's log"))

    async def _tenant(self, request: Any) -> Tenant:
        try:
            await asyncio.wait_for(self.ready.wait(), self.limits.startup_timeout_seconds)
        except TimeoutError:
            raise ApiError(503, "starting", "the redeemer API is not ready yet") from None
        tenant = await authenticate(self.pool.connection(), request.headers.get("Authorization"),
                                    self.tokens)
        if tenant is None:
            raise ApiError(401, "unauthenticated", "a valid bearer token is required",
                           {"WWW-Authenticate": 'Bearer realm="passnum-redeemer"'})
        if tenant.kind != "venue":
            raise ApiError(403, "not_a_venue", "this API is for venues' tokens")
        return tenant

    # ------------------------------------------------------------------ writes

    async def _submit(self, request: Any, tenant: Tenant, route: Route,
                      build: CommandBuilder) -> Answer:
        request_id = request_id_for(tenant.identifier, request.headers.get(IDEMPOTENCY_HEADER),
                                    route.idempotency == "required")
        if (request.content_length or 0) > self.limits.body_max_bytes:
            raise ApiError(413, "body_too_large", f"at most {self.limits.body_max_bytes} bytes")
        assert route.request_model is not None
        body = parse_body(route.request_model, await request.read())
        # The server's clock: when the ledger accepted the scan. Never the client's.
        command = build(request_id, datetime.now(timezone.utc), body)
        assert self.gateway is not None
        outcome = await self.gateway.submit(command, self.limits.outcome_timeout_seconds)
        return answer_for_outcome(outcome, request_id, route.success_status)

    async def check(self, request: Any, tenant: Tenant) -> Answer:
        def build(request_id: str, at: datetime, body: CodeRequest) -> Command:
            return CheckVoucher(request_id=request_id, occurred_at=at, code=body.code,
                                siret=tenant.identifier)

        return await self._submit(request, tenant, ROUTE_BY_OPERATION["checkVoucher"], build)

    async def redeem(self, request: Any, tenant: Tenant) -> Answer:
        def build(request_id: str, at: datetime, body: CodeRequest) -> Command:
            return RedeemVoucher(request_id=request_id, occurred_at=at, code=body.code,
                                 siret=tenant.identifier)

        return await self._submit(request, tenant, ROUTE_BY_OPERATION["redeemVoucher"], build)

    async def cancel(self, request: Any, tenant: Tenant) -> Answer:
        voucher_id = request.match_info["voucher_id"]
        if not _VOUCHER_ID.match(voucher_id):
            raise ApiError(404, "not_redeemed_here", "no such redemption of this venue")

        def build(request_id: str, at: datetime, body: EmptyRequest) -> Command:
            return CancelRedemption(request_id=request_id, occurred_at=at,
                                    voucher_id=voucher_id, siret=tenant.identifier)

        return await self._submit(request, tenant, ROUTE_BY_OPERATION["cancelRedemption"],
                                  build)

    # ------------------------------------------------------------------ reads

    async def list_redemptions(self, request: Any, tenant: Tenant) -> Answer:
        month = month_query(request.query)
        limit = limit_query(request.query, self.limits)
        after = request.query.get("after")
        try:
            cursor = queries.parse_cursor(after) if after else None
        except ValueError:
            raise ApiError(422, "invalid_query", "after must be a next_after value") from None
        async with self.pool.connection() as connection:
            rows = await queries.redemption_page(connection, tenant.identifier, month, cursor,
                                                 limit)
        next_after = queries.cursor_of(rows[-1]) if len(rows) == limit else None
        return Answer(200, {"redemptions": [row.to_json() for row in rows],
                            "next_after": next_after})

    async def list_statements(self, request: Any, tenant: Tenant) -> Answer:
        month = month_query(request.query)
        async with self.pool.connection() as connection:
            rows = await queries.statements_of(connection, tenant.identifier, month)
        return Answer(200, {"statements": [row.to_json() for row in rows]})
