"""Sessions of the counter page, in PostgreSQL (`counter_sessions`, migration 0080).

A venue signs in once with its API token; the browser then holds only a random session id
in an HttpOnly, SameSite=Strict cookie, never the token. The table keeps digests (SHA-256)
of the session id and of the token, so a dump of it opens nothing. A session ends at
sign-out, at `expires_at`, or as soon as its token is revoked (every lookup joins
`api_tokens`).

Forms are protected against cross-site requests by a per-session CSRF token that each form
carries and each POST must send back (`csrf_matches`); the sign-in form, which has no
session yet, by a random value sent both as a cookie and as a form field.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

SESSION_COOKIE = "passnum_guichet"
SIGN_IN_COOKIE = "passnum_guichet_connexion"
LANGUAGES = ("fr", "en")


@dataclass(frozen=True)
class CounterLimits:
    """Every bound of the counter page (the JSON API's are `services.redeemer.api.LIMITS`)."""

    # A working day at a counter; after it the venue signs in again.
    session_seconds: int = 10 * 3600
    sign_in_form_seconds: int = 3600
    form_body_max_bytes: int = 4 * 1024
    token_max_characters: int = 200
    # This month's redemptions shown on the page (a venue's busiest month stays below it;
    # beyond, the page says how many more there are).
    redemptions_shown_max: int = 500
    outcome_timeout_seconds: float = 10.0
    startup_timeout_seconds: float = 15.0


@dataclass(frozen=True)
class CounterSession:
    session_sha256: str
    siret: str
    csrf_token: str
    language: str
    expires_at: datetime


def new_secret() -> str:
    """A random value for a session id or a CSRF token: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def sha256_text(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def csrf_matches(expected: str | None, sent: str | None) -> bool:
    """In constant time, so that timing does not reveal how much of a guess was right."""
    if not expected or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


def language_of(requested: str | None, default: str = "fr") -> str:
    return requested if requested in LANGUAGES else default


async def open_session(connection: Any, token_sha256: str, siret: str, language: str,
                       limits: CounterLimits, now: datetime | None = None
                       ) -> tuple[str, CounterSession]:
    """A new session for a venue's token: (the id for the cookie, the session). Expired
    sessions are deleted first, so the table stays as small as the sessions in use."""
    now = now or datetime.now(timezone.utc)
    session_id = new_secret()
    session = CounterSession(sha256_text(session_id), siret, new_secret(),
                             language_of(language),
                             now + timedelta(seconds=limits.session_seconds))
    async with connection.transaction():
        await connection.execute("DELETE FROM counter_sessions WHERE expires_at <= %s", (now,))
        await connection.execute(
            "INSERT INTO counter_sessions (session_sha256, token_sha256, siret, csrf_token, "
            "language, created_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (session.session_sha256, token_sha256, siret, session.csrf_token, session.language,
             now, session.expires_at))
    return session_id, session


async def find_session(connection: Any, session_id: str | None) -> CounterSession | None:
    """The live session of a cookie: not expired, and its token not revoked."""
    if not session_id:
        return None
    async with connection.cursor() as cursor:
        await cursor.execute(
            "SELECT s.session_sha256, s.siret, s.csrf_token, s.language, s.expires_at "
            "FROM counter_sessions s JOIN api_tokens t ON t.token_sha256 = s.token_sha256 "
            "WHERE s.session_sha256 = %s AND s.expires_at > now() AND t.revoked_at IS NULL "
            "AND t.tenant_kind = 'venue'", (sha256_text(session_id),))
        row = await cursor.fetchone()
    return CounterSession(*row) if row is not None else None


async def close_session(connection: Any, session: CounterSession) -> None:
    await connection.execute("DELETE FROM counter_sessions WHERE session_sha256 = %s",
                             (session.session_sha256,))


async def set_language(connection: Any, session: CounterSession, language: str
                       ) -> CounterSession:
    language = language_of(language, session.language)
    if language != session.language:
        await connection.execute(
            "UPDATE counter_sessions SET language = %s WHERE session_sha256 = %s",
            (language, session.session_sha256))
    return CounterSession(session.session_sha256, session.siret, session.csrf_token, language,
                          session.expires_at)
