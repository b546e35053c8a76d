"""Settlement invariants, pure: every redemption on at most one statement, statements that
add up to the redemptions they list, at the venue that redeemed them, dated before the end
of the statement's month (passnum.ledger.settlement_month states the rule), and monthly
closings that add up to their statements.

Statements name redemptions by event id; the books keep each redemption's event id as a
64-bit fingerprint in its voucher slot. Matching them needs an index from fingerprint to
voucher: it is built one sixteenth at a time, so the end of the replay never holds a
dictionary of every redemption at once.

Each judgement also says which statements can keep their references as marks on the vouchers
(`Books.record_payments`): those whose every reference names a standing, uncontested
redemption that no other statement's mark holds, each once. Their lists are then rebuilt
exactly (`Books.full_statements`) whenever settlement is checked reference by reference.
"""

from __future__ import annotations

from array import array
from collections import defaultdict, deque
from itertools import compress, repeat
from copy import copy
from typing import cast

from passnum.ledger.settlement_month import month_end
from services.auditor.books import SECONDS_EPOCH, Books, Finding, Statement
from services.auditor.compiled import StandingIndex
from services.auditor.invariants import Judgement, placeholder

SLICES = 16
# Up to this many standing redemptions, one dictionary fingerprint -> voucher is built in C
# (about 100 bytes a redemption, only during the end judgement) and each statement is
# checked with C-level maps over its list; beyond, the index is built a sixteenth at a time.
WHOLE_INDEX_REDEMPTIONS = 2_500_000


# The C table of `standing_index` takes about 32 bytes a standing redemption (16-byte slots,
# at most half full), in the judgement's forked child while it runs: 537 MB for the 16.4
# million redemptions of a national year (docs/scale.md). Past this, the exact check by
# slices runs instead, about ten times slower.
STANDING_INDEX_REDEMPTIONS = 40_000_000


def standing_index(books: Books) -> StandingIndex | None:
    """`redemption_index` in C (`compiled.StandingIndex`), for the sound check and the
    uniqueness of event ids: a flat table of 16 bytes a slot, half full."""
    events = books.redeemed_event[:books.voucher_total]
    if len(events) - events.count(0) > STANDING_INDEX_REDEMPTIONS:
        return None
    return StandingIndex(books.redeemed_event, books.voucher_total)


def redemption_index(books: Books) -> dict[int, int] | None:
    """Fingerprint -> voucher of every standing redemption, built in C; None when there are
    too many redemptions to hold them in one dictionary."""
    events = books.redeemed_event[:books.voucher_total]
    if len(events) - events.count(0) > WHOLE_INDEX_REDEMPTIONS:
        return None
    return dict(zip(compress(events, events), compress(range(len(events)), events)))


Payments = list[tuple[int, array]]
# per statement, the voucher each reference resolved to (None: none), or None: not resolved
Resolved = list[list[int | None] | None]


def check_settlement(books: Books, judgement: Judgement,
                     index: dict[int, int] | None = None,
                     consumed: StandingIndex | None = None) -> Payments:
    """`consumed` (from `standing_index`) is emptied by the sound check; `index` is kept
    for the exact one. The payments that statements' lists can become
    (`Books.record_payments`)."""
    if books.only_siren is not None:
        return []  # a statement pays a venue for every collectivité: not a one-tenant check
    resolved = _sound_settlement(books, judgement, consumed)
    verified = resolved is not None
    if resolved is None:
        whole = books
        statements = books.full_statements()
        if statements is not books.statements:
            whole = copy(books)  # (a view: the lists rebuilt, everything else shared)
            whole.paid_by = array("H")
            whole.statements = statements
        index = index if index is not None else redemption_index(whole)
        if index is None:
            resolved = _check_settlement_by_slices(whole, judgement)
        else:
            resolved = _check_settlement_with_index(whole, judgement, index)
    _check_closings(books, judgement)
    return _payments(books, resolved, verified)


