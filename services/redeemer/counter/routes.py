"""The counter page's routes, served by the redeemer's API process next to the venues' JSON API.

| route | what |
|---|---|
| `GET /` | to `/guichet/` |
| `GET /guichet/` | sign-in form, or the counter once signed in (`?lang=en` / `?lang=fr`) |
| `POST /guichet/connexion` | sign in with the venue's token (the form, never a URL) |
| `POST /guichet/verifier` | check a code (`CheckVoucher`) |
| `POST /guichet/encaisser` | redeem a code (`RedeemVoucher`) |
| `POST /guichet/annuler` | cancel a redemption of today (`CancelRedemption`) |
| `POST /guichet/deconnexion` | sign out: the session is deleted |
| `GET /guichet/releves/{month}/{part}` | one statement as CSV (`statements.render_csv`) |
| `GET /guichet/releves/{month}/{part}/cheques` | the vouchers that statement pays, as CSV |
| `GET /guichet/releves/{month}/{part}/pdf` | the statement and its vouchers, as PDF |
| `GET /guichet/static/{name}` | the stylesheet and the script |

Every POST carries the session's CSRF token or is refused with 403, before anything else
is read or written. The commands are the JSON API's, submitted through its gateway
(`RedeemerApi.gateway`), so both surfaces decide alike.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import ValidationError

from passnum.edge.http import authenticate, token_digest
from passnum.edge.web_api import ApiError, read_body
from passnum.ledger.settlement_month import month_end, month_of, month_start
from schemas.messages import CancelRedemption, CheckVoucher, RedeemVoucher
from services.redeemer import queries
from services.redeemer.api import RedeemerApi
from services.redeemer.counter import pages, sessions, texts
from services.redeemer.counter.outcomes import (
    FORM_KEY,
    Action,
    Result,
    new_form_key,
    pending,
    request_id,
    result_of,
)
from services.redeemer.counter.sessions import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    CounterLimits,
    CounterSession,
)
from services.redeemer.counter.statement_pdf import render_statement_pdf
from services.redeemer.counter.statements import (
    VenueStatement,
    load_statement,
    statement_csv,
    vouchers_csv,
)

logger = logging.getLogger(__name__)

# The page loads nothing from elsewhere and runs no inline script; it cannot be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "media-src 'self' blob: mediastream:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self)",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {"counter.css": "text/css", "counter.js": "text/javascript"}
_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_VOUCHER_ID = re.compile(r"^[0-9]{9}-[0-9]{7}-[0-9]{2}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")

Handler = Callable[[Any], Awaitable[web.StreamResponse]]


class Starting(Exception):
    """The API's pool and gateway are not open yet."""


