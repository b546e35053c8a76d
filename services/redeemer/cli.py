"""`passnum redeemer ...`: the redeemer's command line: offline scans, closing a settlement
month, exporting its statements. Every write goes through the log like any other client."""

from __future__ import annotations

import time
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path
from typing import NoReturn, Optional

import typer

from passnum.core.settings import Settings

redeemer_app = typer.Typer(no_args_is_help=True, help="Venues, redemptions and settlement")

# Bounded waits of the commands below: overall, and without any new outcome.
OUTCOME_TIMEOUT_SECONDS = 600.0
OUTCOME_STALL_SECONDS = 60.0


def outcome_label(event: object) -> str:
    reason = getattr(event, "reason", None)
    return f"rejected: {reason}" if reason else str(getattr(event, "type", "unknown"))


@redeemer_app.command("redeem-file")
def redeem_file(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="one code per line, optionally followed by an ISO instant"),
    siret: str = typer.Option(..., "--siret", help="the venue that scanned the codes"),
    results: Optional[Path] = typer.Option(None, help="write line, code, outcome as CSV"),
) -> None:
    """Send offline scans through the log and summarise their outcomes."""
    from passnum.edge.client import LedgerClient
    from services.redeemer.offline_scans import parse_scans, scan_commands

    scans, errors = parse_scans(file.read_text(encoding="utf-8").splitlines())
    for error in errors:
        typer.echo(f"line {error.line_number}: {error.reason}: {error.text}", err=True)
    commands = scan_commands(siret, scans, datetime.now(timezone.utc))
    unique = {command.request_id: command for command in commands.values()}
    client = LedgerClient(Settings.from_environment())
    try:
        client.send(unique.values())
        outcomes = _follow_outcomes(client, set(unique))
    finally:
        client.close()
    labels = {line: outcome_label(outcomes[command.request_id][0])
              for line, command in commands.items()}
    _print_summary(Counter(labels.values()), len(errors))
    if results is not None:
        _write_results(results, scans, labels, outcomes, commands)
    if errors:
        raise typer.Exit(code=1)


def _follow_outcomes(client: object, request_ids: set[str]) -> dict:
    """Poll until every request has its outcome, with a progress bar; bounded waits."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    started = last_progress = time.monotonic()
    done = 0
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn()) as progress:
        task = progress.add_task("outcomes", total=len(request_ids))
        while done < len(request_ids):
            now = time.monotonic()
            if now - started > OUTCOME_TIMEOUT_SECONDS or now - last_progress > (
                    OUTCOME_STALL_SECONDS):
                raise TimeoutError(f"{len(request_ids) - done} scans without outcome; sending "
                                   "the file again is safe (same requests)")
            client.poll(0.2)  # type: ignore[attr-defined]
            answered = len(request_ids & client.events_by_request.keys())  # type: ignore[attr-defined]
            if answered > done:
                progress.update(task, completed=answered)
                done, last_progress = answered, time.monotonic()
    return {request_id: client.events_by_request[request_id]  # type: ignore[attr-defined]
            for request_id in request_ids}


def _print_summary(counts: Counter, unreadable_lines: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Offline scans")
    table.add_column("outcome")
    table.add_column("lines", justify="right")
    for label, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(label, str(count))
    if unreadable_lines:
        table.add_row("unreadable line", str(unreadable_lines))
    Console().print(table)


def _write_results(path: Path, scans: list, labels: dict[int, str], outcomes: dict,
                   commands: dict) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as output:
        writer = csv.writer(output)
        writer.writerow(("line", "code", "outcome", "voucher_id", "event_id"))
        for scan in scans:
            event = outcomes[commands[scan.line_number].request_id][0]
            writer.writerow((scan.line_number, scan.code, labels[scan.line_number],
                             getattr(event, "voucher_id", "") or "", event.event_id))


def close_outcome_complete(events: list) -> bool:
    """A close's events travel on several partitions (statements keyed by venue, the
    closing fact by month): complete once the closing fact and all its statements are in,
    or the refusal."""
    if any(event.type == "redeemer_command_rejected" for event in events):
        return True
    closing = [event for event in events if event.type == "settlement_month_closed"]
    statements = [event for event in events if event.type == "settlement_statement_issued"]
    return bool(closing) and len(statements) == closing[0].statement_count


def wait_for_close(client: object, request_id: str,
                   timeout_seconds: float = OUTCOME_TIMEOUT_SECONDS) -> list:
    """The close's events, statements first, once complete (bounded wait)."""
    deadline = time.monotonic() + timeout_seconds
    while not close_outcome_complete(client.events_by_request.get(request_id, [])):  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise TimeoutError(f"close {request_id}: outcome incomplete after "
                               f"{timeout_seconds} s")
        client.poll(0.2)  # type: ignore[attr-defined]
    events = client.events_by_request[request_id]  # type: ignore[attr-defined]
    return sorted(events, key=lambda event: event.type == "settlement_month_closed")


