"""`passnum status`: one screen with each worker's readiness and lag, the broker's last
conformance verdict and the last audit verdict; and the bounded reachability checks that
the command line runs before it relies on the broker (exit code 3 when nothing answers).

Each worker is asked at its configured address and port (`/health/ready`); the conformance
verdict is the one the last worker start or `passnum broker check` saved in the run
directory; the audit verdict is the last row of `audit_runs` (written by `passnum audit`).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from passnum.core.settings import Settings

CONFORMANCE_FILE = "conformance.json"
WORKER_PORTS = {"issuer": "web_port_issuer", "redeemer": "web_port_redeemer"}


class InfrastructureUnreachable(Exception):
    """The broker or the database does not answer within the bound: the command line says
    it in one line and exits with code 3."""


def require_broker(settings: Settings) -> None:
    """Raise InfrastructureUnreachable unless one bootstrap server accepts a connection within
    `infrastructure_timeout_seconds` (Kafka clients would retry for 30 s or more)."""
    failures = []
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)),
                                          timeout=settings.infrastructure_timeout_seconds):
                return
        except (OSError, ValueError) as error:
            failures.append(f"{server.strip()}: {error.strerror or error}"
                            if isinstance(error, OSError) else f"{server.strip()}: {error}")
    raise InfrastructureUnreachable(f"no broker answers at {settings.bootstrap_servers} "
                                    f"({'; '.join(failures)})")


def save_conformance(settings: Settings, verdicts: list[Any]) -> None:
    """Keep the verdicts of the last conformance check for `passnum status`."""
    failed = [v.name for v in verdicts if v.required and not v.passed]
    document = {"checked_at": time.time(), "bootstrap_servers": settings.bootstrap_servers,
                "conformant": not failed, "failed_required": failed,
                "verdicts": [{"name": v.name, "required": v.required, "passed": v.passed}
                             for v in verdicts]}
    path = Path(settings.run_directory) / CONFORMANCE_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    except OSError:
        pass  # a status aid only: a read-only run directory must not stop a worker


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    url: str
    state: str  # ready | unready | unreachable
    detail: str
    lag: int | None


def worker_status(settings: Settings, name: str) -> WorkerStatus:
    port = getattr(settings, WORKER_PORTS[name])
    # Readiness takes up to two bounded checks (database, broker), plus a margin.
    timeout_seconds = 2 * settings.health_database_timeout_seconds + 3
    url = f"http://{settings.web_host}:{port}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as error:  # 503: unready, with its reasons
        try:
            body = json.loads(error.read())
        except ValueError:
            return WorkerStatus(name, url, "unreachable", f"HTTP {error.code}", None)
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return WorkerStatus(name, url, "unreachable", str(reason), None)
    failing = [f"{check}: {result['detail']}" for check, result in body.get("checks", {}).items()
               if not result.get("ok")]
    lag = sum(int(value) for value in body.get("lag", {}).values())
    return WorkerStatus(name, url, str(body.get("status")), "; ".join(failing) or "ok", lag)


def conformance_status(settings: Settings) -> str:
    path = Path(settings.run_directory) / CONFORMANCE_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "non vérifiée (passnum broker check)"
    when = _french_datetime(datetime.fromtimestamp(document["checked_at"], timezone.utc))
    if document["conformant"]:
        return f"conforme ({when})"
    return f"NON conforme ({when}) : {', '.join(document['failed_required'])}"


def audit_status(settings: Settings) -> str:
    """The last audit recorded in PostgreSQL, without starting or creating anything."""
    import psycopg

    try:
        with psycopg.connect(settings.database_url,
                             connect_timeout=max(1, int(settings.infrastructure_timeout_seconds))
                             ) as connection:
            row = connection.execute(
                "SELECT finished_at, sound, event_count, jsonb_array_length(findings) "
                "FROM audit_runs ORDER BY run_id DESC LIMIT 1").fetchone()
    except psycopg.errors.UndefinedTable:
        return "aucun audit"
    except psycopg.Error as error:
        return f"base injoignable : {str(error).strip().splitlines()[0][:120]}"
    if row is None:
        return "aucun audit"
    finished_at, sound, events, findings = row
    verdict = "SAIN" if sound else f"NON SAIN ({_french_number(findings)} constat(s))"
    return f"{verdict}, {_french_number(events)} événements, {_french_datetime(finished_at)}"


def _french_number(value: int) -> str:
    from babel.numbers import format_decimal

    return str(format_decimal(value, locale="fr_FR"))


def _french_datetime(moment: datetime) -> str:
    from babel.dates import format_datetime

    return str(format_datetime(moment, "d MMMM y HH:mm", tzinfo=moment.tzinfo, locale="fr_FR"))


def render_status(settings: Settings) -> tuple[Any, bool]:
    """The rich table, and whether everything is ready."""
    from rich.table import Table

    workers = [worker_status(settings, name) for name in WORKER_PORTS]
    table = Table(title="passnum : état", show_lines=False)
    table.add_column("composant")
    table.add_column("état")
    table.add_column("retard (enregistrements)", justify="right")
    table.add_column("détail")
    labels = {"ready": "prêt", "unready": "PAS PRÊT", "unreachable": "injoignable"}
    for status in workers:
        table.add_row(f"worker {status.name}", labels.get(status.state, status.state),
                      "" if status.lag is None else _french_number(status.lag),
                      f"{status.detail} ({status.url})")
    table.add_row("broker", conformance_status(settings), "", settings.bootstrap_servers)
    table.add_row("dernier audit", audit_status(settings), "", "")
    return table, all(status.state == "ready" for status in workers)