def _payments(books: Books, resolved: Resolved, verified: bool) -> Payments:
    """The statements whose list can become marks: never recorded so (`paid`), each
    reference resolved to a standing voucher of the statement's venue dated before the end
    of its month (`verified`: the sound check saw it), not contested (its slot may change),
    not marked already and named once, by one statement, among these. What the sound check
    then takes on trust of a marked voucher (venue, date) is fixed for as long as the mark."""
    taken: set[int] = set()
    contested, paid_by = books.contested, books.paid_by
    payments = []
    for number, vouchers in enumerate(resolved):
        statement = books.statements[number]
        if not vouchers or statement.paid or None in vouchers:
            continue
        found = cast("list[int]", vouchers)
        if contested and any(map(contested.__contains__, found)):
            continue
        if not verified:  # (the sound check took each reference out of its index once)
            unique = set(found)
            if (len(unique) != len(found) or not taken.isdisjoint(unique)
                    or (paid_by and any(paid_by[v] for v in found if v < len(paid_by)))
                    or not _at_its_venue_in_time(books, statement, found)):
                continue
            taken |= unique
        payments.append((number, array("I", found)))
    return payments


def _at_its_venue_in_time(books: Books, statement: Statement, vouchers: list[int]) -> bool:
    venue = books.venue_index.get(statement.siret, -1)
    end = int(month_end(statement.month).timestamp()) - SECONDS_EPOCH + 1
    return (list(map(books.redeemed_venue.__getitem__, vouchers)).count(venue) == len(vouchers)
            and max(map(books.redeemed_second.__getitem__, vouchers)) < end)


def _sound_settlement(books: Books, judgement: Judgement,
                      index: StandingIndex | None) -> Resolved | None:
    """The sound case, told with one lookup per reference, all in C: one face value, and
    every reference found (and taken out, so a second listing is not found) among the
    standing redemptions, whose vouchers are all at the statement's venue and dated before
    the end of its month. Then each statement pays what it lists, once, and only its
    totals are left to check. The references recorded as marks (`Books.paid_by`) are taken
    out first: their redemptions are standing (a contested one's mark was undone), each
    once. None, with nothing judged, as soon as one of these does not hold: the exact check
    then runs (on an index of its own)."""
    faces = {framing.face_value_cents for framing in books.framings}
    if len(faces) > 1:
        return None
    index = index if index is not None else standing_index(books)
    if index is None:
        return None
    venues, seconds = books.redeemed_venue, books.redeemed_second
    if books.paid_by and index.pop_all(array("Q", compress(books.redeemed_event, books.paid_by)),
                                       venues, seconds) is None:
        return None
    face = next(iter(faces), 0)
    totals, resolved = [], cast("Resolved", [])
    for number, statement in enumerate(books.statements):
        venue = books.venue_index.get(statement.siret)
        if venue is None:
            return None
        end = int(month_end(statement.month).timestamp()) - SECONDS_EPOCH + 1
        # popped: a reference listed a second time (paid twice) is then not found
        vouchers = index.pop_all(statement.listed, venues, seconds, venue, end)
        if vouchers is None:
            return None
        count = statement.listed_count
        totals.append((number, count, count * face))
        resolved.append(vouchers)  # type: ignore[arg-type]  # (an array of int)
    for number, matched, cents in totals:
        _check_totals(books, judgement, number, matched, cents)
    return resolved


