"""`passnum issuer ...`: the issuer's command line.

- `bulk-distribute FILE.csv`: distribute booklets listed in a CSV, through the log;
- `seed`: register the 87 partner collectivités (optionally commit envelopes, issue tokens);
- `forget-beneficiaries SIREN`: destroy a collectivité's beneficiary secret.

Every change goes through the log as commands (`passnum.edge.client.LedgerClient`), decided by
the issuer worker like any other: this tool decides nothing itself.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Sequence, cast

import typer

from passnum.core.settings import Settings

if TYPE_CHECKING:
    import psycopg
    from rich.progress import Progress

    from passnum.edge.client import LedgerClient
    from passnum.ledger.partners import Partner
    from schemas.base import Command, Event
    from services.issuer.bulk import InvalidRow, Summary

issuer_app = typer.Typer(no_args_is_help=True, help="Collectivités, envelopes and booklets")

SEND_CHUNK_COMMANDS = 1000  # one producer flush per chunk: a progress step, a bounded buffer
POLL_SECONDS = 0.5


def _database_url(settings: Settings) -> str:
    from passnum.core.database import apply_migrations, resolve_database

    url = resolve_database(settings)
    apply_migrations(url)
    return url


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), transient=False)


def _send_and_wait(client: LedgerClient, commands: Sequence[Command], timeout_seconds: float,
                   what: str) -> dict[str, list[Event]]:
    """Send in chunks, then follow the outcomes, with a progress bar for each; returns the
    events of every request that got an outcome within the bound."""
    progress = _progress()
    with progress:
        sending = progress.add_task(f"sending {what}", total=len(commands))
        for start in range(0, len(commands), SEND_CHUNK_COMMANDS):
            chunk = commands[start:start + SEND_CHUNK_COMMANDS]
            client.send(chunk)
            progress.advance(sending, len(chunk))
        deciding = progress.add_task("decided", total=len(commands))
        pending = {command.request_id for command in commands}
        deadline = time.monotonic() + timeout_seconds
        while pending and time.monotonic() < deadline:
            client.poll(POLL_SECONDS)
            decided = pending & client.events_by_request.keys()
            pending -= decided
            progress.advance(deciding, len(decided))
    outcomes = client.events_by_request
    return {c.request_id: outcomes[c.request_id] for c in commands if c.request_id in outcomes}


# ------------------------------------------------------------------ bulk-distribute


class _References:
    """(siren, identifier) -> reference, reading each collectivité's secret once. The
    connection opens only if the file holds identifiers at all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection: psycopg.Connection | None = None
        self.secrets: dict[str, bytes] = {}

    def __call__(self, siren: str, identifier: str) -> str:
        from passnum.core.database import connect
        from services.issuer import store
        from services.issuer.beneficiaries import beneficiary_reference

        if siren not in self.secrets:
            if self.connection is None:
                self.connection = connect(_database_url(self.settings))
            self.secrets[siren] = store.beneficiary_secret(self.connection, siren)
        return beneficiary_reference(self.secrets[siren], identifier)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def _print_summary(summary: Summary, invalid: Iterable[InvalidRow]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="bulk distribution")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    table.add_row("distributed", str(summary.distributed))
    for reason, count in sorted(summary.rejected.items()):
        table.add_row(f"rejected: {reason}", str(count))
    table.add_row("invalid rows (not sent)", str(summary.invalid))
    table.add_row("no outcome yet (run again)", str(summary.without_outcome))
    console = Console()
    console.print(table)
    for row in list(invalid)[:20]:
        console.print(f"line {row.line}: {row.problem}")


@issuer_app.command("bulk-distribute")
def bulk_distribute(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="CSV: siren,booklet_id,distributor[,beneficiary_identifier]"),
    timeout_seconds: float = typer.Option(300.0, help="how long to wait for the outcomes"),
) -> None:
    """Distribute the booklets of a CSV file through the log. Running the same file again
    is safe: every row gets its recorded outcome, never a second effect. Exit status 0 when
    every row was distributed, 1 otherwise."""
    from passnum.edge.client import LedgerClient
    from services.issuer.bulk import (
        CsvFormatError,
        file_tag,
        plan_distributions,
        read_rows,
        summarise,
    )

    settings = Settings.from_environment()
    content = file.read_bytes()
    try:
        rows = read_rows(content.decode("utf-8-sig"))  # the BOM spreadsheets write
    except (CsvFormatError, UnicodeDecodeError) as error:
        typer.echo(f"{file}: {error}", err=True)
        raise typer.Exit(code=2) from None
    references = _References(settings)
    try:
        plan = plan_distributions(rows, file_tag(content), datetime.now(timezone.utc),
                                  references)
    finally:
        references.close()
    client = LedgerClient(settings)
    try:
        outcomes = _send_and_wait(client, plan.commands, timeout_seconds, "distributions")
    finally:
        client.close()
    summary = summarise(plan.commands, outcomes, len(plan.invalid))
    _print_summary(summary, plan.invalid)
    raise typer.Exit(code=0 if summary.all_distributed else 1)


