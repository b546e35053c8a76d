"""The edge that the workers' HTTP APIs share (the issuer's for collectivités, the redeemer's
for venues): answers and early refusals, idempotency keys, request bodies, the route table's
shape, and the API object that authenticates a tenant, submits a command and turns every way
a request can end into an answer.

Each service keeps only what is its own: its routes, request and response models, command
builders, and how a recorded outcome reads over HTTP. Tokens and the command gateway stay in
`passnum.edge.http`, which command-line tools use without any HTTP edge.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Literal

import psycopg
from aiohttp.web import HTTPRequestEntityTooLarge
from pydantic import BaseModel, ConfigDict, ValidationError

from passnum.core.database import SESSION_OPTIONS
from passnum.core.settings import Settings
from passnum.edge.http import (
    BatchedCommandGateway,
    LogUnavailable,
    Outcome,
    Tenant,
    TokenCache,
    authenticate,
    error_body,
)
from passnum.edge.problems import ProblemDetails, is_problem, with_status
from schemas.base import Command

IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class ApiLimits:
    """Every bound of an HTTP edge in one place. The first three differ between the APIs
    (an order's body is bigger than a scan's), so each service states them."""

    page_size_max: int
    body_max_bytes: int
    outcome_timeout_seconds: float
    page_size_default: int = 100
    idempotency_key_max_characters: int = 100
    startup_timeout_seconds: float = 15.0
    pool_max_connections: int = 4
    pool_open_timeout_seconds: float = 10.0


# ---------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # An error body carries the status of the answer (RFC 9457), whoever made it.
        if self.status >= 400 and is_problem(self.body):
            object.__setattr__(self, "body", with_status(self.body, self.status))


class ApiError(Exception):
    """An early answer of the edge (authentication, validation, ...), not a domain fact."""

    def __init__(self, status: int, reason: str, detail: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.answer = Answer(status, error_body(reason, detail, status), headers or {})


# What a client is told when the log or the database does not answer: try again shortly,
# with the same idempotency key (the request may already be in the log).
RETRY_LATER = {"Retry-After": "5"}


def key_reused_answer() -> Answer:
    """First in every API's order of precedence: whatever was recorded under this key
    belongs to another body, so it is not this request's outcome."""
    return Answer(409, error_body(
        "request_id_reused",
        f"this {IDEMPOTENCY_HEADER} was already used for a different request"))


# The body of every error answer, as the OpenAPI documents describe it.
ErrorResponse = ProblemDetails


# ---------------------------------------------------------------------- requests


