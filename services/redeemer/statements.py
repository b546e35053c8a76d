"""Settlement statements out of the ledger: a CSV for people and a SEPA credit transfer
(ISO 20022 pain.001.001.03 or .09, built and validated against its XSD by `sepaxml`) for the
bank, paid from the programme's configured debtor account (`debtor_account`).

The rendering functions are pure (rows in, text or bytes out); `load_statement_lines` is the
database edge. One CSV row per statement event (a very busy venue has several parts), one
credit transfer per venue and month, whose end-to-end id is its first statement's event id:
a transfer can be traced back to the log.
"""

from __future__ import annotations

import csv
import functools
import io
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Sequence

import psycopg
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban

CSV_COLUMNS = ("month", "siret", "venue_name", "iban", "part", "voucher_count",
               "face_value_cents", "amount_eur", "statement_event_id")
SEPA_SCHEMA = "pain.001.001.03"
SEPA_SCHEMAS = ("pain.001.001.03", "pain.001.001.09")
# The EPC customer-to-PSP guidelines: a debtor agent without BIC is identified as
# <Othr><Id>NOTPROVIDED</Id></Othr> (the PSP derives it from the IBAN), never left empty.
AGENT_NOT_PROVIDED = "NOTPROVIDED"
# Max70Text in pain.001 for the debtor's name (sepaxml would silently cut it: we refuse).
DEBTOR_NAME_MAX_CHARACTERS = 70


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
    """Who pays the venues: the programme's operator account (configuration). Built by
    `debtor_account`, which validates it; the IBAN and BIC are kept in compact form."""

    name: str
    iban: str
    bic: str | None = None


class InvalidDebtor(ValueError):
    """The configured debtor account is missing or wrong: no transfer file can be made."""


def debtor_account(name: str, iban: str, bic: str | None) -> Debtor:
    """The debtor account from configuration, checked: a name, an IBAN whose check digits
    hold (python-stdnum), and a BIC that is well formed when one is given."""
    name, iban, bic = name.strip(), iban.strip(), (bic or "").strip()
    if not iban or not name:
        missing = " and ".join(label for label, value in (
            ("PASSNUM_DEBTOR_IBAN", iban), ("PASSNUM_DEBTOR_NAME", name)) if not value)
        raise InvalidDebtor(f"no debtor account configured: set {missing}")
    if len(name) > DEBTOR_NAME_MAX_CHARACTERS:
        raise InvalidDebtor(f"PASSNUM_DEBTOR_NAME is longer than "
                            f"{DEBTOR_NAME_MAX_CHARACTERS} characters")
    if not stdnum_iban.is_valid(iban):
        raise InvalidDebtor("PASSNUM_DEBTOR_IBAN is not a valid IBAN")
    if bic and not stdnum_bic.is_valid(bic):
        raise InvalidDebtor("PASSNUM_DEBTOR_BIC is not a valid BIC")
    return Debtor(name, stdnum_iban.compact(iban), stdnum_bic.compact(bic) if bic else None)


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
                   schema: str = SEPA_SCHEMA) -> bytes:
    """A pain.001 credit transfer initiation, validated against the schema's XSD."""
    from sepaxml import SepaTransfer

    assert schema in SEPA_SCHEMAS, schema
    config: dict[str, object] = {"name": debtor.name, "IBAN": debtor.iban, "batch": True,
                                 "currency": "EUR"}
    if debtor.bic:
        config["BIC"] = debtor.bic
    document = SepaTransfer(config, schema=schema, clean=True)
    for transfer in transfers(lines):
        document.add_payment({
            "name": transfer.venue_name or transfer.siret, "IBAN": transfer.iban,
            "amount": transfer.amount_cents, "execution_date": execution_date,
            "description": transfer.description, "endtoend_id": transfer.end_to_end_id})
    # Validated once, as it is written out: after the debtor agent is completed.
    exported = with_epc_debtor_agent(document.export(validate=False), schema)
    xsd(schema).validate(exported.decode())
    return exported


@functools.lru_cache(maxsize=len(SEPA_SCHEMAS))
def xsd(schema: str) -> Any:
    """The pain.001 XSD that sepaxml ships, compiled once (a second or so each time)."""
    import sepaxml
    import xmlschema

    return xmlschema.XMLSchema(str(Path(sepaxml.__file__).parent / "schemas" / f"{schema}.xsd"))


def with_epc_debtor_agent(document: bytes, schema: str) -> bytes:
    """The document with every debtor agent identified as EPC asks. sepaxml writes the BIC
    (<BIC> in .03, <BICFI> in .09) when it has one, and an empty <FinInstnId/> otherwise,
    which the XSD allows but the EPC guidelines do not: that one gets Othr/Id NOTPROVIDED."""
    namespace = f"urn:iso:std:iso:20022:tech:xsd:{schema}"
    ElementTree.register_namespace("", namespace)
    root = ElementTree.fromstring(document)
    for institution in root.iterfind(f".//{{{namespace}}}DbtrAgt/{{{namespace}}}FinInstnId"):
        if len(institution) == 0:
            other = ElementTree.SubElement(institution, f"{{{namespace}}}Othr")
            ElementTree.SubElement(other, f"{{{namespace}}}Id").text = AGENT_NOT_PROVIDED
    return ElementTree.tostring(root, encoding="UTF-8", xml_declaration=True)