@redeemer_app.command("close-month")
def close_month(
    month: str = typer.Argument(..., help="YYYY-MM, a month that has ended"),
    request_id: Optional[str] = typer.Option(
        None, help="idempotency key (default close-YYYY-MM: closing again is a no-op)"),
) -> None:
    """Close a settlement month through the log and print its statements."""
    from pydantic import ValidationError

    from passnum.edge.client import LedgerClient
    from schemas.messages import CloseSettlementMonth

    try:
        command = CloseSettlementMonth(request_id=request_id or f"close-{month}",
                                       occurred_at=datetime.now(timezone.utc), month=month)
    except ValidationError:
        # The command's own bounds (schemas.base): nothing is sent.
        typer.echo(f"close-month: {month!r} is not a month from 2000-01 to 2100-12 "
                   "(YYYY-MM), or the request id is not 1 to 128 plain characters", err=True)
        raise typer.Exit(code=2) from None
    client = LedgerClient(Settings.from_environment())
    try:
        client.send([command])
        events = wait_for_close(client, command.request_id)
    finally:
        client.close()
    for event in events:
        if event.type == "settlement_statement_issued":
            typer.echo(f"{event.siret}  {event.voucher_count:>7} vouchers  "  # type: ignore[attr-defined]
                       f"{event.face_value_cents:>12} cents")  # type: ignore[attr-defined]
        else:
            typer.echo(f"{outcome_label(event)}: {event.model_dump_json()}")
    if events[-1].type != "settlement_month_closed":
        raise typer.Exit(code=1)


@redeemer_app.command("export-statements")
def export_statements(
    month: str = typer.Option(..., "--month", help="YYYY-MM, a closed month"),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="write the statements as CSV"),
    sepa_path: Optional[Path] = typer.Option(
        None, "--sepa", help="write a pain.001 transfer, paid from the configured debtor "
        "account (PASSNUM_DEBTOR_NAME, PASSNUM_DEBTOR_IBAN, optional PASSNUM_DEBTOR_BIC)"),
    schema: str = typer.Option("pain.001.001.03", "--schema",
                               help="pain.001.001.03 or pain.001.001.09"),
    execution_date: Optional[str] = typer.Option(None, help="YYYY-MM-DD, default today"),
) -> None:
    """Export a closed month's statements (from PostgreSQL) as CSV and SEPA pain.001."""
    from passnum.core.database import connect
    from services.redeemer.statements import (
        SEPA_SCHEMAS,
        InvalidDebtor,
        debtor_account,
        load_statement_lines,
        month_is_closed,
        render_csv,
        render_pain001,
    )

    settings = Settings.from_environment()
    if schema not in SEPA_SCHEMAS:
        _export_refused(f"--schema must be one of {', '.join(SEPA_SCHEMAS)}", 2)
    debtor = None
    if sepa_path is not None:
        # Checked before anything is read or written: a refused export leaves no file.
        try:
            debtor = debtor_account(settings.debtor_name, settings.debtor_iban,
                                    settings.debtor_bic)
        except InvalidDebtor as error:
            _export_refused(f"{error}; nothing written", 2)
    with connect(settings.database_url) as connection:
        if not month_is_closed(connection, month):
            _export_refused(f"{month} is not closed: `passnum redeemer close-month {month}` "
                            "first", 1)
        lines = load_statement_lines(connection, month)
    if csv_path is not None:
        csv_path.write_text(render_csv(lines), encoding="utf-8")
    if debtor is not None and sepa_path is not None and lines:
        when = date.fromisoformat(execution_date) if execution_date else date.today()
        sepa_path.write_bytes(render_pain001(lines, debtor, when, schema))
    total = sum(line.face_value_cents for line in lines)
    typer.echo(f"{month}: {len({line.siret for line in lines})} venues, "
               f"{sum(line.voucher_count for line in lines)} vouchers, {total} cents"
               + ("" if lines else " (nothing to pay: no SEPA file written)"))


def _export_refused(reason: str, exit_code: int) -> NoReturn:
    typer.echo(f"export-statements: {reason}", err=True)
    raise typer.Exit(code=exit_code)
