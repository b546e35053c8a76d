"""Types of the compiled fold (`_plain_records.c`), which mypy cannot read from the binary.
Its arguments are what services/auditor/compiled.py declares for it."""

from typing import Callable

def fold_records(*arguments: object) -> int: ...
def event_fingerprints(event_ids: tuple[str, ...], fingerprint: Callable[[str], int], /
                       ) -> bytes: ...
