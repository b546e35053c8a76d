"""The HTTP fuzzer run long: schemathesis against both OpenAPI documents, on real issuer and
redeemer workers, with many more examples per operation than the test suite draws.

    .venv/bin/python bench/http_fuzz.py                 # 100 examples per operation and mode
    .venv/bin/python bench/http_fuzz.py --examples 500

It runs tests/integration/test_http_fuzz.py (the same world, checks and documents) with
HTTP_FUZZ_EXAMPLES set, so that the bounded test and the long run cannot drift
apart. Every failure is printed with its operation, what was checked and a curl command that
reproduces it; the exit status is pytest's (0: no 5xx, every answer documented).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
TEST = "tests/integration/test_http_fuzz.py"
EXAMPLES_VARIABLE = "HTTP_FUZZ_EXAMPLES"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100,
                        help="examples per operation and generation mode (the suite: 4)")
    arguments = parser.parse_args()
    environment = {**os.environ, EXAMPLES_VARIABLE: str(arguments.examples)}
    started = time.monotonic()
    finished = subprocess.run([sys.executable, "-m", "pytest", TEST, "-q", "-p",
                               "no:cacheprovider"], cwd=REPOSITORY, env=environment,
                              check=False)
    print(f"http fuzz: {arguments.examples} examples per operation and mode, "
          f"{time.monotonic() - started:.0f} s, exit {finished.returncode}")
    return finished.returncode


if __name__ == "__main__":
    sys.exit(main())
