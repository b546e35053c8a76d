"""Statements whose references become marks on the vouchers (`Books.record_payments`, after
a judgement) are judged as if they still listed them, whatever comes after: more reads,
cancellations of a paid redemption, statements listing a paid redemption again, statements
that sort before one already marked. Hypothesis: random logs with statements, faulty ones
too, read in one to four cycles judged after each, against the same log read and judged
with no mark ever recorded."""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from passnum.ledger.identity import event_id_for
from schemas.messages import (
    RedemptionCancelled,
    SettlementMonthClosed,
    SettlementStatementIssued,
    VoucherRedeemed,
)
from services.auditor import wire
from services.auditor.replay import Replayer, ReplayOptions
from tests.support.chained_log import ChainedRecord, in_read_order, sample_ledger
from tests.unit.test_auditor_fast_path import (
    FAST,
    SETTINGS,
    SIRETS,
    START,
    TOPOLOGY,
    chained,
    ledgers,
)

MONTHS = ("2026-01", "2026-02", "2026-12", "2027-03")


@st.composite
def settled_ledgers(draw: st.DrawFn) -> list:  # type: ignore[type-arg]
    """A random log, then statements (each listing redemptions of any venue and month,
    unknown ids, the same one twice) and cancellations of redemptions they list."""
    events = draw(ledgers())
    redemptions = [e for e in events if isinstance(e, VoucherRedeemed)]
    if not redemptions:
        return events
    for number in range(draw(st.integers(1, 4))):
        listed = draw(st.lists(st.sampled_from(redemptions), max_size=5))
        references = [r.event_id for r in listed]
        if draw(st.integers(0, 5)) == 0:
            references.append(event_id_for("redeemer", f"unknown-{number}", 0))
        siret = (listed[0].siret if listed and draw(st.integers(0, 3))
                 else draw(st.sampled_from(SIRETS)))
        request = f"statement-{number}"
        events.append(SettlementStatementIssued(
            event_id=event_id_for("redeemer", request, 0), request_id=request,
            occurred_at=START + timedelta(days=400 + number), siret=siret,
            month=draw(st.sampled_from(MONTHS)), voucher_count=len(references),
            face_value_cents=1000 * len(references), redemption_event_ids=tuple(references)))
        for redemption in draw(st.lists(st.sampled_from(listed), max_size=2)) if listed else ():
            request = f"cancel-{number}-{redemption.event_id[:8]}"
            events.append(RedemptionCancelled(
                event_id=event_id_for("redeemer", request, 0), request_id=request,
                occurred_at=redemption.occurred_at + timedelta(minutes=1),
                siret=redemption.siret, siren=redemption.siren,
                booklet_id=redemption.booklet_id, voucher_id=redemption.voucher_id,
                face_value_cents=1000, redemption_event_id=redemption.event_id))
    return events


def report_of(replayer: Replayer) -> dict:
    report = json.loads(replayer.judge().to_json())
    report.pop("memory")
    report.pop("as_of")
    return report


def never_marking(replayer: Replayer) -> Replayer:
    replayer.books.record_payments = lambda payments: None  # type: ignore[method-assign]
    return replayer


def read_in_cycles(records: list[ChainedRecord], cuts: list[int]) -> tuple[Replayer, list]:
    """The log read up to each cut in turn (a prefix of every partition), judged after each
    read; the reports."""
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False))
    topics = replayer.topics_in_order()
    seen: set[tuple[str, int, int]] = set()
    reports = []
    for cut in [*cuts, len(records)]:
        messages = [m for m in in_read_order(records[:cut], topics)
                    if (m.topic, m.partition, m.offset) not in seen]
        seen.update((m.topic, m.partition, m.offset) for m in messages)
        replayer.ingest(messages)
        reports.append(report_of(replayer))
    return replayer, reports


def read_at_once(records: list[ChainedRecord]) -> dict:
    replayer = never_marking(Replayer(SETTINGS, ReplayOptions(resolve_names=False)))
    replayer.ingest(in_read_order(records, replayer.topics_in_order()))
    return report_of(replayer)


@FAST
@given(settled_ledgers(), st.lists(st.floats(0, 1), max_size=3))
def test_marked_statements_are_judged_as_listed(events, fractions) -> None:  # type: ignore[no-untyped-def]
    records = chained(events, ["canonical"])
    cuts = sorted(int(fraction * len(records)) for fraction in fractions)
    _, reports = read_in_cycles(records, cuts)
    for cut, report in zip([*cuts, len(records)], reports):
        assert report == read_at_once(records[:cut])


def statement(number: int, siret: str, month: str, event_ids: list[str]) -> SettlementStatementIssued:
    request = f"statement-{number}"
    return SettlementStatementIssued(
        event_id=event_id_for("redeemer", request, 0), request_id=request,
        occurred_at=START + timedelta(days=400), siret=siret, month=month,
        voucher_count=len(event_ids), face_value_cents=1000 * len(event_ids),
        redemption_event_ids=tuple(event_ids))


