"""Live agreement: the services' own PostgreSQL state against the replayed log.

Three digests, each computed the same way on both sides, so that a difference is a finding:
- redemptions: SHA-256 over `voucher_id|siret|fingerprint(event_id)` lines in voucher id
  order (the replay keeps event ids as 64-bit fingerprints; the live side derives the same
  fingerprint from the stored event id);
- envelopes: SHA-256 over `siren|received_cents|activated_cents` lines in SIREN order;
- chain heads: each processor position's `chain_sequence` and `chain_hash` against the
  replayed head of that stream. This is what detects a log whose *last* events were cut
  off or had events appended with a valid-looking link: the processors know their heads.
When a digest differs, both sides are read again and merged by key (voucher id, SIREN):
the finding names each row that differs (at most `ROWS_NAMED` per table, and how many in
all) with the events behind it: the redemption event the database holds and the one the
log holds, or the events of the collectivité's envelope.
The live side reads the services' tables here, so the services need no change. The live
state can be ahead of the replayed cut (events decided since the read): run it on a quiet
ledger, or read a difference together with the positions.
"""

from __future__ import annotations

import hashlib
from itertools import islice
from typing import Iterable, Iterator

import psycopg

from passnum.core.settings import Settings
from services.auditor import wire
from services.auditor.books import Books, Finding
from services.auditor.report import AuditReport


