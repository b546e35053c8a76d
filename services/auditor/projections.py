"""The auditor's PostgreSQL read models: per collectivité, venue, month and booklet, loaded
with COPY in one transaction per replay (TRUNCATE then COPY: a reader waits for the commit
and then sees the whole new replay, never half of one; rerunning replaces, never adds).
Schema and views: passnum/core/migrations/0030_auditor_read_models.sql."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, fields
from typing import Iterable, Iterator

import psycopg
from psycopg import sql

from services.auditor import columns, wire
from services.auditor.books import Books
from services.auditor.report import AuditReport, CollectiviteTotals

TABLES = ("audit_collectivites", "audit_venues", "audit_venue_months",
          "audit_collectivite_months", "audit_booklets", "audit_findings")
_TOTAL_COLUMNS = tuple(f.name for f in fields(CollectiviteTotals))


def load_projections(connection: psycopg.Connection, report: AuditReport,
                     books: Books | None = None) -> None:
    with connection.transaction():
        connection.execute(f"TRUNCATE {', '.join(TABLES)}")
        _copy(connection, "audit_collectivites", _TOTAL_COLUMNS,
              (tuple(getattr(t, c) for c in _TOTAL_COLUMNS) for t in report.totals.values()))
        _copy(connection, "audit_venues", ("siret", "redeemed_vouchers", "redeemed_cents"),
              ((siret, t["vouchers"], t["cents"]) for siret, t in report.venues.items()))
        _copy(connection, "audit_venue_months",
              ("siret", "month", "redeemed_vouchers", "redeemed_cents"),
              ((siret, month, t["vouchers"], t["cents"])
               for siret, months in report.venue_months.items() for month, t in months.items()))
        _copy(connection, "audit_collectivite_months",
              ("siren", "month", "activated_vouchers", "activated_cents", "redeemed_vouchers",
               "redeemed_cents"), _collectivite_months(report))
        _copy(connection, "audit_findings", ("code", "siren", "detail", "event_ids"),
              ((f.code, f.siren, f.detail, list(f.event_ids)) for f in report.findings))
        if books is not None:
            _copy_booklets(connection, books)
        connection.execute(
            "INSERT INTO audit_runs (event_count, duplicate_count, sound, findings, as_of, "
            "report) VALUES (%s, %s, %s, %s::jsonb, %s, %s::jsonb)",
            (report.event_count, report.duplicate_count, report.sound,
             json.dumps([asdict(f) for f in report.findings]), report.as_of,
             report.to_json()))


def _copy(connection: psycopg.Connection, table: str, columns: tuple[str, ...],
          rows: Iterable[tuple]) -> None:
    with connection.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _collectivite_months(report: AuditReport) -> Iterator[tuple]:
    for siren in sorted(set(report.issued_months) | set(report.collectivite_months)):
        issued = report.issued_months.get(siren, {})
        redeemed = report.collectivite_months.get(siren, {})
        for month in sorted((set(issued) | set(redeemed)) - {"not-activated"}):
            a, r = issued.get(month, {}), redeemed.get(month, {})
            yield (siren, month, a.get("vouchers", 0), a.get("cents", 0), r.get("vouchers", 0),
                   r.get("cents", 0))


BOOKLET_COLUMNS = ("booklet_id", "siren", "order_id", "voucher_count", "face_value_cents",
                   "target_group", "valid_until", "grace_until", "activated", "blocked",
                   "distributed", "redeemed_vouchers")


COPY_BLOCK_ROWS = 20_000


def _copy_booklets(connection: psycopg.Connection, books: Books) -> None:
    """`booklet_rows` as COPY text, written in blocks: one line per booklet from a prefix
    formatted once per order (the per-value adaptation of `write_row` cost about 5 µs a
    booklet, a million booklets in a big replay), into the table without its indexes,
    built again after the COPY (`_indexes_rebuilt`)."""
    with _indexes_rebuilt(connection, "audit_booklets"), connection.cursor().copy(
            f"COPY audit_booklets ({', '.join(BOOKLET_COLUMNS)}) FROM STDIN") as copy:
        lines: list[str] = []
        for line in booklet_lines(books):
            lines.append(line)
            if len(lines) >= COPY_BLOCK_ROWS:
                copy.write("".join(lines).encode())
                lines.clear()
        if lines:
            copy.write("".join(lines).encode())


@contextmanager
def _indexes_rebuilt(connection: psycopg.Connection, table: str) -> Iterator[None]:
    """The table's indexes (its primary key included) dropped, and created again on leaving,
    from their definitions as the catalog holds them: the migrations stay their one source.
    PostgreSQL's advice for a bulk load ("Populating a Database": an index built over
    the loaded rows is faster than one kept up row by row): on the `--full` log's 224,000
    booklets the COPY took 1.04 to 1.33 s with its two indexes kept, 0.69 to 0.78 s with
    them built after (docs/auditor.md). Inside the load's transaction, so that a reader
    never sees the table without them."""
    constraints = connection.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('p', 'u') ORDER BY conname",
        (table,)).fetchall()
    indexes = connection.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indrelid = %s::regclass AND indexrelid NOT IN "
        "(SELECT conindid FROM pg_constraint WHERE conrelid = %s::regclass) "
        "ORDER BY 1", (table, table)).fetchall()
    name = sql.Identifier(table)
    for constraint, _ in constraints:
        connection.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            name, sql.Identifier(constraint)))
    for index, _ in indexes:
        connection.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(index)))
    yield
    for constraint, definition in constraints:
        connection.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            name, sql.Identifier(constraint), sql.SQL(definition)))
    for _, definition in indexes:
        connection.execute(sql.SQL(definition))


def _copy_text(value: object) -> str:
    """One value in COPY's text format."""
    return (str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def booklet_lines(books: Books) -> Iterator[str]:
    """The rows of `booklet_rows`, as COPY text lines."""
    middles = [
        "\t".join(_copy_text(value) for value in (
            framing.siren, framing.order_id, framing.voucher_count, framing.face_value_cents,
            framing.target_group, wire.date_of_day(framing.valid_until_day),
            wire.date_of_day(framing.grace_until_day)))
        for framing in books.framings]
    sirens = [framing.siren for framing in books.framings]
    redeemed = columns.redeemed_per_booklet(books, columns.booklet_sizes(books)).tolist()
    framings = books.booklet_framing
    activated, flags, blocked = books.booklet_activated_key, books.booklet_flags, books.blocked_keys
    truth = ("f", "t")
    for booklet in range(len(framings)):
        framing = framings[booklet]
        siren = sirens[framing]
        if books.only_siren is not None and siren != books.only_siren:
            continue
        yield (f"{siren}-{books.booklet_sequence[booklet]:07d}\t{middles[framing]}\t"
               f"{truth[activated[booklet] != 0]}\t{truth[booklet in blocked]}\t"
               f"{truth[flags[booklet] != 0]}\t{redeemed[booklet]}\n")


def booklet_rows(books: Books) -> Iterator[tuple]:
    """The booklets' rows one value at a time, each booklet's vouchers counted by slicing:
    the reference `booklet_lines` is tested against."""
    for booklet in range(len(books.booklet_framing)):
        framing = books.framings[books.booklet_framing[booklet]]
        if books.only_siren is not None and framing.siren != books.only_siren:
            continue
        first = books.booklet_first_voucher[booklet]
        seconds = books.redeemed_second[first:first + framing.voucher_count]
        yield (f"{framing.siren}-{books.booklet_sequence[booklet]:07d}", framing.siren,
               framing.order_id, framing.voucher_count, framing.face_value_cents,
               framing.target_group, wire.date_of_day(framing.valid_until_day),
               wire.date_of_day(framing.grace_until_day),
               bool(books.booklet_activated_key[booklet]), booklet in books.blocked_keys,
               bool(books.booklet_flags[booklet]), framing.voucher_count - seconds.count(0))
