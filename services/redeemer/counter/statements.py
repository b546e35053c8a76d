"""A venue's own statement as a CSV download: the row `services.redeemer.statements` writes
for the operator's export (same columns, same rendering), restricted to the signed-in
venue's SIRET."""

from __future__ import annotations

from typing import Any

from services.redeemer.statements import StatementLine, render_csv


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
