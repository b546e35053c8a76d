"""Settlement statements out of the ledger: a CSV for people and a SEPA credit transfer
(ISO 20022 pain.001.001.03, built and validated against its XSD by `sepaxml`) for the bank.

The rendering functions are pure (rows in, text or bytes out); `load_statement_lines` is the
database edge. One CSV row per statement event (a very busy venue has several parts), one
credit transfer per venue and month, whose end-to-end id is its first statement's event id:
a transfer can be traced back to the log.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Sequence

import psycopg

CSV_COLUMNS = ("month", "siret", "venue_name", "iban", "part", "voucher_count",
               "face_value_cents", "amount_eur", "statement_event_id")
SEPA_SCHEMA = "pain.001.001.03"


@dataclass(frozen=True)
class StatementLine:
    month: str
    siret: str
    venue_name: str
    iban: str
    part: int
    voucher_count: int
    face_value_cents: int
    statement_event_id: str


@dataclass(frozen=True)
class Debtor:
    """Who pays the venues: the programme's operator account (configuration)."""

    name: str
    iban: str
    bic: str | None = None


@dataclass(frozen=True)
class Transfer:
    siret: str
    venue_name: str
    iban: str
    amount_cents: int
    voucher_count: int
    end_to_end_id: str
    description: str


def euros(cents: int) -> str:
    """Integer cents as a decimal euro amount, without ever going through a float."""
    assert cents >= 0
    return f"{cents // 100}.{cents % 100:02d}"


def load_statement_lines(connection: psycopg.Connection, month: str) -> list[StatementLine]:
    rows = connection.execute(
        "SELECT s.month, s.siret, coalesce(p.name, ''), coalesce(p.iban, ''), s.part, "
        "s.voucher_count, s.face_value_cents, s.event_id FROM settlement_statements s "
        "LEFT JOIN providers p ON p.siret = s.siret WHERE s.month = %s "
        "ORDER BY s.siret, s.part", (month,)).fetchall()
    return [StatementLine(*row) for row in rows]


def month_is_closed(connection: psycopg.Connection, month: str) -> bool:
    row = connection.execute("SELECT 1 FROM settlement_months WHERE month = %s",
                             (month,)).fetchone()
    return row is not None


def render_csv(lines: Sequence[StatementLine]) -> str:
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in lines:
        writer.writerow((line.month, line.siret, line.venue_name, line.iban, line.part,
                         line.voucher_count, line.face_value_cents,
                         euros(line.face_value_cents), line.statement_event_id))
    return output.getvalue()


def transfers(lines: Sequence[StatementLine]) -> list[Transfer]:
    """One transfer per venue: its statement parts added up."""
    by_venue: dict[str, list[StatementLine]] = {}
    for line in sorted(lines, key=lambda item: (item.siret, item.part)):
        by_venue.setdefault(line.siret, []).append(line)
    result = []
    for siret, parts in by_venue.items():
        first = parts[0]
        assert first.iban, f"venue {siret} has no IBAN: it was never accredited here"
        count = sum(part.voucher_count for part in parts)
        result.append(Transfer(
            siret, first.venue_name, first.iban, sum(p.face_value_cents for p in parts), count,
            # Max35Text in pain.001: the event id's 32 hex digits fit, its dashes would not.
            uuid.UUID(first.statement_event_id).hex,
            f"Pass numerique {first.month} SIRET {siret} {count} cheques"))
    return result


def render_pain001(lines: Sequence[StatementLine], debtor: Debtor, execution_date: date,
                   ) -> bytes:
    """A pain.001.001.03 credit transfer initiation, validated against the XSD."""
    from sepaxml import SepaTransfer

    config: dict[str, object] = {"name": debtor.name, "IBAN": debtor.iban, "batch": True,
                                 "currency": "EUR"}
    if debtor.bic:
        config["BIC"] = debtor.bic
    document = SepaTransfer(config, schema=SEPA_SCHEMA, clean=True)
    for transfer in transfers(lines):
        document.add_payment({
            "name": transfer.venue_name or transfer.siret, "IBAN": transfer.iban,
            "amount": transfer.amount_cents, "execution_date": execution_date,
            "description": transfer.description, "endtoend_id": transfer.end_to_end_id})
    exported: bytes = document.export(validate=True)
    return exported
