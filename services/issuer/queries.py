"""The read side of the issuer's HTTP API (asynchronous PostgreSQL, on the worker's loop).

Every query is scoped by the tenant's SIREN in SQL, not filtered afterwards: a booklet of
another collectivité is simply not found, so a response can never reveal that it exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from services.issuer.beneficiaries import SECRET_BYTES
from services.issuer.store import INSERT_SECRET, SELECT_SECRET, new_beneficiary_secret

BOOKLET_STATUSES = ("issued", "distributed", "handed_out", "blocked")


@dataclass(frozen=True)
class BookletRow:
    booklet_id: str
    sequence: int
    order_id: str
    voucher_count: int
    face_value_cents: int
    status: str
    activated: bool
    distributor: str | None
    beneficiary_reference: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "booklet_id": self.booklet_id,
            "order_id": self.order_id,
            "voucher_count": self.voucher_count,
            "face_value_cents": self.face_value_cents,
            "booklet_value_cents": self.voucher_count * self.face_value_cents,
            "status": self.status,
            "activated": self.activated,
            "distributor": self.distributor,
            "beneficiary_reference": self.beneficiary_reference,
        }


_BOOKLET_SELECT = ("SELECT booklet_id, sequence, order_id, voucher_count, face_value_cents, "
                   "status, activated, distributor, beneficiary_reference FROM issuer_booklets ")


async def booklet_page(connection: psycopg.AsyncConnection, siren: str, *, status: str | None,
                       after_sequence: int, limit: int) -> list[BookletRow]:
    """One page of the tenant's booklets in issue order, after a sequence number (keyset
    pagination: a page costs the same at booklet 1 and at booklet 1,000,000, and booklets
    issued meanwhile do not shift the pages already read)."""
    assert 1 <= limit <= 10_000, limit
    async with connection.cursor() as cursor:
        await cursor.execute(
            _BOOKLET_SELECT + "WHERE siren = %s AND sequence > %s "
            "AND (%s::text IS NULL OR status = %s::text) ORDER BY sequence LIMIT %s",
            (siren, after_sequence, status, status, limit))
        rows = await cursor.fetchall()
    return [BookletRow(*row) for row in rows]


async def booklet_of(connection: psycopg.AsyncConnection, siren: str,
                     booklet_id: str) -> BookletRow | None:
    async with connection.cursor() as cursor:
        await cursor.execute(_BOOKLET_SELECT + "WHERE siren = %s AND booklet_id = %s",
                             (siren, booklet_id))
        row = await cursor.fetchone()
    return BookletRow(*row) if row else None


async def beneficiary_secret(connection: psycopg.AsyncConnection, siren: str) -> bytes:
    """The asynchronous twin of `store.beneficiary_secret` (same SQL, same race handling)."""
    async with connection.transaction():
        async with connection.cursor() as cursor:
            await cursor.execute(SELECT_SECRET, (siren,))
            row = await cursor.fetchone()
            if row is None:
                await cursor.execute(INSERT_SECRET, (siren, new_beneficiary_secret()))
                await cursor.execute(SELECT_SECRET, (siren,))
                row = await cursor.fetchone()
    assert row is not None and len(row[0]) == SECRET_BYTES
    return bytes(row[0])
