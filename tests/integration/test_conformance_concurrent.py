"""Two conformance checks at once on one broker: both conformant (compose starts the issuer
and the redeemer together, and each checks the broker before it consumes)."""

from __future__ import annotations

import threading
import uuid

import pytest

from passnum.broker import make_admin
from passnum.conformance import failed_required, format_verdicts, run_conformance
from passnum.settings import Settings

pytestmark = pytest.mark.integration

HIGH_WATER_VERDICT = "Fetch high-water mark = records produced (multi-record batch)"


def test_two_checks_started_together_both_pass(base_settings: Settings) -> None:
    # One prefix for both: they share the `conformance` scratch topic, as two workers do.
    settings = base_settings.with_overrides(topic_prefix=f"c{uuid.uuid4().hex[:10]}")
    start = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def check(name: str) -> None:
        start.wait()
        try:
            outcomes[name] = run_conformance(settings)
        except BaseException as error:  # reported by the assertion below
            outcomes[name] = error

    threads = [threading.Thread(target=check, args=(name,)) for name in ("issuer", "redeemer")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a check did not finish"

    for name, verdicts in outcomes.items():
        assert isinstance(verdicts, list), f"{name}: {verdicts!r}"
        assert failed_required(verdicts) == [], f"{name}:\n{format_verdicts(verdicts)}"
        by_name = {item.name: item for item in verdicts}
        assert by_name[HIGH_WATER_VERDICT].passed
    # Each run deletes its own topic: only the shared scratch topic stays.
    admin = make_admin(settings, 10)
    try:
        left = sorted(name for name in admin.list_topics() if name.startswith(settings.topic_prefix))
    finally:
        admin.close()
    assert left == [f"{settings.topic_prefix}.conformance"]
