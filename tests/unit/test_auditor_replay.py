"""The auditor's replay on in-memory records: a ledger decided by the services' own
deciders, then one fault planted at a time. Each test names the finding it expects and
the event it must name; the clean ledger must be sound. No broker: records are fed to
`Replayer.ingest` exactly as the reader hands them over (issuer topic first)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from passnum.core.codec import CHAIN_HEADER, encode, next_link

from passnum.ledger.identity import event_id_for
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from schemas.messages import (
    BookletBlockApplied,
    BookletActivated,
    BookletBlocked,
    ProviderStatusChanged,
    RedemptionCancelled,
    RedemptionRejected,
    SettlementMonthClosed,
    SettlementStatementIssued,
    VoucherRedeemed,
)
from services.auditor import wire
from services.auditor.replay import Replayer, ReplayOptions
from tests.support.chained_log import ChainedRecord, in_read_order, sample_ledger

SETTINGS = Settings()
TOPOLOGY = topology_for(SETTINGS)
AT = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def replay(records: list[ChainedRecord], **options: object) -> tuple[Replayer, object]:
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False, **options))  # type: ignore[arg-type]
    messages = in_read_order(records, replayer.topics_in_order())
    replayer.ingest(messages)
    return replayer, replayer.judge()


def codes(report: object) -> set[str]:
    return {finding.code for finding in report.findings}  # type: ignore[attr-defined]


def find(report: object, code: str) -> object:
    matches = [f for f in report.findings if f.code == code]  # type: ignore[attr-defined]
    assert matches, (code, report.findings)  # type: ignore[attr-defined]
    return matches[0]


def value_of(record: ChainedRecord) -> dict:
    return json.loads(record.value)


@pytest.fixture
def ledger():  # type: ignore[no-untyped-def]
    return sample_ledger(TOPOLOGY)


def test_the_clean_ledger_is_sound_and_balances(ledger) -> None:  # type: ignore[no-untyped-def]
    _, report = replay(ledger.records)
    assert report.sound, report.findings
    first, second = sorted(report.totals.values(), key=lambda t: -t.redeemed_vouchers)
    assert (first.redeemed_vouchers, first.issued_vouchers) == (4, 3 * 10 if
                                                                first.issued_vouchers == 30 else
                                                                first.issued_vouchers)
    assert first.received_cents == first.activated_cents
    assert first.inactive_vouchers == first.issued_vouchers // 3  # the unpaid booklet
    assert first.outstanding_vouchers == first.issued_vouchers * 2 // 3 - 4
    assert report.rejections_by_reason == {"redemption_rejected: already_redeemed": 1}


def test_a_duplicate_delivery_is_not_a_finding(ledger) -> None:  # type: ignore[no-untyped-def]
    redemption = next(r for r in ledger.records if value_of(r)["type"] == "voucher_redeemed")
    replayer, report = replay(ledger.records + [redemption, ledger.records[0]])
    assert report.sound, report.findings
    assert report.duplicate_count == 2
    assert sum(t.redeemed_vouchers for t in report.totals.values()) == 4


def test_a_double_redemption_names_both_events(ledger) -> None:  # type: ignore[no-untyped-def]
    original = next(r for r in ledger.records if value_of(r)["type"] == "voucher_redeemed")
    document = value_of(original)
    again = VoucherRedeemed(**{**document, "request_id": "buggy-second",
                               "event_id": event_id_for("redeemer", "buggy-second", 0),
                               "occurred_at": AT + timedelta(days=1)})
    forged = ledger.writer.redeemer(document["booklet_id"].encode(), [again])
    _, report = replay(ledger.records + forged)
    finding = find(report, "voucher_redeemed_twice")
    assert finding.detail == document["voucher_id"]
    assert again.event_id in finding.event_ids
    first = wire.event_fingerprint(document["event_id"])
    assert f"fingerprint:{first:016x}" in finding.event_ids  # named by a second read
    assert "books_do_not_balance" in codes(report)


@pytest.mark.parametrize("step", [timedelta(0), timedelta(microseconds=400_000),
                                  timedelta(microseconds=-1)])
def test_redeemed_cancelled_and_redeemed_again_within_a_second_is_sound(ledger, step) -> None:  # type: ignore[no-untyped-def]
    """Judged in log order, the order the redeemer decided them in: the instants may tie
    within one second, or even run backwards (clocks), and the history is still sound."""
    original = next(r for r in ledger.records if value_of(r)["type"] == "voucher_redeemed")
    document = value_of(original)
    moment = datetime.fromisoformat(document["occurred_at"].replace("Z", "+00:00"))
    cancel = RedemptionCancelled(
        event_id=event_id_for("redeemer", "cancel-fast", 0), request_id="cancel-fast",
        occurred_at=moment + step, siret=document["siret"], siren=document["siren"],
        booklet_id=document["booklet_id"], voucher_id=document["voucher_id"],
        face_value_cents=document["face_value_cents"], redemption_event_id=document["event_id"])
    again = VoucherRedeemed(**{**document, "request_id": "again-fast",
                               "event_id": event_id_for("redeemer", "again-fast", 0),
                               "occurred_at": moment + step + step})
    later = ledger.writer.redeemer(document["booklet_id"].encode(), [cancel, again])
    _, report = replay(ledger.records + later)
    assert report.sound, report.findings
    assert sum(t.redeemed_vouchers for t in report.totals.values()) == 4
    # and a cancellation decided after the second redemption cancels nothing it names
    late = RedemptionCancelled(**{**cancel.model_dump(), "request_id": "late",
                                  "event_id": event_id_for("redeemer", "late", 0)})
    _, report = replay(ledger.records + later + ledger.writer.redeemer(
        document["booklet_id"].encode(), [late]))
    assert find(report, "cancellation_of_unknown_redemption").event_ids == (late.event_id,)


def test_the_books_are_as_of_the_audit_and_a_redemption_dated_later_is_named(ledger) -> None:  # type: ignore[no-untyped-def]
    """A scan dated next year (refused by the redeemer: `scan_in_the_future`) planted in the
    log: the as-of day stays the day of the audit, and the redemption is named."""
    issued = next(value_of(r) for r in ledger.records if value_of(r)["type"] == "booklet_issued"
                  and value_of(r)["booklet_id"].endswith("0000002"))
    redeemed = {value_of(r)["voucher_id"] for r in ledger.records
                if value_of(r)["type"] == "voucher_redeemed"}
    voucher_id = next(f"{issued['booklet_id']}-{n:02d}" for n in range(1, 11)
                      if f"{issued['booklet_id']}-{n:02d}" not in redeemed)
    template = next(value_of(r) for r in ledger.records if value_of(r)["type"] == "voucher_redeemed")
    audit_time = datetime.now(timezone.utc)
    future = VoucherRedeemed(**{**template, "request_id": "typo", "voucher_id": voucher_id,
                                "booklet_id": issued["booklet_id"], "siren": issued["siren"],
                                "event_id": event_id_for("redeemer", "typo", 0),
                                "occurred_at": audit_time + timedelta(days=400)})
    _, report = replay(ledger.records + ledger.writer.redeemer(issued["booklet_id"].encode(),
                                                                 [future]))
    assert report.as_of in {audit_time.date().isoformat(),
                            (audit_time + timedelta(days=1)).date().isoformat()}
    assert find(report, "redemption_in_the_future").detail.startswith(voucher_id)
    _, clean = replay(ledger.records)
    assert clean.sound and clean.as_of == report.as_of


def test_a_redemption_after_the_grace_is_named(ledger) -> None:  # type: ignore[no-untyped-def]
    """Judged by the Python path (the compiled fold leaves it there: its equality test)."""
    template = next(value_of(r) for r in ledger.records if value_of(r)["type"] == "voucher_redeemed")
    issued = next(value_of(r) for r in ledger.records if value_of(r)["type"] == "booklet_issued"
                  and value_of(r)["booklet_id"] == template["booklet_id"])
    redeemed = {value_of(r)["voucher_id"] for r in ledger.records
                if value_of(r)["type"] == "voucher_redeemed"}
    voucher_id = next(f"{issued['booklet_id']}-{n:02d}" for n in range(1, 11)
                      if f"{issued['booklet_id']}-{n:02d}" not in redeemed)
    late = datetime.fromisoformat(issued["grace_until"]).replace(
        hour=12, tzinfo=timezone.utc) + timedelta(days=1)
    event = VoucherRedeemed(**{**template, "request_id": "late", "voucher_id": voucher_id,
                               "event_id": event_id_for("redeemer", "late", 0),
                               "occurred_at": late})
    _, report = replay(ledger.records + ledger.writer.redeemer(issued["booklet_id"].encode(),
                                                                 [event]))
    assert find(report, "redemption_outside_validity").event_ids == (event.event_id,)


def test_an_activation_beyond_the_funds_received_is_named(ledger) -> None:  # type: ignore[no-untyped-def]
    issued = [value_of(r) for r in ledger.records if value_of(r)["type"] == "booklet_issued"]
    unpaid = issued[2]  # the third booklet of the first collectivité was never paid for
    activation = BookletActivated(
        event_id=event_id_for("issuer", "rogue", 0), request_id="rogue", occurred_at=AT,
        siren=unpaid["siren"], booklet_id=unpaid["booklet_id"], activated_cents=10_000)
    forged = ledger.writer.issuer(unpaid["siren"], [activation])
    _, report = replay(ledger.records + forged)
    finding = find(report, "activated_exceeds_funds")
    assert finding.siren == unpaid["siren"]
    assert finding.event_ids == ("position:" + forged[0].headers[0][1].decode().rsplit(
        "|", 2)[0].replace("|", "#"),)


def test_an_altered_payload_is_named_by_its_place(ledger) -> None:  # type: ignore[no-untyped-def]
    index = next(i for i, r in enumerate(ledger.records)
                 if value_of(r)["type"] == "voucher_redeemed")
    record = ledger.records[index]
    tampered = replace(record, value=record.value.replace(b'"face_value_cents":1000',
                                                          b'"face_value_cents":9000'))
    _, report = replay(ledger.records[:index] + [tampered] + ledger.records[index + 1:])
    finding = find(report, "altered_event")
    assert f"{record.topic}[{record.partition}]@" in finding.detail
    assert "redeemer/" in finding.detail and "#1:" in finding.detail
    assert finding.event_ids == (value_of(record)["event_id"],)


def test_a_deleted_event_leaves_a_named_gap(ledger) -> None:  # type: ignore[no-untyped-def]
    index = next(i for i, r in enumerate(ledger.records)
                 if value_of(r)["type"] == "booklet_issued")
    stream, sequence = ledger.records[index].headers[0][1].decode().split("|")[:2]
    _, report = replay(ledger.records[:index] + ledger.records[index + 1:])
    finding = find(report, "missing_event")
    assert f"{stream}#{sequence} is missing" in finding.detail


def test_reordered_events_are_named(ledger) -> None:  # type: ignore[no-untyped-def]
    records = list(ledger.records)
    first, second = [i for i, r in enumerate(records)
                     if value_of(r)["type"] == "voucher_redeemed"][:2]
    assert records[first].partition == records[second].partition
    records[first], records[second] = records[second], records[first]
    _, report = replay(records)
    assert "#1 comes after #2" in find(report, "reordered_event").detail
    assert codes(report) == {"reordered_event"}


def test_injected_events_are_named(ledger) -> None:  # type: ignore[no-untyped-def]
    original = next(r for r in ledger.records if value_of(r)["type"] == "voucher_redeemed")
    stream, sequence, previous_hash, _ = original.headers[0][1].decode().split("|")
    document = value_of(original)
    rogue = encode(VoucherRedeemed(**{**document, "siret": "73282932000074",
                                      "event_id": "injected"}))
    relinked = next_link(stream, int(sequence), previous_hash, rogue).to_header()
    forged_hash = f"{stream}|{int(sequence) + 40}|{'0' * 64}|{'f' * 64}".encode()
    injected = [replace(original, value=rogue, headers=((CHAIN_HEADER, relinked),)),
                replace(original, value=rogue, headers=((CHAIN_HEADER, forged_hash),)),
                replace(original, value=rogue, headers=())]
    _, report = replay(ledger.records + injected)
    assert f"{stream}#{sequence}" in find(report, "conflicting_events").detail
    assert f"{stream}#{int(sequence) + 40}" in find(report, "altered_event").detail
    assert find(report, "unchained_event").event_ids == ("injected",)


def test_a_redemption_at_a_suspended_venue_is_judged_at_that_moment(ledger) -> None:  # type: ignore[no-untyped-def]
    redemptions = [value_of(r) for r in ledger.records if value_of(r)["type"] == "voucher_redeemed"]
    siret = redemptions[0]["siret"]
    # Suspended between the 2nd and the 3rd scan (they are one minute apart).
    between = datetime.fromisoformat(redemptions[1]["occurred_at"].replace("Z", "+00:00"))
    suspension = ProviderStatusChanged(
        event_id=event_id_for("redeemer", "suspend", 0), request_id="suspend",
        occurred_at=between + timedelta(seconds=30), siret=siret, status="suspended",
        reason="audit")
    forged = ledger.writer.redeemer(siret.encode(), [suspension])
    _, report = replay(ledger.records + forged)
    flagged = [f for f in report.findings if f.code == "redemption_by_unaccredited_venue"]
    assert len(flagged) == 2  # the 3rd and 4th scans, not the two before
    assert {f.detail.split()[0] for f in flagged} == {r["voucher_id"] for r in redemptions[2:]}


def applied_then_redeemed(redemption: dict) -> tuple[BookletBlockApplied, VoucherRedeemed]:
    """The redeemer's application of a block of `redemption`'s booklet, and a redemption of
    another voucher of it after that."""
    booklet_id, siren = redemption["booklet_id"], redemption["siren"]
    applied = BookletBlockApplied(event_id=event_id_for("redeemer", "applied", 0),
                                  request_id="applied", occurred_at=AT, siren=siren,
                                  booklet_id=booklet_id)
    later = VoucherRedeemed(**{**redemption, "request_id": "after-the-block",
                               "event_id": event_id_for("redeemer", "after-the-block", 0),
                               "voucher_id": f"{booklet_id}-10",
                               "occurred_at": AT + timedelta(minutes=1)})
    return applied, later


def test_a_redemption_of_a_blocked_booklet_is_named(ledger) -> None:  # type: ignore[no-untyped-def]
    """Judged in the order the redeemer decided: a redemption after the block's application
    in the booklet's stream is named; one decided before the redeemer applied it is not."""
    redemption = next(value_of(r) for r in ledger.records
                      if value_of(r)["type"] == "voucher_redeemed")
    booklet_id, siren = redemption["booklet_id"], redemption["siren"]
    block = BookletBlocked(event_id=event_id_for("issuer", "lost", 0), request_id="lost",
                           occurred_at=AT - timedelta(minutes=90), siren=siren,
                           booklet_id=booklet_id, reason="lost")
    reported = ledger.records + ledger.writer.issuer(siren, [block])
    # Reported before the redemption's instant, not applied yet when it was decided: a race
    # the redeemer could not see, not a fault.
    _, report = replay(reported)
    assert not [f for f in report.findings if f.code == "redemption_of_blocked_voucher"]
    applied, later = applied_then_redeemed(redemption)
    _, report = replay(reported + ledger.writer.redeemer(booklet_id.encode(), [applied, later]))
    blocked = [f for f in report.findings if f.code == "redemption_of_blocked_voucher"]
    assert [f.event_ids for f in blocked] == [(later.event_id,)]
    # An application the collectivité never reported is named.
    _, report = replay(ledger.records + ledger.writer.redeemer(booklet_id.encode(), [applied]))
    assert find(report, "block_applied_without_report").event_ids == (applied.event_id,)


