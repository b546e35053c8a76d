"""The issuer's HTTP API for collectivités, served by the issuer worker's faust web server.

One path to every decision: a POST becomes a command on the issuer's command topic, decided
by the same processor as any other command, and the answer is the outcome the processor
recorded (`passnum.http.CommandGateway`). So an HTTP client gets exactly the idempotency,
ordering and audit trail of the log: the `Idempotency-Key` header is the command's
`request_id` (namespaced by tenant), a retry gets the recorded outcome again, and a refusal
is a recorded `issuer_command_rejected` fact before it is an HTTP status.

Tenancy: a bearer token names one collectivité (table `api_tokens`), and the SIREN of every
command and query comes from the token, never from the request. A booklet of another
collectivité answers 404 exactly like a booklet that does not exist.

Personal data: a beneficiary identifier is turned into a pseudonymous reference here, at
the edge (services/issuer/beneficiaries.py), and is never logged, stored or echoed.

The routes, bodies and statuses are declared once in `ROUTES` and the models below; the
OpenAPI document (`services/issuer/openapi.py`, served at /openapi.json and written to
docs/openapi-issuer.json) is generated from them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Annotated, Any, Awaitable, Callable, Literal

from aiohttp.web import HTTPRequestEntityTooLarge
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from passnum.http import (
    BatchedCommandGateway,
    Outcome,
    Tenant,
    TokenCache,
    authenticate,
    error_body,
)
from passnum.settings import Settings
from passnum.voucher_codes import VoucherNumber, make_code
from schemas.base import Cents, Command, PositiveCents
from schemas.messages import (
    BlockBooklet,
    DistributeBooklet,
    InseeCode,
    IssuerCommandRejected,
    Name,
    OrderBooklets,
    RecordFundsReceived,
    TargetGroup,
)
from services.issuer import queries
from services.issuer.beneficiaries import (
    IDENTIFIER_MAX_CHARACTERS,
    InvalidIdentifier,
    beneficiary_reference,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiLimits:
    """Every bound of the HTTP edge in one place."""

    page_size_default: int = 100
    page_size_max: int = 500
    # An order's answer lists every event (one per booklet): bounded so that it stays a
    # few megabytes. Bigger orders go through the log (`passnum.client`).
    order_booklets_max: int = 10_000
    body_max_bytes: int = 64 * 1024
    idempotency_key_max_characters: int = 100
    outcome_timeout_seconds: float = 15.0
    startup_timeout_seconds: float = 15.0
    pool_max_connections: int = 4
    pool_open_timeout_seconds: float = 10.0


LIMITS = ApiLimits()
PROCESSOR = "issuer"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(
    rf"^[A-Za-z0-9._:~-]{{1,{LIMITS.idempotency_key_max_characters}}}$")
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


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OrderRequest(_Body):
    """Order booklets. Size and face value default to those the collectivité registered."""

    booklet_count: Annotated[int, Field(gt=0, le=LIMITS.order_booklets_max)]
    vouchers_per_booklet: Literal[5, 10] | None = None
    face_value_cents: PositiveCents | None = None
    target_group: TargetGroup = "general"
    perimeter: tuple[InseeCode, ...] = ()
    valid_from: date | None = None
    valid_until: date | None = None


class FundsReceivedRequest(_Body):
    """The collectivité's payment order was received: it activates booklets, oldest first."""

    face_value_cents: PositiveCents
    fees_cents: Cents = 0
    payment_reference: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class DistributeRequest(_Body):
    """Hand a booklet to a distributor, and optionally to a beneficiary. The identifier is
    turned into a pseudonymous reference by the server and never stored."""

    distributor: Name
    beneficiary_identifier: Annotated[
        str, StringConstraints(min_length=1, max_length=IDENTIFIER_MAX_CHARACTERS)] | None = None


class BlockRequest(_Body):
    reason: Literal["lost", "stolen", "cancelled"]


