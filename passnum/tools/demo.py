"""The demo: the whole ledger on embedded defaults, from nothing to an audit verdict.

Starts (or reuses) the broker, resolves the database (embedded if no server answers),
starts the issuer and the redeemer as separate faust worker processes, onboards its cast
through the operator's HTTP API (registrations, envelopes, tokens, orders on the
collectivités' API, funds received, venue accreditations), runs a scenario for several
collectivités, replays the log with the auditor, prints the verdict, and stops what it
started.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

from passnum.core.broker import ManagedBroker, create_topics
from passnum.core.database import apply_migrations, connect, resolve_database
from passnum.core.processes import WorkerProcess
from passnum.core.settings import Settings
from passnum.edge.client import LedgerClient
from passnum.edge.operator_client import OperatorClient
from passnum.edge.problems import title_of
from passnum.edge.tokens import change_tokens
from passnum.ledger.partners import collectivites, venues
from passnum.ledger.voucher_codes import with_recomputed_check
from passnum.tools.scenario import booklet_codes, onboard_through_operator_api
from schemas.base import Event
from schemas.messages import BlockBooklet, RedeemVoucher
from services.auditor.replay import replay, write_projection
from services.auditor.report import AuditReport
from services.auditor.summary import print_summary

BOOKLETS_PER_COLLECTIVITE = 3
FUNDED_BOOKLETS = 2  # the third stays inactive: activation only when funded
REDEMPTIONS_PER_COLLECTIVITE = 6
VENUE_COUNT = 3


def demo_database_name(configured_url: str, run_id: str) -> str:
    """A database of the demo's own for this run, named after the configured one (at most
    63 bytes, PostgreSQL's limit): the demo creates it and never drops a database, so
    whatever the configured server holds is left alone."""
    name = configured_url.split("?")[0].rsplit("/", 1)[1] or "passnum"
    suffix = f"_demo_{run_id}"
    return name[:63 - len(suffix)] + suffix


def _fresh_database(settings: Settings) -> str:
    """Create the run's database (refused if it exists: it would not be the demo's). The
    server is the configured one, or the embedded one when none answers."""
    name = settings.database_url.split("?")[0].rsplit("/", 1)[1]
    server = resolve_database(settings.with_overrides(
        database_url=_with_database(settings.database_url, "postgres")))
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server, name)
    apply_migrations(url)
    return url


def _with_database(url: str, name: str) -> str:
    root, _, query = url.partition("?")
    return root.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")


def _scenario_commands(settings: Settings, count: int, at: datetime) -> tuple[list, list]:
    """What follows the onboarding: blocks (a lost booklet) and the venues' scans."""
    partners, venue_list = collectivites(count), venues(VENUE_COUNT)
    random_source = random.Random(1)
    key = settings.voucher_code_key.encode()
    redemptions: list = []
    for partner in partners:
        codes = booklet_codes(key, partner, range(1, BOOKLETS_PER_COLLECTIVITE + 1))
        for index, code in enumerate(codes[:REDEMPTIONS_PER_COLLECTIVITE]):
            redemptions.append(RedeemVoucher(
                request_id=f"demo-redeem-{partner.siren}-{index}", occurred_at=at, code=code,
                siret=random_source.choice(venue_list).siret))
        other_venue = venue_list[-1].siret
        redemptions += [
            RedeemVoucher(request_id=f"demo-again-{partner.siren}", occurred_at=at,
                          code=codes[0], siret=other_venue),  # already redeemed
            RedeemVoucher(request_id=f"demo-unfunded-{partner.siren}", occurred_at=at,
                          code=codes[-1], siret=other_venue),  # booklet 3 is not funded
            RedeemVoucher(request_id=f"demo-forged-{partner.siren}", occurred_at=at,
                          code=with_recomputed_check(codes[1][:-6] + "ZZZZ-0"),
                          siret=other_venue),
        ]
        redemptions.append(redemptions[-4])  # a client retry: same request_id again
    block = [BlockBooklet(request_id=f"demo-block-{p.siren}", occurred_at=at, siren=p.siren,
                          booklet_id=f"{p.siren}-0000002", reason="lost") for p in partners]
    return block, redemptions


def _onboard(console: Console, settings: Settings, count: int) -> None:
    """The cast onboarded through the operator's HTTP API, with an operator token issued
    the way an administrator issues one (`passnum token issue operator demo`)."""
    with connect(settings.database_url) as connection:
        token = change_tokens(connection, "operator", "demo", "issue").token
    assert token is not None
    client = OperatorClient.for_settings(settings, token)
    with console.status("onboarding through the operator API: registering, funding, "
                        "ordering, paying, accrediting..."):
        onboard_through_operator_api(client, collectivites(count), venues(VENUE_COUNT),
                                     BOOKLETS_PER_COLLECTIVITE, FUNDED_BOOKLETS)
    console.print(f"onboarded through the operator API: {count} collectivités, "
                  f"{VENUE_COUNT} venues")


