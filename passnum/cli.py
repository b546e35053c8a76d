"""`passnum` command line: broker, database, workers, audit and the demo."""

from __future__ import annotations

import logging
import os
import sys

import typer

from passnum.settings import Settings

app = typer.Typer(no_args_is_help=True, help="passnum: the pass numérique ledger")
broker_app = typer.Typer(no_args_is_help=True, help="The Kafka-protocol broker (Tansu here)")
database_app = typer.Typer(no_args_is_help=True, help="PostgreSQL")
app.add_typer(broker_app, name="broker")
app.add_typer(database_app, name="db")
# Each service owns its commands; they are mounted here so there is one `passnum` CLI.
from services.auditor.cli import audit_command  # noqa: E402
from services.issuer.cli import issuer_app  # noqa: E402
from services.redeemer.cli import redeemer_app  # noqa: E402

app.command("audit")(audit_command)
app.add_typer(issuer_app, name="issuer")
app.add_typer(redeemer_app, name="redeemer")


def _settings() -> Settings:
    return Settings.from_environment()


@broker_app.command("start")
def broker_start() -> None:
    """Start Tansu in the background on the configured address (reused if one answers)."""
    from passnum.broker import create_topics, start_background_broker

    settings = _settings()
    pid = start_background_broker(settings)
    create_topics(settings)
    typer.echo(f"broker answering at {settings.bootstrap_servers} (pid {pid}); topics created")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the broker that `passnum broker start` started (never one it did not start)."""
    from passnum.broker import stop_background_broker

    stopped = stop_background_broker(_settings())
    typer.echo("broker stopped" if stopped else "no broker of ours was running")


@broker_app.command("create-topics")
def broker_create_topics() -> None:
    """Create every topic of the topology, explicitly, with its partition count."""
    from passnum.broker import create_topics

    create_topics(_settings())
    typer.echo("topics ready")


@broker_app.command("check")
def broker_check() -> None:
    """Run the broker conformance check and print a verdict per property."""
    from passnum.broker import create_topics
    from passnum.conformance import format_verdicts, run_conformance

    settings = _settings()
    create_topics(settings)
    verdicts = run_conformance(settings)
    typer.echo(format_verdicts(verdicts))
    if any(v.required and not v.passed for v in verdicts):
        raise typer.Exit(code=1)


@database_app.command("migrate")
def database_migrate() -> None:
    """Create the database if missing (or start the embedded one) and apply migrations."""
    from passnum.database import apply_migrations, resolve_database

    url = resolve_database(_settings())
    applied = apply_migrations(url)
    typer.echo(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")


@app.command("worker")
def worker(service: str = typer.Argument(..., help="issuer or redeemer")) -> None:
    """Run a worker in the foreground with the faust CLI (same as `faust -A ... worker`)."""
    from passnum.processes import WorkerProcess

    process = WorkerProcess(service, _settings(), log_directory=None)  # type: ignore[arg-type]
    os.execvp(process.command()[0], process.command())


@app.command("token")
def token(kind: str = typer.Argument(..., help="collectivite, venue or operator"),
          identifier: str = typer.Argument(..., help="SIREN, SIRET or operator name")) -> None:
    """Issue an API token for a tenant (printed once; only its SHA-256 is stored)."""
    from passnum.database import apply_migrations, connect, resolve_database
    from passnum.http import issue_token

    url = resolve_database(_settings())
    apply_migrations(url)
    with connect(url) as connection:
        typer.echo(issue_token(connection, kind, identifier))


@app.command("demo")
def demo(collectivites: int = typer.Option(5, help="how many collectivités take part")) -> None:
    """Start broker, database and workers; issue, redeem and audit; stop everything."""
    from passnum.demo import run_demo

    raise typer.Exit(code=run_demo(_settings(), collectivites))


def main() -> None:
    logging.basicConfig(level=os.environ.get("PASSNUM_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    app()


if __name__ == "__main__":
    main()
