"""The operator's routes on the issuer worker: register a collectivité, commit and raise its
envelope, record funds received, list collectivités with their state, and manage their
tokens. Served beside the collectivités' API (services/issuer/web.py), in the same OpenAPI
document; only an operator's token opens them (`passnum token issue operator NAME`).

Every write is an issuer command on the log (`RegisterCollectivite`, `FundEnvelope`,
`RecordFundsReceived`), decided by the issuer like any other; its answer is the recorded
outcome (passnum/edge/operator_api.py). A SIREN without a valid check digit is refused here,
before any command: the issuer keeps an envelope row for every SIREN a command names, and a
SIREN that cannot exist must leave nothing behind.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Iterable, Literal

from pydantic import BaseModel, Field, StringConstraints

from passnum.core.settings import Settings
from passnum.edge.http import Tenant, TokenCache
from passnum.edge.operator_api import (
    LIMITS,
    READ_ERRORS,
    WRITE_ERRORS,
    OperatorApi,
    OperatorCommandResponse,
    TokenTarget,
    keyset_query,
    token_routes,
)
from passnum.edge.web_api import Answer, ApiError, RequestBody, RequestHandler, Route
from passnum.ledger.envelope import siren_is_valid
from schemas.base import Cents, Command, PositiveCents
from schemas.messages import (
    FundEnvelope,
    IssuerCommandRejected,
    Name,
    RecordFundsReceived,
    RegisterCollectivite,
)
from services.issuer.api import LIMITS as TENANT_LIMITS
from services.issuer.api import REJECTION_STATUS

PREFIX = "/v1/operator/collectivites"
ONE = PREFIX + "/{siren}"


class RegisterRequest(RequestBody):
    """A collectivité and the booklets it orders when an order does not say otherwise."""

    siren: Annotated[str, StringConstraints(pattern=r"^[0-9]{9}$")]
    name: Name
    default_vouchers_per_booklet: Literal[5, 10] = 10
    default_face_value_cents: PositiveCents = 1000


class EnvelopeRequest(RequestBody):
    """Commit this much more face value to the collectivité's envelope (the first call
    commits it, later ones raise it)."""

    committed_cents: PositiveCents


class OperatorFundsRequest(RequestBody):
    """The collectivité's payment order was received: it activates booklets, oldest first."""

    face_value_cents: PositiveCents
    fees_cents: Cents = 0
    payment_reference: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class CollectiviteItem(BaseModel):
    siren: str
    name: str
    default_vouchers_per_booklet: int
    default_face_value_cents: int
    committed_cents: int
    received_cents: int
    fees_received_cents: int
    ordered_cents: int
    activated_cents: int
    booklet_count: int


class CollectivitePageResponse(BaseModel):
    collectivites: list[CollectiviteItem]
    next_after: str | None = Field(
        description="pass as `after_siren` for the next page; null on the last page")


ROUTES: tuple[Route, ...] = (
    Route("post", PREFIX, "registerCollectivite", "Register a collectivité (operator)", 201,
          OperatorCommandResponse, RegisterRequest, WRITE_ERRORS, idempotency="required"),
    Route("get", PREFIX, "listCollectivites",
          "Collectivités with their envelope: committed, received, ordered, activated "
          "(operator)", 200, CollectivitePageResponse, None, READ_ERRORS,
          query_parameters=("after_siren", "limit")),
    Route("post", ONE + "/envelope", "fundEnvelope",
          "Commit or raise a collectivité's envelope (operator)", 201, OperatorCommandResponse,
          EnvelopeRequest, WRITE_ERRORS, idempotency="required"),
    Route("post", ONE + "/funds-received", "recordCollectiviteFundsReceived",
          "Record a collectivité's funds received (operator)", 201, OperatorCommandResponse,
          OperatorFundsRequest, WRITE_ERRORS, idempotency="required"),
    *token_routes(ONE, "Collectivite"),
)

_LIST = ("SELECT siren, state FROM issuer_envelopes WHERE siren > %s "
         "AND (state ->> 'registered')::boolean ORDER BY siren LIMIT %s")


