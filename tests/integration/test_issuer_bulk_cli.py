"""`passnum issuer bulk-distribute FILE.csv` as an operator runs it (a subprocess), against a
real issuer worker: rows are distributed through the log, refusals are counted by reason,
invalid rows are not sent, identifiers never reach the log, and a second run of the same
file changes nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from passnum.core.codec import decode_event
from passnum.core.database import connect
from passnum.core.log import read_to_end
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites
from passnum.tools.scenario import onboarding
from schemas.messages import BlockBooklet
from services.issuer import store
from services.issuer.beneficiaries import beneficiary_reference
from tests.integration.helpers import MARCH

pytestmark = pytest.mark.integration

IDENTIFIER = "2 90 01 75 111 222 33"


def run_cli(settings, csv_path: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **settings.as_environment(), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "passnum.tools.cli", "issuer", "bulk-distribute",
                           str(csv_path), "--timeout-seconds", "90"],
                          env=environment, capture_output=True, text=True, timeout=180)


def count_in_summary(output: str, label: str) -> int:
    match = re.search(rf"{re.escape(label)}\s*\S\s*(\d+)", output)
    assert match, f"{label!r} not in:\n{output}"
    return int(match.group(1))


def test_bulk_distribute_from_csv(ledger, start_worker, tmp_path: Path) -> None:
    start_worker("issuer")
    partner = collectivites(1)[0]
    siren = partner.siren
    client = LedgerClient(ledger)
    commands = onboarding(partner, 4, MARCH, tag="bulk")
    commands.append(BlockBooklet(request_id="bulk-block-4", occurred_at=MARCH, siren=siren,
                                 booklet_id=f"{siren}-0000004", reason="stolen"))
    client.send(commands)
    client.wait_for([c.request_id for c in commands], timeout_seconds=60)
    csv_path = tmp_path / "distributions.csv"
    csv_path.write_text(
        "siren,booklet_id,distributor,beneficiary_identifier\n"
        f"{siren},{siren}-0000001,Mairie de Morlaix,{IDENTIFIER}\n"
        f"{siren},{siren}-0000002,CAF du Finistère,\n"
        f"{siren},{siren}-0000004,Mairie de Morlaix,\n"
        f"{siren},{siren}-0000099,Mairie de Morlaix,\n"
        f"12345,{siren}-0000003,Mairie de Morlaix,\n"
        f"{siren},{siren}-0000001,Association Emmaüs,{IDENTIFIER}\n", encoding="utf-8")

    for run in (1, 2):  # the second run of the same file must change nothing
        result = run_cli(ledger, csv_path)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert count_in_summary(output, "distributed") == 2, output
        assert count_in_summary(output, "rejected: booklet_blocked") == 1
        assert count_in_summary(output, "rejected: unknown_booklet") == 1
        assert count_in_summary(output, "rejected: already_handed_out") == 1
        assert count_in_summary(output, "invalid rows (not sent)") == 1
        assert count_in_summary(output, "no outcome yet (run again)") == 0
        assert IDENTIFIER not in output

    with connect(ledger.database_url) as connection:
        secret = store.beneficiary_secret(connection, siren)
        rows = dict(connection.execute(
            "SELECT booklet_id, status || ':' || coalesce(beneficiary_reference, '-') "
            "FROM issuer_booklets WHERE siren = %s", (siren,)).fetchall())
    reference = beneficiary_reference(secret, IDENTIFIER)
    assert rows[f"{siren}-0000001"] == f"handed_out:{reference}"
    assert rows[f"{siren}-0000002"] == "distributed:-"
    assert rows[f"{siren}-0000004"].startswith("blocked")

    records = list(read_to_end(ledger, [topology_for(ledger).issuer_events.name]))
    distributed = {event.event_id for event in map(decode_event, (r.value for r in records))
                   if event.type == "booklet_distributed"}
    assert len(distributed) == 2, "a second run must not distribute again"
    every_byte = b"".join(record.value or b"" for record in records)
    assert IDENTIFIER.replace(" ", "").encode() not in every_byte
    assert IDENTIFIER.encode() not in every_byte