# ---------------------------------------------------------------------- response bodies


class ErrorDetail(BaseModel):
    reason: str
    detail: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


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
    authenticated: bool = True
    query_parameters: tuple[str, ...] = ()


_WRITE_ERRORS = (400, 401, 403, 409, 413, 422, 503, 504)
ROUTES: tuple[Route, ...] = (
    Route("post", "/v1/orders", "createOrder", "Order booklets", 201, CommandResponse,
          OrderRequest, _WRITE_ERRORS),
    Route("post", "/v1/funds-received", "recordFundsReceived",
          "Record funds received (activates booklets, oldest first)", 201, CommandResponse,
          FundsReceivedRequest, _WRITE_ERRORS),
    Route("post", "/v1/booklets/{booklet_id}/distribution", "distributeBooklet",
          "Distribute a booklet", 200, CommandResponse, DistributeRequest,
          (*_WRITE_ERRORS, 404)),
    Route("post", "/v1/booklets/{booklet_id}/block", "blockBooklet",
          "Block a lost or stolen booklet", 200, CommandResponse, BlockRequest,
          (*_WRITE_ERRORS, 404)),
    Route("get", "/v1/booklets", "listBooklets", "List my booklets, in issue order", 200,
          BookletPageResponse, None, (401, 403, 422, 503),
          query_parameters=("status", "after", "limit")),
    Route("get", "/v1/booklets/{booklet_id}", "getBooklet",
          "One of my booklets, with its voucher codes", 200, BookletDetailResponse, None,
          (401, 403, 404, 503)),
)


# ---------------------------------------------------------------------- answers


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


def answer_for_outcome(outcome: Outcome, request_id: str, success_status: int) -> Answer:
    """The HTTP answer of a recorded outcome, in precedence order: a key reused for another
    body, then the recorded rejection, then success with the events."""
    if not outcome.fingerprint_matches:
        return Answer(409, error_body(
            "request_id_reused",
            f"this {IDEMPOTENCY_HEADER} was already used for a different request"))
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
    """The command's request_id: the client's key, namespaced by tenant so that two
    collectivités choosing the same key never share (or see) an outcome."""
    if idempotency_key is None:
        raise ApiError(400, "idempotency_key_required",
                       f"every POST needs an {IDEMPOTENCY_HEADER} header")
    if not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise ApiError(400, "invalid_idempotency_key",
                       f"1 to {LIMITS.idempotency_key_max_characters} characters among "
                       "letters, digits and . _ : ~ -")
    return f"http:{siren}:{idempotency_key}"


def parse_body(model: type[_Body], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as error:
        # Without the input values: a beneficiary identifier must not come back in an
        # error message (which clients and proxies tend to log).
        problems = error.errors(include_input=False, include_url=False, include_context=False)
        detail = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}"
                           for p in problems)
        raise ApiError(422, "invalid_body", detail[:1000]) from None


def booklet_sequence(booklet_id: str) -> int:
    """The sequence of a well-formed booklet id; a malformed one names no booklet (404)."""
    match = _BOOKLET_ID.match(booklet_id)
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
        match = _BOOKLET_ID.match(after)
        if match is None:
            raise ApiError(422, "invalid_query", "after must be a booklet id")
        after_sequence = int(match.group(2))
    raw_limit = query.get("limit", str(limits.page_size_default))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= limits.page_size_max:
        raise ApiError(422, "invalid_query", f"limit must be 1 to {limits.page_size_max}")
    return status, after_sequence, int(raw_limit)


def voucher_codes(code_key: bytes, siren: str, sequence: int, voucher_count: int
                  ) -> list[dict[str, Any]]:
    return [{"voucher_id": number.voucher_id, "position": number.position,
             "code": make_code(code_key, number)}
            for number in (VoucherNumber(siren, sequence, position)
                           for position in range(1, voucher_count + 1))]


