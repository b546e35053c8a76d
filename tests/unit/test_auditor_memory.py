"""The replay's state after a read holds what the books and chains hold, not the unused
tail of the chunks they grow by (`Books.trim`, `ChainVerifier.trim`): the figure
`report.memory` gives per voucher is then what is held between reads. Trimming changes
nothing judged, and a read after it grows the columns again as before."""

from __future__ import annotations

import json

from services.auditor.replay import Replayer, ReplayOptions
from tests.support.chained_log import in_read_order, sample_ledger
from tests.unit.test_auditor_fast_path import SETTINGS, TOPOLOGY, book_columns


def replayed(messages: list) -> Replayer:
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False))
    replayer.ingest(messages)
    return replayer


def judged(replayer: Replayer) -> dict:
    """The report but for its memory figures."""
    report = json.loads(replayer.judge().to_json())
    report.pop("memory")
    return report


def test_trimming_frees_the_unused_tails_and_changes_nothing_judged() -> None:
    messages = in_read_order(sample_ledger(TOPOLOGY).records,
                             Replayer(SETTINGS).topics_in_order())
    replayer, reference = replayed(messages), replayed(messages)
    books, chains = replayer.books, replayer.chains
    assert len(books.redeemed_event) > books.voucher_total  # a chunk, mostly unused
    before = books.memory_bytes()["vouchers"] + chains.memory_bytes()

    books.trim()
    chains.trim()

    for column in (books.redeemed_second, books.redeemed_venue, books.redeemed_event):
        assert len(column) == books.voucher_total
    for collectivite in books.collectivites.values():
        assert collectivite.booklets[-1] != 0  # its last issued booklet
    for chain in chains.streams.values():
        assert len(chain.hashes) == chain.highest
    assert chains.slots == sum(len(chain.hashes) for chain in chains.streams.values())
    assert books.memory_bytes()["vouchers"] + chains.memory_bytes() < before / 10
    assert book_columns(replayer) == book_columns(reference)
    assert judged(replayer) == judged(reference)


def test_a_read_after_trimming_folds_like_one_without() -> None:
    messages = in_read_order(sample_ledger(TOPOLOGY).records,
                             Replayer(SETTINGS).topics_in_order())
    middle = len(messages) // 2
    replayer, reference = replayed(messages[:middle]), replayed(messages[:middle])
    replayer.books.trim()
    replayer.chains.trim()
    replayer.ingest(messages[middle:])
    reference.ingest(messages[middle:])
    assert book_columns(replayer) == book_columns(reference)
    assert judged(replayer) == judged(reference)


class LogOnHand:
    """The broker, as `Replayer.read` reads it: records from the start offsets to the end
    of what the log holds now (`messages`, in read order), each partition's end noted."""

    def __init__(self) -> None:
        self.messages: list = []

    def read_record_batches(self, settings: object, topics: list[str], *,
                            start_offsets: dict, ends: dict, **_: object):  # type: ignore[no-untyped-def]
        for topic in topics:
            partitions: dict[int, list] = {}
            for message in self.messages:
                if message.topic == topic and message.offset >= start_offsets.get(
                        (topic, message.partition), 0):
                    partitions.setdefault(message.partition, []).append(message)
            for partition, records in sorted(partitions.items()):
                ends[(topic, partition)] = records[-1].offset + 1
                yield topic, partition, records

    def high_water_marks(self, settings: object, topics: list[str]) -> dict:
        return {topic: len(self.messages) for topic in topics}


def test_the_follower_keeps_its_columns_between_cycles_and_a_one_shot_read_trims(
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A follower's cycle that issues booklets grows the voucher columns where they are
    (they were not cut to size by the cycle before, which would copy every column each
    cycle); a one-shot read ends with them cut to size, and both judge alike."""
    from services.auditor import replay as replay_module
    from services.auditor.follow import follow_cycle

    log = LogOnHand()
    monkeypatch.setattr(replay_module, "read_record_batches", log.read_record_batches)
    monkeypatch.setattr(replay_module, "fetch_high_water_marks", log.high_water_marks)
    monkeypatch.setattr("services.auditor.follow._checkpoint_due_months", lambda *_: None)
    records = sample_ledger(TOPOLOGY).records
    topics = Replayer(SETTINGS).topics_in_order()
    follower = Replayer(SETTINGS, ReplayOptions(resolve_names=False, processes=1))
    log.messages = in_read_order(records[:10], topics)  # some booklets issued, not all
    follow_cycle(follower, SETTINGS, use_database=False)
    columns = [follower.books.redeemed_second, follower.books.redeemed_venue,
               follower.books.redeemed_event]
    places = [column.buffer_info()[0] for column in columns]
    issued = follower.books.voucher_total
    log.messages = in_read_order(records, topics)
    follow_cycle(follower, SETTINGS, use_database=False)
    assert follower.books.voucher_total > issued
    after = [follower.books.redeemed_second, follower.books.redeemed_venue,
             follower.books.redeemed_event]
    assert all(a is b for a, b in zip(after, columns))
    assert [column.buffer_info()[0] for column in after] == places
    assert len(follower.books.redeemed_event) > follower.books.voucher_total

    one_shot = Replayer(SETTINGS, ReplayOptions(resolve_names=False, processes=1))
    one_shot.read()
    books = one_shot.books
    for column in (books.redeemed_second, books.redeemed_venue, books.redeemed_event):
        assert len(column) == books.voucher_total
    report = one_shot.judge()
    assert report.memory["vouchers"] == 14 * books.voucher_total
    assert judged(one_shot) == judged(follower)
