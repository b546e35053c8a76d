"""The demo never drops a database it did not create: it makes a database of its own for
each run, named after the configured one, and refuses one that already exists."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from passnum.tools.demo import _fresh_database, demo_database_name

pytestmark = pytest.mark.integration


def test_the_demo_names_its_own_database() -> None:
    assert demo_database_name("postgresql://p@h:5432/ledger", "20261207") == (
        "ledger_demo_20261207")
    assert len(demo_database_name("postgresql://p@h/" + "x" * 80, "20261207")) == 63


def test_an_existing_database_is_refused_and_kept(ledger) -> None:
    root = ledger.database_url.rsplit("/", 1)[0]
    name = f"passnum_keep_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{root}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"{root}/{name}", autocommit=True) as connection:
            connection.execute("CREATE TABLE precious (x int)")
        with pytest.raises(psycopg.errors.DuplicateDatabase):
            _fresh_database(ledger.with_overrides(database_url=f"{root}/{name}"))
        with psycopg.connect(f"{root}/{name}") as connection:
            assert connection.execute("SELECT count(*) FROM precious").fetchone() == (0,)
    finally:
        with psycopg.connect(f"{root}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
