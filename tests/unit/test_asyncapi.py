"""docs/asyncapi.json: current, valid for the official AsyncAPI parser, and true to the code
(every topic, the payload schemas exported in schemas/json/, the keys the routing code
really writes, the dead letters the core really writes)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from passnum.core import processing
from passnum.core.codec import GENESIS_HASH, DecodeFailure, next_link
from passnum.core.head_signatures import sign_batch_heads, signer_for
from passnum.core.settings import Settings
from passnum.core.topology import route_command, topology_for
from passnum.ledger.envelope import Policy
from passnum.tools.asyncapi import DOCUMENT_PATH, build_document, render
from schemas.base import Command, Event, Message
from schemas.export import JSON_DIRECTORY, message_type, schema_id
from schemas.messages import (
    AUDITOR_EVENTS,
    ISSUER_EVENTS,
    MESSAGE_TYPES,
    CancelRedemption,
    CloseSettlementMonth,
    RedeemVoucher,
)
from services.auditor import publish
from services.issuer.handler import IssuerHandler
from services.redeemer.handler import RedeemerHandler

from . import MORNING, SIRET, sample_messages

REPOSITORY = Path(__file__).resolve().parents[2]
VALIDATOR = REPOSITORY / "tools" / "asyncapi" / "validate.js"
STALE = "docs/asyncapi.json is stale: run `python -m passnum.tools.asyncapi` and commit the result"
SETTINGS = Settings.from_environment({})
TOPOLOGY = topology_for(SETTINGS)
SAMPLES = sample_messages()


def committed() -> dict[str, Any]:
    return json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def run_parser(path: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the AsyncAPI parser is a JavaScript package")
    assert (VALIDATOR.parent / "node_modules" / "@asyncapi" / "parser").is_dir(), (
        "the AsyncAPI parser is not installed: run scripts/bootstrap "
        "(npm ci in tools/asyncapi)")
    return subprocess.run([node, str(VALIDATOR), str(path)], capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_committed_document_is_up_to_date() -> None:
    assert DOCUMENT_PATH.read_text(encoding="utf-8") == render(build_document()), STALE


def test_the_official_parser_accepts_the_document() -> None:
    result = run_parser(DOCUMENT_PATH)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["asyncapi"] == "3.0.0"
    assert summary["warnings"] == 0, result.stdout
    addresses = {channel["address"].replace("{prefix}", SETTINGS.topic_prefix)
                 for channel in summary["channels"]}
    assert addresses == {topic.name for topic in TOPOLOGY.all_topics()}
    names = sorted(name for channel in summary["channels"] for name in channel["messages"])
    assert names == sorted([*(message_type(cls) for cls in MESSAGE_TYPES),
                            "dead_letter", "conformance_probe"])


def test_the_parser_refuses_a_broken_document(tmp_path: Path) -> None:
    document = committed()
    broken = copy.deepcopy(document)
    broken["operations"]["issuerDecidesCommands"]["action"] = "consume"
    broken["components"]["schemas"]["RedeemVoucher"]["properties"]["code"]["type"] = "text"
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(broken), encoding="utf-8")

    result = run_parser(path)

    assert result.returncode == 1, result.stdout
    assert "INVALID" in result.stdout
    assert "operations/issuerDecidesCommands/action" in result.stdout
    assert "RedeemVoucher/properties/code/type" in result.stdout


def test_each_payload_is_the_exported_json_schema_of_its_class() -> None:
    document = committed()
    messages = document["components"]["messages"]
    by_title = {body["title"]: body for body in messages.values()}
    for cls in MESSAGE_TYPES:
        exported = json.loads((JSON_DIRECTORY / f"{message_type(cls)}.json").read_text())
        assert exported["$id"] == schema_id(cls) == f"urn:passnum:schema:{message_type(cls)}:1"
        message = by_title[cls.__name__]
        assert message["name"] == message_type(cls)
        assert message["x-json-schema-id"] == exported["$id"]
        payload = document["components"]["schemas"][cls.__name__]
        assert payload == {key: value for key, value in exported.items()
                           if key not in ("$schema", "$id")}
        # Processors chain what they decide; the auditor publishes outside them, unchained.
        chained = issubclass(cls, Event) and cls not in AUDITOR_EVENTS
        assert ("passnum-chain" in message.get("headers", {}).get("properties", {})) == chained


def real_key(message: Message) -> bytes:
    """The key the ledger's own code writes this message with."""
    if isinstance(message, Command):
        return route_command(TOPOLOGY, message)[1]
    if isinstance(message, ISSUER_EVENTS):
        return IssuerHandler(TOPOLOGY, Policy(grace_days_after_year_end=31))._route(message)[1]
    if isinstance(message, AUDITOR_EVENTS):
        return auditor_key(message)
    cause: Command = CloseSettlementMonth(request_id="r", occurred_at=MORNING, month="2024-03")
    if getattr(message, "command_type", None) == "cancel_redemption":
        cause = CancelRedemption(request_id="r", occurred_at=MORNING,
                                 voucher_id="552100554-0000001-01", siret=SIRET)
    return RedeemerHandler(TOPOLOGY, b"key")._route(cause, message)[1]


