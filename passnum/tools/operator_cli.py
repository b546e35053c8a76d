"""`passnum operator ...` and `passnum token ...`: the operator's command line, in French.

- `passnum operator collectivite register|fund|funds-received|list` and
  `passnum operator venue accredit|suspend|reinstate|revoke|list` call the operator routes of
  the issuer and redeemer workers over HTTP with an operator token (`--token` or
  PASSNUM_OPERATOR_TOKEN; why HTTP: passnum/edge/operator_client.py);
- `passnum token issue|rotate|revoke KIND ID` changes tokens in PostgreSQL directly: it is
  how the first operator token comes to exist.

One line per result. Exit codes: 0 done; 1 refused by the ledger (the reason is printed);
2 invalid input (the command line's own checks, or a token for a tenant that cannot have
one); 3 a worker or the database did not answer.
"""

from __future__ import annotations

import uuid
from enum import Enum
from typing import Any, Callable, List, NoReturn, Optional

import typer

from passnum.core.settings import Settings
from passnum.edge.operator_client import (
    ListingRefused,
    OperatorClient,
    Reply,
    cents_from_euros,
    euros_fr,
    key_from,
)

REFUSED, INVALID, UNREACHABLE = 1, 2, 3

# Reason codes of the operator's surfaces, in French (the APIs answer with the codes).
REASONS_FR: dict[str, str] = {
    "invalid_siren": "SIREN invalide (9 chiffres, clé de contrôle fausse)",
    "invalid_siret": "SIRET invalide (14 chiffres, clé de contrôle fausse)",
    "invalid_iban": "IBAN invalide",
    "invalid_operator_name": "nom d'opérateur invalide (minuscules, chiffres, . _ -)",
    "already_registered": "collectivité déjà enregistrée",
    "unknown_collectivite": "aucune collectivité enregistrée sous ce SIREN",
    "unknown_venue": "aucun lieu accrédité sous ce SIRET",
    "unknown_provider": "aucun lieu accrédité sous ce SIRET",
    "already_accredited": "lieu déjà accrédité",
    "provider_revoked": "ce lieu est révoqué : plus aucun changement possible",
    "over_cap": "plafond par collectivité dépassé",
    "token_already_issued": "un jeton a déjà été émis pour cette demande (affiché une fois) ;"
                            " faites une rotation",
    "request_id_reused": "cette clé de demande a déjà servi pour une autre demande",
    "invalid_body": "demande invalide",
    "unauthenticated": "jeton d'opérateur absent, inconnu ou révoqué",
    "not_an_operator": "ce jeton n'est pas celui d'un opérateur",
    "outcome_pending": "la demande est dans le registre mais sans réponse encore : "
                       "relancez avec la même clé",
}
STATUS_FR = {"accredited": "accrédité", "suspended": "suspendu", "revoked": "révoqué"}

operator_app = typer.Typer(no_args_is_help=True, help="Administration du programme (opérateur)")
collectivite_app = typer.Typer(no_args_is_help=True, help="Collectivités et enveloppes")
venue_app = typer.Typer(no_args_is_help=True, help="Lieux (structures accréditées)")
token_app = typer.Typer(no_args_is_help=True, help="Jetons d'accès aux API")
operator_app.add_typer(collectivite_app, name="collectivite")
operator_app.add_typer(venue_app, name="venue")

TOKEN_OPTION = typer.Option(..., "--token", envvar="PASSNUM_OPERATOR_TOKEN",
                            help="jeton d'opérateur (passnum token issue operator NOM)")
KEY_OPTION = typer.Option(None, "--key", help="clé d'idempotence (la même clé : la même "
                                              "demande, jamais exécutée deux fois)")


def explain(reason: str) -> str:
    return REASONS_FR.get(reason, reason.replace("_", " "))


def fail(message: str, code: int) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code=code)


def _client(token: str) -> OperatorClient:
    """The workers on this machine, at the ports of the settings (PASSNUM_WEB_PORT_*)."""
    return OperatorClient.for_settings(Settings.from_environment(), token)


def _send(action: Callable[[], Reply]) -> Reply:
    """The answer of a write, or the one-line error and its exit code."""
    try:
        reply = action()
    except OSError as error:
        fail(f"erreur : le service ne répond pas ({getattr(error, 'reason', error)})",
             UNREACHABLE)
    if reply.ok:
        return reply
    line = f"refusé : {explain(reply.reason)} ({reply.reason})"
    if reply.reason == "invalid_body" and reply.detail:
        line += f" : {reply.detail}"
    fail(line, UNREACHABLE if reply.status >= 500 else REFUSED)


def _euros(text: str, allow_zero: bool = False) -> int:
    try:
        return cents_from_euros(text, allow_zero)
    except ValueError as error:
        fail(f"erreur : {error}", INVALID)


def _event(reply: Reply, event_type: str) -> dict[str, Any]:
    return next(e for e in reply.body["events"] if e["type"] == event_type)


