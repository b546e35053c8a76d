"""The compiled fold of the replay's plain records (`_plain_records.c`), if it was built.

`setup.py` builds it where a C compiler is available (`optional=True`: an install without
one still works). Without it the replay folds every record in Python, the reference path,
only slower; `report_missing` says so in the log. This project's environment must have it:
tests/unit/test_auditor_compiled_fold.py fails otherwise.
"""

from __future__ import annotations

import logging
from array import array
from itertools import compress, repeat
from typing import Callable

from services.auditor import wire

logger = logging.getLogger(__name__)

fold_records: Callable[..., int] | None
_packed_fingerprints: Callable[[tuple, Callable[[str], int]], bytes] | None
_standing_index: Callable[[array, int], tuple[bytearray, int] | None] | None
_standing_pop: Callable[[bytearray, array, array, array, int, int], bytes | None]
_standing_contains_any: Callable[[bytearray, array], bool]
try:
    from services.auditor._plain_records import event_fingerprints as _packed_fingerprints
    from services.auditor._plain_records import fold_records
    from services.auditor._plain_records import standing_contains_any as _standing_contains_any
    from services.auditor._plain_records import standing_index as _standing_index
    from services.auditor._plain_records import standing_pop as _standing_pop
except ImportError as error:  # not built: the Python path folds everything
    fold_records = _packed_fingerprints = _standing_index = None
    _MISSING = f"{error}"
else:
    _MISSING = ""


def event_fingerprints(event_ids: tuple[str, ...]) -> array:
    """`wire.event_fingerprint` of every id a settlement statement lists: as many as the
    redemptions it pays, about 1 us each in Python, as much as the compiled fold of the
    redemption itself."""
    if _packed_fingerprints is None or type(event_ids) is not tuple:
        return array("Q", (wire.event_fingerprint(event_id) for event_id in event_ids))
    listed = array("Q")
    listed.frombytes(_packed_fingerprints(event_ids, wire.event_fingerprint))
    return listed


_reported = False


def report_missing() -> None:
    """Once per process: the replay runs without its compiled fold."""
    global _reported
    if fold_records is None and not _reported:
        _reported = True
        logger.warning("auditor: compiled fold not built (%s); every record is folded in "
                       "Python, about three times slower per event", _MISSING)


class StandingIndex:
    """Event fingerprint -> voucher of the standing redemptions (the non-zero entries of
    `events[:count]`), with a dictionary's semantics: a later voucher with the same
    fingerprint replaces the earlier one, `len` counts distinct fingerprints. In C (a flat
    table, `_plain_records.c`) when it is built and every fingerprint is odd, as
    `wire.event_fingerprint` makes them; a dictionary otherwise, the reference the C table
    is tested against (tests/unit/test_auditor_standing_index.py)."""

    def __init__(self, events: array, count: int, use_c: bool = True) -> None:
        built = _standing_index(events, count) if use_c and _standing_index else None
        self.table: bytearray | None = None
        self.entries: dict[int, int] = {}
        if built is not None:
            self.table, self.size = built
        else:
            head = events[:count]
            self.entries = dict(zip(compress(head, head), compress(range(len(head)), head)))
            self.size = len(self.entries)

    def __len__(self) -> int:
        return self.size

    def contains_any(self, fingerprints: array) -> bool:
        if self.table is not None:
            return _standing_contains_any(self.table, fingerprints)
        return any(map(self.entries.__contains__, fingerprints))

    def pop_all(self, fingerprints: array, venues: array, seconds: array, venue: int = -1,
                end: int = 0) -> array | None:
        """The vouchers of `fingerprints`, each entry popped in turn (a fingerprint listed
        twice is not found the second time), while each is found and, with `venue` >= 0,
        its voucher is at `venue` with a second from 1 to below `end`; None at the first
        that is not, the entries popped before it staying popped."""
        vouchers = array("I")
        if self.table is not None:
            packed = _standing_pop(self.table, fingerprints, venues, seconds, venue, end)
            if packed is None:
                self._spend()
                return None
            vouchers.frombytes(packed)
            self.size -= len(vouchers)
            return vouchers
        for voucher in map(self.entries.pop, fingerprints, repeat(None)):
            if voucher is None or venue >= 0 and (
                    voucher >= min(len(venues), len(seconds)) or venues[voucher] != venue
                    or not 1 <= seconds[voucher] < end):
                self._spend()
                return None
            vouchers.append(voucher)
        self.size -= len(vouchers)
        return vouchers

    def _spend(self) -> None:
        """After a None the index holds nothing (what was popped before it is not known)."""
        self.table, self.entries, self.size = None, {}, 0
