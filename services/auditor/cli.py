"""`passnum audit`: the auditor's command line."""

from __future__ import annotations

import typer

from passnum.settings import Settings


def audit_command(json_output: bool = typer.Option(False, "--json", help="print the JSON report")
          ) -> None:
    """Replay every event topic from offset 0 and check the books. Exit 1 when unsound."""
    from passnum.database import apply_migrations, connect, resolve_database
    from services.auditor.replay import replay, write_projection

    settings = Settings.from_environment()
    report = replay(settings)
    url = resolve_database(settings)
    apply_migrations(url)
    with connect(url) as connection:
        write_projection(connection, report)
    if json_output:
        typer.echo(report.to_json())
    else:
        from services.auditor.summary import print_summary

        print_summary(report)
    raise typer.Exit(code=0 if report.sound else 1)
