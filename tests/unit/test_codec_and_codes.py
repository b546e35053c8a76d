"""The one codec (bytes <-> models) and the printed voucher codes.

Codec: every message type survives the round trip; every way a record can be bad comes
back as a `DecodeFailure` with its reason, never as an exception; event ids are
deterministic. Codes: a typo is told apart from a forgery, and neither passes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from passnum.core import codec
from passnum.core.codec import DecodeFailure, decode_command, decode_event, decode_message, encode, request_fingerprint
from passnum.ledger.identity import event_id_for
from passnum.ledger.voucher_codes import (
    ALPHABET,
    CHECK_ALPHABET,
    VoucherNumber,
    make_code,
    normalise,
    parse_code,
    routing_booklet_id,
)
from schemas.base import Command, Event, Message
from schemas.messages import MESSAGE_TYPES, FundEnvelope

from . import MORNING, SIREN, sample_messages

KEY = b"unit-test-voucher-code-key-0001"
NUMBER = VoucherNumber(SIREN, 1234, 7)
SAMPLES = sample_messages()


def _sample_id(message: Message) -> str:
    return message.type  # type: ignore[attr-defined,no-any-return]


def _document(message: Message) -> dict[str, Any]:
    return json.loads(encode(message))  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ round trip


def test_there_is_one_sample_of_every_message_type() -> None:
    assert sorted(type(m).__name__ for m in SAMPLES) == sorted(c.__name__ for c in MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=_sample_id)
def test_every_message_type_survives_the_round_trip(message: Message) -> None:
    raw = encode(message)

    decoded = decode_message(raw)

    assert type(decoded) is type(message)
    assert decoded == message
    assert encode(decoded) == raw, "re-encoding must give the same bytes (hash chain)"
    specific = decode_command(raw) if isinstance(message, Command) else decode_event(raw)
    assert specific == message


@pytest.mark.parametrize("message", SAMPLES, ids=_sample_id)
def test_encode_writes_the_bytes_of_pydantics_own_json(message: Message) -> None:
    # `encode` calls the serializer directly: it must stay byte for byte the model's JSON
    # (the hash chain links these bytes, and every release must write the same ones).
    assert encode(message) == message.model_dump_json().encode()


@pytest.mark.parametrize("values", [[], [b"{}"], [b"one", b"", b"three" * 50, b"one"]])
def test_chain_headers_are_the_links_made_one_by_one(values: list[bytes]) -> None:
    headers, last_hash = codec.chain_headers("issuer/t/3", 41, "ab" * 32, values)

    expected, previous_hash = [], "ab" * 32
    for offset, value in enumerate(values):
        link = codec.next_link("issuer/t/3", 42 + offset, previous_hash, value)
        expected.append(link.to_header())
        previous_hash = link.hash
    assert headers == expected and last_hash == previous_hash


def test_the_wire_format_is_plain_json_with_the_discriminator() -> None:
    document = _document(SAMPLES[0])
    assert document["type"] == "register_collectivite"
    assert document["schema_version"] == 1
    assert document["occurred_at"] == "2024-03-01T09:00:00Z"


@pytest.mark.parametrize("message", [m for m in SAMPLES if isinstance(m, Event)][:3],
                         ids=_sample_id)
def test_an_event_is_not_a_command_and_the_other_way_round(message: Event) -> None:
    failure = decode_command(encode(message))
    assert isinstance(failure, DecodeFailure) and failure.reason == "schema_invalid"
    command = next(m for m in SAMPLES if isinstance(m, Command))
    failure = decode_event(encode(command))
    assert isinstance(failure, DecodeFailure) and failure.reason == "schema_invalid"


# ------------------------------------------------------------------------------ failures


def _valid_document() -> dict[str, Any]:
    return _document(FundEnvelope(request_id="r", occurred_at=MORNING, siren=SIREN,
                                  committed_cents=1000))


@pytest.mark.parametrize("raw, reason, detail", [
    (None, "empty_value", "no value"),
    (b"", "undecodable_bytes", ""),
    (b"\xff\xfe\x00", "not_utf8", "UTF-8"),
    (b'{"type": "fund_envelope", "siren": "\xff"}', "not_utf8", "UTF-8"),
    # JSON in UTF-16 (with its byte order mark), which `json.loads` would read.
    ('{"type": "fund_envelope"}'.encode("utf-16"), "not_utf8", "UTF-8"),
    (b"{not json", "undecodable_bytes", ""),
    (b"[1, 2]", "not_a_json_object", "list"),
    (b'"fund_envelope"', "not_a_json_object", "str"),
    (b"42", "not_a_json_object", "int"),
    (b"null", "not_a_json_object", "NoneType"),
])
def test_bytes_that_are_not_a_message_object(raw: bytes | None, reason: str,
                                             detail: str) -> None:
    for decode in (decode_message, decode_command, decode_event):
        failure = decode(raw)
        assert isinstance(failure, DecodeFailure), failure
        assert failure.reason == reason
        assert detail in failure.detail


@pytest.mark.parametrize("change, error", [
    ({"committed_cents": -5}, "greater_than"),
    ({"committed_cents": 1.5}, "int_type"),  # strict: a number that is not an integer
    ({"committed_cents": "1500"}, "int_type"),  # strict: no conversion from text
    ({"siren": "12345678"}, "string_pattern_mismatch"),
    ({"occurred_at": "yesterday"}, "datetime"),
    ({"request_id": ""}, "string_too_short"),
    ({"type": "transfer_money"}, "union_tag_invalid"),  # an unknown type
    ({"surprise": True}, "extra_forbidden"),  # an extra field
    ({"committed_cents": True}, "int_type"),  # strict: a boolean is not an integer
    ({"occurred_at": "9999-12-31T00:00:00Z"}, "less_than"),  # a command's years are bounded
    ({"request_id": "r\u0000"}, "string_pattern_mismatch"),  # no NUL: PostgreSQL refuses it
    # A lone surrogate, which json.loads lets through and UTF-8 cannot write: the failure's
    # detail leaves the value out rather than raise while writing it.
    ({"siren": "\ud800"}, "string_unicode"),
])
def test_schema_invalid_documents_say_why(change: dict[str, Any], error: str) -> None:
    document = {**_valid_document(), **change}

    failure = decode_command(json.dumps(document).encode())

    assert isinstance(failure, DecodeFailure)
    assert failure.reason == "schema_invalid"
    assert error in failure.detail
    assert len(failure.detail) <= 1000


@pytest.mark.parametrize("field", ["type", "siren", "request_id", "occurred_at"])
def test_a_missing_required_field_is_schema_invalid(field: str) -> None:
    document = _valid_document()
    del document[field]
    failure = decode_message(json.dumps(document).encode())
    assert isinstance(failure, DecodeFailure) and failure.reason == "schema_invalid"


@pytest.mark.parametrize("field, value", [
    ("siren", "55210055\u0664"),  # an Arabic-Indic four: a decimal digit to \\d, not to us
    ("siret", "5521005540010\u0664"),
    ("voucher_id", "552100554-000000\u0661-01"),
    ("booklet_id", "552100554-000000\u0661"),
])
def test_identifiers_are_ascii_digits_only(field: str, value: str) -> None:
    message = next(m for m in SAMPLES if field in type(m).model_fields)
    document = {**_document(message), field: value}
    failure = decode_message(json.dumps(document).encode())
    assert isinstance(failure, DecodeFailure) and "string_pattern_mismatch" in failure.detail


def test_an_extra_field_is_refused_on_every_message_type() -> None:
    for message in SAMPLES:
        document = {**_document(message), "unexpected": 1}
        failure = decode_message(json.dumps(document).encode())
        assert isinstance(failure, DecodeFailure), message.type  # type: ignore[attr-defined]
        assert "extra_forbidden" in failure.detail


def test_an_upcaster_turns_an_old_version_into_the_current_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def from_version_0(document: dict[str, Any]) -> dict[str, Any]:
        upgraded = {**document, "schema_version": 1}
        upgraded["committed_cents"] = upgraded.pop("amount_cents")
        return upgraded

    monkeypatch.setitem(codec.UPCASTERS, ("fund_envelope", 0), from_version_0)
    document = _valid_document()
    document["schema_version"] = 0
    document["amount_cents"] = document.pop("committed_cents")

    decoded = decode_command(json.dumps(document).encode())

    assert decoded == FundEnvelope(request_id="r", occurred_at=MORNING, siren=SIREN,
                                   committed_cents=1000)


def test_a_cycle_of_upcasters_is_a_programming_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(codec.UPCASTERS, ("fund_envelope", 1), lambda document: document)
    with pytest.raises(AssertionError, match="longer than 16"):
        decode_command(json.dumps(_valid_document()).encode())


# ------------------------------------------------------------------------------ ids


def test_event_ids_are_deterministic_and_distinct_per_origin_request_and_index() -> None:
    assert event_id_for("issuer", "r-1", 0) == event_id_for("issuer", "r-1", 0)
    ids = {event_id_for(origin, request, index)
           for origin in ("issuer", "redeemer") for request in ("r-1", "r-2", "r-10")
           for index in range(12)}
    assert len(ids) == 2 * 3 * 12
    parsed = uuid.UUID(event_id_for("issuer", "r-1", 0))
    assert parsed.version == 5 and len(str(parsed)) <= 64


def test_event_ids_do_not_collide_through_the_separator() -> None:
    assert event_id_for("issuer", "r\x1f1", 0) != event_id_for("issuer", "r", 10)
    assert event_id_for("issuer", "a", 1) != event_id_for("issuer\x1fa", "1", 1)


def test_event_ids_are_stable_across_releases() -> None:
    # A pinned value: changing the namespace or the recipe would give every re-decided
    # request a new id, and duplicates would no longer be recognised in the log.
    assert event_id_for("issuer", "request-1", 0) == str(uuid.uuid5(
        uuid.UUID("8f6f1f6e-5a56-4f0b-9d7c-7d1a9f2c0b11"), "issuer\x1frequest-1\x1f0"))


def test_the_request_fingerprint_ignores_the_time_but_not_the_body() -> None:
    command = FundEnvelope(request_id="r", occurred_at=MORNING, siren=SIREN, committed_cents=1)
    retried = command.model_copy(update={"occurred_at": MORNING.replace(hour=23)})
    changed = command.model_copy(update={"committed_cents": 2})
    assert request_fingerprint(command) == request_fingerprint(retried)
    assert request_fingerprint(command) != request_fingerprint(changed)


# ------------------------------------------------------------------------------ voucher codes


def _check_symbol(body: str) -> str:
    """The documented check, written again from the docstring: mod 37 of the body's value."""
    value = 0
    for symbol in body:
        value = value * 32 + ALPHABET.index(symbol)
    return CHECK_ALPHABET[value % 37]