def test_a_block_reported_past_the_end_the_read_took_is_judged_with_its_report(
        ledger) -> None:  # type: ignore[no-untyped-def]
    """The issuer's topic is read first, up to the end it had then; the redeemer may apply a
    block reported just after. Its application still bars the booklet's later redemptions,
    and the report, read by the next cycle, clears `block_applied_without_report`."""
    redemption = next(value_of(r) for r in ledger.records
                      if value_of(r)["type"] == "voucher_redeemed")
    booklet_id, siren = redemption["booklet_id"], redemption["siren"]
    block = BookletBlocked(event_id=event_id_for("issuer", "late", 0), request_id="late",
                           occurred_at=AT, siren=siren, booklet_id=booklet_id, reason="lost")
    reported = ledger.writer.issuer(siren, [block])
    applied, later = applied_then_redeemed(redemption)
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False))
    replayer.ingest(in_read_order(
        ledger.records + ledger.writer.redeemer(booklet_id.encode(), [applied, later]),
        replayer.topics_in_order()))
    first = replayer.judge()
    assert find(first, "block_applied_without_report").event_ids == (applied.event_id,)
    assert find(first, "redemption_of_blocked_voucher").event_ids == (later.event_id,)
    replayer.ingest(in_read_order(reported, replayer.topics_in_order()))  # the next cycle
    assert "block_applied_without_report" not in codes(replayer.judge())


