"""PostgreSQL adapter of the redeemer: the booklet facts it learned from the issuer, the
redemptions it decided, and the provider registry."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Mapping, Sequence

import psycopg

from passnum.ledger.booklet import BookletFacts
from passnum.ledger.settlement_month import SettlementBook, UnsettledRedemption
from passnum.ledger.venue import Provider
from passnum.ledger.voucher import RedeemerView, Redemption
from schemas.base import Event
from schemas.messages import (
    BookletActivated,
    BookletBlocked,
    BookletIssued,
    SettlementMonthClosed,
    SettlementStatementIssued,
)


class ConcurrentSettlement(RuntimeError):
    """A redemption this batch decided about was settled by a concurrent close: the batch
    rolls back and is decided again (the worker's bounded retries)."""


_BOOKLET_COLUMNS = ("booklet_id", "siren", "voucher_count", "face_value_cents", "perimeter",
                    "valid_from", "valid_until", "grace_until", "activated", "blocked",
                    "activated_at")


def apply_issuer_events(connection: psycopg.Connection, events: Sequence[Event]) -> None:
    """Insert-if-absent, then flags that only turn on: order- and duplicate-proof."""
    issued = [event for event in events if isinstance(event, BookletIssued)]
    if issued:
        connection.execute(
            "INSERT INTO redeemer_booklets (booklet_id, siren, voucher_count, face_value_cents, "
            "perimeter, valid_from, valid_until, grace_until) "
            "SELECT b, s, v, f, string_to_array(p, ','), vf, vu, g FROM unnest("
            "%b::text[], %b::text[], %b::int[], %b::bigint[], %b::text[], %b::date[], "
            "%b::date[], %b::date[]) AS u(b, s, v, f, p, vf, vu, g) "
            "ON CONFLICT (booklet_id) DO NOTHING",
            ([e.booklet_id for e in issued], [e.siren for e in issued],
             [e.voucher_count for e in issued], [e.face_value_cents for e in issued],
             [",".join(e.perimeter) for e in issued], [e.valid_from for e in issued],
             [e.valid_until for e in issued], [e.grace_until for e in issued]), binary=True)
    activations = [event for event in events if isinstance(event, BookletActivated)]
    if activations:
        # the earliest activation instant: a scan dated before it is refused
        connection.execute(
            "UPDATE redeemer_booklets AS b SET activated = true, activated_at = "
            "LEAST(b.activated_at, u.t) FROM (SELECT i, min(t) AS t FROM unnest("
            "%b::text[], %b::timestamptz[]) AS a(i, t) GROUP BY i) AS u WHERE b.booklet_id = u.i",
            ([e.booklet_id for e in activations], [e.occurred_at for e in activations]),
            binary=True)
    blocked = [event.booklet_id for event in events if isinstance(event, BookletBlocked)]
    if blocked:
        connection.execute(
            "UPDATE redeemer_booklets SET blocked = true WHERE booklet_id = ANY(%b)",
            (blocked,), binary=True)


# Serialises venue status changes with the scans of every partition: a batch that
# redeems holds it shared, a batch that changes a venue's status holds it alone. So when a
# change is decided, every scan another partition accepted with the former status is
# committed and seen (`latest_scans`), and no scan accepted after it read the former status.
VENUE_STATUS_LOCK_KEY = int.from_bytes(b"venues", "big")


def lock_venue_statuses(connection: psycopg.Connection, exclusive: bool) -> None:
    """Held until the batch's transaction ends. Taken before any other lock of the
    batch's decisions (the settlement's), so that two batches never wait for each other."""
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    connection.execute(f"SELECT {function}(%s)", (VENUE_STATUS_LOCK_KEY,))


# A batch's booklets and redemptions, by key: one probe of the primary key per key, written
# so that the planner has no other choice. Without statistics (autovacuum is off on the
# development machine, nothing is analysed; the connections plan each execution with its
# parameters) `= ANY(%b)` of 1,000 keys was planned as a scan of the whole table (8.7 ms at
# 95,000 redemptions) and a plain join with the list as a hash of every booklet. A lateral
# subquery that may not be flattened (`OFFSET 0`) is run once per key (1.1-2.0 ms).
SELECT_BOOKLETS = (
    f"SELECT {', '.join('b.' + column for column in _BOOKLET_COLUMNS)}, "
    "b.blocked AND EXISTS (SELECT 1 FROM redeemer_applied_blocks AS a "
    "WHERE a.booklet_id = b.booklet_id) FROM unnest(%b::text[]) AS wanted(booklet_id) "
    "CROSS JOIN LATERAL (SELECT * FROM redeemer_booklets AS b "
    "WHERE b.booklet_id = wanted.booklet_id OFFSET 0) AS b")
SELECT_REDEMPTIONS = (
    "SELECT r.voucher_id, r.booklet_id, r.siren, r.siret, r.face_value_cents, "
    "r.redeemed_at, r.event_id, r.settlement_month "
    "FROM unnest(%b::text[]) AS wanted(voucher_id) "
    "CROSS JOIN LATERAL (SELECT * FROM redemptions AS r "
    "WHERE r.voucher_id = wanted.voucher_id OFFSET 0) AS r")


def load_view(connection: psycopg.Connection, booklet_ids: Iterable[str],
              voucher_ids: Iterable[str], sirets: Iterable[str],
              restricted_sirets: Iterable[str] = (),
              venue_lock: bool | None = None) -> RedeemerView:
    """The queries sent together (pipeline mode): one round trip. `restricted_sirets`: the
    venues whose status the batch changes, whose latest accepted scan is loaded.
    `venue_lock`: `lock_venue_statuses` to take first (exclusive or shared), or None."""
    booklet_list = sorted(set(booklet_ids))
    restricted = sorted(set(restricted_sirets))
    view = RedeemerView({}, {}, {})
    with connection.pipeline():
        if venue_lock is not None:  # executed in order: before the loads below
            lock_venue_statuses(connection, venue_lock)
        booklets = connection.execute(SELECT_BOOKLETS, (booklet_list,), binary=True)
        redemptions = connection.execute(SELECT_REDEMPTIONS, (sorted(set(voucher_ids)),),
                                         binary=True)
        providers = connection.execute(
            "SELECT siret, name, iban, address_code, status, accredited_since, changed_at "
            "FROM providers WHERE siret = ANY(%b)",
            (sorted(set(sirets)),), binary=True)
        latest = connection.execute(
            "SELECT s, (SELECT max(redeemed_at) FROM redemptions WHERE siret = s) "
            "FROM unnest(%b::text[]) AS s", (restricted,), binary=True) if restricted else None
    for row in booklets.fetchall():
        facts = BookletFacts(*(*row[:4], tuple(row[4] if row[4] != [""] else ()), *row[5:]))
        view.booklets[facts.booklet_id] = facts
    for row in redemptions.fetchall():
        view.redemptions[row[0]] = Redemption(*(*row[:5], row[5].isoformat(), *row[6:]))
    for row in providers.fetchall():
        view.providers[row[0]] = Provider(*row)
    if latest is not None:
        view.latest_scans.update(latest.fetchall())
    return view


# Up to this many redemptions are written with one INSERT (one round trip), more by COPY
# (two round trips, less CPU per row than psycopg's arrays).
REDEMPTIONS_INSERT_MAX = 100


def save_view_changes(connection: psycopg.Connection, before: RedeemerView,
                      after_redemptions: dict[str, Redemption],
                      providers: Iterable[Provider],
                      after_booklets: Mapping[str, BookletFacts] | None = None) -> None:
    """What the batch's decisions changed, from the view before them and after: the
    redemptions, the venues whose status changed, the blocks applied (`after_booklets`)."""
    # Compare the redemptions themselves, not only the voucher ids: a redemption cancelled
    # and a new one decided in the same batch must replace the row (delete, then insert).
    added = [r for voucher_id, r in after_redemptions.items()
             if before.redemptions.get(voucher_id) != r]
    removed = [voucher_id for voucher_id, r in before.redemptions.items()
               if after_redemptions.get(voucher_id) != r]
    if removed:
        # Only an unpaid redemption may go. A month closed by a concurrent transaction
        # (another partition) since this batch loaded its view makes the count differ:
        # fail the batch, whose retry sees the statement and answers `already_settled`.
        deleted = connection.execute(
            "DELETE FROM redemptions WHERE voucher_id = ANY(%b) AND settlement_month IS NULL",
            (removed,)).rowcount
        if deleted != len(removed):
            raise ConcurrentSettlement(f"{len(removed) - deleted} of {len(removed)} "
                                       "cancelled redemptions were settled meanwhile")
    # No ON CONFLICT: a second redemption of one voucher fails the transaction.
    if 0 < len(added) <= REDEMPTIONS_INSERT_MAX:
        connection.execute(
            "INSERT INTO redemptions (voucher_id, booklet_id, siren, siret, face_value_cents, "
            "redeemed_at, event_id) SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], "
            "%b::text[], %b::int8[], %b::timestamptz[], %b::text[])",
            ([r.voucher_id for r in added], [r.booklet_id for r in added],
             [r.siren for r in added], [r.siret for r in added],
             [r.face_value_cents for r in added],
             [datetime.fromisoformat(r.redeemed_at) for r in added],
             [r.event_id for r in added]), binary=True)
    elif added:
        with connection.cursor().copy(
                "COPY redemptions (voucher_id, booklet_id, siren, siret, face_value_cents, "
                "redeemed_at, event_id) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "text", "text", "int8", "timestamptz", "text"])
            for r in added:
                copy.write_row((r.voucher_id, r.booklet_id, r.siren, r.siret,
                                r.face_value_cents, datetime.fromisoformat(r.redeemed_at),
                                r.event_id))
    rows = [(p.siret, p.name, p.iban, p.address_code, p.status, p.accredited_since,
             p.changed_at) for p in providers]
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO providers (siret, name, iban, address_code, status, "
                "accredited_since, changed_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (siret) DO UPDATE SET status = excluded.status, "
                "accredited_since = excluded.accredited_since, "
                "changed_at = excluded.changed_at", rows)
    applied = [booklet_id for booklet_id, facts in (after_booklets or {}).items()
               if facts.block_applied and not before.booklets[booklet_id].block_applied]
    if applied:
        # No ON CONFLICT: a block is applied once (the booklet's scans are decided on one
        # partition, which loaded it unapplied); a second application fails the batch.
        connection.execute("INSERT INTO redeemer_applied_blocks (booklet_id) "
                           "SELECT unnest(%b::text[])", (applied,), binary=True)


# ------------------------------------------------------------------------------ settlement

# Serialises closes with each other, whatever partition (or worker) decides them: the key
# is the bytes of "settle" as a bigint, so that no other advisory lock collides by accident.
SETTLEMENT_LOCK_KEY = int.from_bytes(b"settle", "big")


def lock_settlement(connection: psycopg.Connection) -> None:
    """Held until the batch's transaction ends."""
    connection.execute("SELECT pg_advisory_xact_lock(%s)", (SETTLEMENT_LOCK_KEY,))


def load_settlement_book(connection: psycopg.Connection) -> SettlementBook:
    rows = connection.execute("SELECT month FROM settlement_months").fetchall()
    return SettlementBook(frozenset(row[0] for row in rows))


def load_unsettled(connection: psycopg.Connection, before: datetime,
                   rows_per_call: int) -> list[UnsettledRedemption]:
    """Unpaid redemptions dated before `before`, locked: a concurrent cancellation waits for
    this transaction, then finds them paid (see `save_view_changes`). Redemptions that
    other transactions have not committed yet are not seen: they go to a later statement.
    The whole result arrives with the query; it is converted `rows_per_call` rows at a
    time, so that other threads run in between (`Settings.close_rows_per_call`)."""
    cursor = connection.execute(
        "SELECT event_id, siret, voucher_id, face_value_cents, redeemed_at FROM redemptions "
        "WHERE settlement_month IS NULL AND redeemed_at < %s FOR UPDATE",
        (before,), binary=True)
    unsettled: list[UnsettledRedemption] = []
    while rows := cursor.fetchmany(rows_per_call):
        unsettled += [UnsettledRedemption(*row) for row in rows]
    return unsettled


# The redemptions a statement pays, marked by voucher id (the key), and only where the
# event id is the one the statement lists: one probe of the primary key per listed
# redemption, whatever the planner guesses. Joined directly, the planner (no statistics
# here) hashed every row of the partial index of unpaid redemptions, which keeps an entry
# for every redemption marked since the last VACUUM: at each call of a close, a read of
# every redemption of the year so far.
MARK_PAID = (
    "UPDATE redemptions AS r SET settlement_month = %s "
    "FROM unnest(%b::text[], %b::text[]) AS u(voucher_id, event_id) "
    "CROSS JOIN LATERAL (SELECT x.ctid AS found FROM redemptions AS x "
    "WHERE x.voucher_id = u.voucher_id AND x.event_id = u.event_id "
    "AND x.settlement_month IS NULL OFFSET 0) AS p WHERE r.ctid = p.found")


def record_settlement(connection: psycopg.Connection, events: Sequence[Event],
                      unsettled: Sequence[UnsettledRedemption],
                      rows_per_call: int) -> None:
    """Mark the paid redemptions and keep the month and its statements, for the HTTP API and
    the exports. Nothing is recorded for a rejected close. `unsettled`: what
    `load_unsettled` locked, which names the voucher of each redemption a statement pays.
    The redemptions are marked `rows_per_call` at a time (`Settings.close_rows_per_call`)."""
    closings = [event for event in events if isinstance(event, SettlementMonthClosed)]
    if not closings:
        return
    (closing,) = closings
    connection.execute(
        "INSERT INTO settlement_months (month, closed_at, event_id, statement_count, "
        "voucher_count, face_value_cents) VALUES (%s, %s, %s, %s, %s, %s)",
        (closing.month, closing.occurred_at, closing.event_id, closing.statement_count,
         closing.voucher_count, closing.face_value_cents))
    statements = [event for event in events if isinstance(event, SettlementStatementIssued)]
    parts: dict[str, int] = {}
    rows = []
    for statement in statements:
        parts[statement.siret] = parts.get(statement.siret, 0) + 1
        rows.append((statement.event_id, statement.month, statement.siret,
                     parts[statement.siret], statement.voucher_count,
                     statement.face_value_cents, list(statement.redemption_event_ids),
                     statement.occurred_at))
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO settlement_statements (event_id, month, siret, part, "
                "voucher_count, face_value_cents, redemption_event_ids, issued_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
    paid = [event_id for statement in statements for event_id in statement.redemption_event_ids]
    voucher_of = {redemption.event_id: redemption.voucher_id for redemption in unsettled}
    updated = 0
    for start in range(0, len(paid), rows_per_call):
        listed = paid[start:start + rows_per_call]
        updated += connection.execute(
            MARK_PAID,
            (closing.month, [voucher_of.get(event_id, "") for event_id in listed], listed),
            binary=True).rowcount
    # The rows were locked by load_unsettled in this transaction: anything else is a bug.
    assert updated == len(paid), f"{updated} of {len(paid)} redemptions marked as paid"
