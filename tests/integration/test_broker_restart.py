"""The broker restarts under running workers. Tansu keeps its log in S3 here (moto's S3
emulator, started by the test), as a production broker keeps it on disk: after the restart
every request still gets exactly one outcome and no voucher is redeemed twice.

(With `memory://` storage a restart loses the log itself; no processor can survive that,
which is why production runs on a durable Kafka: see docs/processing.md.)"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from passnum.core.broker import ManagedBroker, create_topics
from passnum.core.processes import WorkerProcess
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites, venues
from passnum.tools.scenario import booklet_codes
from services.auditor.replay import replay
from tests.conftest import free_port
from tests.integration.helpers import onboard, scalar, wait_for_rows
from tests.integration.test_crash_redeemer import build_stream

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_endpoint(tmp_path: Path) -> Iterator[str]:
    import boto3

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
                              stdout=open(tmp_path / "moto.log", "wb"),
                              stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="emulator",
                          aws_secret_access_key="emulator", region_name="eu-west-3")
    deadline = time.monotonic() + 20
    while True:
        try:
            client.create_bucket(Bucket="tansu", CreateBucketConfiguration={
                "LocationConstraint": "eu-west-3"})
            break
        except Exception:  # noqa: BLE001 - the emulator is still starting
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.2)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


def test_ledger_survives_a_broker_restart(ledger, s3_endpoint, tmp_path: Path) -> None:
    settings = ledger.with_overrides(
        bootstrap_servers=f"127.0.0.1:{free_port()}", topic_prefix=f"b{uuid.uuid4().hex[:8]}",
        broker_storage_engine="s3://tansu/", broker_s3_endpoint=s3_endpoint)
    broker = ManagedBroker(settings).start()
    assert broker.started_here
    workers = [WorkerProcess(name, settings, tmp_path / "logs") for name in ("issuer", "redeemer")]
    try:
        create_topics(settings)
        for worker in workers:
            worker.start().wait_until_healthy()
        partner, venue_list = collectivites(1)[0], venues(3)
        client = LedgerClient(settings)
        onboard(client, [partner], 5, venue_list)
        wait_for_rows(settings, "SELECT count(*) FROM redeemer_booklets WHERE activated", 5)
        stream = build_stream(booklet_codes(settings.voucher_code_key.encode(), partner,
                                            range(1, 6)),
                              [venue.siret for venue in venue_list], seed=5)
        half = len(stream) // 2
        client.send(stream[:half])
        broker.stop()
        broker.start()
        assert broker.started_here
        client.send(stream[half:])
        for worker in workers:  # the supervisor's job (restart: unless-stopped in compose)
            if not worker.running():
                worker.start()
        outcomes = client.wait_for({c.request_id for c in stream}, timeout_seconds=120)
        assert all(len(events) == 1 for events in outcomes.values())
        redeemed = [e for events in outcomes.values() for e in events
                    if e.type == "voucher_redeemed"]
        assert len(redeemed) == len({e.voucher_id for e in redeemed}) == 50
        assert scalar(settings, "SELECT count(*) FROM redemptions") == 50
        report = replay(settings)
        assert report.sound, report.findings
        assert report.totals[partner.siren].redeemed_vouchers == 50
    finally:
        for worker in workers:
            worker.stop()
        broker.stop()
