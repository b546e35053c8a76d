"""The auditor's I/O edge: read every event topic from offset 0 with kafka-python, fold the
books, check them, and load the read models into PostgreSQL.

Deterministic merge: the issuer's stream is folded before the redeemer's (a redemption is
judged against every booklet fact), each topic partition by partition in offset order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import psycopg

from passnum.codec import DecodeFailure, decode_event
from passnum.log import read_to_end
from passnum.settings import Settings
from passnum.topology import topology_for
from services.auditor.books import Books, CollectiviteTotals, Finding, apply, check_invariants
from services.auditor.books import collectivite_totals

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditReport:
    event_count: int
    duplicate_count: int
    undecodable_count: int
    findings: tuple[Finding, ...]
    totals: dict[str, CollectiviteTotals]

    @property
    def sound(self) -> bool:
        return not self.findings

    def to_json(self) -> str:
        return json.dumps({
            "sound": self.sound,
            "event_count": self.event_count,
            "duplicate_count": self.duplicate_count,
            "undecodable_count": self.undecodable_count,
            "findings": [asdict(finding) for finding in self.findings],
            "collectivites": {siren: asdict(total) for siren, total in sorted(self.totals.items())},
        }, sort_keys=True, indent=2)


def replay(settings: Settings) -> AuditReport:
    topology = topology_for(settings)
    books = Books()
    undecodable = 0
    for topic in (topology.issuer_events.name, topology.redeemer_events.name):
        for record in read_to_end(settings, [topic]):
            event = decode_event(record.value)
            if isinstance(event, DecodeFailure):
                undecodable += 1
                books.findings.append(Finding(
                    "undecodable_event", f"{record.topic}/{record.partition}@{record.offset}: "
                    f"{event.reason}"))
                continue
            apply(books, event)
    findings = check_invariants(books)
    return AuditReport(books.event_count, books.duplicate_deliveries, undecodable,
                       tuple(findings), collectivite_totals(Books(books.envelopes, books.view)))


_TOTAL_COLUMNS = tuple(CollectiviteTotals.__dataclass_fields__)


def write_projection(connection: psycopg.Connection, report: AuditReport) -> None:
    """Replace the read models in one transaction (COPY for the bulk rows)."""
    with connection.transaction():
        connection.execute("TRUNCATE audit_collectivites")
        with connection.cursor().copy(
                f"COPY audit_collectivites ({', '.join(_TOTAL_COLUMNS)}) FROM STDIN") as copy:
            for total in report.totals.values():
                copy.write_row(tuple(getattr(total, column) for column in _TOTAL_COLUMNS))
        connection.execute(
            "INSERT INTO audit_runs (event_count, duplicate_count, sound, findings) "
            "VALUES (%s, %s, %s, %s::jsonb)",
            (report.event_count, report.duplicate_count, report.sound,
             json.dumps([asdict(finding) for finding in report.findings])))
