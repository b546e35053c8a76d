"""PostgreSQL adapter of the issuer: loads the state a batch needs, writes it back.

The state is a cache of the issuer's own events (rebuildable from the log); it is written
in the same transaction as the processing position, so it never runs ahead or behind.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict
from operator import attrgetter
from typing import Iterable

import psycopg

from passnum.ledger.booklet import Booklet
from passnum.ledger.envelope import Envelope, Order
from services.issuer.beneficiaries import SECRET_BYTES


def _envelope_from_json(document: dict) -> Envelope:
    document = dict(document)
    document["orders"] = tuple(Order(**order) for order in document["orders"])
    document["blocked_inactive"] = frozenset(document["blocked_inactive"])
    return Envelope(**document)


def _envelope_to_json(envelope: Envelope) -> str:
    document = asdict(envelope)
    document["blocked_inactive"] = sorted(envelope.blocked_inactive)
    return json.dumps(document)


def load_envelopes(connection: psycopg.Connection, sirens: Iterable[str]) -> dict[str, Envelope]:
    rows = connection.execute(
        "SELECT siren, state FROM issuer_envelopes WHERE siren = ANY(%b)",
        (sorted(set(sirens)),)).fetchall()
    return {siren: _envelope_from_json(state) for siren, state in rows}


def save_envelopes(connection: psycopg.Connection, envelopes: Iterable[Envelope]) -> None:
    rows = [(envelope.siren, _envelope_to_json(envelope)) for envelope in envelopes]
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO issuer_envelopes (siren, state) VALUES (%s, %s::jsonb) "
            "ON CONFLICT (siren) DO UPDATE SET state = excluded.state", rows)


_BOOKLET_COLUMNS = ("booklet_id", "siren", "sequence", "order_id", "voucher_count",
                    "face_value_cents", "status", "activated", "distributor",
                    "beneficiary_reference")


def load_booklets(connection: psycopg.Connection, booklet_ids: Iterable[str]) -> dict[str, Booklet]:
    rows = connection.execute(
        f"SELECT {', '.join(_BOOKLET_COLUMNS)} FROM issuer_booklets WHERE booklet_id = ANY(%b)",
        (sorted(set(booklet_ids)),)).fetchall()
    return {row[0]: Booklet(*row) for row in rows}


def insert_new_booklets(connection: psycopg.Connection, booklets: Iterable[Booklet]) -> None:
    """Booklets issued by this batch, in one COPY: no conflict is possible (their ids come
    from the envelope's sequence, which this same transaction advanced), and COPY costs
    about a third of an upsert of the same rows."""
    row_of = attrgetter(*_BOOKLET_COLUMNS)
    with connection.cursor().copy(
            f"COPY issuer_booklets ({', '.join(_BOOKLET_COLUMNS)}) FROM STDIN") as copy:
        for booklet in booklets:
            copy.write_row(row_of(booklet))


def save_booklets(connection: psycopg.Connection, booklets: Iterable[Booklet]) -> None:
    """One statement for the whole batch, with binary array parameters (much cheaper than
    one INSERT per booklet when an order issues thousands)."""
    rows = [tuple(getattr(booklet, column) for column in _BOOKLET_COLUMNS) for booklet in booklets]
    if not rows:
        return
    columns = list(zip(*rows))
    types = ("text", "text", "int", "text", "int", "bigint", "text", "boolean", "text", "text")
    unnest = ", ".join(f"%s::{kind}[]" for kind in types)
    updates = ", ".join(f"{column} = excluded.{column}" for column in _BOOKLET_COLUMNS[6:])
    connection.execute(
        f"INSERT INTO issuer_booklets ({', '.join(_BOOKLET_COLUMNS)}) "
        f"SELECT * FROM unnest({unnest}) ON CONFLICT (booklet_id) DO UPDATE SET {updates}",
        [list(column) for column in columns], binary=True)


def mark_activated(connection: psycopg.Connection, booklet_ids: Iterable[str]) -> None:
    """Activation of booklets issued in an earlier batch: funds usually arrive days after
    the order, so the booklets they activate are not among the rows the batch loaded."""
    identifiers = sorted(set(booklet_ids))
    if identifiers:
        connection.execute(
            "UPDATE issuer_booklets SET activated = true WHERE booklet_id = ANY(%b)",
            (identifiers,), binary=True)


# ------------------------------------------------------------------ beneficiary secrets
# See services/issuer/beneficiaries.py for why a secret per collectivité, and the migration
# 0010 for the table. The SQL is shared with the asynchronous edge (services/issuer/queries).

SELECT_SECRET = "SELECT secret FROM issuer_beneficiary_secrets WHERE siren = %s"
INSERT_SECRET = ("INSERT INTO issuer_beneficiary_secrets (siren, secret) VALUES (%s, %s) "
                 "ON CONFLICT (siren) DO NOTHING")
DELETE_SECRET = "DELETE FROM issuer_beneficiary_secrets WHERE siren = %s RETURNING siren"
RECORD_DESTRUCTION = ("INSERT INTO issuer_beneficiary_secret_destructions (siren, requested_by) "
                      "VALUES (%s, %s)")


def new_beneficiary_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def beneficiary_secret(connection: psycopg.Connection, siren: str) -> bytes:
    """The collectivité's secret, created on first use. Two processes creating it at once
    agree on one: the loser's INSERT does nothing and its SELECT reads the winner's row."""
    with connection.transaction():
        row = connection.execute(SELECT_SECRET, (siren,)).fetchone()
        if row is None:
            connection.execute(INSERT_SECRET, (siren, new_beneficiary_secret()))
            row = connection.execute(SELECT_SECRET, (siren,)).fetchone()
    assert row is not None, "the secret was just inserted"
    return bytes(row[0])


def destroy_beneficiary_secret(connection: psycopg.Connection, siren: str,
                               requested_by: str) -> bool:
    """Forget the collectivité's secret: every reference it produced becomes unlinkable.
    True if there was a secret to destroy. The row is deleted and the destruction recorded
    in one transaction (so the caller must not hold one open), then the table is vacuumed
    so that the dead row version does not linger in its pages (WAL segments and backups
    keep it until they expire: see docs/issuer.md)."""
    assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE, \
        "the destruction must commit on its own, not inside the caller's transaction"
    with connection.transaction():
        destroyed = connection.execute(DELETE_SECRET, (siren,)).fetchone() is not None
        if destroyed:
            connection.execute(RECORD_DESTRUCTION, (siren, requested_by))
    if destroyed:
        was_autocommit = connection.autocommit
        connection.autocommit = True  # VACUUM refuses to run inside a transaction block
        try:
            connection.execute("VACUUM issuer_beneficiary_secrets")
        finally:
            connection.autocommit = was_autocommit
    return destroyed
