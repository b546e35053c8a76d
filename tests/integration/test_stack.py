"""`passnum stack up|down|status`: the broker, the workers and the auditor follower run in
the background with their logs and pids; the log survives `down` and `up` (the embedded
broker keeps it in memory only), the audit is SOUND after it and the workers decide new
commands."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites
from schemas.messages import RegisterCollectivite
from services.auditor.replay import replay
from tests.conftest import free_port
from tests.integration.helpers import MARCH

pytestmark = pytest.mark.integration
PASSNUM = str(Path(sys.executable).parent / "passnum")


def _stack(settings, action: str) -> subprocess.CompletedProcess:
    return subprocess.run([PASSNUM, "stack", action], env=settings.as_environment(),
                          capture_output=True, text=True, timeout=300)


def _register(partner, tag: str) -> RegisterCollectivite:
    return RegisterCollectivite(request_id=f"{tag}-{partner.siren}", occurred_at=MARCH,
                                siren=partner.siren, name=partner.name)


def test_the_log_survives_stack_down_and_up(ledger, tmp_path: Path) -> None:
    settings = ledger.with_overrides(bootstrap_servers=f"127.0.0.1:{free_port()}",
                                     topic_prefix=f"s{uuid.uuid4().hex[:8]}",
                                     run_directory=str(tmp_path / "run"))
    partners = collectivites(4)
    try:
        started = _stack(settings, "up")
        assert started.returncode == 0, started.stdout + started.stderr
        assert _stack(settings, "status").returncode == 0
        client = LedgerClient(settings)
        first = [_register(partner, "first") for partner in partners[:3]]
        client.send(first)
        client.wait_for([c.request_id for c in first])
        client.close()
        before = replay(settings)

        stopped = _stack(settings, "down")
        assert stopped.returncode == 0, stopped.stderr
        assert "journal conservé" in stopped.stdout
        assert _stack(settings, "status").returncode == 3  # nothing runs
        assert (tmp_path / "run" / "stack" / "issuer.log").exists()

        restarted = _stack(settings, "up")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert "journal restauré" in restarted.stdout
        after = replay(settings)
        assert after.sound, after.findings
        assert before.streams and after.streams == before.streams
        client = LedgerClient(settings)
        late = _register(partners[3], "late")
        client.send([late])
        assert client.wait_for([late.request_id])[late.request_id][0].type == (
            "collectivite_registered")
        client.close()
    finally:
        _stack(settings, "down")
