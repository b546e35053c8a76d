"""The national run's plan (bench/national.py) is the year it claims: every booklet used in
one month, every voucher redeemed at most once and inside its month, second scans after
their first in the same chunk (the worker decides them in that order), and the estimate at
scale 1.0 is the measured figures carried linearly."""

from __future__ import annotations

import random
from collections import Counter

from bench import national
from passnum.core.codec import decode_command
from passnum.core.settings import Settings
from passnum.ledger.partners import venues
from passnum.ledger.settlement_month import month_end, month_start
from passnum.ledger.voucher_codes import parse_code

SETTINGS = Settings()
BOOKLETS = {"552100554": 600, "217500016": 37}


def year_of_scans() -> list[list[tuple]]:
    generator = random.Random(1)
    return [list(national.month_scans(BOOKLETS, index, venues(5), generator))
            for index in range(national.MONTHS)]


def test_every_booklet_is_used_in_one_month_and_every_scan_inside_it() -> None:
    booklet_months: dict[str, set[int]] = {}
    first_scans: Counter[str] = Counter()
    for index, scans in enumerate(year_of_scans()):
        month = national.months()[index]
        for number, _, at, again in scans:
            booklet_months.setdefault(number.booklet_id, set()).add(index)
            assert max(month_start(month), national.FIRST_SCAN) <= at < month_end(month)
            if not again:
                first_scans[number.voucher_id] += 1
    assert all(len(used) == 1 for used in booklet_months.values())
    assert set(first_scans.values()) == {1}
    vouchers = sum(BOOKLETS.values()) * national.VOUCHERS_PER_BOOKLET
    assert 0.75 < len(first_scans) / vouchers < 0.85


def test_a_second_scan_follows_its_first_in_the_same_chunk() -> None:
    scans = [scan for month in year_of_scans() for scan in month]
    chunks = list(national.scan_chunks(SETTINGS, iter(scans), "t", 7))
    key = SETTINGS.voucher_code_key.encode()
    assert sum(firsts for _, firsts in chunks) == sum(not scan[3] for scan in scans)
    second_scans = 0
    for payloads, _ in chunks:
        seen: set[str] = set()
        for _, _, value in payloads.records:
            command = decode_command(value)
            voucher_id = parse_code(key, command.code).number.voucher_id  # type: ignore
            if voucher_id in seen:
                second_scans += 1
            seen.add(voucher_id)
    assert second_scans == sum(scan[3] for scan in scans) > 0


def test_the_estimate_carries_the_measured_figures_linearly() -> None:
    result = {
        "scale": 0.25, "log_records": {"a": 100, "b": 300},
        "broker_rss_mb_before": 1000.0, "broker_rss_mb_after": 1100.0,
        "issuance": {"seconds": 360.0, "redeemer_knows_every_booklet_after_seconds": 720.0},
        "redemption": {"seconds": 900.0, "scans": 1000},
        "settlement": {"seconds": 36.0},
        "audit": {"seconds": 90.0, "peak_resident_mb": 500.0, "vouchers": 5_000_000,
                  "state_bytes_per_voucher": 20.0}}
    estimate = national.estimates_at_full_scale(result, None)
    assert estimate["hours"] == {"issuance": 0.4, "redeemer_learns_booklets": 0.8,
                                 "redemptions": 1.0, "settlement_closes": 0.04, "audit": 0.1}
    assert estimate["scans"] == 4000 and estimate["log_records"] == 1600
    assert estimate["broker_log_memory_mb"] == 400
    assert estimate["audit_peak_resident_mb"] == round(500 + 20 * 15_000_000 / 2**20)
    assert national.estimates_at_full_scale(result, 100.0)["audit_peak_resident_mb"] == round(
        500 + 100 * 15_000_000 / 2**20)
