"""Backup and handover: `passnum log export` writes the whole log to one signed file;
after the memory broker lost everything, `passnum log import` restores it with the same
offsets; the audit finds it SOUND with the same chain heads, and the workers recognise it as
the log their positions belong to and decide new commands. A changed record, an untrusted
key or a broker that is not empty are refused and change nothing."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from passnum.core.broker import ManagedBroker, create_topics
from passnum.core.processes import WorkerProcess
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites, venues
from passnum.tools.scenario import booklet_codes
from schemas.messages import RedeemVoucher, RegisterCollectivite
from services.auditor.replay import replay
from tests.conftest import free_port
from tests.integration.helpers import MARCH, onboard

pytestmark = pytest.mark.integration
PASSNUM = str(Path(sys.executable).parent / "passnum")


def _passnum(settings, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([PASSNUM, "log", *arguments], env=settings.as_environment(),
                          capture_output=True, text=True, timeout=300)


def _tampered_copy(source: Path, target: Path) -> None:
    """The same archive with one byte of one record's value changed."""
    with tarfile.open(source) as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}
    lines = gzip.decompress(members["records.jsonl.gz"]).replace(b'"value": "ey', b'"value": "fy',
                                                                 1)
    members["records.jsonl.gz"] = gzip.compress(lines)
    with tarfile.open(target, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_export_then_import_into_an_emptied_broker(ledger, tmp_path: Path) -> None:
    settings = ledger.with_overrides(bootstrap_servers=f"127.0.0.1:{free_port()}",
                                     topic_prefix=f"x{uuid.uuid4().hex[:8]}")
    broker = ManagedBroker(settings).start()
    assert broker.started_here
    workers = [WorkerProcess(name, settings, tmp_path / "logs") for name in ("issuer", "redeemer")]
    try:
        create_topics(settings)
        for worker in workers:
            worker.start().wait_until_healthy()
        partner, venue = collectivites(1)[0], venues(1)[0]
        client = LedgerClient(settings)
        onboard(client, [partner], 2, [venue])
        codes = booklet_codes(settings.voucher_code_key.encode(), partner, range(1, 3))[:5]
        redemptions = [RedeemVoucher(request_id=f"r{i}", occurred_at=MARCH, code=code,
                                     siret=venue.siret) for i, code in enumerate(codes)]
        client.send(redemptions)
        client.wait_for([r.request_id for r in redemptions])
        client.close()
        before = replay(settings)
        assert before.sound, before.findings

        archive = tmp_path / "ledger.tar"
        exported = _passnum(settings, "export", str(archive))
        assert exported.returncode == 0, exported.stderr
        for worker in workers:
            worker.stop()
        broker.stop()  # memory storage: the log is gone
        broker.start()

        tampered = tmp_path / "tampered.tar"
        _tampered_copy(archive, tampered)
        refused = _passnum(settings, "import", str(tampered))
        assert refused.returncode == 4 and "refusé" in refused.stderr, refused.stderr
        untrusted = _passnum(settings, "import", str(archive), "--trusted-key", "00" * 32)
        assert untrusted.returncode == 4, untrusted.stderr

        imported = _passnum(settings, "import", str(archive))
        assert imported.returncode == 0, imported.stderr
        assert _passnum(settings, "import", str(archive)).returncode == 4  # not empty now
        after = replay(settings)
        assert after.sound, after.findings
        assert before.streams and after.streams == before.streams  # the same chain heads

        for worker in workers:
            worker.start().wait_until_healthy()
        client = LedgerClient(settings)
        late = RegisterCollectivite(request_id="late", occurred_at=MARCH,
                                    siren=collectivites(2)[1].siren, name="Commune")
        client.send([late])
        assert client.wait_for(["late"])["late"][0].type == "collectivite_registered"
        client.close()
        assert all(worker.running() for worker in workers)
    finally:
        for worker in workers:
            worker.stop()
        broker.stop()
