"""The replay split by partition (services.auditor.parallel) against the replay in one
process, on random logs keyed as the processors key them: when the parts merge, the report
is the one-process report byte for byte; when a part meets a fact it cannot judge alone
(a booklet of another partition) or the parts overlap, the split is refused, never wrong."""

from __future__ import annotations

from collections import namedtuple

from hypothesis import given
from hypothesis import strategies as st

from services.auditor import parallel
from services.auditor.chain import ChainVerifier
from services.auditor.replay import Replayer, ReplayOptions
from tests.support.chained_log import ChainedLogWriter, ChainedRecord

from .test_auditor_fast_path import FAST, SETTINGS, TOPOLOGY, ledgers

Message = namedtuple("Message", "offset value headers")


def keyed(events: list) -> list[ChainedRecord]:
    """Events written as the processors write them: issuer decisions keyed by SIREN,
    redeemer decisions by booklet (or venue, or month), events by their own key."""
    writer = ChainedLogWriter(TOPOLOGY)
    records: list[ChainedRecord] = []
    for event in events:
        if event.type in ("collectivite_registered", "envelope_funded", "booklets_ordered",
                          "funds_received", "booklet_issued", "booklet_activated",
                          "booklet_blocked"):
            records += writer.issuer(event.siren, [event])
        else:
            key = (getattr(event, "booklet_id", None) or getattr(event, "siret", None)
                   or event.month)
            records += writer.redeemer(key.encode(), [event])
    return records


def batches(records: list[ChainedRecord], places: set[tuple[str, int]] | None = None) -> list:
    """(topic, partition, records) in the reading order: issuer topic, then redeemer."""
    by_place: dict[tuple[str, int], list] = {}
    for record in records:
        place = (record.topic, record.partition)
        if places is None or place in places:
            rows = by_place.setdefault(place, [])
            rows.append(Message(len(rows), record.value, list(record.headers)))
    order = [TOPOLOGY.issuer_events.name, TOPOLOGY.redeemer_events.name]
    return [(topic, partition, rows) for (topic, partition), rows in
            sorted(by_place.items(), key=lambda item: (order.index(item[0][0]), item[0][1]))]


def without_memory(replayer: Replayer) -> str:
    """The report, but for the memory figures (the parts allocate their own chunks)."""
    import json

    document = json.loads(replayer.judge().to_json())
    document.pop("memory")
    return json.dumps(document, sort_keys=True)


def whole(records: list[ChainedRecord]) -> Replayer:
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False, processes=1))
    for topic, partition, rows in batches(records):
        replayer.ingest_batch(topic, partition, rows)
    return replayer


def in_parts(records: list[ChainedRecord], workers: int) -> Replayer | None:
    issuer, redeemer = TOPOLOGY.issuer_events.name, TOPOLOGY.redeemer_events.name
    plan = parallel.split_places([(issuer, n) for n in range(TOPOLOGY.issuer_events.partitions)],
                                 [(redeemer, n) for n in
                                  range(TOPOLOGY.redeemer_events.partitions)], workers)
    assert plan is not None
    key = ChainVerifier().key
    parts = []
    for places in plan:
        replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False))
        replayer.chains = ChainVerifier(key)
        replayer.books.partial = True
        for topic, partition, rows in batches(records, set(places)):
            replayer.ingest_batch(topic, partition, rows)
        parts.append(parallel.Part(replayer, {}))
    if any(part.books.needs_whole_log for part in parts):
        return None
    merged = parallel.merge_parts(parts, key)
    if merged is None:
        return None
    result = Replayer(SETTINGS, ReplayOptions(resolve_names=False))
    result.adopt(*merged, parts)
    return result


@FAST
@given(ledgers(), st.sampled_from([2, 3, 4]))
def test_the_merged_parts_report_what_one_process_reports(events, workers) -> None:  # type: ignore[no-untyped-def]
    records = keyed(events)
    merged = in_parts(records, workers)
    if merged is None:
        return  # refused: the caller replays in one process
    one = whole(records)
    assert merged.records_read == one.records_read
    assert without_memory(merged) == without_memory(one)


def test_a_sound_keyed_log_is_split() -> None:
    from tests.support.chained_log import sample_ledger

    records = sample_ledger(TOPOLOGY).records
    merged = in_parts(records, 2)
    assert merged is not None
    assert without_memory(merged) == without_memory(whole(records))


