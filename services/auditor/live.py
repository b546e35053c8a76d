"""Live agreement: the services' own PostgreSQL state against the replayed log.

Three digests, each computed the same way on both sides, so that a difference is a finding:
- redemptions: SHA-256 over `voucher_id|siret|fingerprint(event_id)` lines in voucher id
  order (the replay keeps event ids as 64-bit fingerprints; the live side derives the same
  fingerprint from the stored event id);
- envelopes: SHA-256 over `siren|received_cents|activated_cents` lines in SIREN order;
- chain heads: each processor position's `chain_sequence` and `chain_hash` against the
  replayed head of that stream. This is what detects a log whose *last* events were cut
  off or had events appended with a valid-looking link: the processors know their heads.
The live side reads the services' tables here, so the services need no change. The live
state can be ahead of the replayed cut (events decided since the read): run it on a quiet
ledger, or read a difference together with the positions.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import psycopg

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


def live_redemption_lines(connection: psycopg.Connection) -> Iterable[str]:
    cursor = connection.cursor(name="audit_redemptions")  # server-side: never all in memory
    cursor.execute("SELECT voucher_id, siret, event_id FROM redemptions ORDER BY voucher_id")
    for voucher_id, siret, event_id in cursor:
        yield f"{voucher_id}|{siret}|{wire.event_fingerprint(event_id):016x}"


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
    findings = [Finding("live_state_disagrees", f"{name}: database {live[name][:16]}..., "
                        f"log {replayed[name][:16]}...")
                for name in sorted(live) if live[name] != replayed[name]]
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
