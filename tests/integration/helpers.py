"""Shared steps of the integration tests: onboard partners through the real issuer, wait
until the redeemer has learned the booklets, read PostgreSQL state."""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import psycopg

from passnum.core.broker import ManagedBroker, create_topics
from passnum.core.processes import WorkerProcess
from passnum.core.settings import Settings
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import Partner, Venue
from passnum.tools.scenario import accreditations, onboarding

MARCH = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


def onboard(client: LedgerClient, partners: Sequence[Partner], booklets: int,
            venues: Sequence[Venue], tag: str = "it") -> None:
    commands = [c for partner in partners for c in onboarding(partner, booklets, MARCH, tag=tag)]
    commands += accreditations(venues, MARCH, tag=tag)
    client.send(commands)
    outcomes = client.wait_for([c.request_id for c in commands], timeout_seconds=90)
    rejected = [e for events in outcomes.values() for e in events if "rejected" in e.type]
    assert not rejected, rejected


def wait_until(condition: Callable[[], Any], what: str, timeout_seconds: float = 60.0,
               interval_seconds: float = 0.1) -> Any:
    """Poll `condition` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_seconds)
    raise AssertionError(f"never true within {timeout_seconds} s: {what}")


def wait_for_rows(settings: Settings, query: str, expected: int, timeout_seconds: float = 60
                  ) -> None:
    """Until `query` (a count) gives `expected`."""
    wait_until(lambda: scalar(settings, query) == expected, f"{query!r} gives {expected}",
               timeout_seconds, 0.2)


def scalar(settings: Settings, query: str) -> int:
    with psycopg.connect(settings.database_url) as connection:
        return connection.execute(query).fetchone()[0]


@contextmanager
def private_broker(ledger: Settings, tmp_path: Path, services: Sequence[str] = ("issuer",),
                   **overrides: Any) -> Iterator[tuple[Settings, ManagedBroker,
                                                       list[WorkerProcess]]]:
    """A broker of the test's own, which it may stop, empty or restart (the shared one must
    not be), with its topics and `services` started and ready; all stopped at the end."""
    from tests.conftest import free_port

    settings = ledger.with_overrides(bootstrap_servers=f"127.0.0.1:{free_port()}",
                                     topic_prefix=f"p{uuid.uuid4().hex[:8]}", **overrides)
    broker = ManagedBroker(settings).start()
    assert broker.started_here
    workers = [WorkerProcess(name, settings, tmp_path / "logs") for name in services]
    try:
        create_topics(settings)
        for worker in workers:
            worker.start().wait_until_healthy()
        yield settings, broker, workers
    finally:
        for worker in workers:
            worker.stop()
        broker.stop()
