"""Shared steps of the integration tests: onboard partners through the real issuer, wait
until the redeemer has learned the booklets, read PostgreSQL state."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Sequence

import psycopg

from passnum.client import LedgerClient
from passnum.scenario import accreditations, onboarding
from passnum.seed import Partner, Venue
from passnum.settings import Settings

MARCH = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


def onboard(client: LedgerClient, partners: Sequence[Partner], booklets: int,
            venues: Sequence[Venue], tag: str = "it") -> None:
    commands = [c for partner in partners for c in onboarding(partner, booklets, MARCH, tag=tag)]
    commands += accreditations(venues, MARCH, tag=tag)
    client.send(commands)
    outcomes = client.wait_for([c.request_id for c in commands], timeout_seconds=90)
    rejected = [e for events in outcomes.values() for e in events if "rejected" in e.type]
    assert not rejected, rejected


def wait_for_rows(settings: Settings, query: str, expected: int, timeout_seconds: float = 60
                  ) -> None:
    deadline = time.monotonic() + timeout_seconds
    count = -1
    while time.monotonic() < deadline:
        with psycopg.connect(settings.database_url) as connection:
            count = connection.execute(query).fetchone()[0]
        if count == expected:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{query!r} gave {count}, expected {expected}")


def scalar(settings: Settings, query: str) -> int:
    with psycopg.connect(settings.database_url) as connection:
        return connection.execute(query).fetchone()[0]
