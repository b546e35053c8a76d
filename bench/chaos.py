"""The chaos run, long: many SIGKILLs of issuer and redeemer workers under a mixed workload,
then a quiet soak, with the figures printed and written as JSON.

    .venv/bin/python bench/chaos.py                          # 100 kills, 120 s of soak
    .venv/bin/python bench/chaos.py --kills 200 --interval 1 --soak-seconds 300

It runs tests/integration/test_chaos.py (the same workload, kills and checks) with its
parameters in the environment, so that the bounded test and the long run cannot drift
apart; the test writes its figures before it asserts, so a failed run still reports what it
counted. The exit status is pytest's (0: nothing lost, nothing doubled, the audit SOUND and
in agreement with the services' tables). docs/chaos.md explains the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
TEST = "tests/integration/test_chaos.py"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs (the test: 10)")
    parser.add_argument("--interval", type=float, default=1.5,
                        help="mean seconds between two kills (jittered by ±50 %%)")
    parser.add_argument("--soak-seconds", type=float, default=120.0,
                        help="workload without kills at the end, for the memory figures")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--output", type=Path, default=Path("chaos.json"),
                        help="where the figures go (JSON)")
    return parser.parse_args()


def megabytes(kilobytes: int | None) -> str:
    return "-" if kilobytes is None else f"{kilobytes / 1024:.1f} MiB"


def table(figures: dict) -> list[tuple[str, str]]:
    audit = figures["audit"]
    rows = [
        ("date (UTC)", figures["date"]),
        ("load average at start / end (1 min)",
         f"{figures['load_average_start'][0]:.2f} / {figures['load_average_end'][0]:.2f}"),
        ("kills (SIGKILL)", f"{figures['kills']} {figures['kills_by_worker']}"),
        ("kills while requests were pending", str(figures["kills_with_requests_pending"])),
        ("second redeemer starts (rebalances)", str(figures["second_redeemer_starts"])),
        ("chaos / soak seconds", f"{figures['chaos_seconds']} / {figures['soak_seconds']}"),
        ("commands sent (records, with retries)", str(figures["records_sent"])),
        ("requests (distinct request ids)", str(figures["requests"])),
        ("requests decided", str(figures["decided"])),
        ("lost (no outcome)", str(figures["lost"])),
        ("doubled (voucher twice, event id twice, two outcomes)", str(figures["doubled"])),
        ("re-published copies (same event id, same bytes)", str(figures["republished_copies"])),
        ("dead letters", str(figures["dead_letters"])),
        ("audit", f"{audit['verdict']}, {len(audit['findings'])} findings, live state "
                  f"{audit['live_agreement']}"),
    ]
    memory = figures["resident_kilobytes"]
    for worker in sorted(memory["end"]):
        rows.append((f"RSS {worker}: chaos start / soak start / end", " / ".join(
            megabytes(memory[moment].get(worker)) for moment in ("start", "soak_start", "end"))))
    return rows


def main() -> int:
    options = arguments()
    output = options.output.resolve()
    output.unlink(missing_ok=True)
    environment = {**os.environ, "CHAOS_KILLS": str(options.kills),
                   "CHAOS_KILL_INTERVAL_SECONDS": str(options.interval),
                   "CHAOS_SOAK_SECONDS": str(options.soak_seconds),
                   "CHAOS_SEED": str(options.seed), "CHAOS_REPORT": str(output)}
    started = time.monotonic()
    finished = subprocess.run([sys.executable, "-m", "pytest", TEST, "-q", "-p",
                               "no:cacheprovider"], cwd=REPOSITORY, env=environment,
                              check=False)
    if not output.exists():
        print(f"chaos: no figures (the run stopped before its end), exit {finished.returncode}")
        return finished.returncode or 1
    figures = json.loads(output.read_text())
    rows = table(figures)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print(f"chaos: {time.monotonic() - started:.0f} s in all, exit {finished.returncode}, "
          f"figures in {output}")
    return finished.returncode


if __name__ == "__main__":
    sys.exit(main())