def _echo_key(key: str) -> None:
    typer.echo(f"(clé de la demande : {key} ; relancez avec --key {key} en cas de doute)",
               err=True)


# ---------------------------------------------------------------------- collectivités


@collectivite_app.command("register")
def register(siren: str = typer.Argument(..., help="SIREN (9 chiffres)"),
             name: str = typer.Argument(..., help="nom de la collectivité"),
             vouchers_per_booklet: int = typer.Option(10, "--vouchers-per-booklet",
                                                      help="chèques par carnet : 5 ou 10"),
             face_value: str = typer.Option("10", "--face-value",
                                            help="valeur faciale d'un chèque, en euros"),
             key: Optional[str] = KEY_OPTION, token: str = TOKEN_OPTION) -> None:
    """Enregistrer une collectivité et les carnets qu'elle commande par défaut."""
    if vouchers_per_booklet not in (5, 10):
        fail("erreur : un carnet compte 5 ou 10 chèques", INVALID)
    cents = _euros(face_value)
    reply = _send(lambda: _client(token).register_collectivite(
        siren, name, key or key_from("register", siren), vouchers_per_booklet, cents))
    event = _event(reply, "collectivite_registered")
    typer.echo(f"collectivité {siren} enregistrée : {event['name']} (carnets de "
               f"{vouchers_per_booklet} chèques de {euros_fr(cents)})")


@collectivite_app.command("fund")
def fund(siren: str = typer.Argument(..., help="SIREN"),
         amount: str = typer.Argument(..., help="montant engagé en plus, en euros"),
         key: Optional[str] = KEY_OPTION, token: str = TOKEN_OPTION) -> None:
    """Engager ou augmenter l'enveloppe d'une collectivité."""
    cents = _euros(amount)
    request_key = key or f"fund-{siren}-{uuid.uuid4().hex[:12]}"
    if key is None:
        _echo_key(request_key)
    reply = _send(lambda: _client(token).fund_envelope(siren, cents, request_key))
    event = _event(reply, "envelope_funded")
    typer.echo(f"enveloppe de {siren} : +{euros_fr(cents)}, engagé au total "
               f"{euros_fr(event['total_committed_cents'])}")


@collectivite_app.command("funds-received")
def funds_received(siren: str = typer.Argument(..., help="SIREN"),
                   amount: str = typer.Argument(..., help="valeur faciale reçue, en euros"),
                   reference: str = typer.Option(..., "--reference",
                                                 help="référence du virement reçu"),
                   fees: str = typer.Option("0", "--fees", help="frais reçus, en euros"),
                   key: Optional[str] = KEY_OPTION, token: str = TOKEN_OPTION) -> None:
    """Enregistrer les fonds reçus d'une collectivité (active ses carnets, les plus anciens
    d'abord). Sans --key, la référence du virement identifie la demande."""
    cents, fee_cents = _euros(amount), _euros(fees, allow_zero=True)
    reply = _send(lambda: _client(token).record_funds_received(
        siren, cents, fee_cents, reference, key or key_from("funds", siren, reference)))
    event = _event(reply, "funds_received")
    activated = [e for e in reply.body["events"] if e["type"] == "booklet_activated"]
    typer.echo(f"fonds reçus de {siren} : {euros_fr(cents)} (référence {reference}), reçu au "
               f"total {euros_fr(event['total_received_cents'])} ; "
               f"{len(activated)} carnet(s) activé(s)")


@collectivite_app.command("list")
def list_collectivites(token: str = TOKEN_OPTION) -> None:
    """Les collectivités et leur enveloppe : engagé, reçu, commandé, activé."""
    for item in _listing(token, "issuer", "/v1/operator/collectivites", "after_siren"):
        typer.echo(f"{item['siren']}  {item['name']} : engagé "
                   f"{euros_fr(item['committed_cents'])}, reçu "
                   f"{euros_fr(item['received_cents'])}, commandé "
                   f"{euros_fr(item['ordered_cents'])}, activé "
                   f"{euros_fr(item['activated_cents'])}, {item['booklet_count']} carnet(s)")


def _listing(token: str, service: str, path: str, after_name: str) -> list[dict[str, Any]]:
    try:
        return _client(token).listing(service, path, after_name)
    except OSError as error:
        fail(f"erreur : le service ne répond pas ({getattr(error, 'reason', error)})",
             UNREACHABLE)
    except ListingRefused as refused:
        fail(f"refusé : {explain(refused.reply.reason)} ({refused.reply.reason})", REFUSED)


# ---------------------------------------------------------------------- venues


