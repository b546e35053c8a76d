"""PostgreSQL adapter of the issuer: loads the state a batch needs, writes it back.

The state is a cache of the issuer's own events (rebuildable from the log); it is written
in the same transaction as the processing position, so it never runs ahead or behind.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Iterable

import psycopg

from services.issuer.domain import Booklet, Envelope, Order


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
        "SELECT siren, state FROM issuer_envelopes WHERE siren = ANY(%s)",
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
        f"SELECT {', '.join(_BOOKLET_COLUMNS)} FROM issuer_booklets WHERE booklet_id = ANY(%s)",
        (sorted(set(booklet_ids)),)).fetchall()
    return {row[0]: Booklet(*row) for row in rows}


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