def test_a_sound_statement_becomes_marks_and_comes_back_when_judged_again() -> None:
    """The examples the property draws at random, each asserted reached: a sound statement
    marked; then another listing one of its redemptions again (paid twice, and it sorts
    first: the marked one is the second payer); then a cancellation of a paid redemption
    (its mark undone)."""
    ledger = sample_ledger(TOPOLOGY)
    redemptions = [VoucherRedeemed(**json.loads(r.value)) for r in ledger.records
                   if json.loads(r.value)["type"] == "voucher_redeemed"]
    paid = [r for r in redemptions if r.siret == redemptions[0].siret]
    first = ledger.writer.redeemer(b"2027-01", [
        statement(2, paid[0].siret, "2027-01", [r.event_id for r in paid]),
        SettlementMonthClosed(event_id=event_id_for("redeemer", "close", 0), request_id="close",
                              occurred_at=START + timedelta(days=400), month="2027-01",
                              statement_count=1, voucher_count=len(paid),
                              face_value_cents=1000 * len(paid))])
    again = ledger.writer.redeemer(b"2027-01", [statement(1, paid[0].siret, "2026-12",
                                                          [paid[0].event_id])])
    cancelled = ledger.writer.redeemer(paid[-1].booklet_id.encode(), [RedemptionCancelled(
        event_id=event_id_for("redeemer", "cancel", 0), request_id="cancel",
        occurred_at=paid[-1].occurred_at + timedelta(minutes=1), siret=paid[-1].siret,
        siren=paid[-1].siren, booklet_id=paid[-1].booklet_id, voucher_id=paid[-1].voucher_id,
        face_value_cents=1000, redemption_event_id=paid[-1].event_id)])
    records = ledger.records + first + again + cancelled
    cuts = [len(ledger.records) + 2, len(ledger.records) + 3]
    replayer, reports = read_in_cycles(records[:cuts[0]], [])
    assert reports[-1]["sound"] is True
    assert replayer.books.statements[0].paid == len(paid)  # marked at the first judgement
    assert not replayer.books.statements[0].listed
    replayer, reports = read_in_cycles(records, cuts)
    assert "redemption_paid_twice" in reports[1]["findings_by_code"]
    marked = replayer.books.statements[0]
    assert marked.paid == len(paid) - 1  # the cancelled redemption listed again
    assert list(marked.listed) == [wire.event_fingerprint(paid[-1].event_id)]
    for cut, report in zip([*cuts, len(records)], reports):
        assert report == read_at_once(records[:cut])


def test_marks_hold_less_than_the_lists() -> None:
    ledger = sample_ledger(TOPOLOGY)
    redemptions = [VoucherRedeemed(**json.loads(r.value)) for r in ledger.records
                   if json.loads(r.value)["type"] == "voucher_redeemed"]
    paid = [r for r in redemptions if r.siret == redemptions[0].siret]
    records = ledger.records + ledger.writer.redeemer(b"2027-01", [statement(
        1, paid[0].siret, "2027-01", [r.event_id for r in paid])])
    replayer, _ = read_in_cycles(records, [])
    memory = replayer.books.memory_bytes()
    assert memory["settlement_references"] == 2 * replayer.books.voucher_total


def test_a_statement_paying_a_contested_voucher_keeps_its_list() -> None:
    """A voucher redeemed, cancelled and redeemed again is contested: which redemption
    stands is judged at each judgement, so a statement paying it is not marked, and a later
    cancellation of the standing one leaves its reference unknown, as listed."""
    ledger = sample_ledger(TOPOLOGY)
    redemption = next(VoucherRedeemed(**json.loads(r.value)) for r in ledger.records
                      if json.loads(r.value)["type"] == "voucher_redeemed")
    key = redemption.booklet_id.encode()

    def cancel(of: VoucherRedeemed, request: str) -> RedemptionCancelled:
        return RedemptionCancelled(
            event_id=event_id_for("redeemer", request, 0), request_id=request,
            occurred_at=of.occurred_at + timedelta(minutes=1), siret=of.siret, siren=of.siren,
            booklet_id=of.booklet_id, voucher_id=of.voucher_id, face_value_cents=1000,
            redemption_event_id=of.event_id)

    again = redemption.model_copy(update={
        "event_id": event_id_for("redeemer", "again", 0), "request_id": "again",
        "occurred_at": redemption.occurred_at + timedelta(minutes=2)})
    records = (ledger.records + ledger.writer.redeemer(key, [cancel(redemption, "c1"), again])
               + ledger.writer.redeemer(b"2027-01", [statement(1, again.siret, "2027-01",
                                                               [again.event_id])])
               + ledger.writer.redeemer(key, [cancel(again, "c2")]))
    cuts = [len(records) - 1]
    replayer, reports = read_in_cycles(records, cuts)
    assert not replayer.books.statements[0].paid
    assert "statement_lists_unknown_redemption" in reports[-1]["findings_by_code"]
    for cut, report in zip([*cuts, len(records)], reports):
        assert report == read_at_once(records[:cut])