@venue_app.command("accredit")
def accredit(siret: str = typer.Argument(..., help="SIRET (14 chiffres)"),
             name: str = typer.Argument(..., help="nom du lieu"),
             iban: str = typer.Option(..., "--iban", help="IBAN du compte payé"),
             address_code: str = typer.Option(..., "--address-code",
                                              help="code INSEE de la commune du lieu"),
             service: Optional[List[str]] = typer.Option(None, "--service",
                                                         help="un service proposé (répétable)"),
             key: Optional[str] = KEY_OPTION, token: str = TOKEN_OPTION) -> None:
    """Accréditer un lieu : il peut encaisser des chèques."""
    reply = _send(lambda: _client(token).accredit_venue(
        siret, name, iban, address_code, tuple(service or ()), key or key_from("accredit",
                                                                                  siret)))
    event = _event(reply, "provider_accredited")
    typer.echo(f"lieu {siret} accrédité : {event['name']} (commune {event['address_code']})")


def _status_command(change: str, past: str) -> Callable[..., None]:
    def command(siret: str = typer.Argument(..., help="SIRET"),
                reason: str = typer.Option("", "--reason", help="motif"),
                key: Optional[str] = KEY_OPTION, token: str = TOKEN_OPTION) -> None:
        request_key = key or f"{change}-{siret}-{uuid.uuid4().hex[:12]}"
        _send(lambda: _client(token).change_venue_status(siret, change, reason, request_key))
        typer.echo(f"lieu {siret} {past}" + (f" ({reason})" if reason else ""))

    return command


venue_app.command("suspend", help="Suspendre un lieu : il n'encaisse plus rien.")(
    _status_command("suspension", "suspendu"))
venue_app.command("reinstate", help="Réintégrer un lieu suspendu.")(
    _status_command("reinstatement", "réintégré"))
venue_app.command("revoke", help="Révoquer un lieu, définitivement.")(
    _status_command("revocation", "révoqué"))


@venue_app.command("list")
def list_venues(token: str = TOKEN_OPTION) -> None:
    """Les lieux et leur statut."""
    for item in _listing(token, "redeemer", "/v1/operator/venues", "after_siret"):
        typer.echo(f"{item['siret']}  {item['name']} : {STATUS_FR[item['status']]}, commune "
                   f"{item['address_code']}, IBAN {item['iban']}")


# ---------------------------------------------------------------------- tokens


class Kind(str, Enum):
    collectivite = "collectivite"
    venue = "venue"
    operator = "operator"


KIND_ARGUMENT = typer.Argument(..., help="collectivite, venue ou operator")
IDENTIFIER_ARGUMENT = typer.Argument(..., help="SIREN, SIRET ou nom d'opérateur")


def _change_tokens(kind: Kind, identifier: str, action: Any) -> Any:
    import psycopg

    from passnum.core.database import apply_migrations, connect, resolve_database
    from passnum.edge.tokens import TokenRefused, change_tokens, identifier_refusal

    refusal = identifier_refusal(kind.value, identifier) if action != "revoke" else None
    if refusal is not None:  # before any connection: a wrong number needs no database
        fail(f"erreur : {explain(refusal.reason)} : {identifier} ({refusal.reason})", INVALID)
    try:
        url = resolve_database(Settings.from_environment())
        apply_migrations(url)
        with connect(url) as connection:
            return change_tokens(connection, kind.value, identifier, action)
    except TokenRefused as refused:
        fail(f"erreur : {explain(refused.reason)} : {identifier} ({refused.reason})", INVALID)
    except psycopg.OperationalError as error:
        fail(f"erreur : la base de données ne répond pas ({str(error).splitlines()[0]})",
             UNREACHABLE)


@token_app.command("issue")
def issue(kind: Kind = KIND_ARGUMENT, identifier: str = IDENTIFIER_ARGUMENT) -> None:
    """Émettre un jeton (affiché une seule fois ; seule son empreinte est gardée)."""
    change = _change_tokens(kind, identifier, "issue")
    typer.echo(change.token)


@token_app.command("rotate")
def rotate(kind: Kind = KIND_ARGUMENT, identifier: str = IDENTIFIER_ARGUMENT) -> None:
    """Émettre un nouveau jeton et révoquer les anciens, d'un seul coup."""
    change = _change_tokens(kind, identifier, "rotate")
    typer.echo(f"{change.revoked_count} ancien(s) jeton(s) révoqué(s)", err=True)
    typer.echo(change.token)


@token_app.command("revoke")
def revoke(kind: Kind = KIND_ARGUMENT, identifier: str = IDENTIFIER_ARGUMENT) -> None:
    """Révoquer tous les jetons d'un tenant."""
    change = _change_tokens(kind, identifier, "revoke")
    typer.echo(f"{change.revoked_count} jeton(s) révoqué(s) pour {kind.value} {identifier}")


def _issue_for(kind: Kind) -> Callable[[str], None]:
    def command(identifier: str = IDENTIFIER_ARGUMENT) -> None:
        issue(kind, identifier)

    return command


# `passnum token KIND ID`, the form older scripts use: the same as `passnum token issue`.
for _kind in Kind:
    token_app.command(_kind.value, hidden=True)(_issue_for(_kind))
