"""The operator's routes on the redeemer worker: accredit a venue, suspend, reinstate and
revoke it, list venues with their status, and manage their tokens. Served beside the venues'
API (services/redeemer/web.py), in the same OpenAPI document; only an operator's token opens
them.

Every write is a redeemer command on the log (`AccreditProvider`, `ChangeProviderStatus`),
decided by `services.redeemer.domain` like any other (SIRET and IBAN check digits included);
the answer is the recorded outcome (passnum/edge/operator_api.py). An IBAN typed in groups of
four is accepted and recorded in its compact form.
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
from schemas.base import Command
from schemas.messages import (
    AccreditProvider,
    ChangeProviderStatus,
    InseeCode,
    Name,
    RedeemerCommandRejected,
)
from services.redeemer.api import LIMITS as TENANT_LIMITS

PREFIX = "/v1/operator/venues"
ONE = PREFIX + "/{siret}"

# How each recorded refusal of an operator's command reads over HTTP.
REJECTION_STATUS: dict[str, int] = {
    "invalid_siret": 422,
    "invalid_iban": 422,
    "already_accredited": 409,
    "unknown_provider": 404,
    "provider_revoked": 409,
}
# The status each route sets, by the last word of its path.
STATUS_CHANGES: dict[str, Literal["suspended", "accredited", "revoked"]] = {
    "suspension": "suspended", "reinstatement": "accredited", "revocation": "revoked"}


class AccreditRequest(RequestBody):
    """A venue: where it is (INSEE code of its commune, for the booklets' perimeters),
    where it is paid (IBAN), and what it offers."""

    siret: Annotated[str, StringConstraints(min_length=1, max_length=20)]
    name: Name
    iban: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    address_code: InseeCode
    services: tuple[Name, ...] = Field((), max_length=50)


class StatusRequest(RequestBody):
    reason: Annotated[str, StringConstraints(max_length=200)] = ""


class VenueItem(BaseModel):
    siret: str
    name: str
    iban: str
    address_code: str
    status: Literal["accredited", "suspended", "revoked"]


class VenuePageResponse(BaseModel):
    venues: list[VenueItem]
    next_after: str | None = Field(
        description="pass as `after_siret` for the next page; null on the last page")


ROUTES: tuple[Route, ...] = (
    Route("post", PREFIX, "accreditVenue", "Accredit a venue (operator)", 201,
          OperatorCommandResponse, AccreditRequest, WRITE_ERRORS, idempotency="required"),
    Route("get", PREFIX, "listVenues", "Venues with their status (operator)", 200,
          VenuePageResponse, None, READ_ERRORS, query_parameters=("after_siret", "limit")),
    Route("post", ONE + "/suspension", "suspendVenue",
          "Suspend a venue: it redeems nothing until reinstated (operator)", 201,
          OperatorCommandResponse, StatusRequest, WRITE_ERRORS, idempotency="required"),
    Route("post", ONE + "/reinstatement", "reinstateVenue",
          "Reinstate a suspended venue (operator)", 201, OperatorCommandResponse, StatusRequest,
          WRITE_ERRORS, idempotency="required"),
    Route("post", ONE + "/revocation", "revokeVenue",
          "Revoke a venue's accreditation, for good (operator)", 201, OperatorCommandResponse,
          StatusRequest, WRITE_ERRORS, idempotency="required"),
    *token_routes(ONE, "Venue"),
)

_LIST = ("SELECT siret, name, iban, address_code, status FROM providers WHERE siret > %s "
         "ORDER BY siret LIMIT %s")
_COLUMNS = ("siret", "name", "iban", "address_code", "status")


def well_formed_siret(siret: str) -> str:
    """14 ASCII digits, or a 422; the check digit is the domain's to judge."""
    if not (len(siret) == 14 and siret.isascii() and siret.isdigit()):
        raise ApiError(422, "invalid_siret", f"{siret!r} is not a SIRET (14 digits)")
    return siret


def compact_iban(iban: str) -> str:
    """The IBAN as recorded: without spaces, in capitals; one that cannot be an IBAN at all
    is a 422 here (the domain judges its check digits)."""
    from stdnum import iban as stdnum_iban

    compact: str = stdnum_iban.compact(iban)
    if not (compact.isascii() and compact.isalnum() and 15 <= len(compact) <= 34):
        raise ApiError(422, "invalid_iban", "not an IBAN")
    return compact


class RedeemerOperatorApi(OperatorApi):
    processor = "redeemer"
    routes = ROUTES
    rejection_types = (RedeemerCommandRejected,)
    rejection_status = REJECTION_STATUS

    def handlers(self) -> dict[str, RequestHandler]:
        changes = {f"{verb}Venue": self._status_handler(noun, f"{verb}Venue")
                   for verb, noun in (("suspend", "suspension"),
                                      ("reinstate", "reinstatement"), ("revoke", "revocation"))}
        tokens = {operation: self._token_handler(action, operation)
                  for operation, action in (("issueVenueToken", "issue"),
                                            ("rotateVenueToken", "rotate"),
                                            ("revokeVenueTokens", "revoke"))}
        return {"accreditVenue": self.accredit, "listVenues": self.list_venues, **changes,
                **tokens}

    def _token_handler(self, action: Any, operation_id: str) -> RequestHandler:
        async def handle(request: Any, tenant: Tenant) -> Answer:
            siret = request.match_info["siret"]
            if action != "revoke":  # any identifier's tokens can be revoked
                well_formed_siret(siret)
            return await self.change_tokens(request, tenant, TokenTarget("venue", siret, action),
                                            operation_id)

        return handle

    def _status_handler(self, noun: str, operation_id: str) -> RequestHandler:
        async def handle(request: Any, tenant: Tenant) -> Answer:
            siret = well_formed_siret(request.match_info["siret"])

            async def build(request_id: str, at: datetime, body: StatusRequest) -> Command:
                return ChangeProviderStatus(request_id=request_id, occurred_at=at, siret=siret,
                                            status=STATUS_CHANGES[noun], reason=body.reason)

            return await self.submit(request, tenant, operation_id, build)

        return handle

    async def accredit(self, request: Any, tenant: Tenant) -> Answer:
        async def build(request_id: str, at: datetime, body: AccreditRequest) -> Command:
            return AccreditProvider(
                request_id=request_id, occurred_at=at, siret=well_formed_siret(body.siret),
                name=body.name, iban=compact_iban(body.iban), address_code=body.address_code,
                services=body.services)

        return await self.submit(request, tenant, "accreditVenue", build)

    async def list_venues(self, request: Any, tenant: Tenant) -> Answer:
        after, limit = keyset_query(request.query, "after_siret", self.limits)
        items = [dict(zip(_COLUMNS, row)) for row in await self.page(_LIST, after, limit)]
        next_after = items[-1]["siret"] if len(items) == limit else None
        return Answer(200, {"venues": items, "next_after": next_after})


def operator_api(settings: Settings, tenant_caches: Iterable[TokenCache] = ()
                 ) -> RedeemerOperatorApi:
    """Listings page like the tenants' (one `limit` parameter in the document)."""
    return RedeemerOperatorApi(settings, replace(LIMITS, page_size_max=TENANT_LIMITS.page_size_max),
                 tenant_caches)
