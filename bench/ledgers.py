"""A benchmark's own ledger on a shared broker and PostgreSQL server, and its removal.

Each run gets topics under a prefix of its own and a database of its own, migrated, so that
runs never read each other's records; afterwards both go, since Tansu's memory storage
would otherwise keep every run's topics (and slow down as it holds more).
"""

from __future__ import annotations

import uuid

import psycopg

from passnum.core.broker import create_topics
from passnum.core.database import apply_migrations, resolve_database
from passnum.core.settings import Settings
from passnum.core.topology import topology_for


def isolated(base: Settings, **overrides: object) -> Settings:
    """`base` with fresh topics (created) and a fresh database (migrated)."""
    suffix = uuid.uuid4().hex[:8]
    root = base.database_url.rsplit("/", 1)[0]
    settings = base.with_overrides(topic_prefix=f"bench{suffix}",
                                   database_url=f"{root}/passnum_bench{suffix}", **overrides)
    create_topics(settings)
    url = resolve_database(settings)
    apply_migrations(url)
    return settings.with_overrides(database_url=url)


def drop_database(url: str) -> None:
    root, name = url.rsplit("/", 1)
    if "?" in name:
        return  # the embedded server's URL: leave its database alone
    with psycopg.connect(f"{root}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_topics(settings: Settings) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        admin.delete_topics([topic.name for topic in topology_for(settings).all_topics()])
    finally:
        admin.close()


def discard(settings: Settings) -> None:
    """The ledger's database and topics, gone."""
    drop_database(settings.database_url)
    delete_topics(settings)