def test_a_booklet_fact_in_another_partition_refuses_the_split() -> None:
    from tests.support.chained_log import sample_ledger

    ledger = sample_ledger(TOPOLOGY)
    redemption = next(r for r in ledger.records if b'"voucher_redeemed"' in r.value)
    moved = [replace_partition(r, (r.partition + 1) % 4) if r is redemption else r
             for r in ledger.records]
    assert in_parts(moved, 4) is None


def replace_partition(record: ChainedRecord, partition: int) -> ChainedRecord:
    from dataclasses import replace

    return replace(record, partition=partition)


def test_the_merged_books_keep_the_blocks_applied() -> None:
    """A later cycle of `--follow` goes on with the merged books: a block applied in a part
    must still bar the booklet's redemptions read afterwards."""
    import json
    from datetime import datetime, timezone

    from passnum.ledger.identity import event_id_for
    from schemas.messages import BookletBlockApplied, BookletBlocked
    from tests.support.chained_log import sample_ledger

    ledger = sample_ledger(TOPOLOGY)
    redemption = next(json.loads(r.value) for r in ledger.records
                      if b'"voucher_redeemed"' in r.value)
    booklet_id, siren = redemption["booklet_id"], redemption["siren"]
    at = datetime(2026, 3, 3, tzinfo=timezone.utc)
    records = ledger.records + ledger.writer.issuer(siren, [BookletBlocked(
        event_id=event_id_for("issuer", "lost", 0), request_id="lost", occurred_at=at,
        siren=siren, booklet_id=booklet_id, reason="lost")]) + ledger.writer.redeemer(
        booklet_id.encode(), [BookletBlockApplied(
            event_id=event_id_for("redeemer", "applied", 0), request_id="applied",
            occurred_at=at, siren=siren, booklet_id=booklet_id)])
    merged, one = in_parts(records, 2), whole(records)
    assert merged is not None
    assert merged.books.applied_blocks == one.books.applied_blocks != set()


def test_one_chain_position_read_in_two_parts_refuses_the_split() -> None:
    """An issuer event copied into another partition: its chain position is then read by
    two parts, which the merge must refuse (the log is replayed whole instead)."""
    from tests.support.chained_log import sample_ledger

    ledger = sample_ledger(TOPOLOGY)
    funds = next(r for r in ledger.records if b'"funds_received"' in r.value)
    copied = replace_partition(funds, (funds.partition + 1) % TOPOLOGY.issuer_events.partitions)
    assert in_parts(ledger.records, 4) is not None
    assert in_parts(ledger.records + [copied], 4) is None


def test_the_merge_renumbers_the_topics_of_waiting_links() -> None:
    """A part numbers topics in the order it meets them, so two parts may number them
    differently: a link waiting for its earlier end must still name its own topic once
    merged (the place's topic number is renumbered through the merged topics)."""
    from binascii import hexlify
    from hashlib import sha256

    issuer, redeemer = TOPOLOGY.issuer_events.name, TOPOLOGY.redeemer_events.name
    key = ChainVerifier().key
    first, second = ChainVerifier(key), ChainVerifier(key)
    first.place(issuer, 0, 0)
    first.place(redeemer, 0, 0)
    second.place(redeemer, 0, 0)  # this part met the redeemer's topic first
    second.place(issuer, 0, 0)

    def waiting_link(chains: ChainVerifier, stream: bytes, topic: str, partition: int,
                     offset: int) -> None:
        previous, value = b"ab" * 32, b"{}"
        digest = hexlify(sha256(previous + value).digest())
        chains.admit_link(stream, 2, previous, digest, value, topic, partition, offset)

    waiting_link(first, b"issuer-a", redeemer, 1, 7)
    waiting_link(second, b"issuer-b", issuer, 3, 9)
    waiting_link(second, b"issuer-c", redeemer, 2, 11)
    merged = ChainVerifier(key)
    assert parallel._merge_chains(merged, first) and parallel._merge_chains(merged, second)
    missing = sorted(finding.detail for finding in merged.finish()
                     if finding.code == "missing_event")
    assert missing == [
        f"issuer-a#1 is missing: #2 ({redeemer}[1]@7) links to an event that is not in the log",
        f"issuer-b#1 is missing: #2 ({issuer}[3]@9) links to an event that is not in the log",
        f"issuer-c#1 is missing: #2 ({redeemer}[2]@11) links to an event that is not in the log"]