# ------------------------------------------------------------------ seed


def _write_tokens(settings: Settings, partners: Sequence[Partner], path: Path) -> None:
    import csv

    from passnum.core.database import connect
    from passnum.edge.http import issue_token

    # Created readable by the operator only, before a token is written into it.
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    with connect(_database_url(settings)) as connection, path.open("w", newline="",
                                                                  encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["siren", "name", "token"])
        for partner in partners:
            writer.writerow([partner.siren, partner.name,
                             issue_token(connection, "collectivite", partner.siren)])


@issuer_app.command("seed")
def seed(
    count: int = typer.Option(87, min=1, max=87, help="how many partner collectivités"),
    envelope_cents: int = typer.Option(0, min=0, help="commit an envelope of this many cents"),
    tokens: Optional[Path] = typer.Option(None, help="write siren,name,token to this CSV"),
    timeout_seconds: float = typer.Option(120.0),
) -> None:
    """Register the programme's partner collectivités (passnum.ledger.partners). Idempotent: a second
    run gets the recorded outcomes (request ids are derived from the SIREN)."""
    from collections import Counter

    from passnum.edge.client import LedgerClient
    from passnum.ledger.partners import collectivites
    from schemas.messages import FundEnvelope, IssuerCommandRejected, RegisterCollectivite

    settings = Settings.from_environment()
    partners = collectivites(count)
    at = datetime.now(timezone.utc)
    commands: list = [RegisterCollectivite(
        request_id=f"seed-register-{p.siren}", occurred_at=at, siren=p.siren, name=p.name,
        default_vouchers_per_booklet=p.vouchers_per_booklet) for p in partners]
    if envelope_cents:
        commands += [FundEnvelope(request_id=f"seed-envelope-{p.siren}-{envelope_cents}",
                                  occurred_at=at, siren=p.siren, committed_cents=envelope_cents)
                     for p in partners]
    client = LedgerClient(settings)
    try:
        outcomes = _send_and_wait(client, commands, timeout_seconds, "registrations")
    finally:
        client.close()
    # the type issuer_command_rejected is that of IssuerCommandRejected only
    counts = Counter(events[0].type if events[0].type != "issuer_command_rejected"
                     else f"rejected: {cast(IssuerCommandRejected, events[0]).reason}"
                     for events in outcomes.values())
    counts["no outcome"] = len(commands) - len(outcomes)
    for outcome, number in sorted(counts.items()):
        typer.echo(f"{outcome}: {number}")
    if tokens is not None:
        _write_tokens(settings, partners, tokens)
        typer.echo(f"tokens written to {tokens}")
    raise typer.Exit(code=0 if not counts["no outcome"] else 1)


# ------------------------------------------------------------------ forget-beneficiaries


@issuer_app.command("forget-beneficiaries")
def forget_beneficiaries(
    siren: str = typer.Argument(..., help="the collectivité's SIREN"),
    requested_by: str = typer.Option(..., help="who asked (recorded with the destruction)"),
    yes: bool = typer.Option(False, "--yes", help="do not ask for confirmation"),
) -> None:
    """Destroy the collectivité's beneficiary secret: the pseudonymous references already in
    the log can never again be linked to a person. Irreversible."""
    from passnum.core.database import connect
    from services.issuer.store import destroy_beneficiary_secret

    if not yes:
        typer.confirm(f"Destroy the beneficiary secret of {siren}? This cannot be undone",
                      abort=True)
    settings = Settings.from_environment()
    with connect(_database_url(settings)) as connection:
        destroyed = destroy_beneficiary_secret(connection, siren, requested_by)
    typer.echo("secret destroyed" if destroyed else "no secret to destroy")