def test_a_code_reads_back_as_its_voucher() -> None:
    code = make_code(KEY, NUMBER)

    parsed = parse_code(KEY, code)

    assert parsed.outcome == "valid" and parsed.number == NUMBER
    assert parsed.number.voucher_id == f"{SIREN}-0001234-07"
    assert [len(group) for group in code.split("-")] == [4, 4, 4, 4, 4, 1]
    assert routing_booklet_id(code) == f"{SIREN}-0001234"


@settings(max_examples=200, deadline=None)
@given(siren=st.text("0123456789", min_size=9, max_size=9), sequence=st.integers(0, 9_999_999),
       position=st.integers(1, 99))
def test_every_number_round_trips(siren: str, sequence: int, position: int) -> None:
    number = VoucherNumber(siren, sequence, position)
    code = make_code(KEY, number)
    assert parse_code(KEY, code).number == number
    assert routing_booklet_id(code) == number.booklet_id
    assert _check_symbol(normalise(code)[:20]) == normalise(code)[20]


def test_any_single_symbol_substitution_is_a_typo() -> None:
    text = normalise(make_code(KEY, NUMBER))
    tried = 0
    for position, original in enumerate(text):
        alphabet = ALPHABET if position < 20 else CHECK_ALPHABET
        for symbol in alphabet:
            if symbol == original:
                continue
            mistyped = text[:position] + symbol + text[position + 1:]
            assert parse_code(KEY, mistyped).outcome == "mistyped_code", (position, symbol)
            tried += 1
    assert tried == 20 * 31 + 36


