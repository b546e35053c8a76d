"""The one codec: bytes <-> models, used by the workers, the tools and the auditor alike.

JSON on the wire, so that a Kafka tool can show the log without our code (kcat can, with the
flags in docs/broker.md: the broker, Tansu, limits what each tool can do). Decoding failures
are returned as values (`DecodeFailure`) with a reason code, because a consumer must send them
to the dead-letter topic rather than die of them.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from pydantic import TypeAdapter, ValidationError

from schemas.base import Command, Event, Message
from schemas.messages import ANY_COMMAND, ANY_EVENT, ANY_MESSAGE

_MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(ANY_MESSAGE)
_COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(ANY_COMMAND)
_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(ANY_EVENT)

# Upcasters turn an older `schema_version` of a type into the current one, on the decoded
# dict, before validation. Key: (type, schema_version). None yet: everything is version 1.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


@dataclass(frozen=True)
class DecodeFailure:
    reason: str  # "undecodable_bytes" | "not_a_json_object" | "schema_invalid" | ...
    detail: str


def encode(message: Message) -> bytes:
    """The message's JSON: the bytes of `message.model_dump_json().encode()`, written by
    pydantic's serializer straight to bytes (half the cost of going through a str; this
    runs for every decided event)."""
    return message.__pydantic_serializer__.to_json(message)  # type: ignore[no-any-return]


def _upcast(document: dict[str, Any]) -> dict[str, Any]:
    for _ in range(16):  # a bound on the chain of upcasters, not a retry
        kind, version = document.get("type", ""), document.get("schema_version", 1)
        # Any JSON may stand there (an object cannot be a key): the schema refuses it after.
        if type(kind) is not str or type(version) is not int:
            return document
        upcaster = UPCASTERS.get((kind, version))
        if upcaster is None:
            return document
        document = upcaster(document)
    raise AssertionError("upcaster chain longer than 16: a programming error")


# What one record may make the decoder do. A record above the size is refused before any
# parsing; a document nested deeper than Python's recursion limit makes `json.loads` raise
# RecursionError, which is an answer about the record (dead letter), never a crash.
RECORD_MAX_BYTES = 1_048_576


def _decode_with(adapter: TypeAdapter[Any], raw: bytes | None) -> Any:
    if raw is None:
        return DecodeFailure("empty_value", "the record has no value")
    if len(raw) > RECORD_MAX_BYTES:
        return DecodeFailure("record_too_large",
                             f"{len(raw)} bytes, at most {RECORD_MAX_BYTES} are decoded")
    # Fast path: pydantic parses and validates the JSON in one pass (Rust), about 4x cheaper
    # than json.loads then validate_python. It stands only for a document that no upcaster
    # claims: an older version that validates, or anything that fails, takes the full path
    # below, which gives the same models and the same failure reasons as before.
    try:
        message = adapter.validate_json(raw)
    except ValidationError:
        pass
    else:
        if (message.type, message.schema_version) not in UPCASTERS:
            return message
    try:
        # UTF-8 only (RFC 8259 for JSON exchanged between systems): `json.loads` would
        # also guess UTF-16 and UTF-32 from bytes, which the fast path above refuses.
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        return DecodeFailure("not_utf8", f"JSON in UTF-8 is required: {error}"[:300])
    except ValueError as error:
        return DecodeFailure("undecodable_bytes", str(error)[:300])
    except RecursionError:
        return DecodeFailure("too_deeply_nested", "JSON nested beyond the decoder's limit")
    if not isinstance(document, dict):
        return DecodeFailure("not_a_json_object", type(document).__name__)
    try:
        return adapter.validate_python(_upcast(document))
    except ValidationError as error:
        return DecodeFailure("schema_invalid", _validation_detail(error))


def _validation_detail(error: ValidationError) -> str:
    """The errors as JSON, with the offending values when they can be written: a lone
    surrogate (`"\\ud800"`, which `json.loads` lets through) cannot be, and must not turn
    a refusal into an exception."""
    try:
        return error.json(include_url=False)[:1000]
    except ValueError:
        return error.json(include_url=False, include_input=False)[:1000]


def decode_command(raw: bytes | None) -> Command | DecodeFailure:
    return _decode_with(_COMMAND_ADAPTER, raw)  # type: ignore[no-any-return]


def decode_event(raw: bytes | None) -> Event | DecodeFailure:
    return _decode_with(_EVENT_ADAPTER, raw)  # type: ignore[no-any-return]


def decode_message(raw: bytes | None) -> Message | DecodeFailure:
    return _decode_with(_MESSAGE_ADAPTER, raw)  # type: ignore[no-any-return]


FINGERPRINT_VERSION = "v2:"


def request_fingerprint(command: Command) -> str:
    """Digest of a command without its timestamp: a reused `request_id` with a different
    body is told apart from an honest retry. Version 2 digests pydantic's own JSON of the
    model (fields in model order: deterministic), which costs a tenth of version 1's
    `model_dump` + `json.dumps(sort_keys=True)`."""
    body = command.model_dump_json(exclude={"occurred_at"}).encode()
    return FINGERPRINT_VERSION + hashlib.sha256(body).hexdigest()[:32]


def _legacy_request_fingerprint(command: Command) -> str:
    body = command.model_dump(mode="json", exclude={"occurred_at"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


def fingerprint_matches(recorded: str, command: Command) -> bool:
    """Whether a recorded fingerprint is this command's, whichever version recorded it
    (outcomes recorded before version 2 keep their version-1 digests)."""
    if recorded.startswith(FINGERPRINT_VERSION):
        return recorded == request_fingerprint(command)
    return recorded == _legacy_request_fingerprint(command)


# ------------------------------------------------------------------ hash chain header
# Each processor input partition is one chain ("stream"): the events decided from it are
# numbered 1, 2, 3 ... and each carries sha256(previous hash || value bytes). The link
# travels in a Kafka header so that verifying it needs no re-serialisation of the payload.

CHAIN_HEADER = "passnum-chain"
GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class ChainLink:
    stream: str
    sequence: int
    previous_hash: str
    hash: str

    def to_header(self) -> bytes:
        return f"{self.stream}|{self.sequence}|{self.previous_hash}|{self.hash}".encode()


def chain_hash(previous_hash: str, value: bytes) -> str:
    return hashlib.sha256(previous_hash.encode() + value).hexdigest()


def next_link(stream: str, sequence: int, previous_hash: str, value: bytes) -> ChainLink:
    return ChainLink(stream, sequence, previous_hash, chain_hash(previous_hash, value))


def chain_headers(stream: str, sequence: int, previous_hash: str,
                  values: Iterable[bytes]) -> tuple[list[bytes], str]:
    """The headers of consecutive events of `stream` after link (`sequence`,
    `previous_hash`), each `next_link(...).to_header()` of its value, and the last hash: the
    same bytes without a `ChainLink` per event (a batch of issuance links 40,000)."""
    sha256 = hashlib.sha256
    prefix = f"{stream}|"
    headers: list[bytes] = []
    append = headers.append
    for value in values:
        sequence += 1
        digest = sha256(previous_hash.encode() + value).hexdigest()
        append(f"{prefix}{sequence}|{previous_hash}|{digest}".encode())
        previous_hash = digest
    return headers, previous_hash


# The last event of each stream in a batch also carries `passnum-head-signature`: an Ed25519
# signature, in hex, over `signed_head_message(chain header)`, made with the processors' key
# (passnum.core.head_signatures). The chain alone proves order and integrity to anyone who can
# compute SHA-256, i.e. to a forger too; the signature proves the head was a processor's.
SIGNATURE_HEADER = "passnum-head-signature"


def signed_head_message(chain_header: bytes) -> bytes:
    """What a head signature covers: the whole link (stream, sequence, both hashes)."""
    return b"passnum-head|" + chain_header


def parse_chain_header(raw: bytes) -> ChainLink | None:
    try:
        stream, sequence, previous_hash, digest = raw.decode().split("|")
        return ChainLink(stream, int(sequence), previous_hash, digest)
    except (UnicodeDecodeError, ValueError):
        return None


# ------------------------------------------------------------------ recorded outcomes
# A request's outcome is kept in PostgreSQL as one `bytea`: the events it produced, each as
# (topic, key, payload, chain link), every field a 4-byte big-endian length (-1 for none)
# then its bytes, after a 4-byte count. One value per request instead of six arrays:
# psycopg builds arrays in Python, element by element, which cost more than the decision.
# Migration 0006 converts outcomes recorded as arrays into this form, in SQL.

_LENGTH = struct.Struct(">i")
OutcomeEvent = tuple[str, "bytes | None", bytes, "bytes | None"]


def pack_outcome(events: Sequence[tuple[str, bytes | None, bytes, bytes | None]]) -> bytes:
    pack = _LENGTH.pack
    none = pack(-1)
    names: dict[str, bytes] = {}  # a topic's length and name, packed once
    parts = [pack(len(events))]
    extend = parts.extend
    for topic, key, payload, link in events:  # this runs for every decided event, twice
        name = names.get(topic)
        if name is None:
            encoded = topic.encode()
            name = names[topic] = pack(len(encoded)) + encoded
        # One `extend` of five parts rather than up to eight `append`s: a third of the cost.
        extend((name, none if key is None else pack(len(key)) + key,
                pack(len(payload)), payload, none if link is None else pack(len(link)) + link))
    return b"".join(parts)


def unpack_outcome(blob: bytes) -> list[tuple[str, bytes | None, bytes, bytes | None]]:
    view = memoryview(blob)
    (count,), position = _LENGTH.unpack_from(view, 0), _LENGTH.size
    fields: list[bytes | None] = []
    for _ in range(count * 4):
        (length,) = _LENGTH.unpack_from(view, position)
        position += _LENGTH.size
        if length < 0:
            fields.append(None)
        else:
            fields.append(bytes(view[position:position + length]))
            position += length
    assert position == len(blob), "trailing bytes in a recorded outcome"
    events = []
    for index in range(0, len(fields), 4):
        topic, key, payload, link = fields[index:index + 4]
        assert topic is not None and payload is not None
        events.append((topic.decode(), key, payload, link))
    return events
