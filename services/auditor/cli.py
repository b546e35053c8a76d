"""`passnum audit`: the auditor's command line.

    passnum audit [--json] [--until ISO] [--collectivite SIREN] [--follow] [--html FILE]
                  [--pdf FILE] [--lang fr|en] [--csv DIRECTORY] [--no-database]
                  [--trusted-key HEX ...]
    passnum audit keygen --key auditor.pem
    passnum audit checkpoint --month 2026-03 --key auditor.pem
    passnum audit year-end --year 2026 [--json]

`passnum/tools/cli.py` mounts one command named `audit`, so the actions are its first argument.
Exit status: 0 when the books are sound, 1 when there are findings, 2 on a usage error,
3 when something it needs does not answer: the broker, the database, the PDF printer.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from passnum.core.settings import Settings
from schemas.base import LEDGER_MONTH_PATTERN

if TYPE_CHECKING:
    from services.auditor.replay import ReplayOptions

# Trusted checkpoint keys (hex Ed25519 public keys, comma separated), besides --trusted-key.
TRUSTED_KEYS_VARIABLE = "PASSNUM_AUDITOR_TRUSTED_KEYS"
ACTIONS = ("replay", "keygen", "checkpoint", "year-end")
REPORT_LANGUAGES = ("fr", "en")  # as services.auditor.html_report.LANGUAGES


def audit_command(
    action: str = typer.Argument("replay", help="replay | keygen | checkpoint | year-end"),
    json_output: bool = typer.Option(False, "--json", help="print the JSON report"),
    until: Optional[str] = typer.Option(None, help="books as of this ISO date or instant"),
    collectivite: Optional[str] = typer.Option(None, help="one collectivité's books (SIREN)"),
    follow: bool = typer.Option(False, "--follow", help="keep tailing and re-checking"),
    html: Optional[Path] = typer.Option(None, help="write the HTML report there"),
    pdf: Optional[Path] = typer.Option(None, help="write the report as PDF there (chromium)"),
    lang: str = typer.Option("fr", "--lang", help="language of the HTML/PDF report: fr | en"),
    csv: Optional[Path] = typer.Option(None, help="write CSV exports in this directory"),
    no_database: bool = typer.Option(False, "--no-database",
                                     help="no read models, no live agreement"),
    trusted_key: list[str] = typer.Option([], help="trusted checkpoint public key (hex)"),
    month: Optional[str] = typer.Option(None, help="checkpoint: the month, YYYY-MM"),
    key: Optional[Path] = typer.Option(None, help="keygen/checkpoint: Ed25519 PEM file"),
    year: Optional[int] = typer.Option(None, help="year-end: the closed year"),
    progress: bool = typer.Option(True, help="progress bar on the terminal"),
    interval: float = typer.Option(5.0, help="--follow: seconds between two re-checks"),
) -> None:
    """Replay every event topic from offset 0 and check the books. Exit 1 when unsound."""
    settings = Settings.from_environment()
    if action not in ACTIONS:
        raise typer.BadParameter(f"action must be one of {', '.join(ACTIONS)}")
    if lang not in REPORT_LANGUAGES:
        raise typer.BadParameter(f"--lang must be one of {', '.join(REPORT_LANGUAGES)}")
    if action == "keygen":
        _keygen(key)
        return
    options = _options(until, collectivite, trusted_key, settings)
    from passnum.core.status import require_broker

    # Within a few seconds, one line and exit 3 when no broker answers (passnum/tools/cli.py).
    require_broker(settings)
    if action == "checkpoint":
        raise typer.Exit(code=_checkpoint(settings, options, month, key))
    if action == "year-end":
        raise typer.Exit(code=_year_end(settings, options, year, json_output))
    if follow:
        from services.auditor.follow import follow_forever

        follow_forever(settings, options, interval_seconds=interval,
                       use_database=not no_database)
        return
    outputs = Outputs(json_output, html, csv, not no_database, progress)
    outputs.pdf, outputs.language = pdf, lang
    raise typer.Exit(code=run_once(settings, options, outputs))


def _options(until: str | None, collectivite: str | None, trusted_key: list[str],
             settings: Settings) -> ReplayOptions:
    from passnum.core.head_signatures import trusted_head_keys
    from services.auditor.replay import ReplayOptions

    keys = set(trusted_key) | {k.strip() for k in os.environ.get(TRUSTED_KEYS_VARIABLE,
                                                                "").split(",") if k.strip()}
    return ReplayOptions(until=parse_until(until) if until else None,
                         collectivite=collectivite, trusted_keys=frozenset(keys),
                         head_keys=trusted_head_keys(settings))


def parse_until(text: str) -> datetime:
    """A date means the end of that day (UTC); an instant without offset is UTC."""
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text + "T23:59:59.999999+00:00")
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise typer.BadParameter(f"--until {text!r}: {error}") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Outputs:
    def __init__(self, json_output: bool, html: Path | None, csv: Path | None,
                 use_database: bool, progress: bool) -> None:
        self.json_output, self.html, self.csv = json_output, html, csv
        self.use_database, self.progress = use_database, progress and not json_output
        self.pdf: Path | None = None
        self.language = "fr"


def run_once(settings: Settings, options: ReplayOptions, outputs: Outputs) -> int:
    from services.auditor.live import agree_with_database
    from services.auditor.progress import replay_with_progress
    from services.auditor.summary import print_summary

    replayer, report, seconds = replay_with_progress(settings, options, outputs.progress)
    if outputs.use_database:
        report = agree_with_database(settings, replayer, report)
    if outputs.html is not None:
        from services.auditor.html_report import write_html

        write_html(report, outputs.html, outputs.language)
    if outputs.pdf is not None:
        _write_pdf(settings, report, outputs)
    if outputs.csv is not None:
        from services.auditor.exports import write_csv

        write_csv(report, outputs.csv)
    if outputs.json_output:
        typer.echo(report.to_json())
    else:
        print_summary(report, language=outputs.language)
        rate = replayer.records_read / seconds if seconds else 0.0
        typer.echo(f"replayed {replayer.records_read} records in {seconds:.1f} s "
                   f"({rate:,.0f} records/s)")
    return 0 if report.sound else 1


def _write_pdf(settings: Settings, report: object, outputs: Outputs) -> None:
    from services.auditor.html_report import render
    from services.auditor.pdf import PdfError, print_html_to_pdf

    try:
        print_html_to_pdf(render(report, outputs.language), outputs.pdf,  # type: ignore[arg-type]
                          settings)
    except PdfError as error:
        typer.echo(f"PDF not written: {error}", err=True)
        raise typer.Exit(code=3) from error


def _keygen(key: Path | None) -> None:
    from services.auditor.checkpoint import generate_key

    if key is None:
        raise typer.BadParameter("keygen needs --key FILE")
    typer.echo(f"private key written to {key}; public key: {generate_key(key)}")


def _checkpoint(settings: Settings, options: object, month: str | None,
                key: Path | None) -> int:
    """Sign the prefixes `month` covers now: streams with an event dated after it are cut
    before it, quiet ones at their head (services/auditor/checkpoint.py)."""
    from services.auditor.checkpoint import load_private_key, month_root, sign
    from services.auditor.publish import publish_auditor_events
    from services.auditor.replay import Replayer

    if month is None or key is None:
        raise typer.BadParameter("checkpoint needs --month YYYY-MM and --key FILE")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    if not re.fullmatch(LEDGER_MONTH_PATTERN, month):
        raise typer.BadParameter(f"--month {month!r}: YYYY-MM")
    if month >= now.strftime("%Y-%m"):
        # A month not over yet: its checkpoint would cover only part of it.
        typer.echo(f"refused: {month} is not over yet", err=True)
        return 2
    replayer = Replayer(settings, options)  # type: ignore[arg-type]
    replayer.read()
    root = month_root(replayer.chains.streams, month)
    event = sign(load_private_key(key), root, now)
    publish_auditor_events(settings, [event])
    typer.echo(f"checkpoint {month}: root {root.root_hash} over {root.event_count} events in "
               f"{len(root.lines)} streams ({len(root.quiet_streams)} covered to their head), "
               f"event {event.event_id}")
    return 0


def _year_end(settings: Settings, options: object, year: int | None, json_output: bool) -> int:
    from services.auditor.replay import Replayer
    from services.auditor.year_end import print_year_end, year_end_statements

    if year is None:
        raise typer.BadParameter("year-end needs --year")
    replayer = Replayer(settings, options)  # type: ignore[arg-type]
    replayer.read()
    report = replayer.judge()
    statements = year_end_statements(report, year)
    if json_output:
        import json

        typer.echo(json.dumps(statements, sort_keys=True, indent=2))
    else:
        print_year_end(statements)
    return 0 if report.sound else 1
