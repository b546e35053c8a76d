"""The compiled fold of plain redemption records (`_plain_records.c`), if it was built.

`setup.py` builds it where a C compiler is available (`optional=True`: an install without
one still works). Without it the replay folds every record in Python, the reference path,
only slower; `report_missing` says so in the log. This project's environment must have it:
tests/unit/test_auditor_compiled_fold.py fails otherwise.
"""

from __future__ import annotations

import logging
from typing import Callable

logger = logging.getLogger(__name__)

fold_plain_redemptions: Callable[..., int] | None
try:
    from services.auditor._plain_records import fold_plain_redemptions
except ImportError as error:  # not built: the Python path folds everything
    fold_plain_redemptions = None
    _MISSING = f"{error}"
else:
    _MISSING = ""

_reported = False


def report_missing() -> None:
    """Once per process: the replay runs without its compiled fold."""
    global _reported
    if fold_plain_redemptions is None and not _reported:
        _reported = True
        logger.warning("auditor: compiled fold not built (%s); every record is folded in "
                       "Python, about three times slower per event", _MISSING)
