"""The pure pieces of the operator's administration: identifiers and their check digits,
amounts typed in euros, idempotency keys, how a recorded outcome reads over HTTP, the token
cache forgetting a tenant, and the operator routes in both OpenAPI documents."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from passnum.edge.http import Outcome, Tenant, TokenCache
from passnum.edge.operator_api import answer_for_outcome, keyset_query
from passnum.edge.operator_client import Reply, cents_from_euros, key_from
from passnum.edge.tokens import identifier_refusal
from passnum.edge.web_api import ApiError, ApiLimits
from schemas.messages import CollectiviteRegistered, IssuerCommandRejected
from services.issuer import openapi as issuer_openapi
from services.issuer.operator_api import ROUTES as ISSUER_ROUTES
from services.issuer.operator_api import checked_siren
from services.redeemer import openapi as redeemer_openapi
from services.redeemer.operator_api import ROUTES as REDEEMER_ROUTES
from services.redeemer.operator_api import compact_iban, well_formed_siret

SIREN = "552100554"  # valid check digit
SIRET = "55210055400104"
IBAN = "FR7630006000011234567890189"
AT = datetime(2026, 12, 7, 10, tzinfo=timezone.utc)


@pytest.mark.parametrize(("kind", "identifier", "reason"), [
    ("collectivite", SIREN, None),
    ("collectivite", "552100555", "invalid_siren"),
    ("collectivite", "123", "invalid_siren"),
    ("collectivite", "55210055\u0664", "invalid_siren"),  # an Arabic-Indic digit
    ("venue", SIRET, None),
    ("venue", "55210055400105", "invalid_siret"),
    ("venue", SIREN, "invalid_siret"),
    ("operator", "alice.dupont", None),
    ("operator", "Alice", "invalid_operator_name"),
    ("operator", "a" * 41, "invalid_operator_name"),
    ("mairie", "x", "unknown_kind"),
])
def test_a_token_names_a_tenant_that_can_exist(kind: str, identifier: str,
                                               reason: str | None) -> None:
    refusal = identifier_refusal(kind, identifier)
    assert (refusal.reason if refusal else None) == reason


def test_the_edge_refuses_a_siren_before_any_command() -> None:
    assert checked_siren(SIREN) == SIREN
    for wrong in ("552100555", "12345678", "55210055\u0664", "5521005540"):
        with pytest.raises(ApiError) as refused:
            checked_siren(wrong)
        assert refused.value.answer.status == 422
        assert "invalid_siren" in str(refused.value.answer.body)


def test_a_siret_is_fourteen_ascii_digits_and_an_iban_is_recorded_compact() -> None:
    assert well_formed_siret(SIRET) == SIRET
    for wrong in ("5521005540010", "5521005540010\u0664", "abcdefghijklmn"):
        with pytest.raises(ApiError):
            well_formed_siret(wrong)
    assert compact_iban("fr76 3000 6000 0112 3456 7890 189") == IBAN
    with pytest.raises(ApiError):
        compact_iban("not an iban")


@pytest.mark.parametrize(("text", "cents"), [
    ("10", 1000), ("1 500,50", 150050), ("1500.5", 150050), ("1\u202f500,50", 150050),
    ("0,01", 1)])
def test_amounts_are_typed_in_euros_and_kept_in_cents(text: str, cents: int) -> None:
    assert cents_from_euros(text) == cents


@pytest.mark.parametrize("text", ["0", "-5", "0,001", "abc", "NaN", "Infinity", ""])
def test_an_amount_that_is_not_a_positive_number_of_cents_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        cents_from_euros(text)


def test_fees_may_be_zero() -> None:
    assert cents_from_euros("0", allow_zero=True) == 0


def test_a_key_made_of_words_is_a_valid_idempotency_key() -> None:
    key = key_from("funds", SIREN, "VIR 2026/12 n°4")
    assert key == f"funds-{SIREN}-VIR-2026-12-n-4"
    assert len(key_from("x" * 300)) == 100


def _registered(request_id: str) -> CollectiviteRegistered:
    return CollectiviteRegistered(event_id="e1", request_id=request_id, occurred_at=AT,
                                  siren=SIREN, name="Ville", default_vouchers_per_booklet=10,
                                  default_face_value_cents=1000)


def test_a_recorded_outcome_reads_as_success_refusal_or_reused_key() -> None:
    rejection = IssuerCommandRejected(event_id="e2", request_id="r", occurred_at=AT,
                                      siren=SIREN, command_type="register_collectivite",
                                      reason="already_registered")
    statuses = {"already_registered": 409}
    success = answer_for_outcome(Outcome([_registered("r")], True), "r", 201,
                                 (IssuerCommandRejected,), statuses)
    assert (success.status, success.body["events"][0]["type"]) == (
        201, "collectivite_registered")
    refused = answer_for_outcome(Outcome([rejection], True), "r", 201,
                                 (IssuerCommandRejected,), statuses)
    assert refused.status == 409 and "already_registered" in str(refused.body)
    reused = answer_for_outcome(Outcome([_registered("r")], False), "r", 201,
                                (IssuerCommandRejected,), statuses)
    assert reused.status == 409 and "request_id_reused" in str(reused.body)


def test_the_token_cache_forgets_one_tenant_only() -> None:
    cache = TokenCache(seconds=60)
    first, other = Tenant("collectivite", SIREN), Tenant("venue", SIRET)
    cache.put("a", first, 0.0)
    cache.put("b", first, 0.0)
    cache.put("c", other, 0.0)
    cache.forget(first)
    assert (cache.get("a", 1.0), cache.get("b", 1.0), cache.get("c", 1.0)) == (
        None, None, other)


def test_a_refusal_reason_is_read_from_either_error_shape() -> None:
    assert Reply(409, {"error": {"reason": "already_registered", "detail": ""}}).reason == \
        "already_registered"
    assert Reply(422, {"type": "urn:x", "code": "invalid_siren"}).reason == "invalid_siren"
    assert Reply(500, {}).reason == "http_500"


def test_a_listing_cursor_is_an_identifier() -> None:
    limits = ApiLimits(page_size_max=500, body_max_bytes=1, outcome_timeout_seconds=1)
    assert keyset_query({}, "after_siren", limits) == ("", limits.page_size_default)
    assert keyset_query({"after_siren": SIREN, "limit": "7"}, "after_siren", limits) == (
        SIREN, 7)
    for wrong in ("abc", "1' OR 1=1", "5" * 15, "55210055\u0664"):
        with pytest.raises(ApiError):
            keyset_query({"after_siren": wrong}, "after_siren", limits)


@pytest.mark.parametrize(("document", "routes"), [
    (issuer_openapi.openapi_document, ISSUER_ROUTES),
    (redeemer_openapi.openapi_document, REDEEMER_ROUTES)])
def test_every_operator_route_is_in_its_service_document(document, routes) -> None:
    paths = document()["paths"]
    for route in routes:
        operation = paths[route.path][route.method]
        assert operation["operationId"] == route.operation_id
        assert operation["security"] == [{"bearer": []}]
        assert "403" in operation["responses"]
