"""A venue's own statements as downloads, restricted to the signed-in venue's SIRET:
- the statement as CSV: the row `services.redeemer.statements` writes for the operator's
  export (same columns, same rendering);
- the vouchers it pays as CSV: one row per redemption the statement event names, so that a
  venue can match the payment to the vouchers it took;
- both as a PDF to print or file (`statement_pdf.py`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from services.redeemer.statements import StatementLine, euros, render_csv

VOUCHER_COLUMNS = ("month", "part", "voucher_id", "redeemed_at", "face_value_cents",
                   "amount_eur", "redemption_event_id")


@dataclass(frozen=True)
class PaidVoucher:
    voucher_id: str
    redeemed_at: datetime
    face_value_cents: int
    event_id: str


@dataclass(frozen=True)
class VenueStatement:
    line: StatementLine  # month, SIRET, name, IBAN, part, count, amount, event id
    issued_at: datetime
    vouchers: tuple[PaidVoucher, ...]


async def load_statement(connection: Any, siret: str, month: str, part: int
                         ) -> VenueStatement | None:
    """One statement of this venue with the redemptions it pays (oldest first), or None
    when the venue has no such statement."""
    async with connection.cursor() as cursor:
        await cursor.execute(
            "SELECT s.month, s.siret, coalesce(p.name, ''), coalesce(p.iban, ''), s.part, "
            "s.voucher_count, s.face_value_cents, s.event_id, s.issued_at, "
            "s.redemption_event_ids FROM settlement_statements s "
            "LEFT JOIN providers p ON p.siret = s.siret "
            "WHERE s.siret = %s AND s.month = %s AND s.part = %s", (siret, month, part))
        row = await cursor.fetchone()
        if row is None:
            return None
        await cursor.execute(
            "SELECT voucher_id, redeemed_at, face_value_cents, event_id FROM redemptions "
            "WHERE siret = %s AND event_id = ANY(%s) ORDER BY redeemed_at, voucher_id",
            (siret, list(row[9])))
        vouchers = tuple(PaidVoucher(*voucher) for voucher in await cursor.fetchall())
    return VenueStatement(StatementLine(*row[:8]), row[8], vouchers)


def statement_csv(statement: VenueStatement) -> str:
    return render_csv([statement.line])


def vouchers_csv(statement: VenueStatement) -> str:
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(VOUCHER_COLUMNS)
    for voucher in statement.vouchers:
        writer.writerow((statement.line.month, statement.line.part, voucher.voucher_id,
                         voucher.redeemed_at.astimezone(timezone.utc).isoformat(),
                         voucher.face_value_cents, euros(voucher.face_value_cents),
                         voucher.event_id))
    return output.getvalue()