def outcome_label(event: Event) -> str:
    """A scan's answer in French, as the audit summary after it speaks: a refusal by the
    title the API gives it (`passnum.edge.problems`), its code after it for the logs."""
    if event.type == "voucher_redeemed":
        return "Chèque encaissé"
    reason = getattr(event, "reason", None) or event.type
    return f"Refusé : {title_of(reason)} ({reason})"


def _outcome_table(outcomes: dict) -> Table:
    table = Table(title="Passages en caisse de la démonstration")
    table.add_column("Réponse")
    table.add_column("Nombre", justify="right")
    counts = Counter(outcome_label(events[0]) for events in outcomes.values())
    for outcome, count in sorted(counts.items()):
        table.add_row(outcome, str(count))
    return table


def run_demo(settings: Settings, collectivite_count: int) -> int:
    console = Console()
    run_id = time.strftime("%Y%m%d%H%M%S")
    settings = settings.with_overrides(topic_prefix=f"demo-{run_id}")
    settings = settings.with_overrides(database_url=_with_database(
        settings.database_url, demo_database_name(settings.database_url, run_id)))
    with ManagedBroker(settings) as broker:
        console.print(f"broker: {settings.bootstrap_servers} "
                      f"({'started' if broker.started_here else 'reused'})")
        create_topics(settings)
        settings = settings.with_overrides(database_url=_fresh_database(settings))
        console.print(f"database: {settings.database_url}")
        logs = Path(settings.run_directory) / "demo-logs" / run_id
        workers = [WorkerProcess(name, settings, logs) for name in ("issuer", "redeemer")]
        try:
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.wait_until_healthy(timeout_seconds=120)
            console.print(f"workers: issuer and redeemer running (logs in {logs})")
            return _play(console, settings, collectivite_count)
        finally:
            for worker in workers:
                worker.stop()


def _wait_until_redeemer_knows(settings: Settings, expected: int, timeout_seconds: float = 60
                               ) -> None:
    """The redeemer learns booklet facts from the issuer's stream, asynchronously."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with psycopg.connect(settings.database_url) as connection:
            row = connection.execute(
                "SELECT count(*) FROM redeemer_booklets WHERE activated").fetchone()
        assert row is not None  # count(*) always answers one row
        known = row[0]
        if known >= expected:
            return
        time.sleep(0.2)
    raise TimeoutError("the redeemer did not learn the activated booklets in time")


def _play(console: Console, settings: Settings, collectivite_count: int) -> int:
    _onboard(console, settings, collectivite_count)
    # After the onboarding: a scan is judged at its own instant, once the booklets are paid.
    at = datetime.now(timezone.utc)
    setup, redemptions = _scenario_commands(settings, collectivite_count, at)
    client = LedgerClient(settings)
    with console.status("blocking a lost booklet per collectivité..."):
        client.send(setup)
        client.wait_for([c.request_id for c in setup], timeout_seconds=120)
    _wait_until_redeemer_knows(settings, expected=collectivite_count * FUNDED_BOOKLETS)
    with console.status("redeeming at the venues..."):
        client.send(redemptions)
        outcomes = client.wait_for({c.request_id for c in redemptions}, timeout_seconds=120)
    console.print(_outcome_table(outcomes))
    with console.status("auditing: replaying every event from offset 0..."):
        report = replay(settings)
        with connect(settings.database_url) as connection:
            write_projection(connection, report)
    print_summary(report, console)
    client.close()
    _write_documents(console, settings, report)
    return 0 if report.sound else 1


def _write_documents(console: Console, settings: Settings, report: AuditReport) -> None:
    """What the people of the programme get: the first collectivité's booklets to print,
    the audit report a finance officer reconciles (HTML and PDF), and the venues' counter
    page. A document that cannot be made (no chromium for the PDF) is said, not fatal."""
    from services.auditor.html_report import render, write_html
    from services.auditor.pdf import print_html_to_pdf
    from services.issuer.booklets_cli import print_to_file

    output = Path(settings.run_directory) / "demo-output" / settings.topic_prefix
    output.mkdir(parents=True, exist_ok=True)
    siren = collectivites(1)[0].siren
    with connect(settings.database_url) as connection:
        row = connection.execute("SELECT min(order_id) FROM issuer_booklets "
                                 "WHERE booklet_id LIKE %s", (f"{siren}-%",)).fetchone()
    assert row is not None  # min() always answers one row
    documents = [("booklets", output / f"carnets-{siren}.pdf", lambda path: print_to_file(
        settings, row[0], path)),
                 ("audit report (HTML)", output / "rapport-audit.html",
                  lambda path: write_html(report, path)),
                 ("audit report (PDF)", output / "rapport-audit.pdf",
                  lambda path: print_html_to_pdf(render(report), path, settings))]
    for label, path, make in documents:
        try:
            make(path)
            console.print(f"{label}: {path}")
        except Exception as error:  # noqa: BLE001 - the demo goes on; the reason is shown
            console.print(f"{label}: not written ({error})")
    console.print(f"venues' counter page (while the workers run): "
                  f"http://{settings.web_host}:{settings.web_port_redeemer}/guichet/")