def test_a_request_decided_twice_is_found(ledger) -> None:  # type: ignore[no-untyped-def]
    rejection = next(value_of(r) for r in ledger.records
                     if value_of(r)["type"] == "redemption_rejected")
    again = RedemptionRejected(**{**rejection, "reason": "forged_code", "redeemed_at": None})
    forged = ledger.writer.redeemer(b"elsewhere", [again])  # another chain: a 2nd outcome
    _, report = replay(ledger.records + forged)
    finding = find(report, "request_decided_twice")
    assert finding.event_ids == (f"fingerprint:{wire.event_fingerprint(again.event_id):016x}",)


@pytest.mark.parametrize("where", ["another event", "another voucher"])
def test_a_redemption_event_id_recorded_again_is_found(ledger, where) -> None:  # type: ignore[no-untyped-def]
    """A redemption's id is in the standing index (in C), not in the buckets of the other
    events' ids: one repeated by a rejection is found by the index's lookup, one repeated
    by a redemption of another voucher by the index's size."""
    redemption = next(value_of(r) for r in ledger.records
                      if value_of(r)["type"] == "voucher_redeemed")
    if where == "another event":
        again = RedemptionRejected(
            event_id=redemption["event_id"], request_id=redemption["request_id"],
            occurred_at=redemption["occurred_at"], siret=redemption["siret"],
            voucher_id=redemption["voucher_id"], reason="forged_code", redeemed_at=None)
        forged = ledger.writer.redeemer(b"elsewhere", [again])
    else:
        other = next(value_of(r) for r in ledger.records
                     if value_of(r)["type"] == "voucher_redeemed"
                     and value_of(r)["voucher_id"] != redemption["voucher_id"]
                     and value_of(r)["booklet_id"] == redemption["booklet_id"])
        position = int(other["voucher_id"][-2:]) % 5 + 1
        while f"{other['booklet_id']}-{position:02d}" in {
                value_of(r).get("voucher_id") for r in ledger.records}:
            position = position % 5 + 1
        again = VoucherRedeemed(**{**other, "event_id": redemption["event_id"],
                                   "voucher_id": f"{other['booklet_id']}-{position:02d}"})
        forged = ledger.writer.redeemer(other["booklet_id"].encode(), [again])
    replayer, report = replay(ledger.records + forged)
    assert replayer.compiled
    finding = find(report, "request_decided_twice")
    fingerprint = wire.event_fingerprint(redemption["event_id"])
    assert finding.event_ids == (f"fingerprint:{fingerprint:016x}",)


