"""The end judgement's column counts (`services.auditor.columns`) against plain Python:
distinct keys and rows with their counts, per-booklet redemptions, and columns that can
still grow after being read."""

from __future__ import annotations

from array import array
from collections import Counter

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from services.auditor import columns

SMALL = st.integers(0, 40)
# Keys far apart: the sparse path (sorted), not the dense one (bincount).
ANY = st.one_of(SMALL, st.integers(0, 2**62))


@given(st.lists(ANY, max_size=60))
def test_counts_of_counts_like_a_counter(keys) -> None:  # type: ignore[no-untyped-def]
    assert columns.counts_of(np.array(keys, dtype=np.int64)) == sorted(Counter(keys).items())


@given(st.lists(st.tuples(SMALL, ANY, SMALL), max_size=60), st.booleans())
def test_count_rows_counts_like_a_counter(rows, small) -> None:  # type: ignore[no-untyped-def]
    if small:  # every row packs into one integer
        rows = [(a, b % 50, c) for a, b, c in rows]
    parts = tuple(np.array([row[index] for row in rows], dtype=np.int64) for index in range(3))
    assert columns.count_rows(parts) == sorted(Counter(rows).items())


@given(st.lists(st.sampled_from([0, 0, 1, 7]), max_size=50), st.lists(st.integers(0, 6),
                                                                    max_size=12))
def test_redeemed_per_booklet_counts_each_booklets_slice(seconds, sizes) -> None:  # type: ignore[no-untyped-def]
    firsts, total = [], 0
    for size in sizes:
        firsts.append(total)
        total += size

    class Books:  # the columns `redeemed_per_booklet` reads
        redeemed_second = array("I", seconds)
        voucher_total = len(seconds)
        booklet_first_voucher = array("I", firsts)

    expected = [sum(1 for second in seconds[first:first + size] if second)
                for first, size in zip(firsts, sizes)]
    counted = columns.redeemed_per_booklet(Books, np.array(sizes, dtype=np.int64))  # type: ignore[arg-type]
    assert counted.tolist() == expected


def test_a_column_read_can_still_grow() -> None:
    column = array("I", [3, 0, 5])
    read = columns.numbers(column, 2)
    column.extend([9] * 100_000)  # (an array exporting its buffer to a view could not)
    assert read.tolist() == [3, 0] and columns.numbers(column, 0).size == 0
