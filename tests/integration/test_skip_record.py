"""The operator's way out: `passnum log skip-record` moves a processor past one named
record, into the dead-letter topic, as a recorded decision: the record is never decided,
the commands after it are, and the audit counts the skip. A skip of any other record than
the one the partition stands at is refused and changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from passnum.core.log import read_to_end
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites
from schemas.messages import RegisterCollectivite
from services.auditor.replay import replay
from tests.integration.helpers import MARCH, scalar

pytestmark = pytest.mark.integration
PASSNUM = str(Path(sys.executable).parent / "passnum")


def _register(partner, tag: str) -> RegisterCollectivite:
    return RegisterCollectivite(request_id=f"{tag}-{partner.siren}", occurred_at=MARCH,
                                siren=partner.siren, name=partner.name)


def _skip(settings, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([PASSNUM, "log", "skip-record", *arguments, "--reason",
                           "fait planter le worker", "--operator", "exploitation"],
                          env=settings.as_environment() | {"PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def test_an_operator_skips_a_named_record(ledger, start_worker) -> None:
    topology = topology_for(ledger)
    topic = topology.issuer_commands.name
    partner = collectivites(1)[0]
    client = LedgerClient(ledger)
    stuck = _register(partner, "stuck")
    client.send([stuck])  # the worker is not running yet: the partition stands at it
    [record] = [r for r in read_to_end(ledger, [topic])]
    assert record.offset == 0
    # Any other offset than the one the partition stands at is refused.
    refused = _skip(ledger, "issuer", topic, str(record.partition), "1")
    assert refused.returncode == 4, refused.stderr
    assert refused.stderr.count("\n") == 1 and "refusé" in refused.stderr
    skipped = _skip(ledger, "issuer", topic, str(record.partition), "0")
    assert skipped.returncode == 0, skipped.stderr
    assert _skip(ledger, "issuer", topic, str(record.partition), "0").returncode == 4

    start_worker("issuer")
    after = _register(partner, "after")
    client.send([after])
    assert client.wait_for([after.request_id])[after.request_id][0].type == (
        "collectivite_registered")
    assert scalar(ledger, "SELECT count(*) FROM request_outcomes "
                          f"WHERE request_id = '{stuck.request_id}'") == 0
    letters = [json.loads(r.value) for r in read_to_end(ledger, [topology.dead_letters.name])]
    assert [(letter["reason"], letter["source_offset"]) for letter in letters] == [
        ("skipped_by_operator", 0)]
    assert "exploitation" in letters[0]["detail"]
    report = replay(ledger)
    assert report.rejections_by_reason.get(
        "issuer_command_rejected: skipped_by_operator") == 1
    assert not report.findings, report.findings