def test_settlement_statements_are_checked(ledger) -> None:  # type: ignore[no-untyped-def]
    redeemed = [value_of(r) for r in ledger.records if value_of(r)["type"] == "voucher_redeemed"]
    siret = redeemed[0]["siret"]
    ids = tuple(r["event_id"] for r in redeemed)

    def statement(request: str, listed: tuple[str, ...], count: int) -> SettlementStatementIssued:
        return SettlementStatementIssued(
            event_id=event_id_for("redeemer", request, 0), request_id=request,
            occurred_at=datetime(2026, 4, 2, tzinfo=timezone.utc), siret=siret,
            month="2026-03", voucher_count=count, face_value_cents=1000 * count,
            redemption_event_ids=listed)

    def closing(request: str, statements: int, count: int) -> SettlementMonthClosed:
        return SettlementMonthClosed(
            event_id=event_id_for("redeemer", request, 1), request_id=request,
            occurred_at=datetime(2026, 4, 2, tzinfo=timezone.utc), month="2026-03",
            statement_count=statements, voucher_count=count, face_value_cents=1000 * count)

    good = ledger.writer.redeemer(b"2026-03", [statement("close", ids, 4), closing("close", 1, 4)])
    _, report = replay(ledger.records + good)
    assert report.sound, report.findings
    twice = ledger.writer.redeemer(b"2026-03", [statement("again", ids[:1], 1)])
    _, report = replay(ledger.records + good + twice)
    assert "redemption_paid_twice" in codes(report)
    paid_twice = find(report, "redemption_paid_twice")
    assert set(paid_twice.event_ids) >= {event_id_for("redeemer", "close", 0),
                                          event_id_for("redeemer", "again", 0)}


