"""Error answers of the HTTP APIs as RFC 9457 problem details.

Every 4xx and 5xx of both APIs is `application/problem+json`: `type` (a URN naming the
reason), `title` (a short French summary, the same for every occurrence of the reason),
`status`, `detail` (this occurrence) and the reason code itself as the extension member
`code`, which is what a client tests. A recorded refusal adds its own members (a voucher
already redeemed adds `redeemed_at`).

Titles are for people reading a log or a browser; longer explanations for a person at a
counter are in `passnum/edge/reasons_fr.py`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:passnum:probleme:"

# reason code -> title, in French. A code missing here still gets the title of its status.
TITLES: dict[str, str] = {
    # The edge: authentication, keys, bodies, queries, the worker's state.
    "unauthenticated": "Authentification requise",
    "not_a_collectivite": "Jeton réservé aux collectivités",
    "not_a_venue": "Jeton réservé aux structures",
    "not_an_operator": "Jeton réservé à l'opérateur",
    "idempotency_key_required": "En-tête Idempotency-Key manquant",
    "invalid_idempotency_key": "En-tête Idempotency-Key invalide",
    "request_id_reused": "Clé d'idempotence déjà utilisée pour une autre requête",
    "body_too_large": "Corps de requête trop volumineux",
    "not_utf8": "Corps de requête non encodé en UTF-8",
    "invalid_body": "Corps de requête invalide",
    "invalid_query": "Paramètres de requête invalides",
    "starting": "Service en cours de démarrage",
    "outcome_pending": "Résultat pas encore enregistré",
    "log_unavailable": "Registre momentanément indisponible",
    "database_unavailable": "Base de données momentanément indisponible",
    "internal_error": "Erreur interne",
    # The operator's routes (passnum/edge/operator_api.py, services/*/operator_api.py).
    "invalid_siret": "SIRET invalide",
    "invalid_iban": "IBAN invalide",
    "unknown_venue": "Structure inconnue",
    "token_already_issued": "Jeton déjà émis pour cette clé",
    "already_accredited": "Structure déjà habilitée",
    "unknown_provider": "Structure inconnue",
    "provider_revoked": "Habilitation de la structure révoquée",
    # The issuer's recorded refusals (passnum/ledger/envelope.py, booklet.py).
    "invalid_siren": "SIREN invalide",
    "already_registered": "Collectivité déjà enregistrée",
    "unknown_collectivite": "Collectivité inconnue",
    "invalid_framing": "Cadrage de commande invalide",
    "over_cap": "Plafond de l'enveloppe dépassé",
    "over_envelope": "Enveloppe insuffisante",
    "total_exceeds_limit": "Total cumulé au-delà de la limite du registre",
    "booklet_numbering_exhausted": "Numérotation des carnets épuisée",
    "unknown_booklet": "Carnet introuvable",
    "booklet_blocked": "Carnet bloqué",
    "already_handed_out": "Carnet déjà remis",
    # The redeemer's recorded refusals (passnum/ledger/voucher.py, venue.py).
    "malformed_code": "Code de chèque mal formé",
    "mistyped_code": "Code de chèque mal saisi",
    "forged_code": "Code de chèque falsifié",
    "unknown_voucher": "Chèque inconnu",
    "booklet_not_activated": "Carnet non activé",
    "outside_validity": "Chèque hors de sa période de validité",
    "outside_perimeter": "Chèque hors de son territoire",
    "provider_not_accredited": "Structure non habilitée",
    "already_redeemed": "Chèque déjà encaissé",
    "not_redeemed_here": "Encaissement introuvable dans cette structure",
    "already_settled": "Encaissement déjà réglé",
    "cancellation_too_late": "Annulation trop tardive",
    # Offline scans sent later, judged at the instant of the scan.
    "booklet_not_activated_at_scan_time": "Carnet non activé à l'heure du scan",
    "venue_not_accredited_at_scan_time": "Structure non habilitée à l'heure du scan",
    "scan_in_the_future": "Scan daté dans le futur",
}

STATUS_TITLES: dict[int, str] = {
    400: "Requête mal formée",
    401: "Authentification requise",
    403: "Accès refusé",
    404: "Ressource introuvable",
    409: "Conflit avec l'état du registre",
    413: "Corps de requête trop volumineux",
    422: "Requête invalide",
    500: "Erreur interne",
    503: "Service indisponible",
    504: "Résultat pas encore disponible",
}


def title_of(code: str, status: int | None = None) -> str:
    if code in TITLES:
        return TITLES[code]
    return STATUS_TITLES.get(status or 0, "Requête refusée")


def problem(code: str, detail: str = "", status: int | None = None,
            **extensions: Any) -> dict[str, Any]:
    """A problem-details body. `status` may be left to `with_status` (an answer's status is
    known where the answer is made, not always where the refusal is named)."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE_PREFIX + code, "title": title_of(code, status),
                            "detail": detail, "code": code, **extensions}
    if status is not None:
        body["status"] = status
    return body


def is_problem(body: Any) -> bool:
    return isinstance(body, dict) and "code" in body and "type" in body


def with_status(body: dict[str, Any], status: int) -> dict[str, Any]:
    """The body with its `status` (and the title of that status when its code has none of
    its own): RFC 9457 asks for the status of the answer that carries it."""
    if body.get("status") == status:
        return body
    return {**body, "status": status, "title": title_of(body["code"], status)}


class ProblemDetails(BaseModel):
    """RFC 9457 problem details: the body of every error answer."""

    model_config = ConfigDict(extra="allow", title="ProblemDetails")

    type: str = Field(description="a URN naming the reason: urn:passnum:probleme:<code>")
    title: str = Field(description="a short summary in French, the same for every "
                                   "occurrence of the reason")
    status: int = Field(description="the HTTP status of the answer")
    detail: str = Field(description="what went wrong in this occurrence")
    code: str = Field(pattern=r"^[a-z0-9_]{3,64}$",
                      description="the reason code, which clients test")
