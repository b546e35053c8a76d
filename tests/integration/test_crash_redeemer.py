"""SIGKILL the redeemer in the middle of a stream of redemptions, restart it, and show that
every request got exactly one outcome, no voucher is redeemed twice, and the auditor's
replay agrees with the redeemer's state.

The stream mixes first attempts, retries of the same request (same request_id) and
concurrent attempts on the same voucher by other venues.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict

import pytest

from passnum.edge.client import LedgerClient
from passnum.ledger.partners import collectivites, venues
from passnum.tools.scenario import booklet_codes
from schemas.messages import BlockBooklet, RedeemVoucher
from services.auditor.replay import replay
from tests.integration.helpers import MARCH, onboard, scalar, wait_for_rows

pytestmark = pytest.mark.integration

BOOKLETS = 40  # 400 vouchers


def build_stream(codes: list[str], sirets: list[str], seed: int) -> list[RedeemVoucher]:
    random_source = random.Random(seed)
    stream: list[RedeemVoucher] = []
    for index, code in enumerate(codes):
        for attempt in range(random_source.randint(1, 3)):  # racing venues
            stream.append(RedeemVoucher(request_id=f"v{index}-a{attempt}", occurred_at=MARCH,
                                        code=code, siret=random_source.choice(sirets)))
    retries = random_source.sample(stream, len(stream) // 4)  # same request, sent again
    stream += retries
    random_source.shuffle(stream)
    return stream


def test_sigkill_redeemer_mid_stream(ledger, start_worker) -> None:
    start_worker("issuer")
    redeemer = start_worker("redeemer")
    partner = collectivites(1)[0]
    venue_list = venues(4)
    client = LedgerClient(ledger)
    onboard(client, [partner], BOOKLETS, venue_list)
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated", BOOKLETS)

    codes = booklet_codes(ledger.voucher_code_key.encode(), partner, range(1, BOOKLETS + 1))
    stream = build_stream(codes, [venue.siret for venue in venue_list], seed=7)
    request_ids = {command.request_id for command in stream}
    kills_mid_stream = 0
    waves = [stream[i::4] for i in range(4)]
    for wave_number, wave in enumerate(waves):
        client.send(wave)
        if wave_number in (1, 2):
            time.sleep(0.15 * wave_number)  # let it get into the middle of the wave
            client.poll(0.05)
            if len(request_ids - client.events_by_request.keys()) > 0:
                kills_mid_stream += 1
            redeemer.kill()
            redeemer.start()
            redeemer.wait_until_healthy()
    outcomes = client.wait_for(request_ids, timeout_seconds=120)
    assert kills_mid_stream == 2, "the kills must land while requests are still undecided"

    # Every request exactly one outcome (the client de-duplicates re-published event ids).
    assert all(len(events) == 1 for events in outcomes.values())
    winners: dict[str, list[str]] = defaultdict(list)
    for events in outcomes.values():
        event = events[0]
        if event.type == "voucher_redeemed":
            winners[event.voucher_id].append(event.request_id)
        else:
            assert event.reason == "already_redeemed", event
    assert len(winners) == len(codes)
    assert all(len(requests) == 1 for requests in winners.values())

    # The redeemer's state and the auditor's replay agree with the outcomes.
    assert scalar(ledger, "SELECT count(*) FROM redemptions") == len(codes)
    report = replay(ledger)
    assert report.sound, report.findings
    assert report.totals[partner.siren].redeemed_vouchers == len(codes)
    assert report.totals[partner.siren].outstanding_vouchers == 0
    # Published rows go with the next batch's transaction or the worker's sweep.
    wait_for_rows(ledger, "SELECT count(*) FROM outbox", 0, timeout_seconds=30)


def five_booklets_two_venues(ledger, start_worker):  # type: ignore[no-untyped-def]
    """Both workers, one collectivité's five funded booklets, two venues."""
    start_worker("issuer")
    redeemer = start_worker("redeemer")
    partner, venue_list = collectivites(1)[0], venues(2)
    client = LedgerClient(ledger)
    onboard(client, [partner], 5, venue_list)
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated", 5)
    return redeemer, partner, venue_list, client


