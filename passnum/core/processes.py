"""Starting and stopping the worker processes (demo, tests, crash proofs).

Each worker is its own OS process started with the faust CLI, exactly as in production
(`faust -A services.<name>.app worker`), so a SIGKILL in a test kills a real worker.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from passnum.core.settings import Settings


# Collect the youngest generation once per this many new container objects (Python's
# default is 700), the older ones after this many collections of the one below. A batch
# builds hundreds of thousands of objects, almost none of them in a cycle: with the
# defaults, 40,000 booklets issued in-process ran 750 collections that took 18 % of the
# decisions' CPU (0.64 s of 3.6 s); frozen start-up objects and these thresholds, 0.14 s.
GARBAGE_COLLECTION_THRESHOLDS = (20_000, 20, 20)


def tune_garbage_collection() -> None:
    """Leave what start-up built (modules, classes, the app) out of every collection, and
    collect less often: see GARBAGE_COLLECTION_THRESHOLDS. Called by the workers and by
    the redeemer's API process once they have started."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GARBAGE_COLLECTION_THRESHOLDS)


WORKER_APPS = {
    "issuer": ("services.issuer.app", "web_port_issuer"),
    "redeemer": ("services.redeemer.app", "web_port_redeemer"),
}


def faust_executable() -> str:
    candidate = Path(sys.executable).parent / "faust"
    return str(candidate) if candidate.exists() else "faust"


@dataclass
class WorkerProcess:
    service: str
    settings: Settings
    log_directory: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    starts: int = field(default=0)

    def command(self) -> list[str]:
        module, port_setting = WORKER_APPS[self.service]
        port = getattr(self.settings, port_setting)
        host = self.settings.web_host
        # --quiet: no banner on stdout, so that every line of a worker's output is a log
        # record (JSON by default: passnum/core/logging_setup.py).
        return [faust_executable(), "-A", module, "--quiet", "worker",
                "-l", self.settings.log_level, "--web-port", str(port), "--web-host", host,
                "--web-bind", host]

    def start(self) -> "WorkerProcess":
        assert self.process is None or self.process.poll() is not None, "already running"
        self.log_directory.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log_path = self.log_directory / f"{self.service}-{self.starts}.log"
        self.log_file = open(log_path, "wb")
        environment = {**os.environ, **self.settings.as_environment()}
        self.process = subprocess.Popen(self.command(), stdout=self.log_file,
                                        stderr=subprocess.STDOUT, env=environment,
                                        start_new_session=True, cwd=self.log_directory)
        return self

    @property
    def log_path(self) -> Path:
        return self.log_directory / f"{self.service}-{self.starts}.log"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no flush, no commit. What a crash looks like."""
        if self.running():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout_seconds: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.log_file is not None:
            self.log_file.close()
        return self.process.returncode

    def wait_until_healthy(self, timeout_seconds: float = 60.0) -> None:
        """Until its web endpoint answers: the app is up; joining the group follows."""
        import urllib.request

        _, port_setting = WORKER_APPS[self.service]
        # /health/ answers readiness: the database, the broker (the group joined) and the API.
        url = f"http://{self.settings.web_host}:{getattr(self.settings, port_setting)}/health/"
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.service} exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"{self.service} not healthy after {timeout_seconds}s")