class Counter:
    """The handlers; `RedeemerApi` lends its connection pool and command gateway."""

    def __init__(self, api: RedeemerApi, limits: CounterLimits | None = None) -> None:
        self.api = api
        self.limits = limits or CounterLimits()
        self.templates = pages.environment()
        package = resources.files("services.redeemer.counter") / "static"
        self.static = {name: (package / name).read_bytes() for name in STATIC_TYPES}

    def routes(self) -> dict[str, dict[str, Handler]]:
        """{path: {method: handler}}."""
        return {
            "/": {"get": self.index},
            "/guichet/": {"get": self.counter},
            "/guichet/connexion": {"post": self.sign_in},
            "/guichet/deconnexion": {"post": self.sign_out},
            "/guichet/verifier": {"post": self.check},
            "/guichet/encaisser": {"post": self.redeem},
            "/guichet/annuler": {"post": self.cancel},
            "/guichet/releves/{month}/{part}": {"get": self.statement},
            "/guichet/releves/{month}/{part}/cheques": {"get": self.statement_vouchers},
            "/guichet/releves/{month}/{part}/pdf": {"get": self.statement_pdf},
            "/guichet/static/{name}": {"get": self.static_file},
        }

    # ------------------------------------------------------------------ answers

    def page(self, template: str, language: str, session: CounterSession | None,
             status: int = 200, **context: Any) -> web.Response:
        body = pages.render(self.templates, template, language, session, **context)
        return web.Response(text=body, status=status, content_type="text/html",
                            charset="utf-8", headers=SECURITY_HEADERS)

    def message(self, key: str, language: str, status: int,
                session: CounterSession | None = None) -> web.Response:
        return self.page("message.html", language, session, status,
                         message=texts.text(key, language))

    def sign_in_page(self, request: Any, language: str, status: int = 200, error: str = "",
                     notice: str = "") -> web.Response:
        """The sign-in form, with the random value its POST must send back (the same value
        in a cookie: a page of another site can neither read it nor send the cookie)."""
        current = request.cookies.get(SIGN_IN_COOKIE, "")
        value = current if _SECRET.match(current) else sessions.new_secret()
        response = self.page("sign_in.html", language, None, status, error=error,
                             notice=notice, sign_in_csrf=value,
                             token_max=self.limits.token_max_characters)
        response.set_cookie(SIGN_IN_COOKIE, value, max_age=self.limits.sign_in_form_seconds,
                            path="/guichet/", httponly=True, samesite="Strict",
                            secure=_is_https(request))
        return response

    # ------------------------------------------------------------------ plumbing

    async def _ready(self) -> None:
        try:
            await asyncio.wait_for(self.api.ready.wait(), self.limits.startup_timeout_seconds)
        except TimeoutError:
            raise Starting() from None

    async def _session(self, request: Any) -> CounterSession | None:
        await self._ready()
        async with self.api.pool.connection() as connection:
            return await sessions.find_session(connection, request.cookies.get(SESSION_COOKIE))

    async def _form(self, request: Any) -> dict[str, str]:
        raw = await read_body(request, self.limits.form_body_max_bytes)
        return dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))

    async def _signed_in_form(self, request: Any
                              ) -> tuple[CounterSession, dict[str, str]] | web.Response:
        """The session and the form of a POST, or the refusal: no session (it ended: sign in
        again), or no matching CSRF token (403, nothing read further, nothing written)."""
        session = await self._session(request)
        form = await self._form(request)
        if session is None:
            return self.sign_in_page(request, _language(request), 401,
                                     notice=texts.text("session_expired", _language(request)))
        if not sessions.csrf_matches(session.csrf_token, form.get("csrf")):
            return self.message("forbidden", session.language, 403, session)
        return session, form

    # ------------------------------------------------------------------ pages

    async def index(self, request: Any) -> web.StreamResponse:
        language = request.query.get("lang")
        suffix = f"?lang={language}" if language in sessions.LANGUAGES else ""
        raise web.HTTPSeeOther(f"/guichet/{suffix}")

    async def counter(self, request: Any) -> web.StreamResponse:
        session = await self._session(request)
        if session is None:
            notice = ""
            if "deconnecte" in request.query:
                notice = texts.text("signed_out", _language(request))
            elif request.cookies.get(SESSION_COOKIE):
                notice = texts.text("session_expired", _language(request))
            response = self.sign_in_page(request, _language(request), notice=notice)
            response.del_cookie(SESSION_COOKIE, path="/")
            return response
        if request.query.get("lang") in sessions.LANGUAGES:
            async with self.api.pool.connection() as connection:
                session = await sessions.set_language(connection, session,
                                                      request.query["lang"])
        return await self.counter_page(session)

    async def counter_page(self, session: CounterSession, result: Result | None = None,
                           code: str = "") -> web.Response:
        now = datetime.now(timezone.utc)
        month = month_of(now)
        async with self.api.pool.connection() as connection:
            venue = await _venue(connection, session.siret)
            rows = await queries.redemption_page(connection, session.siret, month, None,
                                                 self.limits.redemptions_shown_max)
            totals = await _month_totals(connection, session.siret, month)
            statements = await queries.statements_of(connection, session.siret, None)
        context = pages.counter_context(venue, rows, totals, statements, month, now,
                                        session.language, self.limits.redemptions_shown_max)
        shown = pages.shown_result(result, session.language) if result else None
        return self.page("counter.html", session.language, session, result=shown, code=code,
                         form_key=new_form_key(), **context)

    # ------------------------------------------------------------------ sign in and out

    async def sign_in(self, request: Any) -> web.StreamResponse:
        await self._ready()
        form = await self._form(request)
        language = sessions.language_of(form.get("lang"))
        if not sessions.csrf_matches(request.cookies.get(SIGN_IN_COOKIE), form.get("csrf")):
            return self.message("forbidden", language, 403)
        token = form.get("token", "").strip()[:self.limits.token_max_characters]
        # Checked as the JSON API checks a bearer token, without its cache: a token revoked
        # a second ago does not open a session.
        tenant = await authenticate(self.api.pool.connection(), f"Bearer {token}")
        if tenant is None or tenant.kind != "venue":
            key = "sign_in_refused" if tenant is None else "not_a_venue"
            return self.sign_in_page(request, language, 401 if tenant is None else 403,
                                     error=texts.text(key, language))
        async with self.api.pool.connection() as connection:
            session_id, _ = await sessions.open_session(
                connection, token_digest(token), tenant.identifier, language, self.limits)
        response = web.HTTPSeeOther("/guichet/")
        response.set_cookie(SESSION_COOKIE, session_id, max_age=self.limits.session_seconds,
                            path="/", httponly=True, samesite="Strict",
                            secure=_is_https(request))
        response.del_cookie(SIGN_IN_COOKIE, path="/guichet/")
        return response

    async def sign_out(self, request: Any) -> web.StreamResponse:
        signed_in = await self._signed_in_form(request)
        if isinstance(signed_in, web.Response):
            return signed_in
        session, _ = signed_in
        async with self.api.pool.connection() as connection:
            await sessions.close_session(connection, session)
        response = web.HTTPSeeOther(f"/guichet/?deconnecte=1&lang={session.language}")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # ------------------------------------------------------------------ the commands

    async def check(self, request: Any) -> web.StreamResponse:
        return await self._code_command(request, "check")

    async def redeem(self, request: Any) -> web.StreamResponse:
        return await self._code_command(request, "redeem")

    async def _code_command(self, request: Any, action: Action) -> web.StreamResponse:
        signed_in = await self._signed_in_form(request)
        if isinstance(signed_in, web.Response):
            return signed_in
        session, form = signed_in
        form_key = form.get("key", "")
        if not FORM_KEY.fullmatch(form_key):
            return self.message("forbidden", session.language, 403, session)
        code = form.get("code", "").strip()
        at = datetime.now(timezone.utc)
        command_class = CheckVoucher if action == "check" else RedeemVoucher
        try:
            command = command_class(request_id=request_id(action, session.siret, form_key),
                                    occurred_at=at, code=code, siret=session.siret)
        except ValidationError:
            # Empty, too long or with control characters: not a code, and not worth a
            # command (the JSON API answers the same body with a 422).
            result = Result(action, False, "malformed_code")
        else:
            result = await self._submit(action, command)
        kept = "" if result.accepted and action == "redeem" else code
        return await self.counter_page(session, result, kept)

    async def cancel(self, request: Any) -> web.StreamResponse:
        signed_in = await self._signed_in_form(request)
        if isinstance(signed_in, web.Response):
            return signed_in
        session, form = signed_in
        form_key, voucher_id = form.get("key", ""), form.get("voucher_id", "")
        if not FORM_KEY.fullmatch(form_key):
            return self.message("forbidden", session.language, 403, session)
        if not _VOUCHER_ID.fullmatch(voucher_id):
            return await self.counter_page(session, Result("cancel", False,
                                                           "not_redeemed_here"))
        command = CancelRedemption(
            request_id=request_id("cancel", session.siret, form_key, voucher_id),
            occurred_at=datetime.now(timezone.utc), voucher_id=voucher_id,
            siret=session.siret)
        return await self.counter_page(session, await self._submit("cancel", command))

    async def _submit(self, action: Action, command: Any) -> Result:
        assert self.api.gateway is not None
        try:
            outcome = await self.api.gateway.submit(command, self.limits.outcome_timeout_seconds)
        except TimeoutError:
            return pending(action, getattr(command, "voucher_id", None))
        return result_of(action, outcome)

    # ------------------------------------------------------------------ downloads

    async def statement(self, request: Any) -> web.StreamResponse:
        async def render(statement: VenueStatement, language: str) -> bytes:
            return statement_csv(statement).encode()

        return await self._download(request, render, "releve", "csv")

    async def statement_vouchers(self, request: Any) -> web.StreamResponse:
        async def render(statement: VenueStatement, language: str) -> bytes:
            return vouchers_csv(statement).encode()

        return await self._download(request, render, "releve-cheques", "csv")

    async def statement_pdf(self, request: Any) -> web.StreamResponse:
        fonts = Path(self.api.settings.print_font_directory)

        async def render(statement: VenueStatement, language: str) -> bytes:
            # Up to a hundred pages for the busiest venue: off the event loop.
            return await asyncio.to_thread(render_statement_pdf, statement, language, fonts)

        return await self._download(request, render, "releve", "pdf")

    async def _download(self, request: Any,
                        render: Callable[[VenueStatement, str], Awaitable[bytes]],
                        prefix: str, extension: str) -> web.StreamResponse:
        """One of the signed-in venue's statements as a file; 404 for any other."""
        session = await self._session(request)
        if session is None:
            raise web.HTTPSeeOther("/guichet/")
        month, part = request.match_info["month"], request.match_info["part"]
        if not _MONTH.fullmatch(month) or not part.isascii() or not part.isdigit() or len(part) > 6:
            return self.message("not_found", session.language, 404, session)
        async with self.api.pool.connection() as connection:
            statement = await load_statement(connection, session.siret, month, int(part))
        if statement is None:
            return self.message("not_found", session.language, 404, session)
        name = f"{prefix}-{session.siret}-{month}-{int(part)}.{extension}"
        content_type = "application/pdf" if extension == "pdf" else "text/csv; charset=utf-8"
        return web.Response(
            body=await render(statement, session.language),
            headers={**SECURITY_HEADERS, "Content-Type": content_type,
                     "Content-Disposition": f'attachment; filename="{name}"'})

    async def static_file(self, request: Any) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self.static:
            raise web.HTTPNotFound()
        headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"}
        return web.Response(body=self.static[name], content_type=STATIC_TYPES[name],
                            charset="utf-8", headers=headers)

    # ------------------------------------------------------------------ every way it ends

    async def answer(self, handler: Handler, request: Any) -> web.StreamResponse:
        """Run a handler; a redirect is an answer, and a failure is a page, not a trace."""
        language = _language(request)
        try:
            return await handler(request)
        except web.HTTPException as answer:
            return answer
        except Starting:
            return self.message("starting", language, 503)
        except ApiError as error:  # the body was too large
            return self.message("too_large", language, error.answer.status)
        except Exception:  # noqa: BLE001 - a page answers; nothing is lost (commands are idempotent)
            logger.exception("counter page: unexpected failure")
            return self.message("failure", language, 500)


# ---------------------------------------------------------------------- helpers


def _language(request: Any) -> str:
    return sessions.language_of(request.query.get("lang"))


def _is_https(request: Any) -> bool:
    """Behind a TLS-terminating proxy the cookies are marked Secure too."""
    return bool(request.scheme == "https"
                or request.headers.get("X-Forwarded-Proto", "").lower() == "https")


async def _venue(connection: Any, siret: str) -> pages.VenueFacts:
    async with connection.cursor() as cursor:
        await cursor.execute("SELECT name, status FROM providers WHERE siret = %s", (siret,))
        row = await cursor.fetchone()
    return pages.VenueFacts(*row) if row is not None else pages.VenueFacts("", "unknown")


async def _month_totals(connection: Any, siret: str, month: str) -> pages.MonthTotals:
    async with connection.cursor() as cursor:
        await cursor.execute(
            "SELECT count(*), coalesce(sum(face_value_cents), 0) FROM redemptions "
            "WHERE siret = %s AND redeemed_at >= %s AND redeemed_at < %s",
            (siret, month_start(month), month_end(month)))
        count, cents = await cursor.fetchone()
    return pages.MonthTotals(int(count), int(cents))