def test_swapping_two_neighbours_is_detected() -> None:
    text = normalise(make_code(KEY, NUMBER))
    swaps = 0
    for position in range(len(text) - 1):
        if text[position] == text[position + 1]:
            continue
        swapped = text[:position] + text[position + 1] + text[position] + text[position + 2:]
        outcome = parse_code(KEY, swapped).outcome
        if position < 19:
            assert outcome == "mistyped_code", position
        else:
            # With the check symbol moved into the body, it may not be a body symbol at all.
            assert outcome in ("mistyped_code", "malformed_code"), outcome
        swaps += 1
    assert swaps >= 15


@settings(max_examples=300, deadline=None)
@given(sequence=st.integers(0, 9_999_999), position=st.integers(1, 99),
       place=st.integers(0, 19))
def test_swapping_neighbours_in_the_body_is_always_a_typo(sequence: int, position: int,
                                                          place: int) -> None:
    text = normalise(make_code(KEY, VoucherNumber(SIREN, sequence, position)))
    swapped = text[:place] + text[place + 1] + text[place] + text[place + 2:]
    if swapped != text:
        assert parse_code(KEY, swapped).outcome in ("mistyped_code", "malformed_code")
        if place < 19:
            assert parse_code(KEY, swapped).outcome == "mistyped_code"


