"""The AsyncAPI 3.0 document of the ledger's topics, generated from the topology
(`passnum.core.topology`) and the message models (`schemas.messages`), so that it cannot drift
from the code: every topic is a channel, every message type a message with its payload
schema (the exported JSON Schema of its class), its Kafka key and its headers.

`python -m passnum.tools.asyncapi` rewrites the committed copy, docs/asyncapi.json;
tests/unit/test_asyncapi.py fails when it is stale, and has the official AsyncAPI parser
(npm `@asyncapi/parser`, tools/asyncapi/) validate it.

The topic prefix is a channel parameter (`{prefix}`, PASSNUM_TOPIC_PREFIX, `passnum` by
default); partition counts are the defaults of `passnum.core.settings.Settings`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from passnum.core.codec import CHAIN_HEADER, SIGNATURE_HEADER
from passnum.core.settings import Settings
from passnum.core.topology import Topic, Topology, topology_for
from schemas.base import Command, Message
from schemas.export import message_type, schema_id, schema_of
from schemas.messages import (
    AUDITOR_EVENTS,
    ISSUER_COMMANDS,
    ISSUER_EVENTS,
    REDEEMER_COMMANDS,
    REDEEMER_EVENTS,
    CancelRedemption,
    CheckVoucher,
    CloseSettlementMonth,
    RedeemVoucher,
)

DOCUMENT_PATH = Path(__file__).resolve().parent.parent.parent / "docs" / "asyncapi.json"
KAFKA_BINDING_VERSION = "0.5.0"
PREFIX_PARAMETER = "prefix"
DEFAULT_PREFIX = "passnum"
DEAD_LETTER_MESSAGE = "DeadLetter"
PROBE_MESSAGE = "ConformanceProbeRecord"

# What a message key can be. The routing code chooses among them (`route_command` in
# passnum/core/topology.py, `_route` in each service's handler, the auditor's publish); the test
# checks the real keys of one sample of every message type against these schemas.
KEY_SCHEMAS: dict[str, dict[str, Any]] = {
    "booklet_id": {"type": "string", "pattern": r"^[0-9]{9}-[0-9]{7}$",
                   "description": "booklet id (SIREN-number): every claim about one "
                                  "booklet's vouchers is decided on one partition"},
    "siren": {"type": "string", "pattern": r"^[0-9]{9}$",
              "description": "the collectivité's SIREN: one envelope's orders and fundings "
                             "are decided one after the other"},
    "siret": {"type": "string", "pattern": r"^[0-9]{14}$", "description": "the venue's SIRET"},
    "month": {"type": "string", "pattern": r"^[0-9]{4}-(0[1-9]|1[0-2])$",
              "description": "the month, YYYY-MM"},
    "year": {"type": "string", "pattern": r"^[0-9]{4}$", "description": "the year, YYYY"},
    "voucher_code": {"type": "string", "minLength": 1, "maxLength": 64,
                     "description": "the code as typed, when it names no booklet (a forged "
                                    "or mistyped code, rejected where it lands)"},
    "source_topic": {"type": "string", "description": "the topic the undecodable record "
                                                      "was read from"},
    "probe_key": {"type": "string", "pattern": "^conformance-",
                  "description": "`conformance-<run id>-<probe>`"},
}

CHAIN_HEADER_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"^[^|/]+/[^|]+/[0-9]+\|[1-9][0-9]*\|[0-9a-f]{64}\|[0-9a-f]{64}$",
    "description": (
        "The hash chain link: `stream|sequence|previous hash|hash`, UTF-8. A stream is one "
        "input partition of a processor (`processor/topic/partition`); its events are "
        "numbered 1, 2, 3 ... and hash = sha256(previous hash, as hex text, followed by the "
        "record value's bytes), the first previous hash being 64 zeros. The auditor checks "
        "every link (services/auditor/chain.py)."),
}

SIGNATURE_HEADER_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": "^[0-9a-f]{128}$",
    "description": (
        "On the last event of each stream in a batch only: the processors' Ed25519 signature, "
        "in hex, over `passnum-head|` followed by this event's chain header "
        "(passnum/core/head_signatures.py). The auditor verifies it with the processors' public "
        "keys: a link anyone can compute, a signature only a processor can make."),
}

# The headers of an event a processor decided: the chain link always, its signature on a
# batch's last event of a stream, nothing else.
CHAINED_HEADERS: dict[str, Any] = {
    "type": "object",
    "required": [CHAIN_HEADER],
    "properties": {CHAIN_HEADER: CHAIN_HEADER_SCHEMA, SIGNATURE_HEADER: SIGNATURE_HEADER_SCHEMA},
    "additionalProperties": False,
}

DEAD_LETTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["source_topic", "source_partition", "source_offset", "reason", "detail",
                 "value_hex"],
    "properties": {
        "source_topic": {"type": "string"},
        "source_partition": {"type": "integer", "minimum": 0},
        "source_offset": {"type": "integer", "minimum": 0},
        "reason": {"type": "string", "enum": ["empty_value", "undecodable_bytes",
                                              "not_a_json_object", "schema_invalid"],
                   "description": "why the record could not be decoded (passnum.core.codec)"},
        "detail": {"type": "string", "maxLength": 1000},
        "value_hex": {"type": "string", "pattern": "^([0-9a-f]{2}){0,4096}$",
                      "description": "the first 4,096 bytes of the record's value, in hex"},
    },
}


def build_document(settings: Settings | None = None) -> dict[str, Any]:
    """The document for a deployment's settings (partition counts); the default settings
    give the committed copy."""
    settings = settings if settings is not None else Settings.from_environment({})
    topology = topology_for(settings.with_overrides(topic_prefix="{" + PREFIX_PARAMETER + "}"))
    channels, messages = _channels(topology)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "passnum ledger topics",
            "version": "1",
            "description": (
                "Every topic of the pass numérique ledger: commands in, facts out, each as "
                "one JSON document (the message's JSON Schema is also in schemas/json/, "
                "under the `$id` named by `x-json-schema-id`). The log is the source of "
                "truth; docs/broker.md says which Kafka tools can read it, and how."),
        },
        "defaultContentType": "application/json",
        "servers": _servers(),
        "channels": channels,
        "operations": _operations(topology),
        "components": {
            "messages": dict(sorted(messages.items())),
            "schemas": _payload_schemas(),
        },
    }


def render(document: dict[str, Any]) -> str:
    """Stable text: a diff of the file is a change of the stream contract and nothing else."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_document(path: Path = DOCUMENT_PATH) -> Path:
    path.write_text(render(build_document()), encoding="utf-8")
    return path


