"""The committed JSON Schemas (schemas/json/) are the current contracts, and they accept
what the codec accepts and refuse what it refuses, on one sample of every message type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from passnum.core.codec import DecodeFailure, decode_message, encode
from schemas.base import Command, Message
from schemas.export import JSON_DIRECTORY, export_json_schemas, message_type, rendered_files
from schemas.messages import MESSAGE_TYPES

from . import sample_messages

STALE = "schemas/json/ is stale: run `python -m schemas.export` and commit the result"
SAMPLES = sample_messages()


def _committed_schema(message: Message) -> dict[str, Any]:
    path = JSON_DIRECTORY / f"{message_type(type(message))}.json"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _validator(message: Message) -> jsonschema.protocols.Validator:
    schema = _committed_schema(message)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)  # type: ignore[no-any-return]


def test_the_committed_schemas_are_up_to_date(tmp_path: Path) -> None:
    written = export_json_schemas(tmp_path)

    fresh = {path.name: path.read_text(encoding="utf-8") for path in written}
    committed = {path.name: path.read_text(encoding="utf-8")
                 for path in sorted(JSON_DIRECTORY.glob("*.json"))}
    assert sorted(committed) == sorted(fresh), STALE
    for name, text in fresh.items():
        assert committed[name] == text, f"{name}: {STALE}"


def test_the_export_is_one_file_per_type_plus_the_index(tmp_path: Path) -> None:
    (tmp_path / "renamed_long_ago.json").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("kept\n")

    written = export_json_schemas(tmp_path)

    assert len(written) == len(MESSAGE_TYPES) + 1
    assert not (tmp_path / "renamed_long_ago.json").exists(), "a stale schema was kept"
    assert (tmp_path / "notes.txt").exists(), "only .json files belong to the export"
    assert all(path.read_text(encoding="utf-8").endswith("}\n") for path in written)
    assert export_json_schemas(tmp_path) == written
    assert rendered_files() == {p.name: p.read_text(encoding="utf-8") for p in written}


def test_the_index_names_class_version_and_kind_of_every_type() -> None:
    index = json.loads((JSON_DIRECTORY / "index.json").read_text(encoding="utf-8"))
    assert list(index) == sorted(index)
    assert index == {
        message_type(cls): {"class_name": cls.__name__, "schema_version": 1,
                            "kind": "command" if issubclass(cls, Command) else "event"}
        for cls in MESSAGE_TYPES
    }
    assert index["redeem_voucher"]["kind"] == "command"
    assert index["voucher_redeemed"]["kind"] == "event"


@pytest.mark.parametrize("message", SAMPLES, ids=lambda message: message.type)
def test_a_sample_of_each_message_validates_against_its_exported_schema(
        message: Message) -> None:
    document = message.model_dump(mode="json")
    assert document == json.loads(encode(message)), "the wire format is the json dump"
    _validator(message).validate(document)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda message: message.type)
def test_the_schema_refuses_what_the_codec_refuses(message: Message) -> None:
    validator = _validator(message)
    document = message.model_dump(mode="json")
    without_type = {key: value for key, value in document.items() if key != "type"}
    with_extra = {**document, "unexpected": True}
    without_request = {key: value for key, value in document.items() if key != "request_id"}
    for bad in (without_type, with_extra, without_request):
        assert not validator.is_valid(bad)
        assert isinstance(decode_message(json.dumps(bad).encode()), DecodeFailure)
