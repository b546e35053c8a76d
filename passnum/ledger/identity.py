"""Identifiers the ledger derives, pure: event ids from request ids, booklet ids from a
collectivité and its booklet sequence."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from schemas.base import Event

_EVENT_ID_NAMESPACE = uuid.UUID("8f6f1f6e-5a56-4f0b-9d7c-7d1a9f2c0b11")


def event_id_for(origin: str, request_id: str, index: int) -> str:
    """Deterministic event id: the same request decided again gives the same id, so a
    re-published event is recognisably the same fact. Equal to
    `uuid.uuid5(_EVENT_ID_NAMESPACE, name)`, computed without building UUID objects (this
    runs for every decided event)."""
    return _uuid5_text(hashlib.sha1(
        _NAMESPACE_BYTES + f"{origin}\x1f{request_id}\x1f{index}".encode()).hexdigest())


def event_ids_for(origin: str, request_id: str, first_index: int, count: int) -> list[str]:
    """`event_id_for(origin, request_id, index)` for `count` consecutive indexes: the
    digest of the common prefix is computed once and copied (an order of 1,000 booklets
    names 2,000 events)."""
    prefix = hashlib.sha1(_NAMESPACE_BYTES + f"{origin}\x1f{request_id}\x1f".encode())
    identifiers = []
    for index in range(first_index, first_index + count):
        digest = prefix.copy()
        digest.update(str(index).encode())
        identifiers.append(_uuid5_text(digest.hexdigest()))
    return identifiers


_NAMESPACE_BYTES = _EVENT_ID_NAMESPACE.bytes
# The variant nibble of RFC 4122 (10xx) for each hexadecimal digit of the digest there.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 0x3] for digit in "0123456789abcdef"}


def _uuid5_text(hexdigest: str) -> str:
    """The UUID text of a SHA-1 digest: its first 16 bytes, version 5, RFC 4122 variant."""
    return (f"{hexdigest[:8]}-{hexdigest[8:12]}-5{hexdigest[13:16]}-"
            f"{_VARIANT_DIGIT[hexdigest[16]]}{hexdigest[17:20]}-{hexdigest[20:32]}")


def booklet_id_for(siren: str, sequence: int) -> str:
    """A booklet is its collectivité's SIREN and its 7-digit sequence there."""
    return f"{siren}-{sequence:07d}"


def booklet_sequence(booklet_id: str) -> int:
    return int(booklet_id.rsplit("-", 1)[1])


def decided_event(origin: str, command: Any, event_class: type[Event], index: int = 0,
                  **fields: Any) -> Event:
    """One event of a decision: its id derived from the command's request id and its place
    in the decision, its instant the command's unless the rule gives another
    (`occurred_at` in `fields`)."""
    fields.setdefault("occurred_at", command.occurred_at)
    return event_class(event_id=event_id_for(origin, command.request_id, index),
                       request_id=command.request_id, **fields)
