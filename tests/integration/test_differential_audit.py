"""The differential audit: random legitimate workloads (tests/support/differential_workload.py)
driven through the real issuer and redeemer, then audited from the log and against the
database: SOUND, no finding, live digests equal to the replayed ones, as of today; each
command decided as the workload's own model of the rules says. Then, on the same ledger, one
planted fault per audit: a database row changed under the services (undone after), then a
forgery in the log (a new well-chained stream carrying `FundsReceived`, a well-linked event
appended to a real stream, or a forged checkpoint, by seed): the audit names each, with the
event id or the row as evidence.

It fails when a false alarm the audit once raised on legitimate traffic comes back: the
audit ordering a voucher's facts by event time (`voucher_redeemed_twice`,
`cancellation_of_unknown_redemption`, `books_do_not_balance`), the redeemer taking a scan
dated in the future or one back-dated before the venue's accreditation or the booklet's
activation (the outcome differs from the model's, and the audit names the redemption), a
refused command leaving an envelope row (`live_state_disagrees`), the audit's "as of" taken
from the log.

Each seed costs a ledger and two workers (tens of seconds): three run here, each with a
different forgery; `bench/differential_audit.py --seeds N` runs more. A failure names its
seed: `DIFFERENTIAL_AUDIT_SEEDS=<seed> pytest tests/integration/test_differential_audit.py`
replays it (`DIFFERENTIAL_AUDIT_ROUNDS` sets the workload's length).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from passnum.core.settings import Settings
from tests.support.differential_workload import run_differential, workers_running

pytestmark = pytest.mark.integration

SEEDS = [int(seed) for seed in os.environ.get("DIFFERENTIAL_AUDIT_SEEDS", "1,2,3").split(",")]
ROUNDS = int(os.environ.get("DIFFERENTIAL_AUDIT_ROUNDS", "6"))


@pytest.fixture
def issuer_and_redeemer(ledger: Settings, tmp_path: Path) -> Iterator[None]:
    with workers_running(ledger, tmp_path / "logs"):
        yield


@pytest.mark.parametrize("seed", SEEDS)
def test_the_audit_agrees_with_the_services_and_names_each_planted_fault(
        ledger: Settings, issuer_and_redeemer: None, seed: int) -> None:
    run = run_differential(ledger, seed, ROUNDS)
    outcomes = run.workload.outcomes()
    assert not run.problems, (
        f"seed {seed} (replay with DIFFERENTIAL_AUDIT_SEEDS={seed} "
        f"DIFFERENTIAL_AUDIT_ROUNDS={ROUNDS}), {run.workload.command_count} commands, "
        f"planted {run.planted}:\n" + "\n".join(run.problems)
        + f"\noutcomes: {dict(outcomes)}")
