"""The database start-up against real servers: the local PostgreSQL and the embedded one."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from passnum.core import database
from passnum.core.settings import Settings

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def local_url() -> str:
    return Settings.from_environment().database_url


def require_local_server() -> None:
    if not database.server_answers(local_url()):
        pytest.skip(f"no PostgreSQL at {database.describe(local_url())}")


@pytest.fixture
def fresh_database_url() -> Iterator[str]:
    """The URL of a database that does not exist yet; dropped afterwards."""
    require_local_server()
    name = f"passnum_test_{uuid.uuid4().hex[:12]}"
    yield make_conninfo(local_url(), dbname=name)
    maintenance = make_conninfo(local_url(), dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as connection:
        connection.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def database_exists(name: str) -> bool:
    maintenance = make_conninfo(local_url(), dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as connection:
        row = connection.execute("select 1 from pg_database where datname = %s", (name,))
        return row.fetchone() is not None


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- Database creation ------------------------------------------------------------------------


def test_resolve_database_creates_the_missing_database(fresh_database_url: str) -> None:
    name = str(psycopg.conninfo.conninfo_to_dict(fresh_database_url)["dbname"])
    assert not database_exists(name)

    url = database.resolve_database(Settings(database_url=fresh_database_url))

    assert url == fresh_database_url
    with database.connect(url) as connection:
        row = connection.execute("select current_database()").fetchone()
    assert row == (name,)
    # A second resolution finds the database and changes nothing.
    assert database.resolve_database(Settings(database_url=fresh_database_url)) == url


def test_racing_creations_create_the_database_once(fresh_database_url: str) -> None:
    with ThreadPoolExecutor(max_workers=6) as executor:
        created = list(
            executor.map(lambda _: database.create_database_if_missing(fresh_database_url), range(6))
        )
    assert created.count(True) == 1


def test_pool_opens_with_the_connection_defaults(fresh_database_url: str) -> None:
    url = database.resolve_database(Settings(database_url=fresh_database_url))
    pool = database.make_pool(url, min_size=1, max_size=2, name="passnum-test")
    try:
        with pool.connection() as connection:
            assert connection.autocommit is False
            row = connection.execute("select current_setting('application_name')").fetchone()
        assert row == ("passnum-test",)
    finally:
        pool.close()


# --- Migrations -------------------------------------------------------------------------------


SLOW_MIGRATIONS = {
    # The sleep keeps the first migration running while the other process arrives.
    "0001_accounts.sql": """
        select pg_sleep(0.5);
        create table accounts (id bigint primary key, note text);
        insert into accounts values (1, 'literal percent: 100%');
    """,
    "0002_entries.sql": "create table entries (id bigint primary key);",
    "0003_seed.sql": "insert into entries values (1), (2);",
}


def test_migrations_apply_in_order_and_are_idempotent(
    fresh_database_url: str, tmp_path: Path
) -> None:
    url = database.resolve_database(Settings(database_url=fresh_database_url))
    directory = write_migrations(tmp_path / "migrations", SLOW_MIGRATIONS)

    assert database.apply_migrations(url, directory) == list(SLOW_MIGRATIONS)
    assert database.apply_migrations(url, directory) == []

    with database.connect(url) as connection:
        names = connection.execute("select name from schema_migrations order by name").fetchall()
        entries = connection.execute("select count(*) from entries").fetchone()
    assert [name for (name,) in names] == list(SLOW_MIGRATIONS)
    assert entries == (2,)


def test_concurrent_migrations_apply_each_file_once(
    fresh_database_url: str, tmp_path: Path
) -> None:
    url = database.resolve_database(Settings(database_url=fresh_database_url))
    directory = write_migrations(tmp_path / "migrations", SLOW_MIGRATIONS)

    # Processes, like the services; spawn so that no psycopg state is forked.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as executor:
        futures = [executor.submit(database.apply_migrations, url, directory) for _ in range(2)]
        results = [future.result(timeout=60) for future in futures]

    applied = results[0] + results[1]
    assert sorted(applied) == list(SLOW_MIGRATIONS)
    with database.connect(url) as connection:
        entries = connection.execute("select count(*) from entries").fetchone()
    assert entries == (2,)


def test_a_failing_migration_leaves_nothing_behind(
    fresh_database_url: str, tmp_path: Path
) -> None:
    url = database.resolve_database(Settings(database_url=fresh_database_url))
    directory = write_migrations(
        tmp_path / "migrations",
        {
            "0001_good.sql": "create table good (id int);",
            "0002_bad.sql": "create table half (id int); select * from no_such_table;",
        },
    )

    with pytest.raises(psycopg.errors.UndefinedTable):
        database.apply_migrations(url, directory)

    with database.connect(url) as connection:
        names = connection.execute("select name from schema_migrations").fetchall()
        half = connection.execute("select to_regclass('half')").fetchone()
    assert names == [("0001_good.sql",)]
    assert half == (None,)


def test_misnamed_migrations_are_refused(tmp_path: Path) -> None:
    directory = write_migrations(tmp_path / "migrations", {"2_core.sql": "select 1;"})
    with pytest.raises(ValueError, match="0001_core.sql"):
        database.apply_migrations("postgresql://unused@127.0.0.1:1/unused", directory)


# --- The embedded fallback --------------------------------------------------------------------


CHILD_RESOLVES = """
import json, time
from passnum.core import database
from passnum.core.settings import Settings
started = time.monotonic()
url = database.resolve_database(Settings.from_environment())
with database.connect(url) as connection:
    started_at = connection.execute("select pg_postmaster_start_time()::text").fetchone()[0]
print(json.dumps({"url": url, "started": started_at, "seconds": time.monotonic() - started}))
"""


def test_embedded_server_starts_when_nothing_answers(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{port}/passnum_embedded",
        run_directory=str(tmp_path / "run"),
    )
    assert not database.server_answers(settings.database_url)
    try:
        started = time.monotonic()
        url = database.resolve_database(settings)
        cold_seconds = time.monotonic() - started

        with database.connect(url) as connection:
            version = connection.execute("select version()").fetchone()
            database_name = connection.execute("select current_database()").fetchone()
            postmaster_start = connection.execute(
                "select pg_postmaster_start_time()::text"
            ).fetchone()
        assert version is not None and version[0].startswith("PostgreSQL 16")
        assert database_name == ("passnum_embedded",)
        assert (tmp_path / "run" / "pgdata" / "PG_VERSION").exists()

        # A second process joins the running server instead of starting another one.
        environment = {**os.environ, **settings.as_environment()}
        child = subprocess.run(
            [sys.executable, "-c", CHILD_RESOLVES],
            cwd=PROJECT_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        joined = json.loads(child.stdout.strip().splitlines()[-1])
        assert joined["url"] == url
        assert joined["started"] == postmaster_start[0]  # type: ignore[index]
        print(f"embedded cold start {cold_seconds:.2f} s, join {joined['seconds']:.2f} s")
    finally:
        database.stop_embedded_database(settings)
    assert not database.server_answers(url)
