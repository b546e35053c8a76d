"""Where a redeemer worker's time goes, switched on by an environment variable (off in
production): `PASSNUM_REDEEMER_PROFILE=timing` logs, every few seconds, how long batches
spent being decided (PostgreSQL transaction), being published, and waiting for faust to
hand over the next batch; `PASSNUM_REDEEMER_PROFILE=/path/file.prof` also runs every
batch decision under cProfile and writes the statistics there at each summary.

It wraps the batch runner from the composition root (services/redeemer/app.py) and never
changes what a batch does.
"""

from __future__ import annotations

import cProfile
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)
PROFILE_VARIABLE = "PASSNUM_REDEEMER_PROFILE"
SUMMARY_INTERVAL_SECONDS = 5.0


@dataclass
class Totals:
    batches: int = 0
    records: int = 0
    deciding_seconds: float = 0.0
    publishing_seconds: float = 0.0
    waiting_seconds: float = 0.0
    published_rows: int = 0

    def line(self, elapsed: float) -> str:
        size = self.records / max(self.batches, 1)
        return (f"{elapsed:.1f} s: {self.batches} batches, {self.records} records "
                f"({size:.0f}/batch, {self.records / max(elapsed, 1e-9):.0f}/s); deciding "
                f"{self.deciding_seconds:.2f} s, publishing {self.published_rows} rows "
                f"{self.publishing_seconds:.2f} s, waiting for input {self.waiting_seconds:.2f} s")


def instrument(runner: Any) -> None:
    """Wrap `runner.run_batch` and `runner.publish` when the variable is set."""
    setting = os.environ.get(PROFILE_VARIABLE, "")
    if not setting:
        return
    profile_path = None if setting == "timing" else setting
    profiler = cProfile.Profile() if profile_path else None
    totals = Totals()
    clock = {"started": time.monotonic(), "last_batch_end": time.monotonic(),
             "last_summary": time.monotonic()}
    run_batch, publish = runner.run_batch, runner.publish

    async def timed_publish(rows: list, *arguments: Any) -> None:
        started = time.monotonic()
        await publish(rows, *arguments)
        totals.publishing_seconds += time.monotonic() - started
        totals.published_rows += sum(len(row.events) for row in rows)

    async def timed_run_batch(records: list) -> None:
        started = time.monotonic()
        totals.waiting_seconds += started - clock["last_batch_end"]
        publishing_before = totals.publishing_seconds
        await run_batch(records)
        ended = time.monotonic()
        totals.batches += 1
        totals.records += len(records)
        totals.deciding_seconds += (ended - started) - (
            totals.publishing_seconds - publishing_before)
        clock["last_batch_end"] = ended
        if ended - clock["last_summary"] > SUMMARY_INTERVAL_SECONDS:
            clock["last_summary"] = ended
            logger.warning("redeemer profile: %s", totals.line(ended - clock["started"]))
            if profiler is not None and profile_path is not None:
                profiler.dump_stats(profile_path)

    if profiler is not None:
        # The whole batch transaction (passnum.core.processing.decide_batch), as the worker
        # module calls it, so that the core's share shows next to the handler's.
        import passnum.core.worker

        decide_batch = passnum.core.worker.decide_batch

        def profiled_decide_batch(*arguments: Any) -> Any:
            profiler.enable()
            try:
                return decide_batch(*arguments)
            finally:
                profiler.disable()

        passnum.core.worker.decide_batch = profiled_decide_batch  # type: ignore[assignment]
    runner.run_batch, runner.publish = timed_run_batch, timed_publish