def auditor_key(event: Message) -> bytes:
    """The auditor publishes with its own producer: record what it sends."""
    sent: list[bytes] = []

    class Producer:
        def send(self, topic: str, key: bytes, value: bytes) -> Any:
            sent.append(key)
            return type("Sent", (), {"get": lambda self, timeout: None})()

        def close(self, timeout: float) -> None:
            pass

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(publish, "make_producer", lambda settings: Producer())
        publish.publish_auditor_events(SETTINGS, [event])  # type: ignore[list-item]
    return sent[0]


def key_schema_of(message: Message) -> dict[str, Any]:
    messages = committed()["components"]["messages"]
    return messages[type(message).__name__]["bindings"]["kafka"]["key"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda message: message.type)
def test_the_documented_key_is_the_key_the_code_writes(message: Message) -> None:
    key = real_key(message).decode()
    jsonschema.validate(key, key_schema_of(message))


def test_a_wrongly_documented_key_is_caught() -> None:
    voucher_redeemed = next(sample for sample in SAMPLES if sample.type == "voucher_redeemed")
    siret_schema = committed()["components"]["messages"]["ProviderAccredited"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(real_key(voucher_redeemed).decode(),
                            siret_schema["bindings"]["kafka"]["key"])


def test_a_code_that_names_no_booklet_is_keyed_by_itself() -> None:
    command = RedeemVoucher(request_id="r", occurred_at=MORNING, code="NOT-A-CODE", siret=SIRET)
    key = route_command(TOPOLOGY, command)[1].decode()
    assert key == "NOT-A-CODE"
    jsonschema.validate(key, key_schema_of(command))


def test_the_headers_a_processor_writes_match_the_documented_ones(tmp_path: Path) -> None:
    link = next_link(f"redeemer/{TOPOLOGY.redeemer_commands.name}/3", 1, GENESIS_HASH, b"{}")
    signer = signer_for(SETTINGS.with_overrides(
        chain_signing_key_file=str(tmp_path / "chain-signing-key.pem")))
    outbox = [("in", 3, "out", b"k", b"{}", link.to_header())]
    sign_batch_heads(outbox, signer)
    headers = dict(processing.OutboxEvent("out", b"k", b"{}", outbox[0][5]).headers())
    assert set(headers) == {"passnum-chain", "passnum-head-signature"}
    documented = committed()["components"]["messages"]["VoucherRedeemed"]["headers"]
    jsonschema.validate({name: value.decode() for name, value in headers.items()}, documented)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**headers, "passnum-chain": "no link"}, documented)


def test_a_dead_letter_matches_its_documented_schema() -> None:
    output = processing._BatchOutput()
    handler = type("Handler", (), {"dead_letter_topic": TOPOLOGY.dead_letters.name})()
    record = processing.InputRecord(TOPOLOGY.redeemer_commands.name, 2, 41, b"k", b"\xff{")
    processing._dead_letter(output, handler, record,  # type: ignore[arg-type]
                            DecodeFailure("undecodable_bytes", "not UTF-8"))
    (_, _, topic, key, value, header), = output.outbox
    document = committed()
    message = document["components"]["messages"]["DeadLetter"]
    assert topic == TOPOLOGY.dead_letters.name and header is None
    jsonschema.validate(json.loads(value), document["components"]["schemas"]["DeadLetter"])
    jsonschema.validate(key.decode(), message["bindings"]["kafka"]["key"])


def test_the_consumer_groups_are_the_topology_s() -> None:
    operations = committed()["operations"]
    groups = {name: body["bindings"]["kafka"]["groupId"] for name, body in operations.items()
              if "bindings" in body}
    wanted = {"issuerDecidesCommands": TOPOLOGY.issuer_group,
              "redeemerLearnsIssuerFacts": TOPOLOGY.redeemer_group,
              "redeemerDecidesCommands": TOPOLOGY.redeemer_group}
    assert {name: schema["examples"][0] for name, schema in groups.items()} == wanted
    for name, schema in groups.items():
        jsonschema.validate(wanted[name], schema)
    assert all(operations[name]["action"] == "receive" for name in wanted)