def _check_settlement_with_index(books: Books, judgement: Judgement,
                                 index: dict[int, int]) -> Resolved:
    """Statements in (month, event id) order: the first to list a redemption pays it. A
    statement whose references all resolve to distinct, unpaid redemptions of its venue
    dated before its month's end is checked in C; any other goes reference by reference."""
    faces = {framing.face_value_cents for framing in books.framings}
    face_values = _face_values(books)
    paid_by = array("i", [-1]) * books.voucher_total
    venues_of, seconds_of = books.redeemed_venue.__getitem__, books.redeemed_second.__getitem__
    order = sorted(range(len(books.statements)),
                   key=lambda s: (books.statements[s].month, books.statements[s].event_id))
    resolved: Resolved = [None] * len(books.statements)
    for number in order:
        statement = books.statements[number]
        vouchers = resolved[number] = list(map(index.get, statement.listed))
        # read as int only once `None not in vouchers` holds (the first test of `clean`)
        found = cast("list[int]", vouchers)
        venue = books.venue_index.get(statement.siret, -1)
        end = int(month_end(statement.month).timestamp()) - SECONDS_EPOCH + 1
        clean = (None not in vouchers and len(set(vouchers)) == len(vouchers)
                 and list(map(venues_of, found)).count(venue) == len(vouchers)
                 and max(map(seconds_of, found), default=0) < end
                 and max(map(paid_by.__getitem__, found), default=-1) < 0)
        if clean:
            deque(map(paid_by.__setitem__, found, repeat(number)), maxlen=0)
            cents = (len(vouchers) * next(iter(faces)) if len(faces) == 1
                     else sum(map(face_values.get, found)))
            _check_totals(books, judgement, number, len(vouchers), cents)
            continue
        count = cents = 0
        for fingerprint, voucher in zip(statement.listed, vouchers):
            if voucher is None or venues_of(voucher) != venue or seconds_of(voucher) >= end \
                    or paid_by[voucher] >= 0:
                _check_reference(books, judgement, number, fingerprint, voucher, paid_by)
            else:
                paid_by[voucher] = number
            if voucher is not None:
                count += 1
                cents += face_values.get(voucher, 0)
        _check_totals(books, judgement, number, count, cents)
    return resolved


def _check_settlement_by_slices(books: Books, judgement: Judgement) -> Resolved:
    statements = sorted(range(len(books.statements)),
                        key=lambda s: (books.statements[s].month, books.statements[s].event_id))
    matched_count = array("q", bytes(8 * len(books.statements)))
    matched_cents = array("q", bytes(8 * len(books.statements)))
    # voucher -> the statement that paid it (-1: none yet); 4 bytes a voucher, only here.
    paid_by = array("i", [-1]) * books.voucher_total
    references = _references_by_slice(books, statements)
    vouchers = _vouchers_by_slice(books)
    ends = [int(month_end(s.month).timestamp()) - SECONDS_EPOCH + 1 for s in books.statements]
    venues = [books.venue_index.get(s.siret, -1) for s in books.statements]
    face_values = _face_values(books)
    resolved: Resolved = [[] for _ in books.statements]
    for slice_number in range(SLICES):
        index = {books.redeemed_event[voucher]: voucher for voucher in vouchers[slice_number]}
        fingerprints, owners = references[slice_number]
        for fingerprint, statement in zip(fingerprints, owners):
            voucher = index.get(fingerprint)
            resolved[statement].append(voucher)  # type: ignore[union-attr]
            if voucher is None or books.redeemed_venue[voucher] != venues[statement] or (
                    books.redeemed_second[voucher] >= ends[statement]) or paid_by[voucher] >= 0:
                _check_reference(books, judgement, statement, fingerprint, voucher, paid_by)
            else:
                paid_by[voucher] = statement
            if voucher is not None:
                matched_count[statement] += 1
                matched_cents[statement] += face_values.get(voucher, 0)
    for statement_number in statements:
        _check_totals(books, judgement, statement_number, matched_count[statement_number],
                      matched_cents[statement_number])
    return resolved


def _references_by_slice(books: Books, statements: list[int]) -> list[tuple[array, array]]:
    slices = [(array("Q"), array("I")) for _ in range(SLICES)]
    for statement in statements:
        for fingerprint in books.statements[statement].listed:
            fingerprints, owners = slices[(fingerprint >> 8) % SLICES]
            fingerprints.append(fingerprint)
            owners.append(statement)
    return slices


def _vouchers_by_slice(books: Books) -> list[array]:
    slices = [array("I") for _ in range(SLICES)]
    redeemed_second, redeemed_event = books.redeemed_second, books.redeemed_event
    for voucher in range(books.voucher_total):
        if redeemed_second[voucher]:
            slices[(redeemed_event[voucher] >> 8) % SLICES].append(voucher)
    return slices


