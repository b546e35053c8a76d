"""docs/performance.md as bench/all.py writes it: each run says how fast the machine was
(a fixed piece of Python timed before and after the run), and a run measured before that
calibration existed still renders."""

from __future__ import annotations

from typing import Any

from bench import all as bench_all


def figures(**extra: Any) -> dict[str, Any]:
    return {
        "date": "2026-12-08T00:00:00+00:00", "full": True,
        "issuer": {"booklets_per_second": 14460, "baseline_booklets_per_second": 21626,
                   "worker_rss_mb_max": 299.0},
        "redeemer": {"phases": [{"end_to_end_per_second": 18865,
                                 "cpu_microseconds_per_redemption": {"worker": 62.3},
                                 "worker_rss_mb_after": 170.6}]},
        "plain_postgresql_attempts_per_second": 9171,
        "latency": {"p50_ms": 34.6, "p99_ms": 352.9, "statuses": {"201": 60000}},
        "audit": {"replay": {"events_per_second": 243721}, "fastest_raw_per_second": 228247},
        "load_average_before": [1.91, 1.61, 1.2], "load_average_after": [1.3, 1.83, 1.57],
        **extra,
    }


def test_a_run_says_how_fast_the_machine_was_before_and_after_it() -> None:
    lines = bench_all.table(figures(calibration_ms_before=241.9, calibration_ms_after=263.0))
    header = next(line for line in lines if line.startswith("On this machine"))
    assert "241.9 ms before the run" in header and "263.0 ms after it" in header


def test_a_run_measured_without_the_calibration_still_renders() -> None:
    lines = bench_all.table(figures())
    header = next(line for line in lines if line.startswith("On this machine"))
    assert header.endswith("after [1.3, 1.83, 1.57].")
    assert any(line.startswith("| Redemption end to end (/s) | 18,865 | 9171 | 2.06 |")
               for line in lines)

