"""Two conformance checks at once on one broker: both conformant (compose starts the issuer
and the redeemer together, and each checks the broker before it consumes)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from passnum.core.broker import make_admin
from passnum.core.settings import Settings

pytestmark = pytest.mark.integration

HIGH_WATER_VERDICT = "PASS  required       Fetch high-water mark = records produced"
CHECK_TIMEOUT_SECONDS = 120


def test_two_checks_started_together_both_pass(base_settings: Settings) -> None:
    # One prefix for both: they share the `conformance` scratch topic, as two workers do.
    settings = base_settings.with_overrides(topic_prefix=f"c{uuid.uuid4().hex[:10]}")
    environment = {**os.environ, **settings.as_environment()}
    # Two processes, as two workers are: `python -m passnum.core.conformance` exits 1 when a
    # required property fails.
    checks = [subprocess.Popen([sys.executable, "-m", "passnum.core.conformance"], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]
    outputs = [check.communicate(timeout=CHECK_TIMEOUT_SECONDS)[0] for check in checks]

    for check, output in zip(checks, outputs):
        assert check.returncode == 0, output
        assert HIGH_WATER_VERDICT in output, output
    # Each run deletes its own topic: only the shared scratch topic stays.
    admin = make_admin(settings, 10)
    try:
        left = sorted(name for name in admin.list_topics() if name.startswith(settings.topic_prefix))
    finally:
        admin.close()
    assert left == [f"{settings.topic_prefix}.conformance"]
