"""From record bytes to what the books need, fast: the general path's field checks.

Full pydantic validation of every event costs about 10 µs an event (94 k/s measured),
which alone would cap the replay. So the frequent event types (`HOT_TYPES`) are decoded
without it: first by the compiled patterns of `services.auditor.canonical` (the codec's
own bytes), and otherwise with the standard `json` module into a dict whose fields the
books read and check themselves (here); every other type goes through the one codec
(`passnum.core.codec.decode_event`).

Why that is still sound:
- every event was validated by the producer's codec before it was written, and the chain
  link proves that these are the producer's bytes (a modified byte is `altered_event`);
- the fast path still checks what the invariants rely on: the exact set of keys (no extra
  field, none missing), `schema_version`, the types, the formats of identifiers it parses
  and their consistency (voucher id against booklet id and SIREN), positive amounts;
- any failure there, or any decode error, is a finding (`invalid_event`), never a skip.
What the fast path does not re-check are free-text fields that no invariant reads.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from functools import lru_cache

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
MICROSECONDS = 1_000_000

# The keys of each hot type, exactly as `schemas.messages` defines them (checked by a unit
# test against the pydantic models, so a schema change cannot silently bypass this).
HOT_FIELDS: dict[str, frozenset[str]] = {
    "voucher_redeemed": frozenset({
        "schema_version", "request_id", "occurred_at", "event_id", "type", "siret", "siren",
        "booklet_id", "voucher_id", "face_value_cents"}),
    "booklet_issued": frozenset({
        "schema_version", "request_id", "occurred_at", "event_id", "type", "siren",
        "order_id", "booklet_id", "voucher_count", "face_value_cents", "target_group",
        "perimeter", "valid_from", "valid_until", "grace_until"}),
    "booklet_activated": frozenset({
        "schema_version", "request_id", "occurred_at", "event_id", "type", "siren",
        "booklet_id", "activated_cents"}),
    "redemption_rejected": frozenset({
        "schema_version", "request_id", "occurred_at", "event_id", "type", "siret",
        "voucher_id", "reason", "redeemed_at"}),
    "voucher_checked": frozenset({
        "schema_version", "request_id", "occurred_at", "event_id", "type", "siret",
        "voucher_id", "valid", "reason"}),
}
HOT_TYPES = frozenset(HOT_FIELDS)

SIREN = re.compile(r"[0-9]{9}")
SIRET = re.compile(r"[0-9]{14}")
BOOKLET_ID = re.compile(r"([0-9]{9})-([0-9]{7})")
VOUCHER_ID = re.compile(r"([0-9]{9})-([0-9]{7})-([0-9]{2})")


class InvalidEvent(ValueError):
    """A hot event that the fast path refuses: reported as `invalid_event`."""


def check_fields(document: dict, event_type: str) -> None:
    if document.keys() != HOT_FIELDS[event_type]:
        raise InvalidEvent(f"{event_type} fields {sorted(document.keys())}")
    if document["schema_version"] != 1:
        raise InvalidEvent(f"schema_version {document['schema_version']!r}")
    if type(document["event_id"]) is not str or not 0 < len(document["event_id"]) <= 64:
        raise InvalidEvent("event_id")
    if type(document["request_id"]) is not str or not 0 < len(document["request_id"]) <= 128:
        raise InvalidEvent("request_id")


def positive_int(value: object, name: str) -> int:
    if type(value) is not int or value <= 0:
        raise InvalidEvent(f"{name} {value!r}")
    return value


@lru_cache(maxsize=8192)
def day_number(text: str) -> int:
    """Days since 1970-01-01 of an ISO date (YYYY-MM-DD)."""
    return date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL


def instant_micros(text: str) -> int:
    """Microseconds since the epoch of an ISO timestamp with an offset. Fast path for the
    codec's UTC form (`2026-03-02T10:00:00Z`, with or without fraction)."""
    if type(text) is not str:
        raise InvalidEvent(f"timestamp {text!r}")
    if len(text) == 20 and text[19] == "Z" and text[10] == "T":
        try:
            seconds = (day_number(text[:10]) * 86_400 + int(text[11:13]) * 3_600
                       + int(text[14:16]) * 60 + int(text[17:19]))
            return seconds * MICROSECONDS
        except ValueError as error:
            raise InvalidEvent(f"timestamp {text!r}") from error
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise InvalidEvent(f"timestamp {text!r}") from error
    if moment.tzinfo is None:
        raise InvalidEvent(f"timestamp without offset {text!r}")
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROSECONDS + delta.microseconds


def local_day(text: str) -> int:
    """The calendar day of a timestamp as written (its own offset): the day the redeemer
    judged validity on (`occurred_at.date()`)."""
    try:
        return day_number(text[:10])
    except ValueError as error:
        raise InvalidEvent(f"timestamp {text!r}") from error


def utc_month(micros: int) -> str:
    return _month_of_day(micros // (86_400 * MICROSECONDS))


@lru_cache(maxsize=8192)
def _month_of_day(day: int) -> str:
    return date.fromordinal(day + _EPOCH_ORDINAL).strftime("%Y-%m")


def date_of_day(day: int) -> date:
    return date.fromordinal(day + _EPOCH_ORDINAL)


def micros_of(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROSECONDS + delta.microseconds


def event_fingerprint(event_id: str) -> int:
    """64 bits that identify an event id: the leading hex digits of a UUID (event ids are
    uuid5, so these are hash output), or a BLAKE2b of anything else. Never 0."""
    if len(event_id) == 36 and event_id[8] == "-":
        digits = event_id[:8] + event_id[9:13] + event_id[14:18]
        # ASCII letters and digits only: `int` also takes a sign, underscores, spaces and
        # non-ASCII digits, and "-0000000-..." gave a negative number that crashed the
        # replay (the compiled fold accepts exactly 0-9, a-f, A-F, as this does).
        if digits.isascii() and digits.isalnum():
            try:
                return int(digits, 16) | 1
            except ValueError:
                pass
    import hashlib

    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big") | 1


def parse_chain_header(headers: list) -> tuple[str, int, str, str] | None:
    """(stream, sequence, previous_hash, hash) of the `passnum-chain` header, or None."""
    for name, raw in headers:
        if name == "passnum-chain" and raw:
            try:
                stream, sequence, previous_hash, digest = raw.decode().split("|")
                if len(previous_hash) != 64 or len(digest) != 64:
                    return None
                return stream, int(sequence), previous_hash, digest
            except (UnicodeDecodeError, ValueError):
                return None
    return None
