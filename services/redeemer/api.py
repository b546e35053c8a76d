"""The redeemer's HTTP API for venues, served by the redeemer worker's faust web server.

One path to every decision: a POST becomes a command on the redeemer's command topic,
decided by the same processor as a scan sent by any other client, and the answer is the
outcome the processor recorded (`passnum.edge.http.CommandGateway`). The `Idempotency-Key`
header is the command's `request_id`, namespaced by venue; the server's clock sets
`occurred_at` (it is not part of the request fingerprint, so a retry is the same request).

Tenancy: a bearer token names one venue (`api_tokens`, kind `venue`); the SIRET of every
command and query comes from the token, never from the body (a body naming a `siret` is
refused as an unknown field). A venue sees only its own redemptions and statements; a
voucher another venue redeemed says when (409, `redeemed_at`), never where.

Statuses: `REJECTION_STATUS` below, documented in docs/redeemer.md and in the OpenAPI
document generated from `ROUTES` (services/redeemer/openapi.py). What both HTTP APIs share
(authentication, idempotency keys, bodies, the 504 and 500 answers) is in `passnum.edge.web_api`.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from passnum.core.settings import Settings
from passnum.edge.http import Outcome, Tenant, error_body
from passnum.edge.problems import ProblemDetails
from passnum.edge.web_api import (
    IDEMPOTENCY_HEADER,
    Answer,
    ApiError,
    ApiLimits,
    RequestBody,
    RequestHandler,
    Route,
    TenantApi,
    key_reused_answer,
    limit_query,
    namespaced_request_id,
)
from passnum.ledger.voucher import REDEMPTION_PRECEDENCE
from schemas.base import LEDGER_MONTH_PATTERN, YEAR_MAX, YEAR_MIN, Command, Event
from schemas.messages import (
    CancelRedemption,
    CheckVoucher,
    CommandVoucherCode,
    RedeemerCommandRejected,
    RedeemVoucher,
    RedemptionRejected,
)
from services.redeemer import queries

LIMITS = ApiLimits(page_size_max=1000, body_max_bytes=4 * 1024, outcome_timeout_seconds=10.0)
_VOUCHER_ID = re.compile(r"^[0-9]{9}-[0-9]{7}-[0-9]{2}$")  # ASCII digits, as in schemas
# The months a settlement can name (schemas.base): 9999-12 or 0000-01 names none.
_MONTH = re.compile(LEDGER_MONTH_PATTERN)

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
    "scan_in_the_future": 422,
    "booklet_not_activated": 409,
    "booklet_not_activated_at_scan_time": 409,
    "booklet_blocked": 409,
    "outside_validity": 409,
    "outside_perimeter": 403,
    "provider_not_accredited": 403,
    "venue_not_accredited_at_scan_time": 403,
    "already_redeemed": 409,
    "not_redeemed_here": 404,
    "already_settled": 409,
    "cancellation_too_late": 409,
}
assert set(REJECTION_STATUS) == set(REDEMPTION_PRECEDENCE) | set(CANCELLATION_REFUSALS)


# ---------------------------------------------------------------------- bodies


class CodeRequest(RequestBody):
    """A printed voucher code, as scanned or typed (dashes and spaces are ignored)."""

    code: CommandVoucherCode


class EmptyRequest(RequestBody):
    """No field: the voucher is in the path and the venue in the token."""


class RedeemerProblemDetails(ProblemDetails):
    """Problem details, and when a voucher was redeemed for `already_redeemed`."""

    redeemed_at: str | None = Field(None, description="with already_redeemed only")


ErrorResponse = RedeemerProblemDetails


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


_EDGE_ERRORS = (400, 401, 403, 413, 422, 503, 504)
ROUTES: tuple[Route, ...] = (
    # 409: request_id_reused, when a client's own key is used again for another code.
    Route("post", "/v1/checks", "checkVoucher", "Check a voucher without consuming it", 200,
          CheckResponse, CodeRequest, (*_EDGE_ERRORS, 409), idempotency="optional"),
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


# ---------------------------------------------------------------------- answers (pure)


def utc_text(instant: datetime) -> str:
    """Every instant the API returns, in one spelling: ISO 8601 in UTC."""
    return instant.astimezone(timezone.utc).isoformat()


def refusal_answer(event: Event) -> Answer | None:
    """The HTTP answer of a recorded refusal, or None for a success."""
    if isinstance(event, RedemptionRejected):
        body = error_body(event.reason, f"voucher {event.voucher_id or '(unreadable code)'}")
        if event.redeemed_at is not None:
            body["redeemed_at"] = utc_text(datetime.fromisoformat(event.redeemed_at))
        return Answer(REJECTION_STATUS[event.reason], body)
    if isinstance(event, RedeemerCommandRejected):
        return Answer(REJECTION_STATUS.get(event.reason, 409),
                      error_body(event.reason, event.detail))
    return None


def answer_for_outcome(outcome: Outcome, request_id: str, success_status: int) -> Answer:
    """In precedence order: a key reused for another body, a recorded refusal, success."""
    if not outcome.fingerprint_matches:
        return key_reused_answer()
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
    """A check may go without a key (asking twice changes nothing), so it gets a fresh one;
    a redemption or a cancellation may not."""
    if idempotency_key is None:
        if required:
            raise ApiError(400, "idempotency_key_required",
                           f"this POST needs an {IDEMPOTENCY_HEADER} header")
        idempotency_key = f"auto-{uuid.uuid4().hex}"
    return namespaced_request_id(siret, idempotency_key, LIMITS.idempotency_key_max_characters)


def month_query(query: Any) -> str | None:
    month = query.get("month")
    if month is not None and not _MONTH.fullmatch(month):
        raise ApiError(422, "invalid_query",
                       f"month must be YYYY-MM, from {YEAR_MIN}-01 to {YEAR_MAX}-12")
    return month  # type: ignore[no-any-return]


def redemption_cursor(after: str) -> queries.Cursor:
    """A listing's `after`, as `next_after` spells it: an instant within the ledger's years
    and a voucher id. Anything else names no page (and must not reach a query: a NUL or
    the year 1 in another offset is refused by PostgreSQL or by the conversion)."""
    refused = ApiError(422, "invalid_query", "after must be a next_after value")
    try:
        instant, voucher_id = queries.parse_cursor(after)
    except ValueError:
        raise refused from None
    if not _VOUCHER_ID.fullmatch(voucher_id) or not YEAR_MIN <= instant.year <= YEAR_MAX:
        raise refused
    return instant, voucher_id


# ---------------------------------------------------------------------- the API service

class RedeemerApi(TenantApi):
    """The venues' API: the handlers of `ROUTES`. What they share (the gateway, a small
    connection pool, authentication) is `TenantApi`'s."""

    processor = "redeemer"
    routes = ROUTES
    tenant_kind = "venue"
    wrong_tenant_reason = "not_a_venue"
    wrong_tenant_detail = "this API is for venues' tokens"

    def __init__(self, settings: Settings, limits: ApiLimits = LIMITS) -> None:
        super().__init__(settings, limits)

    def handlers(self) -> dict[str, RequestHandler]:
        return {"checkVoucher": self.check, "redeemVoucher": self.redeem,
                "cancelRedemption": self.cancel, "listRedemptions": self.list_redemptions,
                "listStatements": self.list_statements}

    def request_id(self, tenant: Tenant, idempotency_key: str | None, route: Route) -> str:
        return request_id_for(tenant.identifier, idempotency_key,
                              route.idempotency == "required")

    def answer(self, outcome: Outcome, request_id: str, route: Route) -> Answer:
        return answer_for_outcome(outcome, request_id, route.success_status)

    # ------------------------------------------------------------------ writes

    async def check(self, request: Any, tenant: Tenant) -> Answer:
        async def build(request_id: str, at: datetime, body: CodeRequest) -> Command:
            return CheckVoucher(request_id=request_id, occurred_at=at, code=body.code,
                                siret=tenant.identifier)

        return await self.submit(request, tenant, "checkVoucher", build)

    async def redeem(self, request: Any, tenant: Tenant) -> Answer:
        async def build(request_id: str, at: datetime, body: CodeRequest) -> Command:
            return RedeemVoucher(request_id=request_id, occurred_at=at, code=body.code,
                                 siret=tenant.identifier)

        return await self.submit(request, tenant, "redeemVoucher", build)

    async def cancel(self, request: Any, tenant: Tenant) -> Answer:
        voucher_id = request.match_info["voucher_id"]
        if not _VOUCHER_ID.fullmatch(voucher_id):
            raise ApiError(404, "not_redeemed_here", "no such redemption of this venue")

        async def build(request_id: str, at: datetime, body: EmptyRequest) -> Command:
            return CancelRedemption(request_id=request_id, occurred_at=at,
                                    voucher_id=voucher_id, siret=tenant.identifier)

        return await self.submit(request, tenant, "cancelRedemption", build)

    # ------------------------------------------------------------------ reads

    async def list_redemptions(self, request: Any, tenant: Tenant) -> Answer:
        month = month_query(request.query)
        limit = limit_query(request.query, self.limits)
        after = request.query.get("after")
        cursor = redemption_cursor(after) if after else None
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