# --- channels and operations --------------------------------------------------------------


def _channel_plan(topology: Topology) -> list[tuple[str, Topic, tuple[type[Message], ...], bool]]:
    """(channel id, topic, message classes, whether its events carry the chain header)."""
    return [
        ("issuerCommands", topology.issuer_commands, ISSUER_COMMANDS, False),
        ("issuerEvents", topology.issuer_events, ISSUER_EVENTS, True),
        ("redeemerCommands", topology.redeemer_commands, REDEEMER_COMMANDS, False),
        ("redeemerEvents", topology.redeemer_events, REDEEMER_EVENTS, True),
        # Published by `passnum audit checkpoint` / year-end, outside the processors: no chain.
        ("auditorEvents", topology.auditor_events, AUDITOR_EVENTS, False),
    ]


def _channels(topology: Topology) -> tuple[dict[str, Any], dict[str, Any]]:
    """The channels, and the messages they refer to (for components)."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def add(channel_id: str, topic: Topic, bodies: dict[str, Any]) -> None:
        channels[channel_id] = _channel(topic, bodies)
        messages.update(bodies)

    for channel_id, topic, classes, chained in _channel_plan(topology):
        add(channel_id, topic, {cls.__name__: _message(cls, chained) for cls in classes})
    add("deadLetters", topology.dead_letters, {DEAD_LETTER_MESSAGE: {
        "name": "dead_letter", "title": "Dead letter",
        "summary": "A record a processor could not decode, kept with the reason.",
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{DEAD_LETTER_MESSAGE}"},
        "bindings": {"kafka": _key_binding(("source_topic",))}}})
    add("conformance", topology.conformance, {PROBE_MESSAGE: {
        "name": "conformance_probe", "title": "Conformance probe record",
        "summary": "Scratch records of the broker conformance check (passnum.core.conformance).",
        "description": ("Nothing reads them but the run that wrote them. Probes that need a "
                        "partition to themselves write to the run's own topic, "
                        "`{prefix}.conformance.run-<run id>`, deleted after the run."),
        "contentType": "application/octet-stream",
        "payload": {"type": "string", "description": "opaque bytes"},
        "bindings": {"kafka": _key_binding(("probe_key",))}}})
    return channels, messages


def _channel(topic: Topic, bodies: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": topic.name,
        "title": topic.name.replace("{" + PREFIX_PARAMETER + "}", DEFAULT_PREFIX),
        "description": f"{topic.purpose[:1].upper()}{topic.purpose[1:]}. Keyed by {topic.key}.",
        "parameters": {PREFIX_PARAMETER: {
            "default": DEFAULT_PREFIX,
            "description": "the topic prefix, PASSNUM_TOPIC_PREFIX"}},
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in bodies},
        "bindings": {"kafka": {"partitions": topic.partitions,
                               "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _operations(topology: Topology) -> dict[str, Any]:
    """Who writes and who reads each topic, as the ledger's own processes do."""
    def operation(action: str, channel: str, description: str, group: str | None = None
                  ) -> dict[str, Any]:
        body: dict[str, Any] = {"action": action, "channel": {"$ref": f"#/channels/{channel}"},
                                "description": description}
        if group is not None:
            # `{prefix}-<service>`: the topic prefix is the group's prefix too.
            suffix = group.removeprefix("{" + PREFIX_PARAMETER + "}")
            body["bindings"] = {"kafka": {"groupId": {
                "type": "string", "pattern": f"^.+{suffix}$",
                "examples": [f"{DEFAULT_PREFIX}{suffix}"],
                "description": f"the topic prefix followed by `{suffix}`"},
                "bindingVersion": KAFKA_BINDING_VERSION}}
        return body

    return {
        "issuerDecidesCommands": operation(
            "receive", "issuerCommands", "The issuer decides each command once, in key order.",
            topology.issuer_group),
        "issuerRecordsFacts": operation(
            "send", "issuerEvents", "The issuer publishes what it decided, chained per input "
            "partition, from its outbox."),
        "redeemerLearnsIssuerFacts": operation(
            "receive", "issuerEvents", "The redeemer learns booklets and their status.",
            topology.redeemer_group),
        "redeemerDecidesCommands": operation(
            "receive", "redeemerCommands", "The redeemer decides checks, redemptions, "
            "accreditations and settlement.", topology.redeemer_group),
        "redeemerRecordsFacts": operation(
            "send", "redeemerEvents", "The redeemer publishes what it decided, chained per "
            "input partition, from its outbox."),
        "auditorReplaysIssuerFacts": operation(
            "receive", "issuerEvents", "The auditor reads every fact from offset 0, each "
            "partition to its Fetch high-water mark, without a consumer group."),
        "auditorReplaysRedeemerFacts": operation(
            "receive", "redeemerEvents", "The auditor reads every fact from offset 0, each "
            "partition to its Fetch high-water mark, without a consumer group."),
        "auditorReadsItsCheckpoints": operation(
            "receive", "auditorEvents", "The auditor reads its earlier checkpoints and credit "
            "notes back with the rest of the log."),
        "auditorRecordsCheckpoints": operation(
            "send", "auditorEvents", "The auditor signs monthly checkpoints and year-end "
            "credit notes."),
        "processorsSetAsideUndecodableInput": operation(
            "send", "deadLetters", "A processor keeps a record it cannot decode here and goes "
            "on."),
        "brokerConformanceCheck": operation(
            "send", "conformance", "Each worker checks the broker before it consumes."),
    }


