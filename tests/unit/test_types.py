"""The type checker over the code the services run: `mypy passnum services schemas`, with the
configuration of pyproject.toml ([tool.mypy]), reports no error."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("passnum", "services", "schemas")
# A bound against a hung checker only: a cold run takes about a minute on the loaded machine.
MYPY_TIMEOUT_SECONDS = 600


def cache_directory() -> Path:
    """mypy's incremental cache, one per configuration: a cached module keeps its errors
    when only the options of a module it imports change (an import made ignorable)."""
    configuration = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    digest = hashlib.sha256(json.dumps(configuration, sort_keys=True).encode()).hexdigest()
    return ROOT / ".mypy_cache" / f"configuration-{digest[:16]}"


def test_mypy_finds_no_error_in_passnum_services_and_schemas():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache_directory()), *CHECKED],
        cwd=ROOT, capture_output=True, text=True, timeout=MYPY_TIMEOUT_SECONDS)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    report = f"mypy exit code {result.returncode}:\n{result.stdout}{result.stderr}"
    assert not errors, f"{len(errors)} mypy errors\n{report}"
    assert result.returncode == 0, report
    assert result.stdout.startswith("Success: no issues found"), report