class RequestBody(BaseModel):
    """The base of every request body: an unknown field is refused, so that a body can never
    name a tenant (the tenant comes from the token). Strict, as the OpenAPI documents say:
    `"3"` or `true` for an integer is refused, never converted (JSON's dates, which are
    strings, and arrays still read as dates and tuples)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def idempotency_key_pattern(max_characters: int) -> str:
    return rf"^[A-Za-z0-9._:~-]{{1,{max_characters}}}$"


def namespaced_request_id(tenant_identifier: str, idempotency_key: str,
                          max_characters: int) -> str:
    """The command's request_id: the client's key, namespaced by tenant so that two tenants
    choosing the same key never share (or see) an outcome."""
    if not re.match(idempotency_key_pattern(max_characters), idempotency_key):
        raise ApiError(400, "invalid_idempotency_key",
                       f"1 to {max_characters} characters among letters, digits and . _ : ~ -")
    return f"http:{tenant_identifier}:{idempotency_key}"


async def read_body(request: Any, max_bytes: int) -> bytes:
    """The raw body, refused past `max_bytes` whether the client announced its length or
    sent it in chunks (which only reading can measure)."""
    too_large = ApiError(413, "body_too_large", f"at most {max_bytes} bytes")
    if (request.content_length or 0) > max_bytes:
        raise too_large
    try:
        raw: bytes = await request.read()
    except HTTPRequestEntityTooLarge:  # a chunked body past aiohttp's own limit
        raise too_large from None
    if len(raw) > max_bytes:
        raise too_large
    return raw


def parse_body(model: type[BaseModel], raw: bytes) -> Any:
    _require_utf8(raw)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as error:
        # Without the input values: personal data such as a beneficiary identifier must not
        # come back in an error message (which clients and proxies tend to log).
        problems = error.errors(include_input=False, include_url=False, include_context=False)
        detail = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}"
                           for p in problems)
        raise ApiError(422, "invalid_body", detail[:1000]) from None


def _require_utf8(raw: bytes) -> None:
    """JSON between systems is UTF-8 without a byte order mark (RFC 8259): a body in UTF-16
    or with a BOM is refused with its reason, as the codec refuses such a record. A NUL
    byte, which JSON text never holds, tells UTF-16 or UTF-32 that is otherwise ASCII."""
    if b"\x00" in raw:
        raise ApiError(400, "not_utf8", "the body must be JSON in UTF-8 (it holds NUL bytes: "
                                        "UTF-16 or UTF-32?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(400, "not_utf8", f"the body must be JSON in UTF-8 ({error.reason} at "
                                        f"byte {error.start})") from None
    if text.startswith("\ufeff"):
        raise ApiError(400, "not_utf8", "the body must be JSON in UTF-8 without a byte order "
                                        "mark")


def limit_query(query: Any, limits: ApiLimits) -> int:
    """The page size of a listing, from its `limit` query parameter."""
    raw = query.get("limit", str(limits.page_size_default))
    # ASCII digits only: str.isdigit() also says yes to "²", which int() refuses.
    if not re.fullmatch(r"[0-9]{1,9}", raw) or not 1 <= int(raw) <= limits.page_size_max:
        raise ApiError(422, "invalid_query", f"limit must be 1 to {limits.page_size_max}")
    return int(raw)


# ---------------------------------------------------------------------- the route table


@dataclass(frozen=True)
class Route:
    """One operation of an API: what the worker serves and the OpenAPI document describes."""

    method: str
    path: str
    operation_id: str
    summary: str
    success_status: int
    response_model: type[BaseModel]
    request_model: type[BaseModel] | None = None
    error_statuses: tuple[int, ...] = ()
    query_parameters: tuple[str, ...] = ()
    # Whether a write needs the client's Idempotency-Key ("optional": the server makes one).
    idempotency: Literal["required", "optional", "none"] = "none"


# ---------------------------------------------------------------------- the API object

RequestHandler = Callable[[Any, Tenant], Awaitable[Answer]]
# (request_id, occurred_at, parsed body) -> the command to submit.
CommandBuilder = Callable[[str, datetime, Any], Awaitable[Command]]


class TenantApi:
    """What a service's handlers share (the gateway, a small connection pool, the token
    cache) and the request handling common to both APIs. `start` and `stop` run when the
    web server that serves it starts and stops, never at import.

    A subclass names its processor, its routes and its tenants, maps operation ids to
    handlers, and says how a request id is made and how a recorded outcome reads."""

    processor: str  # "issuer": whose command topic and outcomes, and the name in messages
    routes: tuple[Route, ...]  # what the worker serves and the OpenAPI document describes
    tenant_kind: str  # the only kind of token this API accepts
    wrong_tenant_reason: str  # the 403 for a valid token of another kind
    wrong_tenant_detail: str

    def __init__(self, settings: Settings, limits: ApiLimits) -> None:
        self.settings = settings
        self.limits = limits
        self.gateway: BatchedCommandGateway | None = None
        self.pool: Any = None  # psycopg_pool.AsyncConnectionPool once started
        self.tokens = TokenCache(settings.token_cache_seconds)
        self.ready = asyncio.Event()
        # In an API process of its own: the `process_tag` of the worker whose batch runner
        # hands it the outcomes it commits (passnum.edge.web_server.OutcomeFeed).
        self.feeding_process: str | None = None
        # The service's module logger (services.issuer.api, ...): where an operator looks
        # for that API's failures.
        self.logger = logging.getLogger(type(self).__module__)

    def handlers(self) -> dict[str, RequestHandler]:
        """The handler of each route, by operation id."""
        raise NotImplementedError

    def routed_handlers(self) -> list[tuple[Route, RequestHandler]]:
        """Each route with its handler, in the route table's order (the order a web server
        matches them in): the routes served are the routes documented, by construction."""
        handlers = self.handlers()
        assert set(handlers) == {route.operation_id for route in self.routes}, \
            "every route has exactly one handler"
        return [(route, handlers[route.operation_id]) for route in self.routes]

    def request_id(self, tenant: Tenant, idempotency_key: str | None, route: Route) -> str:
        raise NotImplementedError

    def answer(self, outcome: Outcome, request_id: str, route: Route) -> Answer:
        raise NotImplementedError

    def route(self, operation_id: str) -> Route:
        matches = [route for route in self.routes if route.operation_id == operation_id]
        assert len(matches) == 1, f"one route per operation id: {operation_id}"
        return matches[0]

    async def start(self) -> None:
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(self.settings.database_url, min_size=1,
                                   max_size=self.limits.pool_max_connections,
                                   kwargs={"autocommit": True, "options": SESSION_OPTIONS},
                                   open=False,
                                   name=f"{self.processor}-api")
        await pool.open(wait=True, timeout=self.limits.pool_open_timeout_seconds)
        gateway = BatchedCommandGateway(self.settings, self.processor)
        if self.feeding_process is not None:
            gateway.feeding_process = self.feeding_process
        await gateway.start()
        self.pool, self.gateway = pool, gateway
        self.ready.set()

    async def stop(self) -> None:
        self.ready.clear()
        if self.gateway is not None:
            await self.gateway.stop()
        if self.pool is not None:
            await self.pool.close()

    def outcomes_decided(self, outcomes: dict[str, tuple[str, bytes]]) -> None:
        """A listener of the worker's batch runner (wired in each composition root)."""
        if self.gateway is not None:
            self.gateway.resolve_decided(outcomes)

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
        except LogUnavailable as error:
            return Answer(503, error_body("log_unavailable", f"{error}; retry later with the "
                                          f"same {IDEMPOTENCY_HEADER}"), RETRY_LATER)
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            self.logger.warning("%s API: database unavailable: %s", self.processor, error)
            return Answer(503, error_body("database_unavailable", "the ledger's database "
                                          "does not answer; retry later"), RETRY_LATER)
        except Exception:  # noqa: BLE001 - the edge answers 500; no event is lost here
            self.logger.exception("%s API: unexpected failure", self.processor)
            return Answer(500, error_body("internal_error", f"see the {self.processor}'s log"))

    async def _tenant(self, request: Any) -> Tenant:
        # Once started, no wait: `wait_for` makes a task per call (a sixth of the API's CPU
        # at 1,000 requests/s, measured).
        if not self.ready.is_set():
            try:
                await asyncio.wait_for(self.ready.wait(), self.limits.startup_timeout_seconds)
            except TimeoutError:
                raise ApiError(503, "starting",
                               f"the {self.processor} API is not ready yet") from None
        tenant = await authenticate(self.pool.connection(), request.headers.get("Authorization"),
                                    self.tokens)
        if tenant is None:
            raise ApiError(401, "unauthenticated", "a valid bearer token is required",
                           {"WWW-Authenticate": f'Bearer realm="passnum-{self.processor}"'})
        if tenant.kind != self.tenant_kind:
            raise ApiError(403, self.wrong_tenant_reason, self.wrong_tenant_detail)
        return tenant

    async def submit(self, request: Any, tenant: Tenant, operation_id: str,
                     build: CommandBuilder) -> Answer:
        """A write: its request id, its body, the command `build` makes of them, and the
        answer of the outcome the processor records for it."""
        route = self.route(operation_id)
        request_id = self.request_id(tenant, request.headers.get(IDEMPOTENCY_HEADER), route)
        raw = await read_body(request, self.limits.body_max_bytes)
        assert route.request_model is not None, "a write route declares its body"
        body = parse_body(route.request_model, raw)
        # The server's clock: the time the ledger accepted the request, never the client's.
        # It is left out of the request fingerprint, so a retry later is still the same request.
        occurred_at = datetime.now(timezone.utc)
        try:
            command = await build(request_id, occurred_at, body)
        except ValidationError as error:
            raise ApiError(422, "invalid_body", str(error.errors(include_input=False))) from None
        assert self.gateway is not None
        outcome = await self.gateway.submit(command, self.limits.outcome_timeout_seconds)
        return self.answer(outcome, request_id, route)