def _face_values(books: Books) -> FaceValues:
    return FaceValues(books)


class FaceValues:
    """Face value of a voucher, by its booklet (found by bisection, last one cached)."""

    def __init__(self, books: Books) -> None:
        self.books = books

    def get(self, voucher: int, default: int = 0) -> int:
        from services.auditor.invariants import _booklet_of_voucher

        booklet = _booklet_of_voucher(self.books, voucher)
        if booklet < 0:
            return default
        return self.books.framings[self.books.booklet_framing[booklet]].face_value_cents


def _check_reference(books: Books, judgement: Judgement, statement_number: int,
                     fingerprint: int, voucher: int | None, paid_by: array) -> None:
    from services.auditor.invariants import _voucher_id

    statement = books.statements[statement_number]
    if voucher is None:
        judgement.findings.append(Finding(
            "statement_lists_unknown_redemption", f"{statement.siret} {statement.month}",
            (statement.event_id, placeholder(fingerprint))))
        return
    voucher_id = _voucher_id(books, voucher)
    if books.venues[books.redeemed_venue[voucher]].siret != statement.siret:
        judgement.findings.append(Finding(
            "statement_pays_another_venue", f"{voucher_id} on {statement.siret}'s statement",
            (statement.event_id, placeholder(fingerprint)), voucher_id[:9]))
    end_second = int(month_end(statement.month).timestamp()) - SECONDS_EPOCH + 1
    if books.redeemed_second[voucher] >= end_second:
        judgement.findings.append(Finding(
            "statement_pays_a_later_redemption", f"{voucher_id} on {statement.month}",
            (statement.event_id, placeholder(fingerprint)), voucher_id[:9]))
    earlier = paid_by[voucher]
    if earlier >= 0:
        judgement.findings.append(Finding(
            "redemption_paid_twice", voucher_id,
            (books.statements[earlier].event_id, statement.event_id, placeholder(fingerprint)),
            voucher_id[:9]))
    else:
        paid_by[voucher] = statement_number


def _check_totals(books: Books, judgement: Judgement, statement_number: int, count: int,
                  cents: int) -> None:
    statement = books.statements[statement_number]
    listed = statement.listed_count
    if statement.voucher_count != listed or (
            count == listed and statement.face_value_cents != cents):
        judgement.findings.append(Finding(
            "statement_totals_wrong", f"{statement.siret} {statement.month}: says "
            f"{statement.voucher_count} vouchers / {statement.face_value_cents} cents, lists "
            f"{listed} redemptions worth {cents}", (statement.event_id,)))


def _check_closings(books: Books, judgement: Judgement) -> None:
    by_month: dict[str, list] = defaultdict(list)
    for closing in books.closings:
        by_month[closing.month].append(closing)  # type: ignore[attr-defined]
    statements_by_month: dict[str, list] = defaultdict(list)
    for statement in books.statements:
        statements_by_month[statement.month].append(statement)
    for month, closings in sorted(by_month.items()):
        if len(closings) > 1:
            judgement.findings.append(Finding("month_closed_twice", month,
                                              tuple(sorted(c.event_id for c in closings))))
        statements = statements_by_month.get(month, [])
        closing = closings[0]
        expected = (len(statements), sum(s.voucher_count for s in statements),
                    sum(s.face_value_cents for s in statements))
        recorded = (closing.statement_count, closing.voucher_count, closing.face_value_cents)
        if recorded != expected:
            judgement.findings.append(Finding(
                "closing_totals_wrong", f"{month}: closing says {recorded}, statements "
                f"add up to {expected}", (closing.event_id,)))
    for month in sorted(set(statements_by_month) - set(by_month)):
        judgement.findings.append(Finding(
            "statement_without_closing", month,
            tuple(sorted(s.event_id for s in statements_by_month[month]))))
