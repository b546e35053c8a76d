"""The log fuzzer, long: `python bench/log_fuzz.py --examples 200` runs
tests/integration/test_log_fuzzer.py with that many Hypothesis examples (each a batch of up
to 24 records for every command type, valid, boundary, invalid, on the wrong topic, nested,
large, in UTF-16...) against live workers, and prints pytest's verdict and run time."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=200)
    arguments = parser.parse_args()
    started = time.monotonic()
    status = subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/integration/test_log_fuzzer.py"],
        cwd=REPOSITORY, env={**os.environ, "LOG_FUZZ_EXAMPLES": str(arguments.examples)})
    print(f"log fuzzer: {arguments.examples} examples, exit {status}, "
          f"{time.monotonic() - started:.0f} s, load average {os.getloadavg()[0]:.2f}")
    return status


if __name__ == "__main__":
    sys.exit(main())
