"""The layout shows the architecture: the contracts in `pyproject.toml` ([tool.importlinter])
are kept. Tools above the services, the services above the edge, the edge above the core,
the core above the ledger, the schemas at the bottom; the three services independent; the
ledger free of I/O libraries; no import circle among the modules of any package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def test_every_import_contract_is_kept() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter), "--no-cache"], cwd=REPOSITORY, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