def digest_lines(lines: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


# ------------------------------------------------------------------ live side


ROWS_NAMED = 20


def live_redemption_rows(connection: psycopg.Connection) -> Iterator[tuple[str, str]]:
    """(line, event id) in voucher order."""
    # server-side: never all in memory; closed after, since the rows are read twice when
    # the digests differ
    with connection.cursor(name="audit_redemptions") as cursor:
        cursor.execute("SELECT voucher_id, siret, event_id FROM redemptions ORDER BY voucher_id")
        for voucher_id, siret, event_id in cursor:
            yield f"{voucher_id}|{siret}|{wire.event_fingerprint(event_id):016x}", event_id


def live_redemption_lines(connection: psycopg.Connection) -> Iterable[str]:
    return (line for line, _ in live_redemption_rows(connection))


def live_envelope_lines(connection: psycopg.Connection) -> list[str]:
    rows = connection.execute(
        "SELECT siren, (state->>'received_cents')::bigint, (state->>'activated_cents')::bigint "
        "FROM issuer_envelopes ORDER BY siren").fetchall()
    return [f"{siren}|{received}|{activated}" for siren, received, activated in rows]


def live_chain_heads(connection: psycopg.Connection) -> dict[str, tuple[int, str]]:
    rows = connection.execute(
        "SELECT processor, topic, partition, chain_sequence, chain_hash "
        "FROM processor_positions WHERE chain_sequence > 0").fetchall()
    return {f"{processor}/{topic}/{partition}": (sequence, digest)
            for processor, topic, partition, sequence, digest in rows}


# ------------------------------------------------------------------ replayed side


def replayed_redemption_lines(books: Books) -> Iterable[str]:
    order = sorted(range(len(books.booklet_framing)), key=lambda b: (
        books.collectivite_sirens[books.booklet_collectivite[b]], books.booklet_sequence[b]))
    for booklet in order:
        framing = books.framings[books.booklet_framing[booklet]]
        first = books.booklet_first_voucher[booklet]
        booklet_id = f"{framing.siren}-{books.booklet_sequence[booklet]:07d}"
        for position in range(framing.voucher_count):
            voucher = first + position
            if books.redeemed_second[voucher]:
                siret = books.venues[books.redeemed_venue[voucher]].siret
                yield (f"{booklet_id}-{position + 1:02d}|{siret}|"
                       f"{books.redeemed_event[voucher]:016x}")


def replayed_envelope_lines(report: AuditReport) -> list[str]:
    return [f"{siren}|{t.received_cents}|{t.activated_cents}"
            for siren, t in sorted(report.totals.items())]


# ------------------------------------------------------------------ comparison


def _tables_exist(connection: psycopg.Connection) -> bool:
    row = connection.execute(
        "SELECT to_regclass('redemptions') IS NOT NULL AND "
        "to_regclass('issuer_envelopes') IS NOT NULL").fetchone()
    return bool(row and row[0])


def compare_with_live(connection: psycopg.Connection, replayer: object,
                      report: AuditReport) -> AuditReport:
    if report.collectivite is not None or report.until is not None or not _tables_exist(
            connection):
        return report  # the live state is the whole ledger, now: nothing to compare with
    books: Books = replayer.books  # type: ignore[attr-defined]
    live = {"redemptions": digest_lines(live_redemption_lines(connection)),
            "envelopes": digest_lines(live_envelope_lines(connection))}
    replayed = {"redemptions": digest_lines(replayed_redemption_lines(books)),
                "envelopes": digest_lines(replayed_envelope_lines(report))}
    findings = []
    if live["envelopes"] != replayed["envelopes"]:
        findings += _envelope_differences(connection, books, report)
    if live["redemptions"] != replayed["redemptions"]:
        findings += _redemption_differences(connection, books)
    heads = replayer.chains.heads()  # type: ignore[attr-defined]
    for stream, (sequence, digest) in sorted(live_chain_heads(connection).items()):
        replayed_head = heads.get(stream, (0, ""))
        if replayed_head != (sequence, digest):
            findings.append(Finding(
                "chain_head_disagrees", f"{stream}: the processor's head is #{sequence}, the "
                f"log's is #{replayed_head[0]} (events cut off or appended)"))
    agreement = {"live_agreement": "agrees" if not findings else "DISAGREES",
                 "live_digests": live}
    return report.with_findings(findings, agreement)


# ------------------------------------------------------------------ naming the rows


Row = tuple[str, str, str]  # key, line, the event behind it ("" if none)


def differing(live: Iterable[Row], replayed: Iterable[Row]
              ) -> Iterator[tuple[str, Row | None, Row | None]]:
    """(key, live row, replayed row) of every key whose lines differ; both inputs in the
    same key order."""
    live_iterator, replayed_iterator = iter(live), iter(replayed)
    left, right = next(live_iterator, None), next(replayed_iterator, None)
    while left is not None or right is not None:
        if right is None or (left is not None and left[0] < right[0]):
            yield left[0], left, None  # type: ignore[index]
            left = next(live_iterator, None)
        elif left is None or right[0] < left[0]:
            yield right[0], None, right
            right = next(replayed_iterator, None)
        else:
            if left[1] != right[1]:
                yield left[0], left, right
            left, right = next(live_iterator, None), next(replayed_iterator, None)


def _envelope_differences(connection: psycopg.Connection, books: Books,
                          report: AuditReport) -> list[Finding]:
    live = ((line.split("|", 1)[0], line, "") for line in live_envelope_lines(connection))
    replayed = ((line.split("|", 1)[0], line, "") for line in replayed_envelope_lines(report))
    findings = []
    for siren, database, log in differing(live, replayed):
        collectivite = books.collectivites.get(siren)
        events = tuple(event.event_id for _, _, event in collectivite.envelope_events[-5:]
                       ) if collectivite else ()
        findings.append(Finding(
            "live_state_disagrees", _row_text("issuer_envelopes", siren, database, log),
            events, siren))
    return _bounded(findings, "issuer_envelopes")


def _redemption_differences(connection: psycopg.Connection, books: Books) -> list[Finding]:
    live = ((line.split("|", 1)[0], line, event_id)
            for line, event_id in live_redemption_rows(connection))
    replayed = ((line.split("|", 1)[0], line, "fingerprint:" + line.rsplit("|", 1)[1])
                for line in replayed_redemption_lines(books))
    findings = []
    for voucher_id, database, log in differing(live, replayed):
        named = tuple(row[2] for row in (database, log) if row is not None)
        findings.append(Finding(
            "live_state_disagrees", _row_text("redemptions", voucher_id, database, log),
            named, voucher_id.split("-", 1)[0]))
    return _bounded(findings, "redemptions")


def _row_text(table: str, key: str, database: Row | None, log: Row | None) -> str:
    if log is None:
        return f"{table} {key}: row in the database ({database[1]}), none from the log"  # type: ignore[index]
    if database is None:
        return f"{table} {key}: no row in the database, the log gives {log[1]}"
    return f"{table} {key}: database {database[1]}, log {log[1]}"


def _bounded(findings: list[Finding], table: str) -> list[Finding]:
    """At most ROWS_NAMED findings per table; the last one says how many more differ."""
    if len(findings) <= ROWS_NAMED:
        return findings
    kept = list(islice(findings, ROWS_NAMED))
    last = kept[-1]
    kept[-1] = Finding(last.code, f"{last.detail} (and {len(findings) - ROWS_NAMED} more "
                       f"rows of {table} differ)", last.event_ids, last.siren)
    return kept


def agree_with_database(settings: Settings, replayer: object,
                        report: AuditReport) -> AuditReport:
    """Live agreement with the services' tables, then the read models, when a database
    answers; without one the replay's verdict stands alone."""
    from passnum.core.database import apply_migrations, connect, resolve_database
    from services.auditor.projections import load_projections

    url = resolve_database(settings)
    apply_migrations(url)
    with connect(url) as connection:
        report = compare_with_live(connection, replayer, report)
        load_projections(connection, report, replayer.books)  # type: ignore[attr-defined]
    return report
