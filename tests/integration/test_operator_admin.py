"""The operator's administration, end to end on real issuer and redeemer workers (real
broker, real PostgreSQL): onboarding a collectivité and a venue through the operator routes
only, a venue's status deciding its redemptions, the tokens' lifecycle, and the `passnum`
command line as an operator runs it (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import psycopg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from passnum.core.database import connect
from passnum.core.settings import Settings
from passnum.edge.operator_client import OperatorClient, Reply
from passnum.edge.tokens import change_tokens
from passnum.ledger.partners import collectivites, venues
from passnum.tools.cli import app
from tests.integration.helpers import wait_for_rows

pytestmark = pytest.mark.integration

BOOKLET_VALUE_CENTS = 10 * 1000


def call(port: int, method: str, path: str, token: str | None, body: Any = None,
         key: str | None = None) -> Reply:
    """A tenant's request (a collectivité's or a venue's), as in their API tests."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     method=method)
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if key is not None:
        request.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as error:
        return Reply(error.code, json.loads(error.read() or b"{}"))


def passnum(settings: Settings, *arguments: str, token: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    # As an operator runs it: the command line's own log level (warnings and errors).
    environment = {**os.environ, **settings.as_environment(), "PASSNUM_LOG_LEVEL": "WARNING"}
    if token is not None:
        environment["PASSNUM_OPERATOR_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "passnum.tools.cli", *arguments], env=environment,
                          capture_output=True, text=True, timeout=120)


def rows_naming(settings: Settings, siren: str) -> int:
    """Rows of the issuer's tables (and recorded outcomes) that name this SIREN."""
    with psycopg.connect(settings.database_url) as connection:
        return sum(connection.execute(query, (siren,)).fetchone()[0] for query in (
            "SELECT count(*) FROM issuer_envelopes WHERE siren = %s",
            "SELECT count(*) FROM issuer_booklets WHERE siren = %s",
            "SELECT count(*) FROM issuer_beneficiary_secrets WHERE siren = %s"))


def expect(reply: Reply, status: int, reason: str | None = None) -> Reply:
    assert reply.status == status, (reply.status, reply.body)
    if reason is not None:
        assert reply.reason == reason, reply.body
    return reply


def test_onboarding_venue_status_and_tokens_through_the_operator_api(
        ledger, start_worker) -> None:
    start_worker("issuer")
    start_worker("redeemer")
    with connect(ledger.database_url) as connection:
        operator_token = change_tokens(connection, "operator", "alice", "issue").token
    operator = OperatorClient.for_settings(ledger, operator_token)
    partner, venue = collectivites(1)[0], venues(1)[0]

    # A SIREN whose check digit is wrong: refused with its reason, and nothing left behind.
    bad_siren = partner.siren[:-1] + str((int(partner.siren[-1]) + 1) % 10)
    expect(operator.register_collectivite(bad_siren, "Ville fautive", "r-bad"), 422,
           "invalid_siren")
    assert rows_naming(ledger, bad_siren) == 0
    with psycopg.connect(ledger.database_url) as connection:
        assert connection.execute("SELECT count(*) FROM request_outcomes WHERE request_id = "
                                  "'http:operator:alice:r-bad'").fetchone()[0] == 0

    registered = expect(operator.register_collectivite(partner.siren, partner.name, "r-1"), 201)
    assert [e["type"] for e in registered.body["events"]] == ["collectivite_registered"]
    # The same key again: the recorded outcome, not a second registration.
    assert operator.register_collectivite(partner.siren, partner.name, "r-1") == registered
    expect(operator.register_collectivite(partner.siren, "Autre nom", "r-1"), 409,
           "request_id_reused")
    expect(operator.register_collectivite(partner.siren, partner.name, "r-2"), 409,
           "already_registered")

    # Commit, then raise, the envelope.
    funded = expect(operator.fund_envelope(partner.siren, 2 * BOOKLET_VALUE_CENTS, "e-1"), 201)
    assert funded.body["events"][0]["total_committed_cents"] == 2 * BOOKLET_VALUE_CENTS
    raised = expect(operator.fund_envelope(partner.siren, BOOKLET_VALUE_CENTS, "e-2"), 201)
    assert raised.body["events"][0]["total_committed_cents"] == 3 * BOOKLET_VALUE_CENTS

    # The collectivité's token comes from the operator; it orders on its own API, and it
    # cannot call the operator's routes.
    issued = expect(operator.call("issuer", "POST",
                                  f"/v1/operator/collectivites/{partner.siren}/tokens", {},
                                  "t-1"), 201)
    collectivite_token = issued.body["token"]
    expect(operator.call("issuer", "POST", f"/v1/operator/collectivites/{partner.siren}/tokens",
                         {}, "t-1"), 409, "token_already_issued")
    port = ledger.web_port_issuer
    expect(call(port, "POST", "/v1/operator/collectivites", collectivite_token,
                {"siren": partner.siren, "name": "x"}, "k"), 403, "not_an_operator")
    expect(call(port, "POST", "/v1/orders", collectivite_token, {"booklet_count": 2}, "o-1"),
           201)

    received = expect(operator.record_funds_received(
        partner.siren, 2 * BOOKLET_VALUE_CENTS, 800, "VIR-2026-1", "f-1"), 201)
    assert [e["type"] for e in received.body["events"]].count("booklet_activated") == 2
    (listed,) = operator.listing("issuer", "/v1/operator/collectivites", "after_siren")
    assert {key: listed[key] for key in ("siren", "committed_cents", "received_cents",
                                         "ordered_cents", "activated_cents", "booklet_count")
            } == {"siren": partner.siren, "committed_cents": 3 * BOOKLET_VALUE_CENTS,
                  "received_cents": 2 * BOOKLET_VALUE_CENTS,
                  "ordered_cents": 2 * BOOKLET_VALUE_CENTS,
                  "activated_cents": 2 * BOOKLET_VALUE_CENTS, "booklet_count": 2}

    codes = [v["code"] for v in call(port, "GET", f"/v1/booklets/{partner.siren}-0000001",
                                     collectivite_token).body["vouchers"]]
    venue_status_decides_redemptions(ledger, operator, venue, codes)
    token_lifecycle(ledger, operator, partner.siren, collectivite_token)
    operator_command_line(ledger, operator_token)


def venue_status_decides_redemptions(ledger: Settings, operator: OperatorClient, venue: Any,
                                     codes: list[str]) -> None:
    bad_siret = venue.siret[:-1] + str((int(venue.siret[-1]) + 1) % 10)
    expect(operator.accredit_venue(bad_siret, venue.name, venue.iban, venue.address_code, (),
                                   "a-bad"), 422, "invalid_siret")
    spaced_iban = " ".join(venue.iban[i:i + 4] for i in range(0, len(venue.iban), 4))
    expect(operator.accredit_venue(venue.siret, venue.name, spaced_iban, venue.address_code,
                                   ("Atelier", "Accompagnement"), "a-1"), 201)
    expect(operator.call("redeemer", "POST", f"/v1/operator/venues/{bad_siret}/tokens", {},
                         "vt-0"), 422, "invalid_siret")
    never_accredited = venues(2)[1].siret
    expect(operator.call("redeemer", "POST", f"/v1/operator/venues/{never_accredited}/tokens",
                         {}, "vt-00"), 404, "unknown_venue")
    venue_token = expect(operator.call("redeemer", "POST",
                                       f"/v1/operator/venues/{venue.siret}/tokens", {}, "vt-1"),
                         201).body["token"]
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated", 2)
    port = ledger.web_port_redeemer

    def redeem(code: str, key: str) -> Reply:
        return call(port, "POST", "/v1/redemptions", venue_token, {"code": code}, key)

    expect(redeem(codes[0], "v-1"), 201)
    expect(operator.change_venue_status(venue.siret, "suspension", "contrôle", "s-1"), 201)
    expect(redeem(codes[1], "v-2"), 403, "provider_not_accredited")
    expect(operator.change_venue_status(venue.siret, "reinstatement", "", "s-2"), 201)
    expect(redeem(codes[1], "v-3"), 201)
    expect(operator.change_venue_status(venue.siret, "revocation", "fraude", "s-3"), 201)
    expect(redeem(codes[2], "v-4"), 403, "provider_not_accredited")
    expect(operator.change_venue_status(venue.siret, "reinstatement", "", "s-4"), 409,
           "provider_revoked")
    (listed,) = operator.listing("redeemer", "/v1/operator/venues", "after_siret")
    assert (listed["siret"], listed["status"], listed["iban"]) == (
        venue.siret, "revoked", venue.iban)


def token_lifecycle(ledger: Settings, operator: OperatorClient, siren: str, old: str) -> None:
    port = ledger.web_port_issuer
    expect(call(port, "GET", "/v1/booklets", old), 200)  # known (and cached) by the API
    path = f"/v1/operator/collectivites/{siren}/tokens"
    rotated = expect(operator.call("issuer", "POST", path + "/rotation", {}, "t-2"), 201)
    assert rotated.body["revoked_count"] == 1
    new = rotated.body["token"]
    expect(call(port, "GET", "/v1/booklets", old), 401, "unauthenticated")
    expect(call(port, "GET", "/v1/booklets", new), 200)
    revoked = expect(operator.call("issuer", "DELETE", path), 200)
    assert revoked.body["revoked_count"] == 1
    expect(call(port, "GET", "/v1/booklets", new), 401, "unauthenticated")
    # A token for a SIREN no collectivité is registered under, or an invalid one: refused.
    other = collectivites(2)[1].siren
    expect(operator.call("issuer", "POST", f"/v1/operator/collectivites/{other}/tokens", {},
                         "t-3"), 404, "unknown_collectivite")
    expect(operator.call("issuer", "POST", "/v1/operator/collectivites/123456789/tokens", {},
                         "t-4"), 422, "invalid_siren")


def cli(settings: Settings, *arguments: str, token: str | None = None) -> Result:
    """The `passnum` command line in this process (typer's runner: the same app, without a
    second interpreter's start-up), in the settings' environment."""
    environment = settings.as_environment()
    if token is not None:
        environment["PASSNUM_OPERATOR_TOKEN"] = token
    return CliRunner().invoke(app, list(arguments), env=environment)


def test_the_command_line_refuses_tokens_for_tenants_that_cannot_have_one(ledger) -> None:
    # As an operator types it, in its own process (the older form, `passnum token KIND ID`,
    # is `passnum token issue KIND ID`): one line, exit code 2, no token.
    result = passnum(ledger, "token", "collectivite", "123")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("erreur : SIREN invalide (9 chiffres, clé de contrôle fausse) : "
                             "123 (invalid_siren)\n")
    for arguments in (("issue", "collectivite", "123456789"),
                      ("issue", "collectivite", collectivites(1)[0].siren),  # not registered
                      ("venue", "123"), ("issue", "venue", venues(1)[0].siret)):
        refused = cli(ledger, "token", *arguments)
        assert (refused.exit_code, refused.stdout) == (2, ""), arguments
        assert len(refused.stderr.splitlines()) == 1, refused.stderr
        assert refused.stderr.startswith("erreur : ")
    unknown_kind = cli(ledger, "token", "issue", "mairie", "x")
    assert unknown_kind.exit_code == 2 and unknown_kind.exception is not None
    assert "'collectivite', 'venue', 'operator'" in " ".join(unknown_kind.stderr.split())

    issued = cli(ledger, "token", "issue", "operator", "bob")
    assert issued.exit_code == 0 and issued.stdout.startswith("pn_ope_")
    rotated = cli(ledger, "token", "rotate", "operator", "bob")
    assert rotated.exit_code == 0 and "1 ancien(s) jeton(s) révoqué(s)" in rotated.stderr
    revoked = cli(ledger, "token", "revoke", "operator", "bob")
    assert revoked.stdout == "1 jeton(s) révoqué(s) pour operator bob\n"
    with psycopg.connect(ledger.database_url) as connection:
        live = connection.execute("SELECT count(*) FROM api_tokens WHERE tenant_id = 'bob' "
                                  "AND revoked_at IS NULL").fetchone()[0]
    assert live == 0


def operator_command_line(ledger: Settings, token: str) -> None:
    """`passnum operator ...` against the running workers: French lines, exit codes."""
    partner = collectivites(2)[1]
    refused = cli(ledger, "operator", "collectivite", "register", "123456789", "Ville",
                  token=token)
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr == ("refusé : SIREN invalide (9 chiffres, clé de contrôle fausse) "
                              "(invalid_siren)\n")
    done = cli(ledger, "operator", "collectivite", "register", partner.siren, partner.name,
               "--vouchers-per-booklet", "5", token=token)
    assert done.stdout == (f"collectivité {partner.siren} enregistrée : {partner.name} "
                           "(carnets de 5 chèques de 10,00\xa0€)\n"), done.output
    funded = cli(ledger, "operator", "collectivite", "fund", partner.siren, "1 500,50",
                 token=token)
    assert funded.stdout == (f"enveloppe de {partner.siren} : +1\u202f500,50\xa0€, engagé au "
                             "total 1\u202f500,50\xa0€\n"), funded.output
    listed = cli(ledger, "operator", "collectivite", "list", token=token).stdout.splitlines()
    assert len(listed) == 2
    assert f"{partner.siren}  {partner.name} : engagé 1\u202f500,50\xa0€, reçu 0,00\xa0€, " \
        "commandé 0,00\xa0€, activé 0,00\xa0€, 0 carnet(s)" in listed
    first, second = venues(2)
    spaced_iban = " ".join(second.iban[i:i + 4] for i in range(0, len(second.iban), 4))
    accredited = cli(ledger, "operator", "venue", "accredit", second.siret, second.name,
                     "--iban", spaced_iban, "--address-code", second.address_code,
                     "--service", "Atelier", token=token)
    assert accredited.stdout == (f"lieu {second.siret} accrédité : {second.name} (commune "
                                 f"{second.address_code})\n"), accredited.output
    suspended = cli(ledger, "operator", "venue", "suspend", second.siret, "--reason",
                    "contrôle", token=token)
    assert suspended.stdout == f"lieu {second.siret} suspendu (contrôle)\n", suspended.output
    final = cli(ledger, "operator", "venue", "reinstate", first.siret, token=token)
    assert (final.exit_code, final.stderr) == (1, "refusé : ce lieu est révoqué : plus aucun "
                                               "changement possible (provider_revoked)\n")
    venues_listed = cli(ledger, "operator", "venue", "list", token=token).stdout.splitlines()
    assert venues_listed == sorted([
        f"{first.siret}  {first.name} : révoqué, commune {first.address_code}, IBAN "
        f"{first.iban}",
        f"{second.siret}  {second.name} : suspendu, commune {second.address_code}, IBAN "
        f"{second.iban}"])
    unauthenticated = cli(ledger, "operator", "venue", "list", token="wrong")
    assert unauthenticated.exit_code == 1
    assert "(unauthenticated)" in unauthenticated.stderr


def test_rotations_at_the_same_instant_leave_one_live_token(ledger) -> None:
    """The per-tenant lock: without it, two rotations that both find no live token both
    insert one."""
    import threading

    rotations = 8
    barrier = threading.Barrier(rotations)
    tokens: list[str | None] = []

    def rotate() -> None:
        with connect(ledger.database_url) as connection:
            barrier.wait()
            tokens.append(change_tokens(connection, "operator", "zoe", "rotate").token)

    threads = [threading.Thread(target=rotate) for _ in range(rotations)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with psycopg.connect(ledger.database_url) as connection:
        live = connection.execute("SELECT count(*) FROM api_tokens WHERE tenant_id = 'zoe' "
                                  "AND revoked_at IS NULL").fetchone()[0]
    assert (len(tokens), live) == (rotations, 1)
