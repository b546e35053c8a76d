"""The compiled fold of the replay's plain records (`_plain_records.c`), if it was built.

`setup.py` builds it where a C compiler is available (`optional=True`: an install without
one still works). Without it the replay folds every record in Python, the reference path,
only slower; `report_missing` says so in the log. This project's environment must have it:
tests/unit/test_auditor_compiled_fold.py fails otherwise.
"""

from __future__ import annotations

import logging
from array import array
from typing import Callable

from services.auditor import wire

logger = logging.getLogger(__name__)

fold_records: Callable[..., int] | None
_packed_fingerprints: Callable[[tuple, Callable[[str], int]], bytes] | None
try:
    from services.auditor._plain_records import event_fingerprints as _packed_fingerprints
    from services.auditor._plain_records import fold_records
except ImportError as error:  # not built: the Python path folds everything
    fold_records = _packed_fingerprints = None
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
