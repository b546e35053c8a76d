"""Where the database is, how its schema gets there, and how the services connect.

`resolve_database` prefers the configured server and falls back to an embedded PostgreSQL 16
(the `pgserver` wheel) only when nothing answers at the configured address, so that the demo
runs on a laptop without Docker. Nothing here connects at import time.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from passnum.core.settings import Settings

if TYPE_CHECKING:
    from pgserver.utils import PostmasterInfo

logger = logging.getLogger(__name__)

# A probe that waits longer than this decides that no server is there (and then the demo
# starts its own), so a black-holed address costs at most these seconds per host.
PROBE_TIMEOUT_SECONDS = 3.0
CONNECT_TIMEOUT_SECONDS = 5
MAINTENANCE_DATABASE = "postgres"
DEFAULT_APPLICATION_NAME = "passnum"

# libpq's compiled-in defaults, used when the URL names neither host nor port.
DEFAULT_SOCKET_DIRECTORY = "/var/run/postgresql"
DEFAULT_PORT = "5432"

# The SSLRequest message: every PostgreSQL server answers it with one byte, 'S' or 'N',
# before any authentication, so it tells "a PostgreSQL listens here" without a login.
SSL_REQUEST = struct.pack("!ii", 8, 80877103)

EMBEDDED_DIRECTORY_NAME = "pgdata"
EMBEDDED_USER = "postgres"
# pgserver refuses to run postgres as root and runs it as this system user instead
# (it creates the user with useradd); stopping the server must use the same user.
EMBEDDED_SYSTEM_USER_WHEN_ROOT = "pgserver"
EMBEDDED_STOP_TIMEOUT_SECONDS = 30

DEFAULT_MIGRATIONS_DIRECTORY = Path(__file__).parent / "migrations"
# Zero-padded numbers make lexical order the intended order: "10_x" would sort before "2_x".
MIGRATION_NAME = re.compile(r"^[0-9]{4}_[a-z0-9_]+\.sql$")
# Every process that migrates takes this transaction-scoped advisory lock: the bytes of
# "passnum" as a bigint, so that no other application's lock key collides by accident.
MIGRATION_LOCK_KEY = int.from_bytes(b"passnum", "big")
MIGRATION_LOCK_TIMEOUT_SECONDS = 60.0


# --- Resolving the URL --------------------------------------------------------------------


def resolve_database(settings: Settings) -> str:
    """A URL on which the database `settings.database_url` names exists and answers.

    Uses the configured server when one answers there (creating the database if missing);
    otherwise starts, or reuses, the embedded PostgreSQL under `settings.run_directory`.
    """
    url = settings.database_url
    if server_answers(url):
        logger.info("Using the PostgreSQL server at %s", describe(url))
        create_database_if_missing(url)
        return url
    if not settings.embedded_database_fallback:
        raise ConnectionError(f"no PostgreSQL answers at {describe(url)} and the embedded "
                              "fallback is off (PASSNUM_EMBEDDED_DATABASE_FALLBACK)")
    logger.warning(
        "No PostgreSQL answers at %s within %.0f s: using the embedded PostgreSQL in %s",
        describe(url),
        PROBE_TIMEOUT_SECONDS,
        embedded_data_directory(settings),
    )
    embedded_url = start_embedded_database(settings, database_name(url))
    create_database_if_missing(embedded_url)
    logger.info("Using the embedded PostgreSQL at %s", describe(embedded_url))
    return embedded_url


def server_answers(url: str, timeout_seconds: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """True when a PostgreSQL server answers at one of the URL's hosts.

    Only the transport is probed, never a login: a server that answers but refuses our
    credentials must fail loudly later, not be silently replaced by the embedded one.
    """
    return any(
        endpoint_answers(host, port, timeout_seconds) for host, port in endpoints(url)
    )


def endpoints(url: str) -> list[tuple[str, str]]:
    """The (host, port) pairs libpq would try, in order; a host starting with '/' is a
    socket directory."""
    parameters = conninfo_to_dict(url)
    default_host = os.environ.get("PGHOST") or DEFAULT_SOCKET_DIRECTORY
    default_port = os.environ.get("PGPORT") or DEFAULT_PORT
    # An empty entry ("a,b" with ports ",5433") means the default, as in libpq.
    host_list = [host or default_host for host in str(parameters.get("host") or "").split(",")]
    port_list = [port or default_port for port in str(parameters.get("port") or "").split(",")]
    # libpq rule: one port applies to every host, otherwise one port per host.
    if len(port_list) == 1:
        port_list = port_list * len(host_list)
    if len(port_list) != len(host_list):
        raise ValueError(f"{len(host_list)} hosts but {len(port_list)} ports in the database URL")
    return list(zip(host_list, port_list))


def endpoint_answers(host: str, port: str, timeout_seconds: float) -> bool:
    try:
        with open_probe_socket(host, port, timeout_seconds) as probe:
            probe.sendall(SSL_REQUEST)
            reply = probe.recv(1)
    except OSError:
        # Refused, unreachable, unresolvable or silent: nobody we can use is there.
        return False
    if reply in (b"S", b"N"):
        return True
    raise RuntimeError(
        f"Something listens at {host}:{port} but does not answer like PostgreSQL"
        f" (reply {reply!r}); refusing to guess between it and the embedded server"
    )


def open_probe_socket(host: str, port: str, timeout_seconds: float) -> socket.socket:
    if host.startswith("/"):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(timeout_seconds)
        try:
            probe.connect(f"{host}/.s.PGSQL.{port}")
        except OSError:
            probe.close()
            raise
        return probe
    probe = socket.create_connection((host, int(port)), timeout=timeout_seconds)
    probe.settimeout(timeout_seconds)
    return probe


def database_name(url: str) -> str:
    name = conninfo_to_dict(url).get("dbname")
    if not name:
        # libpq would silently default to the user name: say which database we mean.
        raise ValueError("The database URL must name its database")
    return str(name)


def describe(url: str) -> str:
    """host:port/database, for logs: never the password."""
    host, port = endpoints(url)[0]
    return f"{host}:{port}/{conninfo_to_dict(url).get('dbname', '')}"


def create_database_if_missing(url: str) -> bool:
    """Creates the URL's database through the maintenance database; True if it created it.

    Safe when several processes race: the loser's CREATE fails and is ignored.
    """
    name = database_name(url)
    maintenance_url = make_conninfo(url, dbname=MAINTENANCE_DATABASE)
    # CREATE DATABASE cannot run inside a transaction block.
    with connect(maintenance_url, autocommit=True) as connection:
        exists = connection.execute(
            "select 1 from pg_database where datname = %s", (name,)
        ).fetchone()
        if exists:
            return False
        try:
            connection.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        except (errors.DuplicateDatabase, errors.UniqueViolation):
            # Another process created it between our check and our CREATE; which error
            # the loser gets depends on how far the winner had gone.
            logger.info("Database %s was created concurrently by another process", name)
            return False
    logger.info("Created database %s", name)
    return True


# --- The embedded server --------------------------------------------------------------------


def embedded_data_directory(settings: Settings) -> Path:
    return Path(settings.run_directory).expanduser().resolve() / EMBEDDED_DIRECTORY_NAME


def start_embedded_database(settings: Settings, database: str) -> str:
    """Starts the embedded server, or joins it when it already runs; returns its URL.

    The server outlives this process (cleanup_mode=None): the services, the demo and the
    tests started later all join the same data directory. pgserver serialises starts with
    an inter-process lock and finds a running server through pgdata/postmaster.pid.
    """
    # Imported here: the wheel (the `demo` extra) is only needed for the fallback, and the
    # services in containers never take it.
    try:
        import pgserver
    except ImportError as error:
        raise ConnectionError(
            f"no PostgreSQL answers at {describe(settings.database_url)}, and the embedded "
            "fallback needs the demo extra (pip install 'passnum[demo]')") from error

    data_directory = embedded_data_directory(settings)
    # pgserver needs the parent to exist; it initialises an empty directory.
    data_directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # The constructor, not get_server(): get_server caches a handle per directory in this
    # process, and would hand back a stale URL after the server was stopped.
    server = pgserver.PostgresServer(data_directory, cleanup_mode=None)
    url = embedded_url(server.get_postmaster_info(), database)
    # postmaster.pid can name a dead (or zombie) postmaster that pgserver takes for alive.
    if not server_answers(url):
        raise RuntimeError(
            f"The embedded PostgreSQL in {data_directory} does not answer at {describe(url)};"
            f" see {data_directory / 'log'}"
        )
    logger.info(
        "Embedded PostgreSQL ready in %.2f s (pid %s)",
        time.monotonic() - started,
        server.get_pid(),
    )
    return url


def embedded_url(postmaster: PostmasterInfo, database: str) -> str:
    """A URL any local process can use: the Unix socket (pgserver listens on no TCP port)."""
    if postmaster.socket_dir is not None:
        host = quote(str(postmaster.socket_dir), safe="")
        return (
            f"postgresql://{EMBEDDED_USER}@/{quote(database, safe='')}"
            f"?host={host}&port={postmaster.port}"
        )
    # Windows: pgserver listens on TCP there.
    return f"postgresql://{EMBEDDED_USER}@{postmaster.hostname}:{postmaster.port}/{quote(database, safe='')}"


def stop_embedded_database(settings: Settings) -> bool:
    """Stops the embedded server of `settings.run_directory`; False if it was not running."""
    import pgserver

    data_directory = embedded_data_directory(settings)
    if not (data_directory / "postmaster.pid").exists():
        return False
    user = EMBEDDED_SYSTEM_USER_WHEN_ROOT if os.geteuid() == 0 else None
    # Fast mode: disconnect clients instead of waiting for them; -t bounds pg_ctl's wait
    # and the subprocess timeout bounds pg_ctl itself.
    pgserver.pg_ctl(  # type: ignore[attr-defined]  # pgserver makes its commands at import
        ["-w", "-t", str(EMBEDDED_STOP_TIMEOUT_SECONDS), "-m", "fast", "stop"],
        pgdata=data_directory,
        user=user,
        timeout=EMBEDDED_STOP_TIMEOUT_SECONDS + 10,
    )
    logger.info("Stopped the embedded PostgreSQL in %s", data_directory)
    return True


# --- Migrations -----------------------------------------------------------------------------


def apply_migrations(
    url: str,
    directory: Path | None = None,
    *,
    lock_timeout_seconds: float = MIGRATION_LOCK_TIMEOUT_SECONDS,
) -> list[str]:
    """Applies the pending `NNNN_name.sql` files of `directory` in lexical order.

    Each file runs in its own transaction together with its row in schema_migrations, so
    a file is applied entirely or not at all. Returns the names this call applied. Files
    must not contain BEGIN/COMMIT, nor statements that refuse a transaction block
    (CREATE INDEX CONCURRENTLY).
    """
    migrations = list_migrations(directory or DEFAULT_MIGRATIONS_DIRECTORY)
    applied: list[str] = []
    with connect(url, application_name=f"{DEFAULT_APPLICATION_NAME}-migrations") as connection:
        create_migrations_table(connection, lock_timeout_seconds)
        for path in migrations:
            if apply_migration(connection, path, lock_timeout_seconds):
                applied.append(path.name)
    if applied:
        logger.info("Applied migrations %s", ", ".join(applied))
    else:
        logger.info("Schema up to date (%d migrations)", len(migrations))
    return applied


def list_migrations(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"No migrations directory at {directory}")
    paths = sorted(directory.glob("*.sql"), key=lambda path: path.name)
    misnamed = [path.name for path in paths if not MIGRATION_NAME.match(path.name)]
    if misnamed:
        raise ValueError(f"Migration names must look like 0001_core.sql: {misnamed}")
    return paths


def lock_migrations(connection: psycopg.Connection[Any], lock_timeout_seconds: float) -> None:
    """Serialises migrating processes until the current transaction ends.

    The lock timeout is transaction-local: it bounds the wait for this lock and for any
    table lock the migration's DDL needs while services hold it.
    """
    timeout = f"{int(lock_timeout_seconds * 1000)}ms"
    connection.execute("select set_config('lock_timeout', %s, true)", (timeout,))
    connection.execute("select pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))


def create_migrations_table(
    connection: psycopg.Connection[Any], lock_timeout_seconds: float
) -> None:
    # Under the lock: two concurrent CREATE TABLE IF NOT EXISTS can still collide.
    with connection.transaction():
        lock_migrations(connection, lock_timeout_seconds)
        connection.execute(
            "create table if not exists schema_migrations ("
            " name text primary key,"
            " applied_at timestamptz not null default now())"
        )


def apply_migration(
    connection: psycopg.Connection[Any], path: Path, lock_timeout_seconds: float
) -> bool:
    with connection.transaction():
        lock_migrations(connection, lock_timeout_seconds)
        # Checked under the lock: another process may have applied it while we waited.
        done = connection.execute(
            "select 1 from schema_migrations where name = %s", (path.name,)
        ).fetchone()
        if done:
            return False
        logger.info("Applying migration %s", path.name)
        # Bytes without parameters go through the simple query protocol, which accepts
        # several statements and leaves '%' alone.
        connection.execute(path.read_bytes())
        connection.execute(
            "insert into schema_migrations (name, applied_at) values (%s, now())",
            (path.name,),
        )
    return True


# --- Connections ----------------------------------------------------------------------------


# A prepared statement's generic plan is chosen once, from the statistics of that moment:
# a worker that starts on empty tables kept sequential scans of `request_outcomes` and
# `outbox` while they grew, and a small redemption batch went from 6 ms to 21 ms in 3,000
# batches (measured; 6 ms flat with custom plans). Planning each execution costs far less.
SESSION_OPTIONS = "-c plan_cache_mode=force_custom_plan"


def connection_defaults(**overrides: Any) -> dict[str, Any]:
    """The options every passnum connection gets unless the caller says otherwise.

    Transactions are explicit (autocommit off): a batch of commands is one transaction.
    psycopg's default prepare_threshold (5) is kept: the loops repeat the same few
    statements, so they get prepared early. But every execution is planned with its own
    parameters (`plan_cache_mode=force_custom_plan`, see SESSION_OPTIONS).
    """
    defaults: dict[str, Any] = {
        "autocommit": False,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "application_name": DEFAULT_APPLICATION_NAME,
        "options": SESSION_OPTIONS,
    }
    defaults.update(overrides)
    return defaults


def connect(url: str, **overrides: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(url, **connection_defaults(**overrides))


def make_pool(
    url: str,
    min_size: int,
    max_size: int,
    *,
    name: str = DEFAULT_APPLICATION_NAME,
    open_timeout_seconds: float = 10.0,
    checkout_timeout_seconds: float = 30.0,
    **connection_overrides: Any,
) -> ConnectionPool[psycopg.Connection[Any]]:
    """An opened pool: raises if min_size connections are not ready within the timeout."""
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        kwargs=connection_defaults(application_name=name, **connection_overrides),
        timeout=checkout_timeout_seconds,
        # One round trip per checkout, against a batch of up to a thousand commands:
        # cheap, and a database restart then costs no failed batch.
        check=ConnectionPool.check_connection,
        open=False,
    )
    pool.open(wait=True, timeout=open_timeout_seconds)
    return pool