def test_a_code_made_with_another_key_is_forged() -> None:
    assert parse_code(b"another key", make_code(KEY, NUMBER)).outcome == "forged_code"
    assert parse_code(KEY, make_code(b"another key", NUMBER)).outcome == "forged_code"


@pytest.mark.parametrize("step", [1, -1, 100, 10_000_000_000])
def test_incrementing_the_number_and_fixing_the_check_is_forged(step: int) -> None:
    text = normalise(make_code(KEY, NUMBER))
    number = int(NUMBER.digits()) + step
    symbols = ""
    for _ in range(12):
        symbols = ALPHABET[number % 32] + symbols
        number //= 32
    body = symbols + text[12:20]
    assert parse_code(KEY, body + _check_symbol(body)).outcome == "forged_code"


def test_a_number_beyond_eighteen_digits_is_forged() -> None:
    body = "Z" * 12 + "0" * 8  # 2**60 - 1 has 19 digits: no voucher has that number
    assert parse_code(KEY, body + _check_symbol(body)).outcome == "forged_code"


def test_people_may_type_it_in_lowercase_without_dashes_with_spaces_and_look_alikes() -> None:
    code = make_code(KEY, VoucherNumber(SIREN, 2, 5))
    assert "0" in code[:-1] and "1" in code[:-1], "this test needs a code with 0 and 1"
    variants = [
        code.lower(),
        code.replace("-", ""),
        code.replace("-", " "),
        code.replace("1", "I"),
        code.replace("1", "l"),
        code.replace("1", "L").replace("0", "O"),
        code.replace("0", "o").lower(),
    ]
    for variant in variants:
        parsed = parse_code(KEY, variant)
        assert parsed.outcome == "valid" and parsed.number == VoucherNumber(SIREN, 2, 5), variant


@pytest.mark.parametrize("text", [
    "", "-", "A", "ABCD-EFGH", "ABCD-EFGH-JKMN-PQRS-TVWX",  # too short
    "ABCD-EFGH-JKMN-PQRS-TVWX-YZ",  # too long
    "ABCD-EFGH-JKMN-PQRS-TVWX-YZ0",
])
def test_codes_of_the_wrong_length_are_malformed(text: str) -> None:
    assert parse_code(KEY, text).outcome == "malformed_code"
    assert parse_code(KEY, text).number is None


@pytest.mark.parametrize("position, symbol", [(0, "U"), (5, "*"), (19, "~"), (13, "#"),
                                              (20, "#"), (3, "É")])
def test_symbols_outside_the_alphabet_are_malformed(position: int, symbol: str) -> None:
    text = normalise(make_code(KEY, NUMBER))
    assert parse_code(KEY, text[:position] + symbol + text[position + 1:]).outcome == (
        "malformed_code")


def test_the_extra_check_symbols_are_accepted_in_the_check_position() -> None:
    outcomes = set()
    for position in range(1, 100):
        code = make_code(KEY, VoucherNumber(SIREN, 1, position))
        outcomes.add(code[-1])
        assert parse_code(KEY, code).outcome == "valid"
    assert outcomes & set("*~$=U"), "none of the 99 codes used an extra check symbol"


def test_routing_of_garbage_gives_no_booklet() -> None:
    assert routing_booklet_id("garbage") is None
    assert routing_booklet_id("Z" * 21) is None


@pytest.mark.parametrize("version", ["{}", "[1]", '{"a": [2]}', "1.5", '"1"', "null"])
def test_a_schema_version_of_any_json_is_refused_not_raised(version: str) -> None:
    """Found by the log fuzzer: an object there made the upcaster lookup raise (an object is
    no dictionary key), which a worker would have died of instead of dead-lettering it."""
    raw = ('{"schema_version": ' + version + ', "request_id": "r", "occurred_at": '
           '"2026-03-02T10:00:00Z", "type": "fund_envelope", "siren": "123456782", '
           '"committed_cents": 100}').encode()
    decoded = decode_command(raw)
    assert isinstance(decoded, DecodeFailure) and decoded.reason == "schema_invalid"