def _servers() -> dict[str, Any]:
    return {
        "embedded": {"host": "127.0.0.1:9092", "protocol": "kafka",
                     "description": "The Tansu broker of `passnum broker start` and the demo "
                                    "(Kafka protocol; see docs/broker.md for its limits)."},
        "compose": {"host": "kafka:9092", "protocol": "kafka",
                    "description": "Apache Kafka in docker-compose.yml."},
    }


# --- messages --------------------------------------------------------------------------------


def _message(message_class: type[Message], chained: bool) -> dict[str, Any]:
    doc = (message_class.__doc__ or "").strip()
    body: dict[str, Any] = {
        "name": message_type(message_class),
        "title": message_class.__name__,
        "summary": ("A command (a request)." if issubclass(message_class, Command)
                    else "An event (a recorded fact)."),
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{message_class.__name__}"},
        "bindings": {"kafka": _key_binding(key_kinds(message_class))},
        "x-json-schema-id": schema_id(message_class),
    }
    if doc:
        body["description"] = " ".join(doc.split())
    if chained:
        body["headers"] = CHAINED_HEADERS
    return body


def _key_binding(kinds: tuple[str, ...]) -> dict[str, Any]:
    schemas = [KEY_SCHEMAS[kind] for kind in kinds]
    key = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}


def key_kinds(message_class: type[Message]) -> tuple[str, ...]:
    """The kinds of key a message of this class is written with (KEY_SCHEMAS)."""
    fields = message_class.model_fields
    if message_class in ISSUER_COMMANDS:
        return ("siren",)
    if message_class in (RedeemVoucher, CheckVoucher):
        return ("booklet_id", "voucher_code")
    if message_class is CancelRedemption:
        return ("booklet_id",)
    if message_class is CloseSettlementMonth:
        return ("month",)
    if message_class in REDEEMER_COMMANDS:
        return ("siret",)
    if message_class in ISSUER_EVENTS:
        return ("booklet_id",) if "booklet_id" in fields else ("siren",)
    if message_class in AUDITOR_EVENTS:
        return ("month",) if "month" in fields else ("year",)
    if "booklet_id" in fields or "voucher_id" in fields:
        return ("booklet_id",)
    if "siret" in fields:
        return ("siret",)
    if "month" in fields:
        return ("month",)
    # A rejection of a command about no voucher and no venue: keyed like that command.
    return tuple(dict.fromkeys(kind for cls in REDEEMER_COMMANDS for kind in key_kinds(cls)))


def _payload_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {DEAD_LETTER_MESSAGE: DEAD_LETTER_SCHEMA}
    for message_class in (*ISSUER_COMMANDS, *ISSUER_EVENTS, *REDEEMER_COMMANDS,
                          *REDEEMER_EVENTS, *AUDITOR_EVENTS):
        schema = schema_of(message_class)
        # Nested models would bring `$defs` whose references point into the exported file;
        # none has any yet, and this keeps the payloads self-contained until one does.
        assert "$defs" not in schema, f"{message_class.__name__}: hoist its $defs"
        schemas[message_class.__name__] = {key: value for key, value in schema.items()
                                           if key not in ("$schema", "$id")}
    return dict(sorted(schemas.items()))


if __name__ == "__main__":
    print(write_document())
