"""The standing-redemption index in C (`compiled.StandingIndex`, `_plain_records.c`: a flat
open-addressing table) against the dictionary it replaces, which stays its reference and
its fallback: the same sizes, the same answers and vouchers, after any sequence of lookups
and pops, on random fingerprint columns (zeros, one fingerprint at several vouchers, even
values that the table refuses, colliding slots), venues and seconds."""

from __future__ import annotations

from array import array

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.auditor import compiled
from services.auditor.compiled import StandingIndex

# Few distinct values, so that fingerprints repeat and probe sequences collide; multiples of
# a large power of two land on one slot of a small table.
FINGERPRINTS = st.one_of(st.sampled_from([0, 0, 1, 3, 5, 7, (1 << 40) + 1, (1 << 41) + 1,
                                          (1 << 63) + 1, 2**64 - 1]),
                         st.integers(0, 2**64 - 1).map(lambda n: n | 1))
# (kind, fingerprints as places in the column (negative: a value of FINGERPRINTS), venue, end)
OPERATIONS = st.lists(st.tuples(st.sampled_from(["contains", "pop", "pop checked"]),
                                st.lists(st.one_of(st.integers(0, 45), st.integers(0, 45),
                                                   st.integers(0, 45), FINGERPRINTS.map(
                                                       lambda n: -1 - n)), max_size=2),
                                st.integers(0, 1), st.sampled_from([0, 1, 2, 6, 12])),
                      max_size=8)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FINGERPRINTS, max_size=40), st.integers(0, 45), st.booleans(), OPERATIONS,
       st.randoms(use_true_random=False))
def test_the_table_answers_as_the_dictionary(events, count, with_even, operations,
                                             random) -> None:  # type: ignore[no-untyped-def]
    if with_even and events:
        events[random.randrange(len(events))] = 4  # an even fingerprint: refused in C
    column = array("Q", events)
    venues = array(random.choice("HI"), [random.randrange(2) for _ in events])
    seconds = array("I", [random.choice([0, 1, 5, 11]) for _ in events])
    del seconds[len(seconds) - random.randrange(2):]  # a column shorter than the other
    table, reference = StandingIndex(column, count), StandingIndex(column, count, use_c=False)
    assert (table.table is not None) == (compiled.fold_records is not None
                                         and not (with_even and 4 in column[:count]))
    assert len(table) == len(reference)
    for operation, places, venue, end in operations:
        indexed = min(count, len(column))  # (a place in the indexed part, mostly)
        fingerprints = array("Q", [column[place % indexed] if place >= 0 and indexed
                                   else -1 - place if place < 0 else 7 for place in places])
        if operation == "contains":
            assert table.contains_any(fingerprints) == reference.contains_any(fingerprints)
            continue
        if operation == "pop":
            venue = -1
        assert (table.pop_all(fingerprints, venues, seconds, venue, end)
                == reference.pop_all(fingerprints, venues, seconds, venue, end))
        assert len(table) == len(reference)


def test_the_table_is_used_and_pops_once() -> None:
    """The C table is built here (the project's environment has the module), a voucher is
    popped once, a later voucher with the same fingerprint replaces an earlier one, and
    the venue and the seconds bound the pops."""
    column = array("Q", [5, 0, 7, 5, 9])
    index = StandingIndex(column, 5)
    assert index.table is not None and len(index) == 3
    venues, seconds = array("H", [1, 1, 1, 1, 2]), array("I", [3, 3, 3, 4, 5])
    assert index.pop_all(array("Q", [5, 7]), venues, seconds, 1, 5) == array("I", [3, 2])
    assert not index.contains_any(array("Q", [5, 7])) and index.contains_any(array("Q", [9]))
    assert len(index) == 1
    assert index.pop_all(array("Q", [9]), venues, seconds, 1, 9) is None  # another venue
    again = StandingIndex(column, 5)
    assert again.pop_all(array("Q", [9]), venues, seconds, 2, 5) is None  # not below the end
    assert StandingIndex(column, 5).pop_all(array("Q", [9, 9]), venues, seconds) is None
    unused = array("I", [3, 3, 0, 4, 5])  # (second 0: no standing redemption there)
    assert StandingIndex(column, 5).pop_all(array("Q", [7]), venues, unused, 1, 9) is None
    short = array("I", [3, 3, 3, 4])  # (a voucher past a column is not taken)
    assert StandingIndex(column, 5).pop_all(array("Q", [9]), venues, short, 2, 9) is None
    assert StandingIndex(column, 5).pop_all(array("Q", [9]), venues, seconds, 2, 9) == \
        array("I", [4])


def _longest_run(table: bytearray) -> int:
    """The longest run of occupied slots (16 bytes each: fingerprint, voucher): how far a
    lookup may have to walk."""
    fingerprints = memoryview(table).cast("Q")[::2]
    longest = run = 0
    for fingerprint in fingerprints:
        run = run + 1 if fingerprint else 0
        longest = max(longest, run)
    return longest


def test_fingerprints_a_log_chooses_do_not_pile_up_in_one_run() -> None:
    """Event ids are written by whoever writes the log, and so are their fingerprints: ids
    that differ only in their high bits all landed on one slot with a multiplier fixed in
    the source and the product's middle bits (every lookup then walks all of them, a
    quadratic audit). With a random multiplier and the product's top bits, they spread as
    any others do: in a half-full table the longest run stays short."""
    forged = array("Q", [(number << 44) | 1 for number in range(1, 1 << 14)])
    index = StandingIndex(forged, len(forged))
    assert index.table is not None and len(index) == len(forged)
    assert _longest_run(index.table) < 200
    assert index.pop_all(forged, array("H"), array("I")) == array("I", range(len(forged)))
