"""Eight venues, each its own client and thread, scan the same 1,000 vouchers at the same time
through the real broker and the real redeemer worker: exactly 1,000 redemptions are
recorded, in PostgreSQL and in the log, and every other attempt is told already_redeemed.

Then the offline-scan command line: a file of codes sent through the log, with its summary
by outcome, and sent again without redeeming anything twice."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import pytest

from passnum.core.codec import decode_event
from passnum.core.log import read_to_end
from passnum.core.topology import topology_for
from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites, venues
from passnum.tools.scenario import booklet_codes
from schemas.messages import RedeemVoucher
from tests.integration.helpers import MARCH, onboard, scalar, wait_for_rows

pytestmark = pytest.mark.integration

CLIENTS = 8
BOOKLETS = 100  # of 10 vouchers: 1,000 vouchers


def _attempt_all(settings, siret: str, codes: list[str], seed: int, results: dict,
                 failures: list, start: threading.Barrier) -> None:
    try:
        client = LedgerClient(settings)
        order = list(enumerate(codes))
        random.Random(seed).shuffle(order)
        commands = [RedeemVoucher(request_id=f"venue{seed}-v{index}", code=code, siret=siret,
                                  occurred_at=MARCH + timedelta(seconds=index))
                    for index, code in order]
        # Every client ready before any sends: a client whose set-up ended first could send
        # its 1,000 commands before the others began, and win them all (no race at all).
        start.wait(timeout=120)
        client.send(commands)
        outcomes = client.wait_for([c.request_id for c in commands], timeout_seconds=180)
        results[seed] = outcomes
        client.close()
    except BaseException as error:
        failures.append(error)


def test_eight_venues_race_for_the_same_thousand_vouchers(ledger, start_worker) -> None:
    start_worker("issuer")
    start_worker("redeemer")
    partner = next(p for p in collectivites(8) if p.vouchers_per_booklet == 10)
    venue_list = venues(CLIENTS)
    setup = LedgerClient(ledger)
    onboard(setup, [partner], BOOKLETS, venue_list)
    setup.close()
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated", BOOKLETS)
    codes = booklet_codes(ledger.voucher_code_key.encode(), partner, range(1, BOOKLETS + 1))
    assert len(codes) == 1000

    results: dict[int, dict] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(CLIENTS)
    threads = [threading.Thread(target=_attempt_all, args=(ledger, venue.siret, codes, seed,
                                                           results, failures, start))
               for seed, venue in enumerate(venue_list)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures
    assert len(results) == CLIENTS

    winners: dict[str, list[str]] = defaultdict(list)
    reasons: Counter = Counter()
    for outcomes in results.values():
        for events in outcomes.values():
            assert len(events) == 1, events
            event = events[0]
            if event.type == "voucher_redeemed":
                winners[event.voucher_id].append(event.siret)
            else:
                reasons[event.reason] += 1
                assert event.redeemed_at is not None
    assert len(winners) == 1000 and all(len(sirets) == 1 for sirets in winners.values())
    assert reasons == {"already_redeemed": 1000 * (CLIENTS - 1)}
    assert len({siret for sirets in winners.values() for siret in sirets}) > 1, (
        "the race had a single winner venue: it was not a race")

    assert scalar(ledger, "SELECT count(*) FROM redemptions") == 1000
    log = [decode_event(r.value) for r in read_to_end(
        ledger, [topology_for(ledger).redeemer_events.name])]
    redeemed_in_log = {e.event_id: e.voucher_id for e in log if e.type == "voucher_redeemed"}
    assert sorted(redeemed_in_log.values()) == sorted(winners)


def test_offline_scans_file_through_the_log(ledger, start_worker, tmp_path: Path) -> None:
    start_worker("issuer")
    start_worker("redeemer")
    partner, venue = collectivites(1)[0], venues(1)[0]
    setup = LedgerClient(ledger)
    onboard(setup, [partner], 2, [venue])
    setup.close()
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated", 2)
    codes = booklet_codes(ledger.voucher_code_key.encode(), partner, range(1, 3))
    scans = tmp_path / "scans.txt"
    scans.write_text("\n".join([
        "# offline day at the venue",
        f"{codes[0]},2026-03-03T10:15:00",
        f"{codes[1]} 2026-03-03T10:20:00+01:00",
        f"{codes[2]}",
        f"{codes[0]},2026-03-03T11:00:00",  # scanned twice: the second is already_redeemed
        "NOT-A-CODE",
        f"{codes[3]},yesterday",  # unreadable timestamp: reported, not sent
        "",
    ]), encoding="utf-8")
    command = [str(Path(sys.executable).parent / "passnum"), "redeemer", "redeem-file",
               str(scans), "--siret", venue.siret, "--results", str(tmp_path / "out.csv")]
    environment = {**os.environ, **ledger.as_environment(), "COLUMNS": "120"}

    first = subprocess.run(command, env=environment, capture_output=True, text=True,
                           timeout=180)
    assert first.returncode == 1, first.stderr  # one unreadable line
    assert "line 7: unreadable_timestamp" in first.stderr
    summary = first.stdout
    assert "voucher_redeemed" in summary and "rejected: already_redeemed" in summary
    assert "rejected: malformed_code" in summary and "unreadable line" in summary
    assert scalar(ledger, "SELECT count(*) FROM redemptions") == 3
    assert scalar(ledger, "SELECT count(*) FROM redemptions WHERE redeemed_at = "
                          "'2026-03-03T09:15:00Z'") == 1  # a naive time is French time
    results = (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()
    assert len(results) == 1 + 5

    again = subprocess.run(command, env=environment, capture_output=True, text=True,
                           timeout=180)
    assert again.returncode == 1
    assert (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines() == results
    assert scalar(ledger, "SELECT count(*) FROM redemptions") == 3
