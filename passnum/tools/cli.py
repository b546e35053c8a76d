"""`passnum` command line: broker, database, workers, audit and the demo.

Exit codes (the README's command line section lists them too):
    0  done; for `passnum audit`, the books are sound
    1  `passnum audit`: the books are not sound (findings); `passnum broker check`: the
       broker fails a required property
    2  bad usage: an unknown command, option or choice, or a bad PASSNUM_ setting
    3  infrastructure unreachable: no broker or no database answers within
       `infrastructure_timeout_seconds` (one line, no traceback)
"""

from __future__ import annotations

import enum
import os
import sys

import typer

from passnum.core.settings import Settings, SettingsError

EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

app = typer.Typer(no_args_is_help=True, help="passnum: the pass numérique ledger")
broker_app = typer.Typer(no_args_is_help=True, help="The Kafka-protocol broker (Tansu here)")
database_app = typer.Typer(no_args_is_help=True, help="PostgreSQL")
app.add_typer(broker_app, name="broker")
app.add_typer(database_app, name="db")
# Each service owns its commands; they are mounted here so there is one `passnum` CLI.
from services.auditor.cli import audit_command  # noqa: E402
from services.issuer.booklets_cli import booklets_app  # noqa: E402
from services.issuer.cli import issuer_app  # noqa: E402
from services.redeemer.cli import redeemer_app  # noqa: E402

app.command("audit")(audit_command)
app.add_typer(issuer_app, name="issuer")
app.add_typer(booklets_app, name="booklets")
app.add_typer(redeemer_app, name="redeemer")
# The operator's administration (over HTTP) and the API tokens: passnum/tools/operator_cli.py.
from passnum.tools.operator_cli import operator_app, token_app  # noqa: E402

app.add_typer(operator_app, name="operator")
app.add_typer(token_app, name="token")
# The operator's tools on the log itself: passnum/tools/log_cli.py.
from passnum.tools.log_cli import log_app  # noqa: E402

app.add_typer(log_app, name="log")
stack_app = typer.Typer(no_args_is_help=True,
                        help="A local stack kept between runs: broker, workers, auditor")
app.add_typer(stack_app, name="stack")


@stack_app.command("up")
def stack_up() -> None:
    """Start the broker (restoring the log kept by `down`), the workers and the auditor
    follower in the background; logs and pids in <run directory>/stack/."""
    from passnum.tools import stack

    settings = _settings()
    for line in stack.up(settings):
        typer.echo(line)
    if not stack.wait_until_ready(settings):
        typer.echo("les workers ne sont pas prêts : voir <run directory>/stack/*.log", err=True)
        raise typer.Exit(EXIT_UNREACHABLE)
    typer.echo("pile prête")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the stack, keeping the whole log in <run directory>/stack/log.tar first."""
    from passnum.tools import stack

    for line in stack.down(_settings()):
        typer.echo(line)


@stack_app.command("status")
def stack_status() -> None:
    """Which processes of the stack run, and whether a log is kept."""
    from passnum.tools import stack

    rows = stack.status(_settings())
    for name, state in rows:
        typer.echo(f"{name:<18} {state}")
    if any(state == "arrêté" for _, state in rows):
        raise typer.Exit(EXIT_UNREACHABLE)


def _settings() -> Settings:
    return Settings.from_environment()


@broker_app.command("start")
def broker_start() -> None:
    """Start Tansu in the background on the configured address (reused if one answers)."""
    from passnum.core.broker import create_topics, start_background_broker

    settings = _settings()
    pid = start_background_broker(settings)
    create_topics(settings)
    typer.echo(f"broker answering at {settings.bootstrap_servers} (pid {pid}); topics created")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the broker that `passnum broker start` started (never one it did not start)."""
    from passnum.core.broker import stop_background_broker

    stopped = stop_background_broker(_settings())
    typer.echo("broker stopped" if stopped else "no broker of ours was running")


