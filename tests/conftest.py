"""Fixtures for integration tests: the real broker and the real PostgreSQL, started by the
project's own code (the same code the demo and CI use), one isolated ledger per test."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from passnum.core.broker import ManagedBroker, create_topics
from passnum.core.database import apply_migrations, resolve_database
from passnum.core.processes import WorkerProcess
from passnum.core.settings import Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The broker at the configured address (started here if none answers, e.g. when
    pytest runs outside `make test`)."""
    settings = Settings.from_environment().with_overrides(
        run_directory=str(tmp_path_factory.mktemp("run")))
    with ManagedBroker(settings):
        yield settings


@pytest.fixture
def ledger(base_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """An isolated ledger: its own topic prefix, database and web ports."""
    suffix = uuid.uuid4().hex[:10]
    root = base_settings.database_url.rsplit("/", 1)[0]
    settings = base_settings.with_overrides(
        topic_prefix=f"t{suffix}",
        database_url=f"{root}/passnum_t{suffix}",
        web_port_issuer=free_port(),
        web_port_redeemer=free_port(),
        web_port_auditor=free_port(),
        run_directory=str(tmp_path),
        # Checked once per session by test_broker_conformance_gate; each worker start in
        # these tests would otherwise repeat it.
        conformance_required=False,
    )
    create_topics(settings)
    url = resolve_database(settings)
    apply_migrations(url)
    settings = settings.with_overrides(database_url=url)
    yield settings
    _drop_database(url)


def _drop_database(url: str) -> None:
    root, name = url.rsplit("/", 1)
    if "?" in name:  # the embedded server's URL carries its socket as a query string
        return
    with psycopg.connect(f"{root}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def start_worker(ledger: Settings, tmp_path: Path) -> Iterator:
    started: list[WorkerProcess] = []

    def start(service: str, **overrides: object) -> WorkerProcess:
        settings = ledger.with_overrides(**overrides) if overrides else ledger
        worker = WorkerProcess(service, settings, tmp_path / "logs").start()
        started.append(worker)
        worker.wait_until_healthy()
        return worker

    yield start
    for worker in started:
        worker.stop()
