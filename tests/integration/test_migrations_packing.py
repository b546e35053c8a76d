"""Migrations 0006 and 0007 convert, in SQL, outcomes and outbox rows recorded in the old
row-per-event / array form into the packed form: the bytes must be exactly what
`passnum.core.codec.pack_outcome` writes, or a retried request would get another answer."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from passnum.core import database
from passnum.core.codec import pack_outcome, unpack_outcome
from passnum.core.settings import Settings

pytestmark = pytest.mark.integration

EVENTS = [("passnum.redeemer.events", b"552100554-0000001", b'{"type":"voucher_redeemed"}',
           b"redeemer/t/0|1|00|ab"),
          ("passnum.redeemer.events", None, "{\"name\":\"Médiathèque\"}".encode(),
           b"redeemer/t/0|2|ab|cd"),
          ("passnum.dead-letters", b"passnum.redeemer.commands", b"{}", None)]


@pytest.fixture
def database_url() -> Iterator[str]:
    base = Settings.from_environment().database_url
    if not database.server_answers(base):
        pytest.skip("no PostgreSQL server")
    name = f"passnum_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(make_conninfo(base, dbname="postgres"), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_conninfo(base, dbname=name)
    with psycopg.connect(make_conninfo(base, dbname="postgres"), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_old_outcomes_and_outbox_rows_are_packed_like_pack_outcome(
        database_url: str, tmp_path: Path) -> None:
    every = database.list_migrations(database.DEFAULT_MIGRATIONS_DIRECTORY)
    before = tmp_path / "before"
    before.mkdir()
    for path in every:
        if path.name < "0006":
            shutil.copy(path, before / path.name)
    database.apply_migrations(database_url, before)
    topics, keys, payloads, links = (list(column) for column in zip(*EVENTS))
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "INSERT INTO request_outcomes (processor, request_id, fingerprint, event_ids, "
            "event_types, topics, keys, payloads, chain_links) VALUES "
            "('redeemer', 'r-1', 'f', %s, %s, %s, %s, %s, %s), "
            "('redeemer', 'r-empty', 'f', '{}', '{}', '{}', '{}', '{}', '{}')",
            (["e1", "e2", "e3"], ["a", "b", "c"], topics, keys, payloads,
             [link or b"" for link in links]))
        for topic, key, payload, link in EVENTS:
            connection.execute(
                "INSERT INTO outbox (processor, input_topic, input_partition, topic, key, "
                "payload, chain_link) VALUES ('redeemer', 'in', 2, %s, %s, %s, %s)",
                (topic, key, payload, link))
    database.apply_migrations(database_url)
    with psycopg.connect(database_url) as connection:
        outcomes = dict(connection.execute(
            "SELECT request_id, outcome FROM request_outcomes").fetchall())
        outbox = connection.execute("SELECT events FROM outbox ORDER BY id").fetchall()
    assert outcomes["r-1"] == pack_outcome(EVENTS)
    assert unpack_outcome(outcomes["r-1"]) == EVENTS
    assert outcomes["r-empty"] == pack_outcome([])
    assert [row[0] for row in outbox] == [pack_outcome([event]) for event in EVENTS]
