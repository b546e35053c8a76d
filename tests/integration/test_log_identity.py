"""The workers know which log their positions belong to. A memory broker that restarts
empty hands out offsets below the positions stored in PostgreSQL: deciding on would skip
the new log's commands as already decided. The worker must refuse loudly instead (exit
code 78 and a message saying what to do), whether the log empties under it or before it
starts, and skip nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from passnum.core.broker import create_topics
from passnum.core.processes import WorkerProcess
from passnum.core.worker import LOG_MISMATCH_EXIT_CODE
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites
from schemas.messages import RegisterCollectivite
from tests.integration.helpers import MARCH, private_broker, scalar

pytestmark = pytest.mark.integration


def _register(partner, tag: str) -> RegisterCollectivite:
    return RegisterCollectivite(request_id=f"{tag}-{partner.siren}", occurred_at=MARCH,
                                siren=partner.siren, name=partner.name)


def _wait_for_exit(worker: WorkerProcess, timeout_seconds: float) -> int | None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline and worker.running():
        time.sleep(0.2)
    assert worker.process is not None
    return worker.process.poll()


def test_an_emptied_broker_is_refused_and_nothing_is_skipped(ledger, tmp_path: Path) -> None:
    with private_broker(ledger, tmp_path) as (settings, broker, [worker]):
        partners = collectivites(12)
        client = LedgerClient(settings)
        first = [_register(partner, "before") for partner in partners[:8]]
        client.send(first)
        client.wait_for([c.request_id for c in first])
        client.close()
        positions_before = scalar(settings, "SELECT sum(next_offset) FROM processor_positions")
        assert positions_before >= 8

        broker.stop()  # memory storage: the log is gone
        broker.start()
        create_topics(settings)
        client = LedgerClient(settings)
        client.send([_register(partner, "after") for partner in partners[8:]])
        # The running worker finds its positions beyond the new log and stops.
        assert _wait_for_exit(worker, 60) == LOG_MISMATCH_EXIT_CODE
        assert "is not the one this processor's positions" in worker.log_path.read_text()
        # A new start refuses too, before deciding anything.
        worker.start()
        assert _wait_for_exit(worker, 60) == LOG_MISMATCH_EXIT_CODE
        # Nothing of the new log was taken for decided: no position moved, no outcome.
        assert scalar(settings, "SELECT sum(next_offset) FROM processor_positions") == (
            positions_before)
        assert scalar(settings, "SELECT count(*) FROM request_outcomes "
                                "WHERE request_id LIKE 'after-%'") == 0
        client.close()


def test_another_log_at_the_same_offsets_is_refused(ledger, tmp_path: Path) -> None:
    """The new log is refilled past the stored positions before the worker starts again:
    offsets exist, but the record before each position is not the one decided there."""
    with private_broker(ledger, tmp_path, partitions=1) as (settings, broker, [worker]):
        partners = collectivites(10)
        client = LedgerClient(settings)
        first = [_register(partner, "first") for partner in partners[:3]]
        client.send(first)
        client.wait_for([c.request_id for c in first])
        client.close()
        worker.stop()
        broker.stop()
        broker.start()
        create_topics(settings)
        client = LedgerClient(settings)
        client.send([_register(partner, "other") for partner in partners[3:]])
        client.close()
        worker.start()
        assert _wait_for_exit(worker, 60) == LOG_MISMATCH_EXIT_CODE
        assert scalar(settings, "SELECT count(*) FROM request_outcomes "
                                "WHERE request_id LIKE 'other-%'") == 0