def test_until_gives_the_books_as_of_a_date(ledger) -> None:  # type: ignore[no-untyped-def]
    _, before = replay(ledger.records, until=datetime(2026, 3, 2, 10, 30, tzinfo=timezone.utc))
    assert before.sound, before.findings
    assert sum(t.redeemed_vouchers for t in before.totals.values()) == 0
    assert before.as_of == "2026-03-02"
    _, later = replay(ledger.records, until=datetime(2027, 6, 1, tzinfo=timezone.utc))
    used = sum(t.redeemed_vouchers for t in later.totals.values())
    expired = sum(t.expired_vouchers for t in later.totals.values())
    assert (used, expired) == (4, sum(t.activated_vouchers for t in later.totals.values()) - 4)


def test_one_collectivite_sees_its_own_books_only(ledger) -> None:  # type: ignore[no-untyped-def]
    siren = value_of(ledger.records[0])["siren"]
    _, report = replay(ledger.records, collectivite=siren)
    assert list(report.totals) == [siren]
    assert report.sound


def test_the_json_report_is_identical_whatever_the_interleaving(ledger) -> None:  # type: ignore[no-untyped-def]
    _, one = replay(ledger.records)
    shuffled = list(reversed(ledger.records[18:])) + ledger.records[:18]
    _, two = replay(sorted(shuffled, key=lambda r: r.topic))
    assert "reordered_event" in codes(two)  # reversed within partitions: found, and then:
    _, three = replay(list(ledger.records))
    assert one.to_json() == three.to_json()


def test_html_and_csv_reports_are_written(ledger, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.auditor.exports import write_csv
    from services.auditor.html_report import write_html

    _, report = replay(ledger.records)
    write_html(report, tmp_path / "audit.html")
    page = (tmp_path / "audit.html").read_text()
    assert page.count("<svg") == 4 and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    written = write_csv(report, tmp_path / "csv")
    assert (tmp_path / "csv" / "collectivites.csv").read_text().count("\n") == 3
    assert len(written) == 4