def crash_then_restart(ledger, redeemer, client: LedgerClient,  # type: ignore[no-untyped-def]
                       stream: list[RedeemVoucher], crash_point: str) -> dict:
    """Restart the redeemer to be killed at `crash_point` of its first batch, send `stream`,
    see it killed with outbox rows left, restart it and wait for every outcome."""
    redeemer.stop()
    redeemer.settings = ledger.with_overrides(fault_crash_point=crash_point,
                                              fault_crash_on_batch=1)
    redeemer.start()
    client.send(stream)
    redeemer.process.wait(timeout=60)
    assert redeemer.process.returncode == -9, "the fault injection must have killed it"
    assert scalar(ledger, "SELECT count(*) FROM outbox") > 0, "a crash leaves outbox rows"
    redeemer.settings = ledger
    redeemer.start()
    return client.wait_for({c.request_id for c in stream}, timeout_seconds=90)


@pytest.mark.parametrize("crash_point", ["after_decide", "after_publish"])
def test_crash_at_each_point_of_a_batch(ledger, start_worker, crash_point) -> None:
    """A worker killed right after its commit (nothing published yet) or right after
    publishing (outbox not cleared): the restarted worker publishes the missing events or
    re-publishes the same ones under the same event ids, and nothing is decided twice."""
    redeemer, partner, venue_list, client = five_booklets_two_venues(ledger, start_worker)
    codes = booklet_codes(ledger.voucher_code_key.encode(), partner, range(1, 6))
    stream = build_stream(codes, [venue.siret for venue in venue_list], seed=11)
    outcomes = crash_then_restart(ledger, redeemer, client, stream, crash_point)
    assert all(len(events) == 1 for events in outcomes.values())
    redeemed = [e for events in outcomes.values() for e in events if e.type == "voucher_redeemed"]
    assert sorted(e.voucher_id for e in redeemed) == sorted({e.voucher_id for e in redeemed})
    assert len(redeemed) == len(codes)
    wait_for_rows(ledger, "SELECT count(*) FROM outbox", 0)
    if crash_point == "after_publish":
        # The outcomes were published before the crash: the re-publication of the crashed
        # batch (same event ids) may reach the client after every outcome did.
        deadline = time.monotonic() + 30
        while client.duplicates == 0 and time.monotonic() < deadline:
            client.poll(0.5)
        assert client.duplicates > 0, "the crashed batch must have been published twice"
    assert replay(ledger).sound


@pytest.mark.parametrize("crash_point", ["after_decide", "after_publish"])
def test_a_crash_in_a_batch_that_applies_blocks(ledger, start_worker, crash_point) -> None:
    """The batch that records `BookletBlockApplied` (and its `redeemer_applied_blocks` rows)
    is killed after its commit or after publishing: each block is applied once, in the log
    and in the table, and every scan of a blocked booklet is refused."""
    redeemer, partner, venue_list, client = five_booklets_two_venues(ledger, start_worker)
    blocks = [BlockBooklet(request_id=f"lost-{sequence}", occurred_at=MARCH,
                           siren=partner.siren, booklet_id=f"{partner.siren}-{sequence:07d}",
                           reason="lost") for sequence in (2, 4)]
    client.send(blocks)
    client.wait_for({block.request_id for block in blocks}, timeout_seconds=60)
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE blocked", len(blocks))
    codes = booklet_codes(ledger.voucher_code_key.encode(), partner, range(1, 6))
    stream = build_stream(codes, [venue.siret for venue in venue_list], seed=13)
    outcomes = crash_then_restart(ledger, redeemer, client, stream, crash_point)
    assert all(len(events) == 1 for events in outcomes.values())
    blocked_ids = {block.booklet_id for block in blocks}
    for events in outcomes.values():
        event = events[0]
        booklet_id = (event.voucher_id or "").rsplit("-", 1)[0]
        if booklet_id in blocked_ids:
            assert (event.type, event.reason) == ("redemption_rejected", "booklet_blocked")
    wait_for_rows(ledger, "SELECT count(*) FROM outbox", 0)
    assert scalar(ledger, "SELECT count(*) FROM redeemer_applied_blocks") == len(blocks)
    # Each application reached the log (its id is fixed: a re-publication repeats it).
    client.wait_for({f"block-applied-{booklet_id}" for booklet_id in blocked_ids},
                    timeout_seconds=30)
    # Decided once: an application decided twice is one event id at two chain positions,
    # which the audit names (`request_decided_twice`).
    report = replay(ledger)
    assert report.sound, report.findings