def checked_siren(siren: str) -> str:
    """The SIREN, if its check digit is right; a 422 before any command otherwise."""
    if not (len(siren) == 9 and siren.isascii() and siren.isdigit() and siren_is_valid(siren)):
        raise ApiError(422, "invalid_siren", f"{siren!r} is not a valid SIREN")
    return siren


def collectivite_item(siren: str, state: dict[str, Any]) -> dict[str, Any]:
    """A row of the listing, from the issuer's envelope state."""
    return {"siren": siren, "name": state["name"],
            "default_vouchers_per_booklet": state["default_vouchers_per_booklet"],
            "default_face_value_cents": state["default_face_value_cents"],
            **{field: state[field] for field in (
                "committed_cents", "received_cents", "fees_received_cents", "ordered_cents",
                "activated_cents")},
            "booklet_count": state["next_sequence"] - 1}


class IssuerOperatorApi(OperatorApi):
    processor = "issuer"
    routes = ROUTES
    rejection_types = (IssuerCommandRejected,)
    rejection_status = REJECTION_STATUS

    def handlers(self) -> dict[str, RequestHandler]:
        tokens = {operation: self._token_handler(action, operation)
                  for operation, action in (("issueCollectiviteToken", "issue"),
                                            ("rotateCollectiviteToken", "rotate"),
                                            ("revokeCollectiviteTokens", "revoke"))}
        return {"registerCollectivite": self.register,
                "listCollectivites": self.list_collectivites, "fundEnvelope": self.fund,
                "recordCollectiviteFundsReceived": self.funds, **tokens}

    def _token_handler(self, action: Any, operation_id: str) -> RequestHandler:
        async def handle(request: Any, tenant: Tenant) -> Answer:
            siren = request.match_info["siren"]
            if action != "revoke":  # any identifier's tokens can be revoked
                checked_siren(siren)
            return await self.change_tokens(
                request, tenant, TokenTarget("collectivite", siren, action), operation_id)

        return handle

    async def register(self, request: Any, tenant: Tenant) -> Answer:
        async def build(request_id: str, at: datetime, body: RegisterRequest) -> Command:
            return RegisterCollectivite(
                request_id=request_id, occurred_at=at, siren=checked_siren(body.siren),
                name=body.name, default_vouchers_per_booklet=body.default_vouchers_per_booklet,
                default_face_value_cents=body.default_face_value_cents)

        return await self.submit(request, tenant, "registerCollectivite", build)

    async def fund(self, request: Any, tenant: Tenant) -> Answer:
        siren = checked_siren(request.match_info["siren"])

        async def build(request_id: str, at: datetime, body: EnvelopeRequest) -> Command:
            return FundEnvelope(request_id=request_id, occurred_at=at, siren=siren,
                                committed_cents=body.committed_cents)

        return await self.submit(request, tenant, "fundEnvelope", build)

    async def funds(self, request: Any, tenant: Tenant) -> Answer:
        siren = checked_siren(request.match_info["siren"])

        async def build(request_id: str, at: datetime, body: OperatorFundsRequest) -> Command:
            return RecordFundsReceived(
                request_id=request_id, occurred_at=at, siren=siren,
                face_value_cents=body.face_value_cents, fees_cents=body.fees_cents,
                payment_reference=body.payment_reference)

        return await self.submit(request, tenant, "recordCollectiviteFundsReceived", build)

    async def list_collectivites(self, request: Any, tenant: Tenant) -> Answer:
        after, limit = keyset_query(request.query, "after_siren", self.limits)
        rows = await self.page(_LIST, after, limit)
        items = [collectivite_item(siren, state) for siren, state in rows]
        next_after = items[-1]["siren"] if len(items) == limit else None
        return Answer(200, {"collectivites": items, "next_after": next_after})


def operator_api(settings: Settings, tenant_caches: Iterable[TokenCache] = ()
                 ) -> IssuerOperatorApi:
    """Listings page like the tenants' (one `limit` parameter in the document)."""
    return IssuerOperatorApi(settings, replace(LIMITS, page_size_max=TENANT_LIMITS.page_size_max),
                 tenant_caches)
