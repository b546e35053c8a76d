"""Read side of the redeemer's HTTP API: a venue's own redemptions and statements, from the
tables the processor writes. Every query is filtered by the SIRET of the caller's token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import psycopg

from passnum.ledger.settlement_month import month_end, month_start


@dataclass(frozen=True)
class RedemptionRow:
    voucher_id: str
    event_id: str
    face_value_cents: int
    redeemed_at: datetime
    settlement_month: str | None

    def to_json(self) -> dict[str, Any]:
        return {"voucher_id": self.voucher_id, "event_id": self.event_id,
                "face_value_cents": self.face_value_cents,
                "redeemed_at": self.redeemed_at.astimezone(timezone.utc).isoformat(),
                "settlement_month": self.settlement_month}


@dataclass(frozen=True)
class StatementRow:
    month: str
    part: int
    event_id: str
    voucher_count: int
    face_value_cents: int
    issued_at: datetime
    redemption_event_ids: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"month": self.month, "part": self.part, "event_id": self.event_id,
                "voucher_count": self.voucher_count, "face_value_cents": self.face_value_cents,
                "issued_at": self.issued_at.astimezone(timezone.utc).isoformat(),
                "redemption_event_ids": self.redemption_event_ids}


Cursor = tuple[datetime, str]


def cursor_of(row: RedemptionRow) -> str:
    """Opaque to clients: the position after which the next page starts."""
    return f"{row.redeemed_at.isoformat()}|{row.voucher_id}"


def parse_cursor(text: str) -> Cursor:
    instant, voucher_id = text.split("|")
    parsed = datetime.fromisoformat(instant)
    if parsed.tzinfo is None:
        raise ValueError("a cursor carries its UTC offset")
    return parsed, voucher_id


async def redemption_page(connection: psycopg.AsyncConnection, siret: str, month: str | None,
                          after: Cursor | None, limit: int) -> list[RedemptionRow]:
    """Oldest first, by (redeemed_at, voucher_id); `month` is a month in France."""
    conditions = ["siret = %s"]
    parameters: list[Any] = [siret]
    if month is not None:
        conditions.append("redeemed_at >= %s AND redeemed_at < %s")
        parameters += [month_start(month), month_end(month)]
    if after is not None:
        conditions.append("(redeemed_at, voucher_id) > (%s, %s)")
        parameters += list(after)
    async with connection.cursor() as cursor:
        await cursor.execute(
            "SELECT voucher_id, event_id, face_value_cents, redeemed_at, settlement_month "
            f"FROM redemptions WHERE {' AND '.join(conditions)} "
            "ORDER BY redeemed_at, voucher_id LIMIT %s", (*parameters, limit))
        return [RedemptionRow(*row) for row in await cursor.fetchall()]


async def statements_of(connection: psycopg.AsyncConnection, siret: str, month: str | None
                        ) -> list[StatementRow]:
    query = ("SELECT month, part, event_id, voucher_count, face_value_cents, issued_at, "
             "redemption_event_ids FROM settlement_statements WHERE siret = %s")
    parameters: tuple[Any, ...] = (siret,)
    if month is not None:
        query += " AND month = %s"
        parameters += (month,)
    async with connection.cursor() as cursor:
        await cursor.execute(query + " ORDER BY month, part", parameters)
        return [StatementRow(*row) for row in await cursor.fetchall()]
