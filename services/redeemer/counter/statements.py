"""A venue's own statements as CSV downloads, restricted to the signed-in venue's SIRET:
- the statement itself: the row `services.redeemer.statements` writes for the operator's
  export (same columns, same rendering);
- the vouchers it pays: one row per redemption named by the statement event, so that a
  venue can match the payment to the vouchers it took.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Any, Sequence

from services.redeemer.statements import StatementLine, euros, render_csv

VOUCHER_COLUMNS = ("month", "part", "voucher_id", "redeemed_at", "face_value_cents",
                   "amount_eur", "redemption_event_id")


async def statement_csv(connection: Any, siret: str, month: str, part: int) -> str | None:
    """The CSV of one statement of this venue, or None when it has no such statement."""
    async with connection.cursor() as cursor:
        await cursor.execute(
            "SELECT s.month, s.siret, coalesce(p.name, ''), coalesce(p.iban, ''), s.part, "
            "s.voucher_count, s.face_value_cents, s.event_id FROM settlement_statements s "
            "LEFT JOIN providers p ON p.siret = s.siret "
            "WHERE s.siret = %s AND s.month = %s AND s.part = %s", (siret, month, part))
        row = await cursor.fetchone()
    if row is None:
        return None
    return render_csv([StatementLine(*row)])


async def statement_vouchers_csv(connection: Any, siret: str, month: str, part: int
                                 ) -> str | None:
    """The redemptions one statement of this venue pays, oldest first, or None."""
    async with connection.cursor() as cursor:
        await cursor.execute(
            "SELECT redemption_event_ids FROM settlement_statements "
            "WHERE siret = %s AND month = %s AND part = %s", (siret, month, part))
        row = await cursor.fetchone()
        if row is None:
            return None
        await cursor.execute(
            "SELECT voucher_id, redeemed_at, face_value_cents, event_id FROM redemptions "
            "WHERE siret = %s AND event_id = ANY(%s) ORDER BY redeemed_at, voucher_id",
            (siret, list(row[0])))
        redemptions = await cursor.fetchall()
    return render_vouchers_csv(month, part, redemptions)


def render_vouchers_csv(month: str, part: int,
                        redemptions: Sequence[tuple[str, datetime, int, str]]) -> str:
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(VOUCHER_COLUMNS)
    for voucher_id, redeemed_at, cents, event_id in redemptions:
        writer.writerow((month, part, voucher_id,
                         redeemed_at.astimezone(timezone.utc).isoformat(), cents, euros(cents),
                         event_id))
    return output.getvalue()