# ---------------------------------------------------------------------- the API service


RequestHandler = Callable[[Any, Tenant], Awaitable[Answer]]


class IssuerApi:
    """Holds what the handlers share (the gateway, a small connection pool) and answers
    requests. `start` and `stop` run in the worker's startup and shutdown, never at import."""

    def __init__(self, settings: Settings, limits: ApiLimits = LIMITS) -> None:
        self.settings = settings
        self.limits = limits
        self.code_key = settings.voucher_code_key.encode()
        self.gateway: BatchedCommandGateway | None = None
        self.pool: Any = None  # psycopg_pool.AsyncConnectionPool once started
        self.tokens = TokenCache(settings.token_cache_seconds)
        self.ready = asyncio.Event()

    async def start(self) -> None:
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(self.settings.database_url, min_size=1,
                                   max_size=self.limits.pool_max_connections,
                                   kwargs={"autocommit": True}, open=False,
                                   name="issuer-api")
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
        except Exception:  # noqa: BLE001 - the edge answers 500; no event is lost here
            logger.exception("issuer API: unexpected failure")
            return Answer(500, error_body("internal_error", "see the issuer's log"))

    async def _tenant(self, request: Any) -> Tenant:
        try:
            await asyncio.wait_for(self.ready.wait(), self.limits.startup_timeout_seconds)
        except TimeoutError:
            raise ApiError(503, "starting", "the issuer API is not ready yet") from None
        tenant = await authenticate(self.pool.connection(), request.headers.get("Authorization"),
                                    self.tokens)
        if tenant is None:
            raise ApiError(401, "unauthenticated", "a valid bearer token is required",
                           {"WWW-Authenticate": 'Bearer realm="passnum-issuer"'})
        if tenant.kind != "collectivite":
            raise ApiError(403, "not_a_collectivite",
                           "this API is for collectivités' tokens")
        return tenant

    # ------------------------------------------------------------------ writes

    async def _submit(self, request: Any, tenant: Tenant, model: type[_Body],
                      build: Callable[[str, datetime, Any], Awaitable[Command]],
                      success_status: int) -> Answer:
        request_id = request_id_for(tenant.identifier, request.headers.get(IDEMPOTENCY_HEADER))
        too_large = ApiError(413, "body_too_large", f"at most {self.limits.body_max_bytes} bytes")
        if (request.content_length or 0) > self.limits.body_max_bytes:
            raise too_large
        try:
            raw = await request.read()
        except HTTPRequestEntityTooLarge:  # a chunked body past aiohttp's own limit
            raise too_large from None
        if len(raw) > self.limits.body_max_bytes:
            raise too_large
        body = parse_body(model, raw)
        # The server's clock: the time the ledger accepted the request. It is left out of
        # the request fingerprint, so a retry later is still the same request.
        occurred_at = datetime.now(timezone.utc)
        try:
            command = await build(request_id, occurred_at, body)
        except ValidationError as error:
            raise ApiError(422, "invalid_body", str(error.errors(include_input=False))) from None
        assert self.gateway is not None
        outcome = await self.gateway.submit(command, self.limits.outcome_timeout_seconds)
        return answer_for_outcome(outcome, request_id, success_status)

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

        return await self._submit(request, tenant, OrderRequest, build, 201)

    async def record_funds_received(self, request: Any, tenant: Tenant) -> Answer:
        async def build(request_id: str, at: datetime, body: FundsReceivedRequest) -> Command:
            return RecordFundsReceived(
                request_id=request_id, occurred_at=at, siren=tenant.identifier,
                face_value_cents=body.face_value_cents, fees_cents=body.fees_cents,
                payment_reference=body.payment_reference)

        return await self._submit(request, tenant, FundsReceivedRequest, build, 201)

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

        return await self._submit(request, tenant, DistributeRequest, build, 200)

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

        return await self._submit(request, tenant, BlockRequest, build, 200)

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