@broker_app.command("create-topics")
def broker_create_topics() -> None:
    """Create every topic of the topology, explicitly, with its partition count."""
    from passnum.core.broker import create_topics

    create_topics(_settings())
    typer.echo("topics ready")


@broker_app.command("check")
def broker_check() -> None:
    """Run the broker conformance check and print a verdict per property."""
    from passnum.core.broker import create_topics
    from passnum.core.conformance import format_verdicts, run_conformance
    from passnum.core.status import require_broker, save_conformance

    settings = _settings()
    require_broker(settings)
    create_topics(settings)
    verdicts = run_conformance(settings)
    save_conformance(settings, verdicts)
    typer.echo(format_verdicts(verdicts))
    if any(v.required and not v.passed for v in verdicts):
        raise typer.Exit(code=1)


@database_app.command("migrate")
def database_migrate() -> None:
    """Create the database if missing (or start the embedded one) and apply migrations."""
    from passnum.core.database import apply_migrations, resolve_database

    url = resolve_database(_settings())
    applied = apply_migrations(url)
    typer.echo(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")


class WorkerKind(str, enum.Enum):
    issuer = "issuer"
    redeemer = "redeemer"


@app.command("worker")
def worker(service: WorkerKind = typer.Argument(..., help="issuer or redeemer"),
           web_host: str = typer.Option(None, help="address to listen on (PASSNUM_WEB_HOST)")
           ) -> None:
    """Run a worker in the foreground with the faust CLI (same as `faust -A ... worker`)."""
    from passnum.core.processes import WorkerProcess

    settings = _settings()
    if web_host:
        settings = settings.with_overrides(web_host=web_host)
        os.environ["PASSNUM_WEB_HOST"] = web_host  # what the worker's settings will read
    process = WorkerProcess(service.value, settings, log_directory=None)  # type: ignore[arg-type]
    os.execvp(process.command()[0], process.command())


@app.command("status")
def status() -> None:
    """One screen: each worker's readiness and lag, the broker's conformance, the last audit.
    Exit 0 when every worker is ready, 3 when one is not."""
    from rich.console import Console

    from passnum.core.status import render_status

    table, all_ready = render_status(_settings())
    Console().print(table)
    if not all_ready:
        raise typer.Exit(code=EXIT_UNREACHABLE)


@app.command("demo")
def demo(collectivites: int = typer.Option(5, help="how many collectivités take part")) -> None:
    """Start broker, database and workers; issue, redeem and audit; stop everything."""
    from passnum.tools.demo import run_demo

    raise typer.Exit(code=run_demo(_settings(), collectivites))


def main() -> None:
    from passnum.core.logging_setup import configure_logging, one_line_error
    from passnum.core.status import InfrastructureUnreachable

    try:
        settings = Settings.from_environment()
    except SettingsError as error:
        one_line_error(str(error))
        sys.exit(EXIT_USAGE)
    # A command line says little: warnings and errors unless PASSNUM_LOG_LEVEL asks more.
    configure_logging(settings.with_overrides(
        log_level=os.environ.get("PASSNUM_LOG_LEVEL", "WARNING")))
    unreachable = unreachable_errors()
    try:
        app()
    except InfrastructureUnreachable as error:
        one_line_error(str(error))
        sys.exit(EXIT_UNREACHABLE)
    except unreachable as error:
        one_line_error(f"infrastructure unreachable: {type(error).__name__}: "
                       f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}")
        sys.exit(EXIT_UNREACHABLE)


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the broker or the database did not answer."""
    import psycopg
    from aiokafka.errors import KafkaConnectionError
    from kafka.errors import KafkaConnectionError as KafkaPythonConnectionError
    from kafka.errors import KafkaTimeoutError

    return (psycopg.OperationalError, KafkaConnectionError, KafkaPythonConnectionError,
            KafkaTimeoutError, ConnectionError)


if __name__ == "__main__":
    main()
