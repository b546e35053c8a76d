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
    name = f"{origin}\x1f{request_id}\x1f{index}".encode()
    digest = bytearray(hashlib.sha1(_EVENT_ID_NAMESPACE.bytes + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def booklet_id_for(siren: str, sequence: int) -> str:
    """A booklet is its collectivité's SIREN and its 7-digit sequence there."""
    return f"{siren}-{sequence:07d}"


def booklet_sequence(booklet_id: str) -> int:
    return int(booklet_id.rsplit("-", 1)[1])


def decided_event(origin: str, command: Any, event_class: type[Event], index: int = 0,
                  **fields: Any) -> Event:
    """One event of a decision: its id derived from the command's request id and its place
    in the decision, its instant the command's."""
    return event_class(event_id=event_id_for(origin, command.request_id, index),
                       request_id=command.request_id, occurred_at=command.occurred_at,
                       **fields)
