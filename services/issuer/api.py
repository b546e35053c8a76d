"""The issuer's HTTP API for collectivités, served by the issuer worker's faust web server.

One path to every decision: a POST becomes a command on the issuer's command topic, decided
by the same processor as any other command, and the answer is the outcome the processor
recorded (`passnum.edge.http.CommandGateway`). So an HTTP client gets exactly the idempotency,
ordering and audit trail of the log: the `Idempotency-Key` header is the command's
`request_id` (namespaced by tenant), a retry gets the recorded outcome again, and a refusal
is a recorded `issuer_command_rejected` fact before it is an HTTP status.

Tenancy: a bearer token names one collectivité (table `api_tokens`), and the SIREN of every
command and query comes from the token, never from the request. A booklet of another
collectivité answers 404 exactly like a booklet that does not exist.

Money is not the collectivité's to declare: a payment received (`RecordFundsReceived`, which
activates booklets) is recorded by the platform's operator, who sees the bank account
(`services/issuer/operator_api.py`). A collectivité that could record its own payments could
put vouchers in circulation without paying for them.

Personal data: a beneficiary identifier is turned into a pseudonymous reference here, at
the edge (services/issuer/beneficiaries.py), and is never logged, stored or echoed.

The routes, bodies and statuses are declared once in `ROUTES` and the models below; what
both HTTP APIs share (authentication, idempotency keys, bodies, the 504 and 500 answers) is
in `passnum.edge.web_api`. The OpenAPI document (`services/issuer/openapi.py`, served at
/openapi.json and written to docs/openapi-issuer.json) is generated from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from passnum.core.settings import Settings
from passnum.edge.http import Outcome, Tenant, error_body
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
from passnum.ledger.voucher_codes import VoucherNumber, make_code
from schemas.base import Command, LedgerDate, PositiveCents
from schemas.messages import (
    BlockBooklet,
    CommandName,
    DistributeBooklet,
    IssuerCommandRejected,
    OrderBooklets,
    Perimeter,
    TargetGroup,
)
from services.issuer import queries
from services.issuer.beneficiaries import (
    IDENTIFIER_MAX_CHARACTERS,
    InvalidIdentifier,
    beneficiary_reference,
)


@dataclass(frozen=True)
class IssuerLimits(ApiLimits):
    # An order's answer lists every event (one per booklet): bounded so that it stays a
    # few megabytes. Bigger orders go through the log (`passnum.edge.client`).
    order_booklets_max: int = 10_000


LIMITS = IssuerLimits(page_size_max=500, body_max_bytes=64 * 1024, outcome_timeout_seconds=15.0)
_BOOKLET_ID = re.compile(r"^([0-9]{9})-([0-9]{7})$")  # ASCII digits only, as in schemas

# How each recorded rejection reads over HTTP. 409 rather than 402 for a budget refusal
# (over_envelope, over_cap): 402 is "reserved for future use" in RFC 9110 and clients treat
# it unevenly, while the condition is a conflict with the envelope's current state that
# the collectivité resolves by committing more (then retrying with a new key).
REJECTION_STATUS: dict[str, int] = {
    "invalid_siren": 422,
    "already_registered": 409,
    "unknown_collectivite": 409,
    "invalid_framing": 422,
    "over_cap": 409,
    "over_envelope": 409,
    "total_exceeds_limit": 409,
    "booklet_numbering_exhausted": 409,
    "unknown_booklet": 404,
    "booklet_blocked": 409,
    "already_handed_out": 409,
}
# A reason the domain adds later and this table misses reads as 409 (the least wrong
# status: the request conflicts with the ledger's state) rather than failing the worker's
# import; tests/unit/test_issuer_api.py fails until the table names it.
UNMAPPED_REJECTION_STATUS = 409


# ---------------------------------------------------------------------- request bodies


class OrderRequest(RequestBody):
    """Order booklets. Size and face value default to those the collectivité registered."""

    booklet_count: Annotated[int, Field(gt=0, le=LIMITS.order_booklets_max)]
    vouchers_per_booklet: Literal[5, 10] | None = None
    face_value_cents: PositiveCents | None = None
    target_group: TargetGroup = "general"
    perimeter: Perimeter = ()
    # The command's bounds (schemas.base), so that the edge refuses what the log would.
    valid_from: LedgerDate | None = None
    valid_until: LedgerDate | None = None


class DistributeRequest(RequestBody):
    """Hand a booklet to a distributor, and optionally to a beneficiary. The identifier is
    turned into a pseudonymous reference by the server and never stored."""

    distributor: CommandName
    beneficiary_identifier: Annotated[
        str, StringConstraints(min_length=1, max_length=IDENTIFIER_MAX_CHARACTERS)] | None = None


class BlockRequest(RequestBody):
    reason: Literal["lost", "stolen", "cancelled"]


# ---------------------------------------------------------------------- response bodies


class CommandResponse(BaseModel):
    """The recorded outcome of the command: the events it produced, as in the log."""

    request_id: str
    order_id: str | None = None
    events: list[dict[str, Any]]


class BookletResponse(BaseModel):
    booklet_id: str
    order_id: str
    voucher_count: int
    face_value_cents: int
    booklet_value_cents: int
    status: Literal["issued", "distributed", "handed_out", "blocked"]
    activated: bool
    distributor: str | None
    beneficiary_reference: str | None


class VoucherResponse(BaseModel):
    voucher_id: str
    position: int
    code: str


class BookletDetailResponse(BookletResponse):
    vouchers: list[VoucherResponse]


class BookletPageResponse(BaseModel):
    booklets: list[BookletResponse]
    next_after: str | None = Field(
        description="pass as `after` for the next page; null on the last page")


# ---------------------------------------------------------------------- the route table


_WRITE_ERRORS = (400, 401, 403, 409, 413, 422, 503, 504)
ROUTES: tuple[Route, ...] = (
    Route("post", "/v1/orders", "createOrder", "Order booklets", 201, CommandResponse,
          OrderRequest, _WRITE_ERRORS, idempotency="required"),
    Route("post", "/v1/booklets/{booklet_id}/distribution", "distributeBooklet",
          "Distribute a booklet", 200, CommandResponse, DistributeRequest,
          (*_WRITE_ERRORS, 404), idempotency="required"),
    Route("post", "/v1/booklets/{booklet_id}/block", "blockBooklet",
          "Block a lost or stolen booklet", 200, CommandResponse, BlockRequest,
          (*_WRITE_ERRORS, 404), idempotency="required"),
    Route("get", "/v1/booklets", "listBooklets", "List my booklets, in issue order", 200,
          BookletPageResponse, None, (401, 403, 422, 503),
          query_parameters=("status", "after", "limit")),
    Route("get", "/v1/booklets/{booklet_id}", "getBooklet",
          "One of my booklets, with its voucher codes", 200, BookletDetailResponse, None,
          (401, 403, 404, 503)),
)


# ---------------------------------------------------------------------- answers


def answer_for_outcome(outcome: Outcome, request_id: str, success_status: int) -> Answer:
    """The HTTP answer of a recorded outcome, in precedence order: a key reused for another
    body, then the recorded rejection, then success with the events."""
    if not outcome.fingerprint_matches:
        return key_reused_answer()
    assert outcome.events, "every decided command records at least one event"
    for event in outcome.events:
        if isinstance(event, IssuerCommandRejected):
            status = REJECTION_STATUS.get(event.reason, UNMAPPED_REJECTION_STATUS)
            return Answer(status, error_body(event.reason, event.detail))
    order_id = next((getattr(e, "order_id") for e in outcome.events
                     if e.type == "booklets_ordered"), None)
    body: dict[str, Any] = {"request_id": request_id, "events": [
        event.model_dump(mode="json") for event in outcome.events]}
    if order_id is not None:
        body["order_id"] = order_id
    return Answer(success_status, body)


def request_id_for(siren: str, idempotency_key: str | None) -> str:
    """Every write of a collectivité carries its own key: an order retried without one
    could order twice."""
    if idempotency_key is None:
        raise ApiError(400, "idempotency_key_required",
                       f"every POST needs an {IDEMPOTENCY_HEADER} header")
    return namespaced_request_id(siren, idempotency_key, LIMITS.idempotency_key_max_characters)


def booklet_sequence(booklet_id: str) -> int:
    """The sequence of a well-formed booklet id; a malformed one names no booklet (404)."""
    match = _BOOKLET_ID.fullmatch(booklet_id)
    if match is None:
        raise ApiError(404, "unknown_booklet", "no such booklet")
    return int(match.group(2))


def page_request(query: Any, limits: ApiLimits) -> tuple[str | None, int, int]:
    """(status, after sequence, limit) from the query string of a booklet listing."""
    status = query.get("status")
    if status is not None and status not in queries.BOOKLET_STATUSES:
        raise ApiError(422, "invalid_query", f"status must be one of {queries.BOOKLET_STATUSES}")
    after = query.get("after")
    after_sequence = 0
    if after is not None:
        match = _BOOKLET_ID.fullmatch(after)
        if match is None:
            raise ApiError(422, "invalid_query", "after must be a booklet id")
        after_sequence = int(match.group(2))
    return status, after_sequence, limit_query(query, limits)


def voucher_codes(code_key: bytes, siren: str, sequence: int, voucher_count: int
                  ) -> list[dict[str, Any]]:
    return [{"voucher_id": number.voucher_id, "position": number.position,
             "code": make_code(code_key, number)}
            for number in (VoucherNumber(siren, sequence, position)
                           for position in range(1, voucher_count + 1))]


# ---------------------------------------------------------------------- the API service


class IssuerApi(TenantApi):
    """The collectivités' API: the handlers of `ROUTES`. What they share (the gateway, a
    small connection pool, authentication) is `TenantApi`'s."""

    processor = "issuer"
    routes = ROUTES
    tenant_kind = "collectivite"
    wrong_tenant_reason = "not_a_collectivite"
    wrong_tenant_detail = "this API is for collectivités' tokens"

    def __init__(self, settings: Settings, limits: ApiLimits = LIMITS) -> None:
        super().__init__(settings, limits)
        self.code_key = settings.voucher_code_key.encode()

    def handlers(self) -> dict[str, RequestHandler]:
        return {"createOrder": self.create_order,
                "distributeBooklet": self.distribute, "blockBooklet": self.block,
                "listBooklets": self.list_booklets, "getBooklet": self.get_booklet}

    def request_id(self, tenant: Tenant, idempotency_key: str | None, route: Route) -> str:
        return request_id_for(tenant.identifier, idempotency_key)

    def answer(self, outcome: Outcome, request_id: str, route: Route) -> Answer:
        return answer_for_outcome(outcome, request_id, route.success_status)

    # ------------------------------------------------------------------ writes

    async def create_order(self, request: Any, tenant: Tenant) -> Answer:
        async def build(request_id: str, at: datetime, body: OrderRequest) -> Command:
            # Size and face value left out stay out: the issuer applies the collectivité's
            # registered defaults when it decides, from its own state.
            return OrderBooklets(
                request_id=request_id, occurred_at=at, siren=tenant.identifier,
                booklet_count=body.booklet_count,
                vouchers_per_booklet=body.vouchers_per_booklet,
                face_value_cents=body.face_value_cents,
                target_group=body.target_group, perimeter=body.perimeter,
                valid_from=body.valid_from, valid_until=body.valid_until)

        return await self.submit(request, tenant, "createOrder", build)

    async def distribute(self, request: Any, tenant: Tenant) -> Answer:
        booklet_id = request.match_info["booklet_id"]
        booklet_sequence(booklet_id)

        async def build(request_id: str, at: datetime, body: DistributeRequest) -> Command:
            reference = None
            if body.beneficiary_identifier is not None:
                reference = await self._reference(tenant.identifier, body.beneficiary_identifier)
            return DistributeBooklet(
                request_id=request_id, occurred_at=at, siren=tenant.identifier,
                booklet_id=booklet_id, distributor=body.distributor,
                beneficiary_reference=reference)

        return await self.submit(request, tenant, "distributeBooklet", build)

    async def _reference(self, siren: str, identifier: str) -> str:
        async with self.pool.connection() as connection:
            secret = await queries.beneficiary_secret(connection, siren)
        try:
            return beneficiary_reference(secret, identifier)
        except InvalidIdentifier as error:
            raise ApiError(422, "invalid_body", f"beneficiary_identifier: {error}") from None

    async def block(self, request: Any, tenant: Tenant) -> Answer:
        booklet_id = request.match_info["booklet_id"]
        booklet_sequence(booklet_id)

        async def build(request_id: str, at: datetime, body: BlockRequest) -> Command:
            return BlockBooklet(request_id=request_id, occurred_at=at, siren=tenant.identifier,
                                booklet_id=booklet_id, reason=body.reason)

        return await self.submit(request, tenant, "blockBooklet", build)

    # ------------------------------------------------------------------ reads

    async def list_booklets(self, request: Any, tenant: Tenant) -> Answer:
        status, after_sequence, limit = page_request(request.query, self.limits)
        async with self.pool.connection() as connection:
            rows = await queries.booklet_page(connection, tenant.identifier, status=status,
                                              after_sequence=after_sequence, limit=limit)
        next_after = rows[-1].booklet_id if len(rows) == limit else None
        return Answer(200, {"booklets": [row.to_json() for row in rows],
                            "next_after": next_after})

    async def get_booklet(self, request: Any, tenant: Tenant) -> Answer:
        booklet_id = request.match_info["booklet_id"]
        booklet_sequence(booklet_id)
        async with self.pool.connection() as connection:
            row = await queries.booklet_of(connection, tenant.identifier, booklet_id)
        if row is None:
            raise ApiError(404, "unknown_booklet", "no such booklet")
        body = row.to_json()
        body["vouchers"] = voucher_codes(self.code_key, tenant.identifier, row.sequence,
                                         row.voucher_count)
        return Answer(200, body)
