"""PostgreSQL restarts under running workers: they retry, reconnect and carry on, and no
request is lost or decided twice. Runs on an embedded PostgreSQL of its own (the pgserver
wheel) so that restarting it disturbs nothing else."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from passnum.core.broker import create_topics
from passnum.core.database import (
    apply_migrations,
    resolve_database,
    start_embedded_database,
    stop_embedded_database,
)
from passnum.core.processes import WorkerProcess
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites, venues
from passnum.tools.scenario import booklet_codes
from services.auditor.replay import replay
from tests.conftest import free_port
from tests.integration.helpers import onboard, scalar, wait_for_rows
from tests.integration.test_crash_redeemer import build_stream

pytestmark = pytest.mark.integration


def test_workers_survive_a_postgresql_restart(base_settings, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:10]
    # pgserver runs PostgreSQL as an unprivileged user when we are root: its data directory
    # must not sit under pytest's private (0700) temporary directory.
    run_directory = Path(tempfile.mkdtemp(prefix="passnum-pg-restart-"))
    run_directory.chmod(0o755)
    settings = base_settings.with_overrides(
        topic_prefix=f"r{suffix}", run_directory=str(run_directory),
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/passnum_restart",
        web_port_issuer=free_port(), web_port_redeemer=free_port(),
        conformance_required=False)
    create_topics(settings)
    url = resolve_database(settings)  # nothing listens there: the embedded server starts
    apply_migrations(url)
    settings = settings.with_overrides(database_url=url)
    workers = [WorkerProcess(name, settings, tmp_path / "logs") for name in ("issuer", "redeemer")]
    try:
        for worker in workers:
            worker.start().wait_until_healthy()
        partner, venue_list = collectivites(1)[0], venues(3)
        client = LedgerClient(settings)
        onboard(client, [partner], 10, venue_list)
        wait_for_rows(settings, "SELECT count(*) FROM redeemer_booklets WHERE activated", 10)
        codes = booklet_codes(settings.voucher_code_key.encode(), partner, range(1, 11))
        stream = build_stream(codes, [venue.siret for venue in venue_list], seed=3)
        half = len(stream) // 2
        client.send(stream[:half])
        assert stop_embedded_database(settings)
        client.send(stream[half:])  # arrives while the database is down
        start_embedded_database(settings, "passnum_restart")
        outcomes = client.wait_for({c.request_id for c in stream}, timeout_seconds=120)
        assert all(worker.running() for worker in workers), "workers must ride it out"
        assert all(len(events) == 1 for events in outcomes.values())
        redeemed = [e for events in outcomes.values() for e in events
                    if e.type == "voucher_redeemed"]
        assert len(redeemed) == len({e.voucher_id for e in redeemed}) == len(codes)
        assert scalar(settings, "SELECT count(*) FROM redemptions") == len(codes)
        assert replay(settings).sound
    finally:
        for worker in workers:
            worker.stop()
        stop_embedded_database(settings)
        shutil.rmtree(run_directory, ignore_errors=True)
