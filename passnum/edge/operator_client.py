"""A small HTTP client of the operator routes (passnum/edge/operator_api.py), for the command line
(passnum/tools/operator_cli.py) and the demo: it sends what an operator would send, with an
operator token, and reads the answer's status and reason code.

Why HTTP rather than the log directly: the command line then takes the one path every
client takes (operator token, SIREN and IBAN checks at the edge, idempotency keys, the
recorded outcome as the answer), and an operator's workstation needs no access to the
broker or the database, only to the two workers' HTTP ports.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from passnum.core.settings import Settings

HTTP_TIMEOUT_SECONDS = 30.0
_KEY_CHARACTERS = re.compile(r"[^A-Za-z0-9._:~-]")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def reason(self) -> str:
        """The reason code of a refusal, whether the body is `{"error": {...}}` or an RFC
        9457 problem document carrying the code."""
        error = self.body.get("error")
        if isinstance(error, dict) and error.get("reason"):
            return str(error["reason"])
        for name in ("reason", "code"):
            if self.body.get(name):
                return str(self.body[name])
        return f"http_{self.status}"

    @property
    def detail(self) -> str:
        error = self.body.get("error")
        if isinstance(error, dict):
            return str(error.get("detail", ""))
        return str(self.body.get("detail", ""))


class OperatorClient:
    def __init__(self, issuer_url: str, redeemer_url: str, token: str) -> None:
        self.urls = {"issuer": issuer_url.rstrip("/"), "redeemer": redeemer_url.rstrip("/")}
        self.token = token

    @classmethod
    def for_settings(cls, settings: Settings, token: str, host: str = "127.0.0.1"
                     ) -> "OperatorClient":
        return cls(f"http://{host}:{settings.web_port_issuer}",
                   f"http://{host}:{settings.web_port_redeemer}", token)

    def call(self, service: str, method: str, path: str, body: dict[str, Any] | None = None,
             key: str | None = None, token: str | None = None) -> Reply:
        """One request (with the operator's token unless `token` names a tenant's); a
        refusal is a Reply too. Raises OSError when the worker does not answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.urls[service] + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {token or self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key is not None:
            request.add_header("Idempotency-Key", key)
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
                return Reply(response.status, json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return Reply(error.code, json.loads(raw or b"{}"))
            except json.JSONDecodeError:
                return Reply(error.code, {"detail": raw.decode(errors="replace")[:200]})

    # The operator's actions, one method each: the path and the body of each route.

    def register_collectivite(self, siren: str, name: str, key: str, vouchers_per_booklet: int
                              = 10, face_value_cents: int = 1000) -> Reply:
        return self.call("issuer", "POST", "/v1/operator/collectivites", {
            "siren": siren, "name": name, "default_vouchers_per_booklet": vouchers_per_booklet,
            "default_face_value_cents": face_value_cents}, key)

    def fund_envelope(self, siren: str, committed_cents: int, key: str) -> Reply:
        return self.call("issuer", "POST", f"/v1/operator/collectivites/{siren}/envelope",
                         {"committed_cents": committed_cents}, key)

    def record_funds_received(self, siren: str, face_value_cents: int, fees_cents: int,
                              payment_reference: str, key: str) -> Reply:
        return self.call("issuer", "POST", f"/v1/operator/collectivites/{siren}/funds-received",
                         {"face_value_cents": face_value_cents, "fees_cents": fees_cents,
                          "payment_reference": payment_reference}, key)

    def accredit_venue(self, siret: str, name: str, iban: str, address_code: str,
                       services: tuple[str, ...], key: str) -> Reply:
        return self.call("redeemer", "POST", "/v1/operator/venues", {
            "siret": siret, "name": name, "iban": iban, "address_code": address_code,
            "services": list(services)}, key)

    def change_venue_status(self, siret: str, change: str, reason: str, key: str) -> Reply:
        """`change`: suspension, reinstatement or revocation."""
        return self.call("redeemer", "POST", f"/v1/operator/venues/{siret}/{change}",
                         {"reason": reason}, key)

    def listing(self, service: str, path: str, after_name: str) -> list[dict[str, Any]]:
        """Every item of a listing, page after page. Raises ListingRefused."""
        items: list[dict[str, Any]] = []
        after = ""
        while True:
            reply = self.call(service, "GET", f"{path}?{after_name}={after}")
            if not reply.ok:
                raise ListingRefused(reply)
            key = next(name for name in reply.body if name != "next_after")
            items += reply.body[key]
            after = reply.body.get("next_after") or ""
            if not after:
                return items


class ListingRefused(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.reason)
        self.reply = reply


def key_from(*parts: str) -> str:
    """An Idempotency-Key made of the words of a request (letters kept, others as '-'):
    the same request typed twice is the same request."""
    return _KEY_CHARACTERS.sub("-", "-".join(parts))[:100]


def cents_from_euros(text: str, allow_zero: bool = False) -> int:
    """'1500', '1 500,50' or '1500.5' euros as integer cents, never through a float."""
    cleaned = text.replace("\u202f", "").replace("\xa0", "").replace(" ", "").replace(",", ".")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{text!r} n'est pas un montant en euros") from None
    cents = amount * 100
    if not amount.is_finite() or cents != cents.to_integral_value() or cents < 0 or (
            cents == 0 and not allow_zero):
        raise ValueError(f"{text!r} : un montant positif, au centime près")
    return int(cents)


def euros_fr(cents: int) -> str:
    """French formatting of an amount (babel): 1 500,50 €."""
    from babel.numbers import format_currency

    return str(format_currency(Decimal(cents).scaleb(-2), "EUR", locale="fr_FR"))
