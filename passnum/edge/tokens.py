"""The lifecycle of API tokens: issue, rotate, revoke, for a tenant that exists.

Tokens are access control, not ledger facts: they live in PostgreSQL (`api_tokens`, only a
SHA-256 of each token), not in the log. A token is issued only for a tenant the services
know: a collectivité registered by the issuer, a venue accredited (or suspended) by the
redeemer, or an operator name of plain characters. Rotation revokes the tenant's live
tokens and issues the new one in one transaction; a per-tenant advisory lock keeps two
rotations from leaving two live tokens. A token issued by an HTTP request carries its
request id, so that a retried request never issues a second token (the first one was shown
once; the answer says so).

Used by the `passnum token` command line (passnum/tools/operator_cli.py) and the operator HTTP
routes (passnum/edge/operator_api.py), which run it in a thread on a connection of their own.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Literal

import psycopg
import psycopg.errors

from passnum.edge.http import token_digest

KINDS = ("collectivite", "venue", "operator")
Action = Literal["issue", "rotate", "revoke"]
_OPERATOR_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")

# Whether the services know the tenant. A revoked venue gets no new token; a suspended one
# does (it still reads its redemptions and statements).
_KNOWN = {
    "collectivite": "SELECT 1 FROM issuer_envelopes WHERE siren = %s "
                    "AND (state ->> 'registered')::boolean",
    "venue": "SELECT 1 FROM providers WHERE siret = %s AND status <> 'revoked'",
}
_UNKNOWN_REASON = {"collectivite": "unknown_collectivite", "venue": "unknown_venue"}


class TokenRefused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class TokenChange:
    kind: str
    identifier: str
    token: str | None  # the new token (shown once), None for a revocation
    revoked_count: int


def identifier_refusal(kind: str, identifier: str) -> TokenRefused | None:
    """Why `identifier` cannot name a tenant of `kind` (check digits included), or None."""
    from stdnum.fr import siren, siret

    if kind == "collectivite" and not siren.is_valid(identifier):
        return TokenRefused("invalid_siren", f"{identifier!r} is not a valid SIREN")
    if kind == "venue" and not siret.is_valid(identifier):
        return TokenRefused("invalid_siret", f"{identifier!r} is not a valid SIRET")
    if kind == "operator" and not _OPERATOR_NAME.fullmatch(identifier):
        return TokenRefused("invalid_operator_name",
                            "1 to 40 lower-case letters, digits and . _ - ")
    if kind not in KINDS:
        return TokenRefused("unknown_kind", f"kind must be one of {', '.join(KINDS)}")
    return None


# What a tenant id looks like, check digits aside (ASCII digits only).
_SHAPES = {"collectivite": re.compile(r"[0-9]{9}"), "venue": re.compile(r"[0-9]{14}")}


def identifier_shape_refusal(kind: str, identifier: str) -> TokenRefused | None:
    """A revocation names a tenant by an id of the right shape; its check digits are not
    asked for (a token issued before they were checked must stay revocable)."""
    shape = _SHAPES.get(kind)
    if shape is not None and not shape.fullmatch(identifier):
        code = "invalid_siren" if kind == "collectivite" else "invalid_siret"
        digits = 9 if kind == "collectivite" else 14
        return TokenRefused(code, f"{identifier!r} is not {digits} digits")
    if kind == "operator" or kind not in KINDS:
        return identifier_refusal(kind, identifier)
    return None


def new_token(kind: str) -> str:
    return f"pn_{kind[:3]}_{secrets.token_urlsafe(24)}"


def change_tokens(connection: psycopg.Connection, kind: str, identifier: str, action: Action,
                  request_id: str | None = None) -> TokenChange:
    """Issue, rotate or revoke in one transaction; raises TokenRefused with a reason code.
    A revocation accepts any identifier (a token issued before these checks existed must
    still be revocable)."""
    refusal = (identifier_shape_refusal if action == "revoke" else identifier_refusal)(
        kind, identifier)
    if refusal is not None:
        raise refusal
    try:
        return _change(connection, kind, identifier, action, request_id)
    except psycopg.errors.UniqueViolation:
        # Two requests with one key at the same instant: the index let one through.
        raise TokenRefused("token_already_issued", "a token was issued for this request "
                           "and shown once; rotate with a new key to get another") from None


def _change(connection: psycopg.Connection, kind: str, identifier: str, action: Action,
            request_id: str | None) -> TokenChange:
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                           (f"api_tokens:{kind}:{identifier}",))
        if action != "revoke":
            _check_issuable(connection, kind, identifier, request_id)
        revoked = 0
        if action != "issue":
            revoked = connection.execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE tenant_kind = %s "
                "AND tenant_id = %s AND revoked_at IS NULL", (kind, identifier)).rowcount
        token = None
        if action != "revoke":
            token = new_token(kind)
            connection.execute(
                "INSERT INTO api_tokens (token_sha256, tenant_kind, tenant_id, request_id) "
                "VALUES (%s, %s, %s, %s)", (token_digest(token), kind, identifier, request_id))
    return TokenChange(kind, identifier, token, revoked)


def _check_issuable(connection: psycopg.Connection, kind: str, identifier: str,
                    request_id: str | None) -> None:
    if kind in _KNOWN and connection.execute(_KNOWN[kind], (identifier,)).fetchone() is None:
        raise TokenRefused(_UNKNOWN_REASON[kind],
                           f"{identifier} is not a {kind} the services know")
    if request_id is not None and connection.execute(
            "SELECT 1 FROM api_tokens WHERE request_id = %s", (request_id,)).fetchone():
        raise TokenRefused("token_already_issued",
                           "a token was issued for this request and shown once; "
                           "rotate with a new key to get another")
