"""The differential audit, long: `python bench/differential_audit.py --seeds 20` runs the
workload generator of tests/integration/test_differential_audit.py
(tests/support/differential_workload.py) for that many seeds, each on a ledger of its own
(fresh topics and database) with the real issuer and redeemer: every command decided as the
workload's model says, the audit SOUND with no finding and the live digests equal, then a
changed database row and one forgery in the log, each named by the audit (the forgery
rotates with the seeds). Prints per seed what was driven and how long each part took, the
seeds that failed with their problems and how to replay one in the test, the run time and
the load average (the machine is shared: read the times with it). Exit status 1 if a seed
failed."""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from passnum.core.broker import ManagedBroker  # noqa: E402
from passnum.core.settings import Settings  # noqa: E402
import ledgers  # noqa: E402
from redeemer_common import free_port, isolated_settings  # noqa: E402
from tests.support.differential_workload import (  # noqa: E402
    DifferentialRun,
    run_differential,
    workers_running,
)


def run_seed(base: Settings, seed: int, rounds: int) -> DifferentialRun:
    with tempfile.TemporaryDirectory(prefix="differential-") as directory:
        settings = isolated_settings(base, Path(directory), web_port_issuer=free_port(),
                                     web_port_auditor=free_port())
        try:
            with workers_running(settings, Path(directory) / "logs"):
                return run_differential(settings, seed, rounds)
        finally:
            ledgers.discard(settings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds (ledgers)")
    parser.add_argument("--first-seed", type=int, default=None,
                        help="seeds first..first+N-1 (default: drawn, and printed)")
    parser.add_argument("--rounds", type=int, default=20,
                        help="rounds of the simulated calendar per seed (the test runs 6)")
    arguments = parser.parse_args()
    first = arguments.first_seed if arguments.first_seed is not None else random.randrange(
        10**6)
    base = Settings.from_environment()
    load_before = os.getloadavg()
    started = time.monotonic()
    failed: list[DifferentialRun] = []
    with ManagedBroker(base):  # reuses the broker answering there, else starts Tansu
        for index in range(arguments.seeds):
            seed = first + index
            seed_started = time.monotonic()
            run = run_seed(base, seed, arguments.rounds)
            parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in run.seconds.items())
            print(f"seed {seed}: {run.workload.command_count} commands in "
                  f"{len(run.workload.steps)} steps, planted {', '.join(run.planted)}; {parts}; "
                  f"{time.monotonic() - seed_started:.0f} s in all; "
                  f"{'OK' if not run.problems else f'{len(run.problems)} PROBLEMS'}",
                  flush=True)
            if run.problems:
                failed.append(run)
    for run in failed:
        print(f"\nseed {run.seed} (DIFFERENTIAL_AUDIT_SEEDS={run.seed} "
              f"DIFFERENTIAL_AUDIT_ROUNDS={arguments.rounds} pytest "
              f"tests/integration/test_differential_audit.py):")
        print("\n".join(f"  {problem}" for problem in run.problems))
    print(f"\ndifferential audit: {arguments.seeds} seeds from {first}, {arguments.rounds} "
          f"rounds each, {len(failed)} failed, {time.monotonic() - started:.0f} s; load "
          f"average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
