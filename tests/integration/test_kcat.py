"""The log read with a standard Kafka tool: kcat (librdkafka, Debian's package) sees every
event of a small real ledger, with its key and headers, using the flags docs/broker.md and
the README give; and fails, as documented, where the broker limits it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from passnum.core.log import read_to_end
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites, venues
from passnum.tools.asyncapi import DOCUMENT_PATH
from tests.integration.helpers import onboard

pytestmark = pytest.mark.integration

# What Tansu needs: no ApiVersions request (its answer does not parse in librdkafka), the
# request versions of Kafka 0.9.0; then a start at an absolute offset (`-o 0`: logical
# offsets need ListOffsets, whose answer does not parse either).
TANSU_FLAGS = ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0"]
KCAT_TIMEOUT_SECONDS = 60


def kcat(settings: Settings, *arguments: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("kcat")
    assert binary is not None, "kcat is missing: scripts/bootstrap installs Debian's package"
    return subprocess.run([binary, "-b", settings.bootstrap_servers, *arguments],
                          capture_output=True, text=True, timeout=KCAT_TIMEOUT_SECONDS,
                          check=False)


def read_with_kcat(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """The README's command: every partition of the topic from offset 0 to its end."""
    result = kcat(settings, *TANSU_FLAGS, "-C", "-t", topic, "-o", "0", "-e", "-J", "-q")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def as_kcat_sees_it(record: Any) -> dict[str, Any]:
    """A record read by kafka-python, in the shape of kcat's JSON envelope."""
    headers = [part for name, value in record.headers for part in (name, value.decode())]
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset,
            "key": record.key.decode(), "payload": record.value.decode(), "headers": headers}


def place(item: dict[str, Any]) -> tuple[int, int]:
    return item["partition"], item["offset"]


def assert_as_documented(item: dict[str, Any]) -> None:
    """Payload, key and headers as docs/asyncapi.json describes the message."""
    document = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
    components = document["components"]
    payload = json.loads(item["payload"])
    message = next(body for body in components["messages"].values()
                   if body["name"] == payload["type"])
    jsonschema.validate(payload, components["schemas"][message["title"]])
    jsonschema.validate(item["key"], message["bindings"]["kafka"]["key"])
    names, values = item["headers"][0::2], item["headers"][1::2]
    jsonschema.validate(dict(zip(names, values)), message["headers"])
    assert set(names) <= set(message["headers"]["properties"]), f"undocumented: {names}"


def test_the_readme_and_the_broker_doc_give_the_command_tested_here() -> None:
    repository = Path(__file__).resolve().parents[2]
    command = f"kcat -b 127.0.0.1:9092 {' '.join(TANSU_FLAGS)} \\\n     -C -t "
    for document in ("README.md", "docs/broker.md"):
        text = (repository / document).read_text(encoding="utf-8")
        assert command in text and "-o 0 -e" in text, f"{document} shows another command"


def test_kcat_reads_every_event_with_its_key_and_headers(ledger: Settings,
                                                         start_worker: Any) -> None:
    start_worker("issuer")
    start_worker("redeemer")
    client = LedgerClient(ledger)
    try:
        onboard(client, collectivites(2), booklets=2, venues=venues(4), tag="kcat")
    finally:
        client.close()
    topology = topology_for(ledger)
    read: dict[str, list[dict[str, Any]]] = {}
    for topic in (topology.issuer_events, topology.redeemer_events):
        expected = [as_kcat_sees_it(record) for record in read_to_end(ledger, [topic.name])]
        seen = read_with_kcat(ledger, topic.name)
        fields = ("topic", "partition", "offset", "key", "payload", "headers")
        assert sorted(({name: item[name] for name in fields} for item in seen),
                      key=place) == sorted(expected, key=place)
        read[topic.name] = seen
    assert len(read[topology.issuer_events.name]) >= 8, "too small a ledger to mean anything"
    assert len(read[topology.redeemer_events.name]) == 4  # one accreditation per venue
    assert len({item["partition"] for item in read[topology.issuer_events.name]}) > 1, (
        "one command reads every partition")
    for item in (item for seen in read.values() for item in seen):
        assert_as_documented(item)
    assert_the_documented_limits(ledger, topology.issuer_events.name)


def assert_the_documented_limits(ledger: Settings, topic: str) -> None:
    """docs/broker.md says kcat fails with its defaults and with logical offsets."""
    defaults = kcat(ledger, "-L", "-m", "2")
    assert defaults.returncode != 0
    assert "ApiVersionRequest failed" in defaults.stderr
    beginning = kcat(ledger, *TANSU_FLAGS, "-C", "-t", topic, "-o", "beginning", "-e", "-q")
    assert "Failed to query logical offset" in beginning.stderr
